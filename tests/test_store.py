"""The SQL store on real SQLite and real PostgreSQL: versions, batched idempotent writes, backtests."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from heurmetrics.canonical import canonical_json, content_hash, sha256_hex
from heurmetrics.domain import BacktestFold, BacktestRun, EquityPoint, ExecutionEvent, RuleVersion
from heurmetrics.errors import SchemaNotAtHead, VersionConflict
from heurmetrics.store import migrations, partitions
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.schema import ExecutionRow
from heurmetrics.store.sql_store import SqlStore


def _event(rv: RuleVersion, event_id: uuid.UUID | None = None, **overrides: object) -> ExecutionEvent:
    values: dict[str, object] = {
        "event_id": event_id or uuid.uuid4(),
        "rule_version": rv,
        "started_at": time.time() - 1.0,
        "duration_seconds": 0.004,
        "status": "ok",
        "outcome": "bullish",
        "signal": 1.0,
        "confidence": 0.7,
        "mode": "live",
    }
    values.update(overrides)
    return ExecutionEvent(**values)  # type: ignore[arg-type]


def test_register_is_idempotent_and_hash_is_the_documented_canonical_form(store: SqlStore) -> None:
    params = {"window_hours": 24, "band": 0.02}
    rv, created = store.register_rule_version("range_bias", "1.0.0", params=params, source="src", created_by="ana")
    again, created_again = store.register_rule_version(
        "range_bias", "1.0.0", params=dict(params), source="src", created_by="bob"
    )
    assert created and not created_again
    assert again.id == rv.id and again.created_by == "ana"
    # Anyone can recompute the hash from the documented canonical form.
    expected = sha256_hex('{"params":{"band":0.02,"window_hours":24},"source":"src"}')
    assert rv.content_hash == expected == content_hash(params, "src")
    assert rv.params == params and rv.source == "src"
    assert rv.created_at.tzinfo is not None


def test_conflicting_content_raises_and_writes_nothing(store: SqlStore) -> None:
    store.register_rule_version("sma_cross", "1.0.0", params={"fast": 50}, source="a", created_by="ana")
    with pytest.raises(VersionConflict, match=r"sma_cross@1.0.0 already exists") as info:
        store.register_rule_version("sma_cross", "1.0.0", params={"fast": 20}, source="a", created_by="ana")
    assert info.value.existing_hash == content_hash({"fast": 50}, "a")
    versions = store.list_rule_versions()
    assert [(v.rule, v.version, v.params) for v in versions] == [("sma_cross", "1.0.0", {"fast": 50})]


@pytest.mark.parametrize("defaulted", [False, True], ids=["with-start", "start-claimed"])
def test_insert_executions_returns_new_ids_and_never_duplicates(store: SqlStore, defaulted: bool) -> None:
    """Both write paths (start times given, and start times claimed on first receipt) store each
    id once and report exactly the ids that were new."""
    rv, _ = store.register_rule_version("atr_breakout", "1.0.0", params={}, source="", created_by="t")
    batch = [_event(rv, started_at_defaulted=defaulted) for _ in range(250)]
    assert store.insert_executions(batch) == {e.event_id for e in batch}
    # A re-sent batch, plus new events, plus an id repeated inside the batch.
    fresh = [_event(rv, started_at_defaulted=defaulted) for _ in range(10)]
    repeated = _event(rv, fresh[0].event_id, started_at_defaulted=defaulted)
    inserted = store.insert_executions([*batch[:100], *fresh, repeated])
    assert inserted == {e.event_id for e in fresh}
    assert store.count_executions() == 260
    with store.engine.connect() as conn:
        stored = {r.event_id: r for r in conn.execute(select(ExecutionRow))}
    sample = batch[7]
    assert stored[sample.event_id].started_at.timestamp() == pytest.approx(sample.started_at, abs=1e-6)
    assert (stored[sample.event_id].outcome, stored[sample.event_id].confidence) == ("bullish", 0.7)


def test_execution_values_round_trip(store: SqlStore) -> None:
    rv, _ = store.register_rule_version("range_bias", "1.0.0", params={}, source="", created_by="t")
    started = datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC).timestamp()
    run_id = uuid.uuid4()
    event = _event(
        rv,
        started_at=started,
        status="error",
        outcome=None,
        signal=None,
        confidence=None,
        mode="backtest",
        error_type="DataGap",
        backtest_run_id=run_id,
    )
    store.insert_executions([event])
    with store.engine.connect() as conn:
        row = conn.execute(select(ExecutionRow)).one()
    assert row.event_id == event.event_id
    assert row.started_at == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert (row.status, row.outcome, row.signal, row.confidence) == ("error", None, None, None)
    assert (row.mode, row.error_type, row.backtest_run_id) == ("backtest", "DataGap", run_id)


def test_database_constraints_reject_what_validation_would(store: SqlStore) -> None:
    """Defence in depth: even a buggy writer cannot store an out-of-range confidence."""
    rv, _ = store.register_rule_version("r", "1", params={}, source="", created_by="t")
    with pytest.raises(Exception, match=r"(?i)check|constraint"):
        store.insert_executions([_event(rv, confidence=1.5)])
    assert store.count_executions() == 0


def _run(rv: RuleVersion, finished: datetime, sharpe: float, status: str = "completed") -> BacktestRun:
    return BacktestRun(
        run_id=uuid.uuid4(),
        rule_version=rv,
        kind="walk_forward",
        dataset="BTCUSD-1h",
        dataset_hash="ab" * 32,
        period_start=finished - timedelta(days=30),
        period_end=finished,
        periods_per_year=8760.0,
        status=status,
        started_at=finished - timedelta(seconds=3),
        finished_at=finished,
        metrics={
            "sharpe": sharpe,
            "total_return": 0.1,
            "cagr": None,
            "max_drawdown": -0.2,
            "observations": 720,
            "missing": 2,
        },
        config={"fee": 0.0005},
    )


def test_backtest_with_folds_and_equity_and_latest_per_version(store: SqlStore) -> None:
    rv, _ = store.register_rule_version("sma_cross", "1.1.0", params={}, source="", created_by="t")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    old, new = _run(rv, t0, 0.5), _run(rv, t0 + timedelta(hours=1), 1.5)
    failed = _run(rv, t0 + timedelta(hours=2), 9.9, status="failed")
    fold = BacktestFold(
        0,
        t0 - timedelta(days=60),
        t0 - timedelta(days=30),
        t0 - timedelta(days=30),
        t0,
        {"fast": 20},
        12,
        {"sharpe": 2.0},
        {"sharpe": 1.5},
    )
    points = [EquityPoint(t0 + timedelta(hours=i), 1.0 + i / 100, 0.0) for i in range(48)]
    points.append(EquityPoint(t0, 1.0, 0.0, fold_index=0))
    assert store.insert_backtest(old)
    assert store.insert_backtest(new, points, [fold])
    assert store.insert_backtest(failed)
    assert not store.insert_backtest(new, points, [fold]), "a re-sent run must be a no-op"
    counts = store.table_counts()
    assert (counts["backtest_runs"], counts["backtest_folds"], counts["equity_points"]) == (3, 1, 49)
    [latest] = store.latest_backtests()
    assert (latest.rule, latest.version, latest.sharpe, latest.cagr) == ("sma_cross", "1.1.0", 1.5, None)
    assert latest.finished_at == new.finished_at
    with store.engine.connect() as conn:
        observations, missing, metrics = conn.execute(
            text("SELECT observations, missing, metrics FROM backtest_runs WHERE run_id = :r"),
            {"r": new.run_id.hex if store.dialect == "sqlite" else new.run_id},
        ).one()
    assert (observations, missing) == (720, 2)
    assert (metrics if isinstance(metrics, dict) else __import__("json").loads(metrics))["sharpe"] == 1.5


def test_open_refuses_a_database_that_is_not_at_head(database_url: str) -> None:
    with pytest.raises(SchemaNotAtHead, match=r"heurmetrics db upgrade") as info:
        SqlStore.open(database_url)
    assert info.value.current is None
    # An empty database may be initialised explicitly (what the SDK does for a fresh file) ...
    SqlStore.open(database_url, initialize_empty=True).close()
    # ... but a database at an unknown/other revision is never touched.
    engine = create_store_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'someother'"))
    engine.dispose()
    with pytest.raises(SchemaNotAtHead, match="someother"):
        SqlStore.open(database_url, initialize_empty=True)


def test_migrations_match_the_models(migrated_url: str) -> None:
    """The ORM and the migration scripts describe the same schema (no pending autogenerate diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from heurmetrics.store.schema import Base

    engine = create_store_engine(migrated_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": partitions.include_name})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []
    assert migrations.current_revision(create_store_engine(migrated_url)) == migrations.head_revision()


def test_canonical_json_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
