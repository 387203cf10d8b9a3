"""The Python SDK against real databases: what a rule runner sees."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from heurmetrics import InvalidEvent, Recorder, RuleVersion, VersionConflict
from heurmetrics.metrics import definitions as d
from heurmetrics.store.schema import ExecutionRow


@pytest.fixture
def rec(migrated_url: str) -> Iterator[Recorder]:
    with Recorder(migrated_url, created_by="tester") as recorder:
        yield recorder


@pytest.fixture
def rv(rec: Recorder) -> RuleVersion:
    return rec.register_rule_version("range_bias", "1.0.0", params={"window_hours": 24}, source="def f(): ...")


def samples(rec: Recorder, sample_name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(rec.registry).decode()):
        for s in family.samples:
            if s.name == sample_name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(rec: Recorder, sample_name: str, **match: str) -> float:
    return sum(v for labels, v in samples(rec, sample_name).items() if all((k, m) in labels for k, m in match.items()))


EXECUTIONS = d.HEURISTIC_EXECUTIONS.sample_name


def test_counts_equal_rows_after_flush(rec: Recorder, rv: RuleVersion) -> None:
    for i in range(3000):
        rec.record_execution(
            rv, duration_seconds=0.001 * (i % 7), outcome=("bullish", "bearish")[i % 2], confidence=(i % 10) / 10
        )
    result = rec.flush(timeout=60)
    assert result.complete and result.pending == 0
    rows = rec.store.count_executions()
    assert rows == 3000
    assert total(rec, EXECUTIONS) == rows
    assert total(rec, EXECUTIONS, outcome="bearish") == 1500
    assert total(rec, d.HEURISTIC_EXECUTION_DURATION.name + "_count") == rows
    assert total(rec, d.WRITER_QUEUE_EVENTS.name) == 0


def test_retries_with_the_same_event_id_are_stored_and_counted_once(rec: Recorder, rv: RuleVersion) -> None:
    event_id = uuid.uuid4()
    for _ in range(5):
        assert rec.record_execution(rv, duration_seconds=0.002, outcome="neutral", event_id=event_id) == event_id
        rec.flush(timeout=30)
    assert rec.store.count_executions() == 1
    assert total(rec, EXECUTIONS, outcome="neutral") == 1
    assert total(rec, d.INGESTED_EVENTS.sample_name, kind="execution", result="duplicate") == 4


def test_execution_context_times_and_records_failures(rec: Recorder, rv: RuleVersion) -> None:
    with rec.execution(rv, mode="paper") as ok:
        ok.set_result(outcome="bullish", signal=1.0, confidence=0.72)
    with pytest.raises(KeyError), rec.execution(rv) as failed:
        failed.set_result(outcome="bullish", confidence=7.0)  # half-set, invalid result is discarded
        raise KeyError("missing bar")
    with pytest.raises(TimeoutError), rec.execution(rv) as timed_out:
        raise TimeoutError
    rec.flush(timeout=30)
    assert ok.event_id and failed.event_id and timed_out.event_id
    with rec.store.engine.connect() as conn:
        rows = {r.event_id: r for r in pd.read_sql(select(ExecutionRow), conn).itertuples()}
    by_id = {uuid.UUID(str(k)) if not isinstance(k, uuid.UUID) else k: v for k, v in rows.items()}
    assert by_id[ok.event_id].status == "ok" and by_id[ok.event_id].mode == "paper"
    assert by_id[ok.event_id].confidence == pytest.approx(0.72)
    assert by_id[failed.event_id].status == "error" and by_id[failed.event_id].error_type == "KeyError"
    assert by_id[timed_out.event_id].status == "timeout"
    assert total(rec, EXECUTIONS, status="error", mode="live") == 1
    assert total(rec, EXECUTIONS, status="timeout", mode="live") == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration_seconds": -0.1}, "duration_seconds"),
        ({"duration_seconds": math.nan}, "duration_seconds"),
        ({"duration_seconds": math.inf}, "duration_seconds"),
        ({"duration_seconds": "1"}, "duration_seconds"),
        ({"duration_seconds": 0.1, "confidence": 1.01}, "confidence"),
        ({"duration_seconds": 0.1, "confidence": -0.01}, "confidence"),
        ({"duration_seconds": 0.1, "confidence": math.nan}, "confidence"),
        ({"duration_seconds": 0.1, "signal": math.inf}, "signal"),
        ({"duration_seconds": 0.1, "status": "failed"}, "status"),
        ({"duration_seconds": 0.1, "mode": "prod"}, "mode"),
        ({"duration_seconds": 0.1, "outcome": 'x"}\n'}, "outcome"),
        ({"duration_seconds": 0.1, "outcome": "a" * 65}, "outcome"),
        ({"duration_seconds": 0.1, "started_at": datetime(2026, 1, 1)}, "started_at"),
        ({"duration_seconds": 0.1, "started_at": datetime.now(UTC) + timedelta(hours=1)}, "started_at"),
        ({"duration_seconds": 0.1, "event_id": "not-a-uuid"}, "event_id"),
    ],
)
def test_invalid_values_raise_naming_the_field_and_record_nothing(
    rec: Recorder, rv: RuleVersion, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        rec.record_execution(rv, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
    rec.flush(timeout=30)
    assert rec.store.count_executions() == 0
    assert total(rec, EXECUTIONS) == 0


def test_register_rule_version_conflict_and_bad_names(rec: Recorder, rv: RuleVersion) -> None:
    same = rec.register_rule_version("range_bias", "1.0.0", params={"window_hours": 24}, source="def f(): ...")
    assert same == rv
    with pytest.raises(VersionConflict):
        rec.register_rule_version("range_bias", "1.0.0", params={"window_hours": 48}, source="def f(): ...")
    with pytest.raises(InvalidEvent, match="rule"):
        rec.register_rule_version('bad"rule', "1.0.0")
    with pytest.raises(InvalidEvent, match="params"):
        rec.register_rule_version("ok_rule", "1.0.0", params={"x": math.nan})
    assert [v.key for v in rec.store.list_rule_versions()] == ["range_bias@1.0.0"]


def test_exemplars_lead_from_a_graph_point_to_a_stored_row(rec: Recorder, rv: RuleVersion) -> None:
    event_id = rec.record_execution(rv, duration_seconds=0.003, outcome="bullish", confidence=0.9)
    page = generate_openmetrics(rec.registry).decode()
    counter_lines = [line for line in page.splitlines() if line.startswith(EXECUTIONS + "{") and "bullish" in line]
    assert any(f'event_id="{event_id}"' in line for line in counter_lines), counter_lines
    bucket_lines = [
        line for line in page.splitlines() if line.startswith(d.HEURISTIC_EXECUTION_DURATION.name + "_bucket")
    ]
    assert any(str(event_id) in line for line in bucket_lines)


def test_record_backtest_stores_run_metrics_and_points(rec: Recorder, rv: RuleVersion) -> None:
    index = pd.date_range("2026-01-01", periods=500, freq="h", tz="UTC")
    rng = np.random.default_rng(3)
    equity = pd.Series(np.cumprod(1 + rng.normal(0.0005, 0.01, size=500)), index=index)
    run = rec.record_backtest(rv, equity, dataset="BTCUSD-1h", periods_per_year=365 * 24)
    returns = equity.pct_change().dropna()
    expected_sharpe = returns.mean() / returns.std(ddof=1) * math.sqrt(365 * 24)
    assert run.metrics["sharpe"] == pytest.approx(expected_sharpe, rel=1e-9)
    assert run.metrics["total_return"] == pytest.approx(equity.iloc[-1] / equity.iloc[0] - 1, rel=1e-12)
    gappy = equity.copy()
    gappy.iloc[100] = np.nan  # a missing point is counted and not stored, never imputed
    gappy_run = rec.record_backtest(rv, gappy, dataset="BTCUSD-1h", periods_per_year=365 * 24)
    assert gappy_run.metrics["missing"] == 1 and run.metrics["missing"] == 0
    counts = rec.store.table_counts()
    assert counts["backtest_runs"] == 2 and counts["equity_points"] == 500 + 499
    assert total(rec, d.BACKTEST_RUNS.sample_name, status="completed") == 2
    with rec.store.engine.connect() as conn:
        drawdowns = pd.read_sql("SELECT drawdown FROM equity_points", conn)["drawdown"]
    assert (drawdowns <= 0).all() and drawdowns.min() < 0


@pytest.mark.parametrize(
    ("equity", "field"),
    [
        (pd.Series([], dtype=float), "equity"),
        (pd.Series([1.0, 1.1]), "equity"),  # not indexed by time
        (pd.Series([1.0, math.inf], index=pd.date_range("2026-01-01", periods=2, tz="UTC")), "equity[1]"),
        (pd.Series([1.0, -0.5], index=pd.date_range("2026-01-01", periods=2, tz="UTC")), "equity[1]"),
    ],
)
def test_record_backtest_rejects_bad_curves_and_writes_nothing(
    rec: Recorder, rv: RuleVersion, equity: pd.Series, field: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        rec.record_backtest(rv, equity, dataset="x", periods_per_year=252)
    assert info.value.field == field
    assert rec.store.table_counts()["backtest_runs"] == 0


def test_a_fresh_sqlite_file_is_initialised_by_the_sdk(sqlite_url: str) -> None:
    with Recorder(sqlite_url) as recorder:
        rv = recorder.register_rule_version("r", "1")
        recorder.record_execution(rv, duration_seconds=0.01)
        assert recorder.flush(timeout=30).complete
        assert recorder.store.count_executions() == 1
    with pytest.raises(RuntimeError, match="closed"):
        recorder.record_execution(rv, duration_seconds=0.01)
