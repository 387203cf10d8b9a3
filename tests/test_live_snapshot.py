"""rule.version.performance: statistics, snapshots, drift, the collector, the CLI, the thread."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats as scipy_stats
from sqlalchemy import func, select
from typer.testing import CliRunner

from heurmetrics import Recorder, RuleVersion
from heurmetrics.cli.live import live_app
from heurmetrics.live.snapshot import PeriodicSnapshots, take_snapshot
from heurmetrics.live.stats import wilson_interval
from heurmetrics.metrics import definitions as d
from heurmetrics.store.schema import RuleVersionPerformanceRow
from tests.walkforward_helpers import exporter

NOW = datetime.now(UTC).replace(microsecond=0)
EXPECTATION = {"signals": 400, "hits": 240, "hit_ratio": 0.6, "mean_return": 0.002}


@pytest.fixture
def rec(migrated_url: str) -> Iterator[Recorder]:
    with Recorder(migrated_url, created_by="tester") as recorder:
        yield recorder


def walk_forward_run(rec: Recorder, rv: RuleVersion, expectation: dict[str, object]) -> uuid.UUID:
    """A stored walk-forward run whose config carries an expectation (as the runner writes it)."""
    equity = pd.Series([1.0, 1.01, 1.02], index=pd.date_range("2025-01-01", periods=3, freq="h", tz="UTC"))
    run = rec.record_backtest(
        rv, equity, dataset="d", periods_per_year=8760, kind="walk_forward",
        config={"walk_forward": {"expectation": {"1h": expectation}}},
    )  # fmt: skip
    return run.run_id


def live_workload(rec: Recorder, rv: RuleVersion, hits: int, signals: int = 30) -> list[float]:
    """In the last hour: ``signals`` bullish signals (``hits`` right), 5 neutral, 5 errors; two
    days ago: 3 paper executions (7-day window only). Returns the last hour's durations."""
    durations = []
    for i in range(signals):
        duration = 0.001 * (i + 1)
        durations.append(duration)
        eid = rec.record_execution(
            rv, duration_seconds=duration, outcome="bullish", signal=1.0, confidence=0.5 + i / 100,
            started_at=NOW - timedelta(minutes=50) + timedelta(seconds=i),
        )  # fmt: skip
        rec.resolve(eid, realized_return=0.01 if i < hits else -0.01)
    for i in range(5):
        durations.append(0.05)
        rec.record_execution(
            rv, duration_seconds=0.05, outcome="neutral", confidence=0.2, started_at=NOW - timedelta(minutes=40 - i)
        )
        durations.append(0.2)
        rec.record_execution(rv, duration_seconds=0.2, status="error", started_at=NOW - timedelta(minutes=30 - i))
    for i in range(3):
        rec.record_execution(
            rv, duration_seconds=0.01, outcome="bearish", mode="paper", started_at=NOW - timedelta(days=2, minutes=i)
        )
    assert rec.flush(timeout=60).complete
    return durations


def test_statistics_match_scipy() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 400)
        k = rng.randint(0, n)
        low, high = wilson_interval(k, n)
        ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert (low, high) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    assert all(map(math.isnan, wilson_interval(0, 0)))
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_snapshot_fields_expectation_and_drift(rec: Recorder) -> None:
    rv = rec.register_rule_version("range_bias", "1.0.0", params={"band": 0.02})
    quiet = rec.register_rule_version("range_bias", "0.9.0")  # no activity: no rows
    unexpected = rec.register_rule_version("sma_cross", "1.0.0")  # activity, but no walk-forward run
    run_id = walk_forward_run(rec, rv, EXPECTATION)
    durations = live_workload(rec, rv, hits=6)  # 6 / 30 right, against an expected 60 %
    live_workload(rec, unexpected, hits=15)
    snapshots = take_snapshot(rec.store, now=NOW)
    by = {(s.rule, s.version, s.time_window): s for s in snapshots}
    assert {(s.rule, s.version) for s in snapshots} == {("range_bias", "1.0.0"), ("sma_cross", "1.0.0")}
    assert quiet.id not in {s.rule_version_id for s in snapshots}

    hour = by[("range_bias", "1.0.0", "1h")]
    assert (hour.executions, hour.errors, hour.signals) == (40, 5, 30)
    assert hour.error_ratio == pytest.approx(5 / 40) and hour.signal_ratio == pytest.approx(30 / 35)
    assert hour.latency_p50_seconds == pytest.approx(float(np.percentile(durations, 50)))
    assert hour.latency_p95_seconds == pytest.approx(float(np.percentile(durations, 95)))
    assert hour.mean_confidence == pytest.approx((sum(0.5 + i / 100 for i in range(30)) + 5 * 0.2) / 35)
    assert (hour.resolved, hour.hits) == (30, 6) and hour.hit_ratio == pytest.approx(0.2)
    assert hour.mean_realized_return == pytest.approx((6 * 0.01 - 24 * 0.01) / 30)
    assert (hour.hit_ratio_low, hour.hit_ratio_high) == pytest.approx(wilson_interval(6, 30))
    assert hour.expected_hit_ratio == 0.6 and hour.expectation_run_id == run_id and hour.expectation_signals == 400
    assert hour.expected_return_per_signal == 0.002
    # Two samples: 6 of 30 live against 240 of 400 backtest signals (Fisher's exact test).
    assert hour.drift_p_value == pytest.approx(scipy_stats.fisher_exact([[6, 24], [240, 160]]).pvalue, rel=1e-9)
    # The only tested version in its window: the BH-adjusted value equals the p-value.
    assert hour.drift_adjusted_p_value == hour.drift_p_value
    assert hour.drifted is True and hour.alpha == d.DRIFT_ALPHA
    week = by[("range_bias", "1.0.0", "7d")]
    assert week.executions == 43 and week.signals == 33 and week.resolved == 30
    assert by[("sma_cross", "1.0.0", "1h")].drift_p_value is None  # no expectation: untestable
    assert by[("sma_cross", "1.0.0", "1h")].drifted is None

    rows = rec.store.live.latest_snapshots("1h", windows=d.PERFORMANCE_WINDOWS)
    assert len(rows) == 6 and {r["time_window"] for r in rows} == set(d.PERFORMANCE_WINDOWS)
    stored = next(r for r in rows if r["version"] == "1.0.0" and r["rule"] == "range_bias" and r["time_window"] == "1h")
    assert stored["drifted"] is True and stored["hits"] == 6 and stored["modes"] == "live,paper"
    assert stored["drift_adjusted_p_value"] == pytest.approx(hour.drift_p_value)


def test_small_expectations_and_consistent_live_hits_do_not_alarm(rec: Recorder) -> None:
    rv = rec.register_rule_version("atr_breakout", "1.0.0")
    walk_forward_run(rec, rv, {**EXPECTATION, "signals": 12, "hits": 7, "hit_ratio": 7 / 12})
    live_workload(rec, rv, hits=6)
    hour = next(s for s in take_snapshot(rec.store, now=NOW) if s.time_window == "1h")
    assert hour.expected_hit_ratio == pytest.approx(7 / 12) and hour.expectation_signals == 12
    assert hour.drift_p_value is None and hour.drifted is None  # fewer than 30 backtest signals
    other = rec.register_rule_version("atr_breakout", "1.1.0")
    walk_forward_run(rec, other, EXPECTATION)
    live_workload(rec, other, hits=18)  # 60 % live against 60 % expected
    hour = next(s for s in take_snapshot(rec.store, now=NOW, rule_versions=[other]) if s.time_window == "1h")
    assert hour.drift_p_value == pytest.approx(1.0) and hour.drifted is False


def test_inactive_versions_get_one_zero_row_then_none(rec: Recorder) -> None:
    rv = rec.register_rule_version("range_bias", "1.0.0")
    live_workload(rec, rv, hits=10)
    assert len(take_snapshot(rec.store, now=NOW)) == 3
    later = take_snapshot(rec.store, now=NOW + timedelta(days=8))
    assert len(later) == 3 and all(s.executions == 0 and s.hit_ratio is None for s in later)
    assert take_snapshot(rec.store, now=NOW + timedelta(days=9)) == []
    with rec.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RuleVersionPerformanceRow)).scalar_one() == 6
    with pytest.raises(ValueError, match="window"):
        take_snapshot(rec.store, windows=("2h",))
    with pytest.raises(ValueError, match="alpha"):
        take_snapshot(rec.store, alpha=1.5)


def test_collector_exports_the_latest_snapshot_and_nan_before_one(migrated_url: str) -> None:
    client = exporter(migrated_url)
    ingest = client.app.state.ingest  # type: ignore[attr-defined]
    with Recorder(migrated_url) as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0")
        rec.register_rule_version("range_bias", "2.0.0")  # registered, never snapshotted
        walk_forward_run(rec, rv, EXPECTATION)
        live_workload(rec, rv, hits=6)
    ingest.rule_version("range_bias", "1.0.0")

    def gauges() -> dict[tuple[str, str, str, str], float]:
        page = client.get("/metrics").text
        return {
            (s.name, s.labels["rule"], s.labels["rule_version"], s.labels["window"]): s.value
            for f in text_string_to_metric_families(page)
            for s in f.samples
            if s.name.startswith("rule_version_performance_")
        }

    before = gauges()
    assert math.isnan(before[("rule_version_performance_resolved_signals", "range_bias", "1.0.0", "1d")])
    take_snapshot(ingest.store, now=NOW)
    after = gauges()
    assert after[("rule_version_performance_hit_ratio", "range_bias", "1.0.0", "1d")] == pytest.approx(0.2)
    assert after[("rule_version_performance_expected_hit_ratio", "range_bias", "1.0.0", "1d")] == 0.6
    assert after[("rule_version_performance_drift_p_value", "range_bias", "1.0.0", "1d")] < d.DRIFT_ALPHA
    assert after[("rule_version_performance_snapshot_timestamp_seconds", "range_bias", "1.0.0", "1d")] == (
        NOW.timestamp()
    )
    assert math.isnan(after[("rule_version_performance_hit_ratio", "range_bias", "2.0.0", "1d")])
    # Only the exported window reaches Prometheus (the series budget); 1h and 7d stay in the store.
    assert {window for *_, window in after} == set(d.EXPORTED_PERFORMANCE_WINDOWS)
    names = {name for name, *_ in after}
    assert names == {spec.name for spec in d.ALL_METRICS if spec.design_name == "rule.version.performance"}


def test_cli_snapshot_show_and_resolve(migrated_url: str, tmp_path: object) -> None:
    cli = typer.Typer()
    cli.add_typer(live_app, name="live")
    runner = CliRunner()
    empty = runner.invoke(cli, ["live", "show", "--database-url", migrated_url])
    assert empty.exit_code == 0 and "No performance snapshots" in empty.output
    with Recorder(migrated_url) as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0")
        walk_forward_run(rec, rv, EXPECTATION)
        eid = rec.record_execution(rv, duration_seconds=0.001, outcome="bullish", started_at=NOW - timedelta(hours=3))
        rec.flush()
    prices = tmp_path / "prices.csv"  # type: ignore[operator]
    index = pd.date_range(NOW - timedelta(hours=5), NOW, freq="h", tz="UTC")
    pd.DataFrame({"close": np.linspace(100, 90, len(index))}, index=index).to_csv(prices)
    resolved = runner.invoke(cli, ["live", "resolve", "--prices", str(prices), "--database-url", migrated_url])
    assert resolved.exit_code == 0 and "Resolved 1 signals" in resolved.output, resolved.output
    taken = runner.invoke(cli, ["live", "snapshot", "--database-url", migrated_url])
    assert taken.exit_code == 0 and "Appended 3 rows" in taken.output, taken.output
    shown = runner.invoke(cli, ["live", "show", "--database-url", migrated_url], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "range_bias@1.0.0" in shown.output
    bad = runner.invoke(cli, ["live", "snapshot", "--horizon", "2h", "--database-url", migrated_url])
    assert bad.exit_code == 1 and "horizon" in bad.output
    with Recorder(migrated_url) as rec:
        assert rec.resolve(eid, realized_return=0.5) is False  # the price resolution stands


def test_periodic_snapshots_thread(migrated_url: str) -> None:
    with Recorder(migrated_url) as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0")
        rec.record_execution(rv, duration_seconds=0.001, outcome="bullish")
        rec.flush()
        ticker = PeriodicSnapshots(rec.store, interval_seconds=0.05).start()
        try:
            deadline = time.monotonic() + 20
            while ticker.last_success is None and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            ticker.stop()
        assert ticker.last_success is not None and ticker.last_error is None
        assert len(rec.store.live.latest_snapshots(windows=d.PERFORMANCE_WINDOWS)) == 3
