"""Walk-forward runner against real databases: stitching, provenance, executions, parallelism."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from heurmetrics import InvalidEvent, Recorder, RuleVersion
from heurmetrics.backtest import compute_metrics_from_returns
from heurmetrics.backtest.splits import WalkForwardSplitter
from heurmetrics.backtest.walkforward import (
    GridSearch,
    SerialExecutor,
    WalkForwardError,
    default_executor,
    efficiency_ratio,
    pooled_annualized_return,
    simple_annualized_return,
)
from heurmetrics.cli.backtest import backtest_app
from heurmetrics.live.resolution import HorizonTooShort, resolve_against_prices
from heurmetrics.metrics import definitions as d
from heurmetrics.stats import deflated_sharpe_ratio, probability_of_backtest_overfitting
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.schema import (
    BacktestFoldRow,
    BacktestOverfittingRow,
    BacktestRunRow,
    EquityPointRow,
    ExecutionRow,
)
from tests.walkforward_helpers import (
    failing_run,
    hourly_bars,
    momentum_equity,
    momentum_fit,
    momentum_returns,
    momentum_run,
    tuple_fit,
)

A = 365 * 24
WARMUP = 24
SPLITTER = WalkForwardSplitter("4D", "2D")


@pytest.fixture
def rec(migrated_url: str) -> Iterator[Recorder]:
    with Recorder(migrated_url, created_by="tester") as recorder:
        yield recorder


@pytest.fixture
def rv(rec: Recorder) -> RuleVersion:
    return rec.register_rule_version("momentum", "1.0.0", params={"lookback": 12}, source="def run(...): ...")


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return hourly_bars(24 * 20)


def counter(rec: Recorder, sample: str, **labels: str) -> float:
    page = generate_latest(rec.registry).decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(page)
        for s in f.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_walk_forward_stores_the_stitched_curve_folds_and_executions(
    rec: Recorder, rv: RuleVersion, data: pd.DataFrame
) -> None:
    result = rec.walk_forward(
        rv, data, fit=momentum_fit, run=momentum_run, splitter=SPLITTER, dataset="synthetic",
        periods_per_year=A, executor=SerialExecutor(), warmup=WARMUP, progress=False,
    )  # fmt: skip
    splits = SPLITTER.split(data.index)
    assert len(result.folds) == len(splits) == 8
    assert result.run.kind == "walk_forward" and result.run.status == "completed"

    # The stitched returns are exactly each fold's out-of-sample returns with its chosen params.
    expected_parts = []
    for fold, split in zip(result.folds, splits, strict=True):
        assert fold.fold.trials == 3 and fold.fold.params == momentum_fit(data.iloc[split.in_sample]).params
        window = data.iloc[split.out_of_sample.start - WARMUP : split.out_of_sample.stop]
        part = momentum_returns(window, fold.fold.params).iloc[WARMUP:]
        pd.testing.assert_series_equal(fold.out_of_sample_returns, part, check_names=False)
        expected_parts.append(part)
    stitched = pd.concat(expected_parts)
    pd.testing.assert_series_equal(result.returns, stitched, check_names=False)
    # ... anchored at 1.0 on the bar before the first out-of-sample return.
    first = data.index.get_loc(stitched.index[0])
    assert result.equity.index[0] == data.index[first - 1] and result.equity.iloc[0] == 1.0
    np.testing.assert_allclose(result.equity.iloc[1:].to_numpy(), (1 + stitched).cumprod().to_numpy())

    # The run's metrics are those of the stitched curve; the compounded pooled out-of-sample
    # return is its CAGR; the headline (Pardo) annualises simply: mean fold return per bar * A.
    reference = compute_metrics_from_returns(stitched, periods_per_year=A).as_dict()
    for key in ("total_return", "sharpe", "max_drawdown", "observations"):
        assert result.metrics[key] == pytest.approx(reference[key], rel=1e-9)
    wf_config = result.run.config["walk_forward"]
    assert wf_config["out_of_sample_annualized_return_compounded"] == pytest.approx(result.metrics["cagr"], rel=1e-9)
    fold_totals = [(1 + f.out_of_sample_returns.dropna()).prod() - 1 for f in result.folds]
    fold_counts = [f.out_of_sample_returns.notna().sum() for f in result.folds]
    assert result.out_of_sample_annualized_return == pytest.approx(sum(fold_totals) / sum(fold_counts) * A)
    if result.in_sample_annualized_return and result.in_sample_annualized_return >= 0.01:
        assert result.efficiency == pytest.approx(
            result.out_of_sample_annualized_return / result.in_sample_annualized_return
        )
    else:
        assert result.efficiency is None

    # Stored: run, folds with provenance, stitched and per-fold curves.
    with Session(rec.store.engine) as session:
        stored = session.scalars(select(BacktestRunRow).where(BacktestRunRow.run_id == result.run_id)).one()
        folds = session.scalars(
            select(BacktestFoldRow).where(BacktestFoldRow.run_id == result.run_id).order_by(BacktestFoldRow.fold_index)
        ).all()
        points = dict(
            session.execute(
                select(EquityPointRow.fold_index, func.count())
                .where(EquityPointRow.run_id == result.run_id)
                .group_by(EquityPointRow.fold_index)
            ).all()
        )
    assert stored.kind == "walk_forward" and stored.observations == len(stitched)
    wf = stored.config["walk_forward"]
    assert wf["folds"] == 8 and wf["splitter"]["out_of_sample"] == "2D" and wf["warmup"] == WARMUP
    assert wf["efficiency"] == (None if result.efficiency is None else pytest.approx(result.efficiency))
    assert set(wf["expectation"]) == set(d.RESOLUTION_HORIZONS)
    assert [f.fold_index for f in folds] == list(range(8))
    assert folds[0].in_sample_start == splits[0].in_sample_start.to_pydatetime()
    assert folds[0].out_of_sample_end == splits[0].out_of_sample_end.to_pydatetime()
    assert folds[0].in_sample_metrics["observations"] > 0
    assert "walk_forward_efficiency" in folds[0].out_of_sample_metrics
    assert points[None] == len(result.equity)
    assert all(points[k] == len(result.folds[k].equity) for k in range(8))

    # Expectation: out-of-sample bars only, resolved against the closes exactly like live signals.
    close = data["close"]
    times, directions = [], []
    for split in splits:
        window = data.iloc[split.out_of_sample]
        lookback = result.folds[split.fold_index].fold.params["lookback"]
        history = data["close"].to_numpy()
        for pos, ts in zip(range(split.out_of_sample.start, split.out_of_sample.stop), window.index, strict=True):
            times.append(ts)
            directions.append(1.0 if history[pos] / history[pos - lookback] - 1.0 > 0 else -1.0)
    resolved = resolve_against_prices(pd.DatetimeIndex(times), np.array(directions), close, "1h")
    assert result.expectation["1h"].signals == int(resolved.resolvable.sum())
    assert result.expectation["1h"].hits == int(resolved.correct.sum())
    assert wf["expectation"]["1h"]["hit_ratio"] == pytest.approx(result.expectation["1h"].hit_ratio)

    # Every evaluation is an execution of mode backtest linked to the run (IS, warm-up and OOS bars).
    assert rec.flush(timeout=60).complete
    bars = sum(
        s.in_sample.stop - max(0, s.in_sample.start - WARMUP) + s.out_of_sample.stop - s.out_of_sample.start + WARMUP
        for s in splits
    )
    assert result.executions == bars
    with rec.store.engine.connect() as conn:
        linked = conn.execute(
            select(ExecutionRow.mode, func.count())
            .where(ExecutionRow.backtest_run_id == result.run_id)
            .group_by(ExecutionRow.mode)
        ).all()
    assert linked == [("backtest", bars)]
    assert counter(rec, d.HEURISTIC_EXECUTIONS.sample_name, mode="backtest") == bars
    assert counter(rec, d.BACKTEST_RUNS.sample_name, status="completed") == 1


def test_process_pool_matches_serial_and_skips_in_sample_records(sqlite_url: str, data: pd.DataFrame) -> None:
    with Recorder(sqlite_url) as rec:
        rv = rec.register_rule_version("momentum", "1.0.0", params={"lookback": 12})
        options = {
            "fit": momentum_fit, "run": momentum_run, "splitter": SPLITTER, "dataset": "synthetic",
            "periods_per_year": A, "warmup": WARMUP, "progress": False,
        }  # fmt: skip
        serial = rec.walk_forward(rv, data, executor=SerialExecutor(), **options)
        pool = default_executor(2)
        try:
            parallel = rec.walk_forward(rv, data, executor=pool, record_in_sample=False, **options)
        finally:
            pool.shutdown()
        pd.testing.assert_series_equal(serial.returns, parallel.returns)
        assert [f.fold.params for f in serial.folds] == [f.fold.params for f in parallel.folds]
        assert serial.metrics == parallel.metrics and serial.efficiency == parallel.efficiency
        assert parallel.run.config["walk_forward"]["executor"] == "ProcessPoolExecutor"
        oos_and_warmup = sum(s.out_of_sample.stop - s.out_of_sample.start + WARMUP for s in SPLITTER.split(data.index))
        assert parallel.executions == oos_and_warmup < serial.executions


def test_equity_output_tuple_fit_and_two_argument_run(rec: Recorder, rv: RuleVersion, data: pd.DataFrame) -> None:
    result = rec.walk_forward(
        rv, data, fit=tuple_fit, run=momentum_equity, splitter=SPLITTER, dataset="synthetic",
        periods_per_year=A, output="equity", warmup=WARMUP, executor=SerialExecutor(), progress=False,
    )  # fmt: skip
    assert all(f.fold.params == {"lookback": 12} and f.fold.trials == 5 for f in result.folds)
    assert result.executions == 0  # a two-argument run records nothing
    reference = rec.walk_forward(
        rv, data, fit=tuple_fit, run=momentum_returns, splitter=SPLITTER, dataset="synthetic",
        periods_per_year=A, warmup=WARMUP, executor=SerialExecutor(), progress=False,
    )  # fmt: skip
    np.testing.assert_allclose(result.returns.to_numpy(), reference.returns.to_numpy(), rtol=1e-9, atol=1e-15)
    assert result.expectation == {} or all(s.signals == 0 for s in result.expectation.values())


def test_without_fit_every_fold_runs_the_version_params(rec: Recorder, rv: RuleVersion, data: pd.DataFrame) -> None:
    result = rec.walk_forward(
        rv, data, run=momentum_run, splitter=WalkForwardSplitter(96, 48, anchored=True), dataset="synthetic",
        periods_per_year=A, executor=SerialExecutor(), progress=False, record_in_sample=False,
    )  # fmt: skip
    assert {(f.fold.trials, f.fold.params["lookback"]) for f in result.folds} == {(1, 12)}
    assert all(f.fold.in_sample_start == data.index[0] for f in result.folds)  # anchored


def test_a_failing_fold_stores_a_failed_run_and_raises(rec: Recorder, rv: RuleVersion, data: pd.DataFrame) -> None:
    run_id = uuid.uuid4()
    with pytest.raises(WalkForwardError, match="feed broken") as info:
        rec.walk_forward(
            rv, data, run=failing_run, splitter=SPLITTER, dataset="synthetic", periods_per_year=A,
            executor=SerialExecutor(), progress=False, run_id=run_id,
        )  # fmt: skip
    assert info.value.run_id == run_id
    with Session(rec.store.engine) as session:
        row = session.scalars(select(BacktestRunRow).where(BacktestRunRow.run_id == run_id)).one()
    assert row.status == "failed" and "feed broken" in (row.error_message or "")
    assert counter(rec, d.BACKTEST_RUNS.sample_name, status="failed") == 1


def test_invalid_arguments_are_refused_before_anything_runs(rec: Recorder, rv: RuleVersion, data: pd.DataFrame) -> None:
    base = {"run": momentum_run, "splitter": SPLITTER, "dataset": "d", "progress": False}
    with pytest.raises(ValueError, match="output"):
        rec.walk_forward(rv, data, periods_per_year=A, output="prices", **base)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="periods_per_year"):
        rec.walk_forward(rv, data, periods_per_year=0, **base)
    with pytest.raises(TypeError, match="DataFrame"):
        rec.walk_forward(rv, data["close"], periods_per_year=A, **base)  # type: ignore[arg-type]
    pool = default_executor(2)
    try:
        with pytest.raises(TypeError, match="module-level"):
            rec.walk_forward(
                rv, data, periods_per_year=A, executor=pool, **{**base, "run": lambda frame, params: frame["close"]}
            )
    finally:
        pool.shutdown()
    assert rec.store.table_counts()["backtest_runs"] == 0


def test_grid_search_keeps_the_best_candidate(data: pd.DataFrame) -> None:
    in_sample = data.iloc[:200]
    fit = GridSearch(momentum_returns, {"lookback": [6, 12, 24]}, A, metric="total_return", base_params={"x": 1})
    chosen = fit(in_sample)
    totals = {
        lb: compute_metrics_from_returns(momentum_returns(in_sample, {"lookback": lb}), periods_per_year=A).total_return
        for lb in (6, 12, 24)
    }
    assert chosen.trials == 3 and chosen.params == {"x": 1, "lookback": max(totals, key=lambda k: totals[k])}


def test_pooled_annualisation_and_efficiency_edge_cases() -> None:
    assert pooled_annualized_return([(1.1, 10), (1.0, 0)], 10) == pytest.approx(0.1)
    assert pooled_annualized_return([(1.21, 10), (1.0, 10)], 10) == pytest.approx(0.1)
    assert pooled_annualized_return([], 252) is None
    assert pooled_annualized_return([(0.0, 5)], 252) == -1.0
    assert pooled_annualized_return([(10.0, 1)], 8760) == math.inf
    assert efficiency_ratio(0.1, 0.2) == pytest.approx(0.5)
    assert efficiency_ratio(0.1, 0.0) is None and efficiency_ratio(0.1, -0.2) is None
    assert efficiency_ratio(0.1, 0.005) is None  # a tiny in-sample return makes the ratio meaningless
    assert simple_annualized_return([(1.1, 10), (0.95, 10)], 100) == pytest.approx((0.1 - 0.05) / 20 * 100)
    assert simple_annualized_return([(1.1, 0)], 100) is None
    assert efficiency_ratio(None, 0.2) is None and efficiency_ratio(math.inf, 0.2) is None


def test_cli_walk_forward_of_a_rule_in_a_module(sqlite_url: str, tmp_path: Path, data: pd.DataFrame) -> None:
    csv = tmp_path / "bars.csv"
    data.to_csv(csv)
    engine = create_store_engine(sqlite_url)  # the CLI writes into an existing database only
    migrations.upgrade(engine)
    engine.dispose()
    cli = typer.Typer()
    cli.add_typer(backtest_app, name="backtest")
    args = ["backtest", "walk-forward", "--data", str(csv), "--periods-per-year", "8760", "--in-sample", "96",
            "--out-of-sample", "48", "--workers", "1", "--database-url", sqlite_url]  # fmt: skip
    result = CliRunner().invoke(cli, [*args[:2], "tests.walkforward_helpers:MOMENTUM", *args[2:]])
    assert result.exit_code == 0, result.output
    assert "walk-forward efficiency" in result.output and "heurmetrics report" in result.output
    assert f"--out walk-forward.html --database-url {sqlite_url}" in result.output  # the database it wrote
    grid = CliRunner().invoke(cli, [*args[:2], "tests.walkforward_helpers:MOMENTUM_GRID", *args[2:]])
    assert grid.exit_code == 0, grid.output
    plain = CliRunner().invoke(
        cli, [*args[:2], "tests.walkforward_helpers:momentum_run", *args[2:], "--rule", "plain", "--version", "1",
              "--params", '{"lookback": 6}']
    )  # fmt: skip
    assert plain.exit_code == 0, plain.output
    missing = CliRunner().invoke(cli, [*args[:2], "tests.walkforward_helpers:momentum_run", *args[2:]])
    assert missing.exit_code == 1 and "--rule and --version" in missing.output
    with Recorder(sqlite_url) as rec:
        with rec.store.engine.connect() as conn:
            kinds = conn.execute(select(BacktestRunRow.kind, BacktestRunRow.config)).all()
        assert [k for k, _ in kinds] == ["walk_forward"] * 3
        trials = {c["walk_forward"]["fit"] for _, c in kinds}
        assert any(t and "GridSearch" in t for t in trials) and None in trials


def test_grid_search_run_stores_its_overfitting_statistics(rec: Recorder, rv: RuleVersion, data: pd.DataFrame) -> None:
    grid = {"lookback": [3, 6, 12, 24]}
    fit = GridSearch(momentum_returns, grid, A)
    result = rec.walk_forward(
        rv, data, run=momentum_run, fit=fit, splitter=SPLITTER, dataset="d", periods_per_year=A,
        executor=SerialExecutor(), warmup=WARMUP, progress=False, pbo_blocks=4,
    )  # fmt: skip
    stats = result.overfitting
    # The trial matrix, rebuilt independently: every candidate over every out-of-sample window.
    columns = []
    for params in fit.candidates():
        parts = []
        for f in result.folds:  # with the same warm-up bars before each window as the runner
            lo = data.index.get_loc(pd.Timestamp(f.fold.out_of_sample_start))
            hi = data.index.get_loc(pd.Timestamp(f.fold.out_of_sample_end))
            parts.append(momentum_returns(data.iloc[lo - WARMUP : hi + 1], params).iloc[WARMUP:])
        columns.append(pd.concat(parts))
    matrix = pd.concat(columns, axis=1).dropna()
    expected_pbo = probability_of_backtest_overfitting(matrix.to_numpy(), n_blocks=4)
    assert stats["n_trials"] == 4 and stats["pbo_blocks"] == 4 and stats["pbo_splits"] == 6
    assert stats["pbo"] == expected_pbo.pbo
    sharpes = matrix.mean() / matrix.std(ddof=1) * math.sqrt(A)
    assert stats["trials_sharpe_variance"] == pytest.approx(float(np.var(sharpes, ddof=1)), rel=1e-9)
    dsr = deflated_sharpe_ratio(result.returns, 4, stats["trials_sharpe_variance"], A)
    assert stats["deflated_sharpe_ratio"] == pytest.approx(dsr.deflated_sharpe_ratio, rel=1e-12)
    assert stats["backtest_years"] == pytest.approx(result.returns.notna().sum() / A)
    with Session(rec.store.engine) as session:
        row = session.get(BacktestOverfittingRow, result.run_id)
    assert row is not None and row.n_trials == 4 and row.pbo == stats["pbo"]
    assert row.deflated_sharpe_ratio == pytest.approx(stats["deflated_sharpe_ratio"])
    latest = rec.store.backtests.latest_overfitting()
    assert [(r["rule"], r["version"], r["run_id"]) for r in latest] == [("momentum", "1.0.0", result.run_id)]
    with pytest.raises(ValueError, match="pbo_blocks must be an even int"):
        rec.walk_forward(rv, data, run=momentum_run, splitter=SPLITTER, dataset="d", periods_per_year=A, pbo_blocks=5)


def test_daily_bars_get_expectations_only_at_horizons_of_a_bar_or_more(rec: Recorder, rv: RuleVersion) -> None:
    days = pd.bdate_range("2024-01-01", periods=160, tz="UTC")
    daily = pd.DataFrame({"close": 100 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 0.01, 160)))}, days)
    options = {"splitter": WalkForwardSplitter("60D", "20D"), "dataset": "d", "periods_per_year": 252}
    result = rec.walk_forward(rv, daily, run=momentum_run, executor=SerialExecutor(), progress=False, **options)
    assert set(result.expectation) == {"1d"}  # 1h and 4h would score signals on their own bar
    assert result.expectation["1d"].signals > 0
    with pytest.raises(HorizonTooShort, match="horizon 4h is shorter than the bar interval"):
        rec.walk_forward(rv, daily, run=momentum_run, horizons=("4h",), **options)


def test_collector_exports_the_latest_walk_forward_overfitting(
    rec: Recorder, rv: RuleVersion, data: pd.DataFrame
) -> None:
    from prometheus_client import CollectorRegistry

    from heurmetrics.exporter.live_collector import PerformanceCollector

    registry = CollectorRegistry()
    registry.register(PerformanceCollector(rec.store, ttl_seconds=0))
    other = rec.register_rule_version("momentum", "2.0.0", params={"lookback": 6})

    def gauges() -> dict[tuple[str, str], float]:
        page = generate_latest(registry).decode()
        return {
            (s.name, s.labels["rule_version"]): s.value
            for f in text_string_to_metric_families(page)
            for s in f.samples
            if s.name.startswith("backtest_overfitting_")
        }

    assert math.isnan(gauges()[(d.BACKTEST_OVERFITTING_PBO.name, "1.0.0")])  # no run yet: unknown, not 0
    result = rec.walk_forward(
        rv, data, run=momentum_run, fit=GridSearch(momentum_returns, {"lookback": [3, 6, 12, 24]}, A),
        splitter=SPLITTER, dataset="d", periods_per_year=A, executor=SerialExecutor(), warmup=WARMUP,
        progress=False, pbo_blocks=4,
    )  # fmt: skip
    after = gauges()
    assert after[(d.BACKTEST_OVERFITTING_PBO.name, "1.0.0")] == result.overfitting["pbo"]
    assert after[(d.BACKTEST_OVERFITTING_DSR.name, "1.0.0")] == result.overfitting["deflated_sharpe_ratio"]
    assert after[(d.BACKTEST_OVERFITTING_LENGTH.name, "1.0.0")] == pytest.approx(
        result.overfitting["backtest_years"] * d.SECONDS_PER_YEAR
    )
    assert math.isnan(after[(d.BACKTEST_OVERFITTING_DSR.name, other.version)])
