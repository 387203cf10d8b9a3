"""Docs that a first-hour user follows say what the code does (issue 13's drift items)."""

from __future__ import annotations

import re
from pathlib import Path

from heurmetrics.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


def test_the_reports_table_has_no_blank_line_inside() -> None:
    table = _section(README, "## What it reports").split("\n\n")[1]
    rows = table.splitlines()
    assert rows[0].startswith("| design name") and all(r.startswith("|") for r in rows)
    assert any("rule.version.performance" in r for r in rows)  # the last row is part of the table


def test_snapshot_interval_is_the_configured_one_everywhere() -> None:
    default = Settings.model_fields["performance_snapshot_seconds"].default
    performance = (ROOT / "docs" / "live-performance.md").read_text()
    assert "interval_seconds=60" not in performance and "every minute" not in performance
    assert f"default {default:.0f} s" in performance and f"| `{default:.0f}` |" in README


def test_walk_forward_doc_says_where_its_names_come_from() -> None:
    doc = (ROOT / "docs" / "walk-forward.md").read_text()
    line = next(x for x in doc.splitlines() if x.startswith("from heurmetrics.backtest.walkforward import"))
    names = set(re.findall(r"\w+", line.split("import", 1)[1]))
    assert {"GridSearch", "WalkForwardRule", "FitResult", "SerialExecutor"} <= names
    exec(line, {})  # the import the doc shows works


def test_readme_tells_the_truth_about_tokens_and_test_time() -> None:
    assert "every POST needs" not in README and "every `/v1` request (reads too)" in README
    assert re.search(r"make test .*~\d+ min", README)
    quick_start = _section(README, "## Installing without a checkout")
    assert "heurmetrics serve --database-url sqlite:///heurmetrics-demo.db" in quick_start
