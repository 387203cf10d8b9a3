"""The architecture as documented is the architecture as enforced: the layer list of
docs/architecture.md is import-linter's layers contract, and the README's folder table names every
package of heurmetrics/ and nothing else."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "heurmetrics"


def _layers_contract() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return contract


def test_architecture_page_draws_the_enforced_layers() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- BEGIN LAYERS.*?```\n(.*?)```\n<!-- END LAYERS -->", page, re.S)
    assert block is not None, "docs/architecture.md lost its layers block"
    drawn = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert drawn == _layers_contract()["layers"]


def test_layers_place_every_package_and_module() -> None:
    contract = _layers_contract()
    assert contract["containers"] == ["heurmetrics"] and contract["exhaustive"] is True
    placed = {name.strip() for layer in contract["layers"] for name in re.split(r"[|:]", layer)}  # type: ignore[union-attr]
    present = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    present |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert placed == present


def test_readme_folder_table_names_every_package_once() -> None:
    readme = (ROOT / "README.md").read_text()
    flow = readme.split("## How data flows", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in flow.splitlines() if line.startswith("| `heurmetrics/")]
    named = [folder for row in rows for folder in re.findall(r"`heurmetrics/(\w+)`", row.split("|")[1])]
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert sorted(named) == packages
    assert len(named) == len(set(named))
    diagram = flow.split("```", 2)[1]
    for package in packages:  # every folder is a box of the flow diagram
        assert f"{package}/" in diagram, package
