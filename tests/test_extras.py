"""Extras: the guard names the extra to install in one line; the lazy CLI turns it into an exit 2."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from heurmetrics import extras
from heurmetrics.cli.lazy import LazyCommand, LazyGroup
from heurmetrics.extras import MissingExtra, require

ROOT = Path(__file__).resolve().parent.parent


def test_extras_match_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert set(extras.EXTRAS) <= set(declared)
    assert declared["all"] == [f"heurmetrics[{','.join(extras.EXTRAS)}]"]
    # The modules each extra guards come from the packages it declares (attrs installs `attr`).
    import_names = {"uvicorn[standard]": "uvicorn", "psycopg[binary]": "psycopg", "attrs": "attr"}
    for name, (_what, modules) in extras.EXTRAS.items():
        packages = {p.split(">")[0].split("=")[0].split("<")[0].strip() for p in declared[name]}
        assert {import_names.get(p, p.replace("-", "_")) for p in packages} == set(modules), name


def test_every_extra_is_installed_in_the_dev_environment() -> None:
    for name in extras.EXTRAS:
        require(name)  # make install uses .[all,dev]
        assert extras.available(name)


@pytest.fixture
def fake_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An extra whose package is really missing, and a module that needs it."""
    monkeypatch.setitem(extras.EXTRAS, "fancy", ("fancy charts", ("heurmetrics_test_no_such_package",)))
    (tmp_path / "needs_fancy.py").write_text(
        "import typer\nfrom heurmetrics.extras import require\nrequire('fancy')\n"
        "app = typer.Typer()\n@app.command()\ndef draw() -> None:\n    print('drawn')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "needs_fancy", raising=False)
    return "fancy"


def test_a_missing_extra_is_one_line_naming_it(fake_extra: str) -> None:
    with pytest.raises(MissingExtra) as info:
        require(fake_extra)
    message = str(info.value)
    assert "\n" not in message and "pip install 'heurmetrics[fancy]'" in message
    assert "heurmetrics_test_no_such_package is not installed" in message
    assert isinstance(info.value, ImportError)  # `except ImportError` still catches it
    assert not extras.available(fake_extra)
    with pytest.raises(ValueError, match="unknown extra 'nope'"):
        require("nope")


def _app(target: str) -> typer.Typer:
    app = typer.Typer(cls=LazyGroup.with_commands([LazyCommand("fancy", target, "Fancy charts.")]))

    @app.callback()
    def main() -> None:
        """A group, like the heurmetrics app."""

    @app.command()
    def plain() -> None:
        print("plain ran")

    return app


def test_lazy_command_of_a_missing_extra_fails_in_one_line(fake_extra: str) -> None:
    runner = CliRunner()
    app = _app("needs_fancy:app")
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0 and "fancy" in listed.output and "Fancy charts." in listed.output
    assert "needs_fancy" not in sys.modules  # listing does not import it
    assert runner.invoke(app, ["plain"]).output.strip() == "plain ran"  # other commands unaffected
    result = runner.invoke(app, ["fancy", "draw"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "heurmetrics[fancy]" in lines[0] and lines[0].startswith("error: ")
    assert "Traceback" not in result.output


def test_lazy_command_runs_once_its_extra_is_there(fake_extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.EXTRAS, "fancy", ("fancy charts", ("typer",)))  # a package that is installed
    result = CliRunner().invoke(_app("needs_fancy:app"), ["fancy", "draw"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "drawn"
