"""Append-only tables, the hash chain, tamper detection and concurrent appends, on SQLite and Postgres."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from heurmetrics.audit import chain, lifecycle, queries
from heurmetrics.audit.model import version_sort_key
from heurmetrics.canonical import content_hash
from heurmetrics.domain import BacktestFold, BacktestRun, EquityPoint
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.schema import APPEND_ONLY_TABLES
from heurmetrics.store.sql_store import SqlStore
from tests.audit_support import build_history

UPDATES = {
    "rules": "UPDATE rules SET description = 'x'",
    "rule_versions": "UPDATE rule_versions SET description = 'rewritten'",
    "rule_version_events": "UPDATE rule_version_events SET actor = 'mallory'",
    "heuristic_executions": "UPDATE heuristic_executions SET status = 1",
    "backtest_runs": "UPDATE backtest_runs SET sharpe = 9.9",
    "backtest_folds": "UPDATE backtest_folds SET trials = 1",
    "equity_points": "UPDATE equity_points SET equity = 2.0",
    "retention_events": "UPDATE retention_events SET actor = 'mallory'",
}


def _fill_every_table(store: SqlStore) -> None:
    """At least one row per history table (SQLite's row triggers fire only when a row is hit)."""
    url = store.engine.url.render_as_string(hide_password=False)
    build_history(url)
    rv = store.find_rule_version("sma_cross", "1.0.0")
    assert rv is not None
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    run = BacktestRun(uuid.uuid4(), rv, "walk_forward", "d", None, t0, t0, 8760.0, "completed", t0, t0, {})
    fold = BacktestFold(0, t0, t0, t0, t0, {}, 1, {}, {})
    assert store.insert_backtest(run, [EquityPoint(t0, 1.0, 0.0)], [fold])


def _rejects(store: SqlStore, statement: str, table: str, operation: str) -> None:
    with pytest.raises(Exception) as info, store.engine.begin() as conn:
        conn.execute(text(statement))
    message = str(info.value)
    # A partition of heuristic_executions names itself: "table heuristic_executions_p2026_01 is …".
    assert f"table {table}" in message and "is append-only" in message and operation in message, message


def test_history_tables_reject_update_delete_and_truncate(store: SqlStore) -> None:
    _fill_every_table(store)
    before = store.table_counts()
    assert set(UPDATES) == set(APPEND_ONLY_TABLES)
    for table in APPEND_ONLY_TABLES:
        if table == "retention_events" and store.dialect == "sqlite":
            continue  # empty on SQLite (retention is refused there): its row triggers have nothing to hit
        _rejects(store, UPDATES[table], table, "UPDATE")
        _rejects(store, f"DELETE FROM {table} WHERE 1 = 1", table, "DELETE")
        if store.dialect == "postgresql":
            _rejects(store, f"TRUNCATE {table} CASCADE", table, "TRUNCATE")
        else:  # SQLite's TRUNCATE is an unqualified DELETE (the optimisation is off with triggers)
            _rejects(store, f"DELETE FROM {table}", table, "DELETE")
    assert store.table_counts() == before
    assert chain.verify(store).ok


def _superuser(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                           autocommit=True)


def _tamper(url: str, table: str, statement: str) -> None:
    """Change a row behind the triggers' back, as only a superuser or the table owner could."""
    if url.startswith("sqlite"):
        engine = create_store_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TRIGGER {table}_append_only_update")
            conn.exec_driver_sql(statement)
        engine.dispose()
        return
    with _superuser(url) as conn:
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        conn.execute(statement)
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")


@pytest.mark.parametrize(
    ("table", "statement", "kind", "ref"),
    [
        ("rule_versions", "UPDATE rule_versions SET source = 'evil' WHERE version = '1.1.0'", "content_hash",
         "sma_cross@1.1.0"),
        ("rule_versions", "UPDATE rule_versions SET created_by = 'bob' WHERE version = '1.0.0'", "row_hash",
         "sma_cross@1.0.0"),
        ("rule_version_events", "UPDATE rule_version_events SET actor = 'alice' WHERE event = 'approved'", "row_hash",
         "sma_cross@1.0.0"),
    ],
)
def test_verify_names_the_first_altered_record(migrated_url: str, table: str, statement: str, kind: str,
                                               ref: str) -> None:
    build_history(migrated_url)
    store = SqlStore.open(migrated_url)
    anchor = chain.chain_head(store)
    assert chain.verify(store, expect_head=anchor.row_hash).ok
    _tamper(migrated_url, table, statement)
    report = chain.verify(store)
    store.close()
    assert not report.ok
    first = report.first
    assert first is not None and (first.kind, first.ref, first.table) == (kind, ref, table), report.problems
    assert f"position {first.position}" in first.message and ref in first.message


def test_rewritten_hash_breaks_the_next_link_and_deletion_leaves_a_gap(migrated_url: str) -> None:
    build_history(migrated_url)
    store = SqlStore.open(migrated_url)
    anchor = chain.chain_head(store)
    with store.engine.connect() as conn:
        position = conn.execute(text("SELECT chain_position FROM rule_version_events WHERE event = 'retired'")).scalar()
    # A forger who recomputes the altered record's own hash still breaks the next record's prev_hash.
    _tamper(migrated_url, "rule_version_events",
            f"UPDATE rule_version_events SET row_hash = '{'f' * 64}' WHERE chain_position = {position - 1}")
    report = chain.verify(store)
    assert [(p.position, p.kind) for p in report.problems] == [(position - 1, "row_hash"), (position, "prev_hash")]
    # Deleting the newest record is invisible to the chain alone, but not to an anchored head.
    sqlite = migrated_url.startswith("sqlite")
    delete = f"DELETE FROM rule_version_events WHERE chain_position = {position}"
    if sqlite:
        engine = create_store_engine(migrated_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER rule_version_events_append_only_delete")
            conn.exec_driver_sql(delete)
            conn.exec_driver_sql(f"DELETE FROM rule_version_events WHERE chain_position = {position - 2}")
        engine.dispose()
    else:
        with _superuser(migrated_url) as conn:
            conn.execute("ALTER TABLE rule_version_events DISABLE TRIGGER ALL")
            conn.execute(delete)
            conn.execute(f"DELETE FROM rule_version_events WHERE chain_position = {position - 2}")
            conn.execute("ALTER TABLE rule_version_events ENABLE TRIGGER ALL")
    report = chain.verify(store, expect_head=anchor.row_hash)
    store.close()
    kinds = [(p.position, p.kind) for p in report.problems]
    assert (position - 2, "gap") in kinds and report.anchor_found is False


def _worker(url: str, worker: int, n: int, start: Any) -> None:
    start.wait()
    store = SqlStore.open(url)
    try:
        for i in range(n):
            store.register_rule_version(f"rule_{worker}", f"1.{i}.0", params={"i": i}, source=f"w{worker}",
                                        created_by=f"author{worker}")
            # Everyone also races on one shared version: exactly one registration may win.
            store.register_rule_version("shared", "1.0.0", params={}, source="same", created_by=f"author{worker}")
            lifecycle.approve(store, f"rule_{worker}", f"1.{i}.0", actor="approver", reason=f"batch {i}")
    finally:
        store.close()


def test_concurrent_appends_from_several_processes_never_fork_the_chain(migrated_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    workers, n = 4, 6
    processes = [ctx.Process(target=_worker, args=(migrated_url, w, n, start)) for w in range(workers)]
    for p in processes:
        p.start()
    start.set()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers
    store = SqlStore.open(migrated_url)
    report = chain.verify(store)
    expected = workers * n * 3 + 2  # version + proposed + approved each, plus the shared version and its event
    assert report.ok and report.records == expected == report.head.position, report.problems
    versions = queries.list_versions(store, "rule_0")
    assert [v.version for v in versions] == sorted((f"1.{i}.0" for i in range(n)), key=version_sort_key)
    assert len(queries.history(store, "shared")) == 1
    with store.engine.connect() as conn:
        times = [r[0] for r in conn.execute(text(
            "SELECT occurred_at FROM rule_version_events ORDER BY chain_position"))]
    store.close()
    assert times == sorted(times), "time never goes backwards along the chain"


def test_upgrade_backfills_versions_registered_before_the_audit_trail(database_url: str) -> None:
    engine = create_store_engine(database_url)
    migrations.upgrade(engine, "0001")
    t0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO rules (id, name, created_at) VALUES (1, 'old_rule', :t)"), {"t": t0})
        for i, version in enumerate(("1.0.0", "2.0.0"), start=1):
            conn.execute(text(
                "INSERT INTO rule_versions (id, rule_id, version, content_hash, params, source, created_at, "
                "created_by, description) VALUES (:id, 1, :v, :h, :p, 'src', :t, 'legacy', :d)"
            ), {"id": i, "v": version, "h": content_hash({"i": i}, "src"), "p": f'{{"i": {i}}}',
                "t": t0 + timedelta(days=i), "d": None if i == 1 else "second"})
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('rule_versions', 'id'), 2)")
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('rules', 'id'), 1)")
    migrations.upgrade(engine)
    engine.dispose()
    store = SqlStore.open(database_url)
    report = chain.verify(store)
    assert report.ok and report.records == 4, report.problems
    events = queries.history(store, "old_rule")
    assert [(e.version, e.event, e.actor, e.occurred_at) for e in events] == [
        ("1.0.0", "proposed", "legacy", t0 + timedelta(days=1)),
        ("2.0.0", "proposed", "legacy", t0 + timedelta(days=2)),
    ]
    assert events[0].details == {"content_hash": events[0].details["content_hash"], "backfilled": True}
    # New appends continue the backfilled chain.
    store.register_rule_version("old_rule", "3.0.0", params={}, source="new", created_by="alice")
    assert chain.verify(store).ok and chain.chain_head(store).position == 6
    store.close()
