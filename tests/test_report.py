"""Tearsheets (``heurmetrics report``): HTML and PNG from stored walk-forward and single runs."""

from __future__ import annotations

import math
import re
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from heurmetrics import Recorder
from heurmetrics.backtest.splits import WalkForwardSplitter
from heurmetrics.backtest.walkforward import GridSearch, SerialExecutor
from heurmetrics.cli.report import report
from heurmetrics.report import RunNotFound, load_run, render_html, write_report
from heurmetrics.report.analytics import (
    calendar_returns,
    period_returns,
    rolling_sharpe_volatility,
    rolling_window,
    worst_drawdowns,
)
from heurmetrics.report.tearsheet import overfitting_rows
from tests.walkforward_helpers import hourly_bars, momentum_fit, momentum_returns, momentum_run


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


def test_calendar_returns_rolling_ratios_and_worst_drawdowns_by_hand() -> None:
    idx = pd.to_datetime(["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02", "2025-01-02"], utc=True)
    returns = pd.Series([0.1, -0.05, 0.02, 0.03, -0.1], index=idx)
    monthly, yearly = calendar_returns(returns)
    assert monthly.loc[2024, 1] == pytest.approx(1.1 * 0.95 - 1)
    assert monthly.loc[2024, 2] == pytest.approx(1.02 * 1.03 - 1)
    assert math.isnan(monthly.loc[2024, 3]) and monthly.loc[2025, 1] == pytest.approx(-0.1)
    assert yearly.loc[2024] == pytest.approx(1.1 * 0.95 * 1.02 * 1.03 - 1)
    equity = pd.Series([1.0, 1.2, 0.9, 1.3, 1.17, 1.25, 1.4, 1.05], index=pd.date_range("2024-01-01", periods=8))
    worst = worst_drawdowns(equity)
    assert [round(dd.depth, 6) for dd in worst] == [-0.25, -0.25, -0.1]
    first = worst[0]  # ties keep time order: 1.2 -> 0.9, recovered at 1.3
    assert (first.peak, first.trough, first.recovery, first.periods) == (
        equity.index[1], equity.index[2], equity.index[3], 2
    )
    assert worst[1].recovery is None and worst[1].periods == 1  # 1.4 -> 1.05, still under water
    assert period_returns(pd.Series([1.0, float("nan"), 1.1])).tolist() == pytest.approx([0.1])
    daily = pd.Series(np.random.default_rng(1).normal(0.001, 0.01, 400), index=pd.date_range("2024", periods=400))
    rolling = rolling_sharpe_volatility(daily, 252)
    window = rolling_window(400, 252)
    assert window == 21
    tail = daily.iloc[-window:]
    assert rolling["volatility"].iloc[-1] == pytest.approx(tail.std() * math.sqrt(252))
    assert rolling["sharpe"].iloc[-1] == pytest.approx(tail.mean() / tail.std() * math.sqrt(252))


def test_tearsheet_shows_the_overfitting_block_of_a_grid_search_run(migrated_url: str, tmp_path: Path) -> None:
    data = hourly_bars(24 * 14)
    with Recorder(migrated_url) as rec:
        rv = rec.register_rule_version("momentum", "1.0.0", params={"lookback": 12})
        wf = rec.walk_forward(
            rv, data, fit=GridSearch(momentum_returns, {"lookback": [3, 6, 12, 24]}, 8760), run=momentum_run,
            splitter=WalkForwardSplitter("3D", "2D"), dataset="d", periods_per_year=8760,
            executor=SerialExecutor(), progress=False, record_in_sample=False, warmup=24, pbo_blocks=4,
        )  # fmt: skip
        report_ = load_run(rec.store, wf.run_id)
        page = render_html(report_)
    rows = dict(overfitting_rows(report_))
    assert rows["Trials per fold"] == "4" and rows["PBO (CSCV)"] == f"{wf.overfitting['pbo']:.2%}"
    assert rows["CSCV blocks / splits"] == "4 / 6"
    assert "Overfitting: Deflated Sharpe Ratio and PBO" in page and "Worst drawdowns" in page
    assert "Monthly and yearly returns" in page and "Walk-forward efficiency, compounded" in page
