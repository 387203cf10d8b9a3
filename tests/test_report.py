"""Tearsheets (``heurmetrics report``): HTML and PNG from stored walk-forward and single runs."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from heurmetrics import Recorder
from heurmetrics.backtest.splits import WalkForwardSplitter
from heurmetrics.backtest.walkforward import SerialExecutor
from heurmetrics.report import RunNotFound, load_run, render_html, write_report
from heurmetrics.report.cli import report
from tests.walkforward_helpers import hourly_bars, momentum_fit, momentum_run


@pytest.fixture
def runs(migrated_url: str) -> tuple[str, uuid.UUID, uuid.UUID]:
    """A walk-forward run and a single run, stored."""
    data = hourly_bars(24 * 14)
    with Recorder(migrated_url) as rec:
        rv = rec.register_rule_version("momentum", "1.0.0", params={"lookback": 12})
        wf = rec.walk_forward(
            rv, data, fit=momentum_fit, run=momentum_run, splitter=WalkForwardSplitter("3D", "2D"),
            dataset="synthetic <hourly>", periods_per_year=8760, executor=SerialExecutor(), progress=False,
            record_in_sample=False,
        )  # fmt: skip
        single = rec.record_backtest(rv, (1 + data["close"].pct_change().fillna(0)).cumprod(), dataset="buy & hold",
                                     periods_per_year=8760)  # fmt: skip
    return migrated_url, wf.run_id, single.run_id


def test_html_tearsheet_of_a_walk_forward_run(runs: tuple[str, uuid.UUID, uuid.UUID], tmp_path: Path) -> None:
    url, wf, _single = runs
    with Recorder(url) as rec:
        loaded = load_run(rec.store, wf)
        path = write_report(rec.store, str(wf), tmp_path / "wf.html")
    assert loaded.kind == "walk_forward" and len(loaded.folds) == 5 and loaded.curve["equity"].iloc[0] == 1.0
    page = path.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "<?xml" not in page
    assert "synthetic &lt;hourly&gt;" in page  # escaped
    assert page.count("<tr><td>") >= 5 + 3  # five folds, three expectation horizons
    assert "Walk-forward efficiency" in page and "Out-of-sample signal expectation" in page
    assert re.search(r"Sharpe</th><td>-?\d+\.\d\d</td>", page)
    assert 'src="http' not in page and "<link" not in page  # self-contained


def test_png_and_single_run_tearsheets(runs: tuple[str, uuid.UUID, uuid.UUID], tmp_path: Path) -> None:
    url, wf, single = runs
    with Recorder(url) as rec:
        png = write_report(rec.store, wf, tmp_path / "wf.png")
        plain = render_html(load_run(rec.store, single))
        with pytest.raises(RunNotFound):
            load_run(rec.store, uuid.uuid4())
        with pytest.raises(ValueError, match=r"html or \.png"):
            write_report(rec.store, wf, tmp_path / "wf.pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "Folds (" not in plain and "single backtest" in plain and "buy &amp; hold" in plain


def test_report_command(runs: tuple[str, uuid.UUID, uuid.UUID], tmp_path: Path) -> None:
    url, wf, _single = runs
    cli = typer.Typer()
    cli.command("report")(report)
    cli.command("noop")(lambda: None)  # two commands: "report" stays a subcommand, like in the main app
    runner = CliRunner()
    out = tmp_path / "r.html"
    ok = runner.invoke(cli, ["report", str(wf), "--out", str(out), "--database-url", url])
    assert ok.exit_code == 0 and out.exists(), ok.output
    missing = runner.invoke(cli, ["report", str(uuid.uuid4()), "--out", str(out), "--database-url", url])
    assert missing.exit_code == 1 and "no backtest run" in missing.output
    bad = runner.invoke(cli, ["report", "not-a-uuid", "--out", str(out), "--database-url", url])
    assert bad.exit_code == 1 and "UUID" in bad.output
    pdf = runner.invoke(cli, ["report", str(wf), "--out", str(tmp_path / "r.pdf"), "--database-url", url])
    assert pdf.exit_code == 1 and ".html or .png" in pdf.output


def test_equity_curve_in_the_report_is_the_stored_one(runs: tuple[str, uuid.UUID, uuid.UUID]) -> None:
    url, wf, _single = runs
    with Recorder(url) as rec:
        loaded = load_run(rec.store, wf)
    assert isinstance(loaded.curve.index, pd.DatetimeIndex) and loaded.curve.index.is_monotonic_increasing
    assert (loaded.curve["drawdown"] <= 0).all()
    assert loaded.curve["equity"].iloc[-1] == pytest.approx(1 + loaded.metrics["total_return"])
