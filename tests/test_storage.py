"""Storage at volume: partitions, identity across retries, exact rollups, audited retention (issue 10).

Real PostgreSQL and real SQLite; every test asserts row counts, never timings.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from heurmetrics.audit import chain, queries
from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.metrics.definitions import EXECUTION_DURATION_BUCKETS, EXECUTION_MODES, EXECUTION_STATUSES
from heurmetrics.store import migrations, partitions, retention, rollups
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.schema import ROLLUP_BUCKET_COLUMNS
from heurmetrics.store.sql_store import SqlStore

# Three months in the past (the test must not depend on today's partitions).
MONTHS = [datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)]
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _events(rvs: list[RuleVersion], n: int, *, mode: str = "live") -> list[ExecutionEvent]:
    """``n`` executions per month of :data:`MONTHS`, spread over versions, statuses and durations."""
    out = []
    for m, month in enumerate(MONTHS):
        for i in range(n):
            t = month + timedelta(days=i % 27, seconds=61 * i + 0.25)
            out.append(ExecutionEvent(
                uuid.uuid4(), rvs[i % len(rvs)], t.timestamp(), [0.00005, 0.003, 0.3, 42.0][(i + m) % 4],
                EXECUTION_STATUSES[i % 3], None if i % 5 == 0 else "bullish", 1.0, None if i % 2 else 0.5, mode,
            ))
    return out


@pytest.fixture
def versions(store: SqlStore) -> list[RuleVersion]:
    return [store.register_rule_version("range_bias", f"1.{i}.0", params={"i": i}, source="s", created_by="t")[0]
            for i in range(3)]


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlStore]:
    engine = create_store_engine(postgres_url)
    migrations.upgrade(engine)
    engine.dispose()
    s = SqlStore.open(postgres_url)
    yield s
    s.close()


def _raw_counts(store: SqlStore, where: str = "") -> dict[int, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT rule_version_id, count(*) FROM heuristic_executions {where} GROUP BY 1"))
        return {int(v): int(n) for v, n in rows}


def _rollup_counts(store: SqlStore, where: str = "") -> dict[int, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT rule_version_id, sum(executions) FROM execution_rollups {where} GROUP BY 1"))
        return {int(v): int(n) for v, n in rows}


def test_codes_name_exactly_the_metric_value_sets() -> None:
    assert set(STATUS_CODES) == set(EXECUTION_STATUSES) and set(MODE_CODES) == set(EXECUTION_MODES)
    assert len(ROLLUP_BUCKET_COLUMNS) == len(set(ROLLUP_BUCKET_COLUMNS)) == len(EXECUTION_DURATION_BUCKETS)


def test_upgraded_table_is_partitioned_and_rows_land_in_their_month(pg_store: SqlStore) -> None:
    store = pg_store  # SQLite keeps one flat table
    versions = [store.register_rule_version("range_bias", f"5.{i}.0", params={"i": i}, source="s", created_by="t")[0]
                for i in range(3)]
    events = _events(versions, 40)
    assert store.insert_executions(events) == {e.event_id for e in events}
    with store.engine.connect() as conn:
        assert partitions.is_partitioned(conn)
        placed = Counter(conn.execute(text(
            "SELECT tableoid::regclass::text FROM heuristic_executions"
        )).scalars())
    # Created on demand for the backfill: one partition per month, nothing in the default one.
    assert placed == {f"heuristic_executions_p{m:%Y_%m}": 40 for m in MONTHS}
    names = [p.name for p in partitions.list_partitions(store.engine)]
    assert names[-1] == partitions.DEFAULT_PARTITION
    assert {f"heuristic_executions_p{m:%Y_%m}" for m in MONTHS} <= set(names)


def test_resent_batch_adds_no_row_and_no_rollup_count(store: SqlStore, versions: list[RuleVersion]) -> None:
    events = _events(versions, 30)
    assert len(store.insert_executions(events)) == 90
    before_raw, before_rolled = _raw_counts(store), _rollup_counts(store)
    # Re-sent (a retry after a lost acknowledgement), partly mixed with new events.
    fresh = _events(versions, 2)
    assert store.insert_executions(events) == set()
    assert store.insert_executions([*events[:45], *fresh]) == {e.event_id for e in fresh}
    assert sum(_raw_counts(store).values()) == 96 == sum(_rollup_counts(store).values())
    assert sum(before_raw.values()) == sum(before_rolled.values()) == 90


def test_retry_without_started_at_maps_onto_the_first_receipt(store: SqlStore, versions: list[RuleVersion]) -> None:
    """A caller-chosen id sent without a start time gets a new default each time; the claim keeps it one row."""
    eid = uuid.uuid4()
    for k in range(3):
        event = ExecutionEvent(eid, versions[0], NOW.timestamp() - 100 + k, 0.01, "ok", None, None, None, "live",
                               started_at_defaulted=True)
        assert store.insert_executions([event]) == ({eid} if k == 0 else set())
    assert sum(_raw_counts(store).values()) == 1 == sum(_rollup_counts(store).values())


def test_batch_without_started_at_keeps_first_receipts_and_adds_only_new_ids(
    store: SqlStore, versions: list[RuleVersion]
) -> None:
    """A re-sent batch of ids without start times, mixed with new ids: the earlier ids keep the
    time of their first receipt (one row each), the new ones get theirs (the claims' two paths)."""
    first = [uuid.uuid4() for _ in range(5)]
    later = [uuid.uuid4() for _ in range(3)]

    def batch(ids: list[uuid.UUID], offset: float) -> list[ExecutionEvent]:
        return [ExecutionEvent(eid, versions[0], NOW.timestamp() - 100 + offset + k / 8, 0.01, "ok", None, None, None,
                               "live", started_at_defaulted=True) for k, eid in enumerate(ids)]

    sent = batch(first, 0)
    assert store.insert_executions(sent) == set(first)
    first_times = {e.event_id: e.started_at for e in sent}
    resent = batch(first + later, 30)
    assert store.insert_executions(resent) == set(later)
    assert all(e.started_at_defaulted for e in resent)  # events are immutable: the store returned new ones
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, started_at FROM heuristic_executions")).all()
    stored = {_as_uuid(eid): _as_time(ts) for eid, ts in rows}
    for eid, first in first_times.items():
        assert stored[eid] == pytest.approx(first, abs=1e-6)  # the first receipt's time, one row each
    assert sum(_raw_counts(store).values()) == 8 == sum(_rollup_counts(store).values())


def test_rollups_equal_raw_rows_per_version_and_bucket(store: SqlStore, versions: list[RuleVersion]) -> None:
    events = _events(versions, 50)
    store.insert_executions(events[:70])
    store.insert_executions(events[50:])  # overlapping batch: the overlap is not counted twice
    assert _rollup_counts(store) == _raw_counts(store) == dict(Counter(e.rule_version.id for e in events))
    with store.engine.connect() as conn:
        le_03 = conn.execute(text("SELECT sum(duration_le_0_3), sum(duration_le_10_0), sum(executions), "
                                  "sum(confidence_count) FROM execution_rollups")).one()
    assert tuple(map(int, le_03)) == (
        sum(e.duration_seconds <= 0.3 for e in events), sum(e.duration_seconds <= 10 for e in events), len(events),
        sum(e.confidence is not None for e in events),
    )


def test_history_rows_stay_protected_in_every_partition(store: SqlStore, versions: list[RuleVersion]) -> None:
    store.insert_executions(_events(versions, 5))
    targets = ["heuristic_executions", "execution_rollups"]
    if store.dialect == "postgresql":
        targets.append(f"heuristic_executions_p{MONTHS[0]:%Y_%m}")
    for table in targets:
        for statement in (f"DELETE FROM {table}", *(() if table == "execution_rollups" else
                                                     (f"UPDATE {table} SET duration_seconds = 0",))):
            with pytest.raises(Exception, match="is append-only"), store.engine.begin() as conn:
                conn.execute(text(statement))
        if store.dialect == "postgresql":
            with pytest.raises(Exception, match="is append-only"), store.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {table}"))
    assert sum(_raw_counts(store).values()) == 15


def test_migration_moves_existing_rows_into_partitions_and_rollups(database_url: str) -> None:
    engine = create_store_engine(database_url)
    migrations.upgrade(engine, "0003")
    store = SqlStore(engine)
    sqlite = engine.dialect.name == "sqlite"
    t0 = "2024-12-01 00:00:00.000000" if sqlite else MONTHS[0]
    with engine.begin() as conn:  # the 0003 schema, written directly (today's code speaks 0004)
        conn.execute(text("INSERT INTO rules (id, name, created_at) VALUES (1, 'sma_cross', :t)"), {"t": t0})
        conn.execute(text(
            "INSERT INTO rule_versions (id, rule_id, version, content_hash, params, source, created_at, created_by, "
            "chain_position, prev_hash, row_hash) VALUES (1, 1, '1.0.0', 'h', '{}', 's', :t, 't', 1, 'p', 'r')"
        ), {"t": t0})
        rv = type("V", (), {"id": 1})
        for i, month in enumerate(MONTHS):
            for k in range(4):
                conn.execute(
                    text("INSERT INTO heuristic_executions (event_id, rule_version_id, started_at, duration_seconds, "
                         "status, outcome, mode, ingested_at) VALUES (:id, :rv, :t, 0.01, :s, 'bullish', :m, :t)"),
                    {"id": uuid.uuid4().hex if engine.dialect.name == "sqlite" else uuid.uuid4(), "rv": rv.id,
                     "t": (month + timedelta(hours=k)).replace(tzinfo=None) if engine.dialect.name == "sqlite"
                     else month + timedelta(hours=k), "s": ["ok", "error"][k % 2], "m": ["live", "backtest"][i % 2]},
                )
    migrations.upgrade(engine)
    assert _raw_counts(store) == {rv.id: 12} == _rollup_counts(store)
    with engine.connect() as conn:
        statuses = Counter(conn.execute(text(
            "SELECT s.name FROM heuristic_executions e JOIN execution_statuses s ON s.code = e.status")).scalars())
        assert statuses == {"ok": 6, "error": 6}
        if engine.dialect.name == "postgresql":
            placed = Counter(conn.execute(text("SELECT tableoid::regclass::text FROM heuristic_executions")).scalars())
            assert placed == {f"heuristic_executions_p{m:%Y_%m}": 4 for m in MONTHS}
    engine.dispose()


# --- retention ---------------------------------------------------------------------------------
#: The documented table an auditor loads an export into (docs/storage.md).
EXPORT_TABLE = (
    "CREATE TABLE {name} (started_at timestamptz, event_id uuid, duration_seconds float8, signal float8, "
    "confidence float8, rule_version_id int4, status int2, mode int2, outcome text, error_type text, "
    "backtest_run_id uuid)"
)


def _export(url: str, partition: str) -> list[str]:
    """The partition's rows as CSV lines, through a plain psycopg connection (an auditor's export)."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    buf = bytearray()
    with psycopg.connect(libpq) as conn, conn.cursor().copy(
        f"COPY (SELECT {', '.join(retention.DIGEST_COLUMNS)} FROM {partition}) TO STDOUT (FORMAT CSV)"
    ) as copy:
        for block in copy:
            buf += block
    return bytes(buf).decode().splitlines()


def _digest_of_export(url: str, lines: list[str]) -> str:
    """The documented recomputation: load the export into a fresh table, run the documented query."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn:
        conn.execute(EXPORT_TABLE.format(name="pg_temp.export_check"))
        with conn.cursor().copy("COPY pg_temp.export_check FROM STDIN (FORMAT CSV)") as copy:
            copy.write("\n".join(lines) + "\n")
        row = conn.execute(
            "SELECT sum(hash_record_extended(t, 0)) % 2^64::numeric "
            f"FROM (SELECT {', '.join(retention.DIGEST_COLUMNS)} FROM pg_temp.export_check) AS t"
        ).fetchone()
    assert row is not None
    return f"mh64:{int(row[0]) % 2**64:016x}"


def test_retention_drops_the_oldest_month_verified_digested_and_chained(pg_store: SqlStore) -> None:
    store = pg_store
    rvs = [store.register_rule_version("range_bias", f"2.{i}.0", params={"i": i}, source="s", created_by="t")[0]
           for i in range(2)]
    events = _events(rvs, 20)
    store.insert_executions(events)
    total_before = _rollup_counts(store)
    oldest = f"heuristic_executions_p{MONTHS[0]:%Y_%m}"
    url = store.engine.url.render_as_string(hide_password=False)
    exported = _export(url, oldest)  # an auditor's export before the run
    expected_digest = _digest_of_export(url, exported)
    # Order-independent (any export order), and any changed or missing row changes it.
    assert _digest_of_export(url, exported[::-1]) == expected_digest
    assert _digest_of_export(url, exported[1:]) != expected_digest
    changed = exported[0].replace(",1,", ",2,", 1)
    assert changed != exported[0] and _digest_of_export(url, [changed, *exported[1:]]) != expected_digest
    # Keep live rows until just after the end of the oldest month: only that one is due.
    policy = retention.parse_policy(f"live={(NOW - MONTHS[1]).days}d")
    planned = retention.plan(store.engine, policy, now=NOW)
    assert [c.partition.name for c in planned] == [oldest]
    assert planned[0].partition.rows == 20 and planned[0].modes == ["live"]

    [event] = retention.apply(store.engine, policy, actor="ops@example.com", now=NOW)

    assert event.partition_name == oldest and event.row_count == 20
    assert event.counts == {str(v): n for v, n in Counter(e.rule_version.id for e in events[:20]).items()}
    assert event.content_digest == expected_digest and event.content_digest.startswith("mh64:")
    # Raw rows of the other months untouched and still equal to their rollups; the rollups of the
    # dropped month remain (totals unchanged), so long-range counts stay exact.
    remaining = f"WHERE started_at >= '{MONTHS[1].isoformat()}'"
    rolled_remaining = f"WHERE bucket_start >= '{MONTHS[1].isoformat()}'"
    assert _raw_counts(store, remaining) == _rollup_counts(store, rolled_remaining)
    assert sum(_raw_counts(store).values()) == 40
    assert _rollup_counts(store) == total_before
    with store.engine.connect() as conn:
        assert oldest not in {r[0] for r in conn.execute(text("SELECT relname FROM pg_class"))}
        assert rollups.rolled_up_ranges(conn, None, None) == [(MONTHS[0], MONTHS[1])]
    # The audit trail still counts the dropped month exactly (rollups) and says it is rolled up only.
    v0 = rvs[0]
    audit = queries.executions(store, v0.rule, v0.version, start=MONTHS[0], end=NOW)
    assert audit.total == sum(1 for e in events if e.rule_version.id == v0.id)
    assert [(r.start, r.end) for r in audit.rolled_up_only] == [(MONTHS[0], MONTHS[1])]
    listed = queries.executions(store, v0.rule, v0.version, start=MONTHS[0], end=NOW, rows=1000).rows
    assert len(listed) == sum(1 for e in events[20:] if e.rule_version.id == v0.id)  # raw rows that remain
    report = chain.verify(store)
    assert report.ok and report.retention_events == 1
    assert report.head.table == chain.RETENTION_TABLE and report.head.row_hash == event.row_hash
    # Nothing else is due any more; a second run is a no-op.
    assert retention.apply(store.engine, policy, actor="ops@example.com", now=NOW) == []
    # DELETE and UPDATE on the remaining rows are still refused by the database.
    for statement in ("DELETE FROM heuristic_executions", "UPDATE heuristic_executions SET status = 1"):
        with pytest.raises(Exception, match="is append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))


def test_retention_refuses_when_rollups_do_not_cover_the_partition(pg_store: SqlStore) -> None:
    store = pg_store
    rv = store.register_rule_version("range_bias", "3.0.0", params={}, source="s", created_by="t")[0]
    store.insert_executions(_events([rv], 5))
    # A row that reached the partition behind the store's back (no rollup increment).
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO heuristic_executions (started_at, event_id, duration_seconds, rule_version_id, status, mode) "
            "VALUES ('2025-01-20T00:00:00Z', gen_random_uuid(), 0.1, :rv, 1, 1)"
        ), {"rv": rv.id})
    policy = retention.parse_policy(f"live={(NOW - MONTHS[1]).days}d")
    with pytest.raises(retention.RetentionError, match=rf"rollups do not cover.*'{rv.id}': \(6, 5\)"):
        retention.apply(store.engine, policy, actor="ops", now=NOW)
    assert sum(_raw_counts(store).values()) == 16  # nothing dropped
    assert chain.verify(store).retention_events == 0


def test_retention_is_refused_on_sqlite_with_a_clear_message(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    migrations.upgrade(engine)
    with pytest.raises(retention.RetentionError, match="SQLite keeps one flat heuristic_executions table"):
        retention.plan(engine, retention.parse_policy(None))
    engine.dispose()


@pytest.mark.parametrize(
    ("spec", "message"),
    [("live=ten", "expected MODE=DAYSd"), ("dream=3d", "unknown mode 'dream'"), ("live=0d", "at least 1 day")],
)
def test_bad_retention_policy_is_named(spec: str, message: str) -> None:
    with pytest.raises(retention.RetentionError, match=message):
        retention.parse_policy(spec)


def test_db_commands(pg_store: SqlStore, sqlite_url: str) -> None:
    from typer.testing import CliRunner

    from heurmetrics.cli import app

    store = pg_store
    rv = store.register_rule_version("range_bias", "4.0.0", params={}, source="s", created_by="t")[0]
    store.insert_executions(_events([rv], 3))
    url = store.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    listed = runner.invoke(app, ["db", "partitions", "--database-url", url, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {p["name"]: p["rows"] for p in json.loads(listed.stdout)["partitions"]}
    assert rows[f"heuristic_executions_p{MONTHS[0]:%Y_%m}"] == 3 and rows[partitions.DEFAULT_PARTITION] == 0
    dry = runner.invoke(app, ["db", "retention", "--dry-run", "--keep", "live=1d", "--database-url", url, "--json"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert [p["name"] for p in planned["partitions"]][:3] == [f"heuristic_executions_p{m:%Y_%m}" for m in MONTHS]
    assert planned["events"] == [] and sum(_raw_counts(store).values()) == 9  # dry run: nothing dropped
    bad = runner.invoke(app, ["db", "retention", "--keep", "live=soon", "--database-url", url])
    assert bad.exit_code == 1 and "expected MODE=DAYSd" in bad.output and "Traceback" not in bad.output
    engine = create_store_engine(sqlite_url)
    migrations.upgrade(engine)
    engine.dispose()
    refused = runner.invoke(app, ["db", "retention", "--database-url", sqlite_url])
    assert refused.exit_code == 1 and "SQLite keeps one flat" in refused.output


def test_daily_and_monthly_partitions_coexist_without_overlap(pg_store: SqlStore, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    store = pg_store
    engine = store.engine
    day0 = datetime(2031, 3, 1, tzinfo=UTC)
    assert partitions.create_ranges(engine, day0, day0 + timedelta(days=2), "daily") == [
        "heuristic_executions_p2031_03_01", "heuristic_executions_p2031_03_02",
    ]
    # The month overlaps those days: it is skipped, never an error; the days stay.
    assert partitions.create_ranges(engine, day0, day0 + timedelta(days=1), "monthly") == []
    rv = store.register_rule_version("range_bias", "6.0.0", params={}, source="s", created_by="t")[0]
    event = ExecutionEvent(uuid.uuid4(), rv, (day0 + timedelta(hours=30)).timestamp(), 0.01, "ok", None, None, None,
                           "live")
    assert store.insert_executions([event]) == {event.event_id}
    with engine.connect() as conn:
        where = conn.execute(text("SELECT tableoid::regclass::text FROM heuristic_executions")).scalar_one()
    assert where == "heuristic_executions_p2031_03_02"
    monkeypatch.setenv("HEURMETRICS_PARTITION_INTERVAL", "weekly")
    with pytest.raises(ValueError, match="HEURMETRICS_PARTITION_INTERVAL='weekly': expected one of monthly, daily"):
        partitions.configured_interval()


def test_partitions_are_created_ahead(pg_store: SqlStore) -> None:
    created = partitions.ensure_ahead(pg_store.engine, now=datetime(2032, 1, 15, tzinfo=UTC), interval="monthly")
    assert created == ["heuristic_executions_p2032_01", "heuristic_executions_p2032_02",
                       "heuristic_executions_p2032_03"]
    assert partitions.ensure_ahead(pg_store.engine, now=datetime(2032, 1, 15, tzinfo=UTC)) == []  # idempotent
    # serve and the SDK writer call this on start: this month and the next two exist afterwards.
    pg_store.prepare_partitions()
    with pg_store.engine.connect() as conn:
        ranges = partitions.covered_ranges(conn)
    now = datetime.now(UTC)
    assert all(any(s <= t < e for s, e in ranges) for t in (now, now + timedelta(days=31), now + timedelta(days=62)))


def _as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _as_time(value: object) -> float:
    if isinstance(value, str):  # SQLite stores text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
