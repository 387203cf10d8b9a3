"""The roll-up job and its watermark: rollups exact while writers, late rows and the job interleave.

Real PostgreSQL (the job exists there only; SQLite rolls up in the insert transaction). Every
assertion compares rollups with raw rows, per rule version and bucket, at every level.
"""

from __future__ import annotations

import math
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.store import migrations, rollup_job, rollups
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.sql_store import SqlStore

#: The watermark the tests start from: a whole minute, well in the past.
W0 = datetime(2025, 5, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[SqlStore]:
    engine = create_store_engine(postgres_url)
    migrations.upgrade(engine)
    engine.dispose()
    store = SqlStore.open(postgres_url)
    store.executions._roll_up = rollup_job.Schedule(store.engine, interval=math.inf)  # the tests drive the job
    _set_watermark(store, W0)
    yield store
    store.close()


@pytest.fixture
def versions(pg: SqlStore) -> list[RuleVersion]:
    return [pg.register_rule_version("trend", f"2.{i}.0", params={}, source="s", created_by="t")[0] for i in range(4)]


def _set_watermark(store: SqlStore, t: datetime | None) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE rollup_watermark SET through = :t"), {"t": t})


def _events(rvs: list[RuleVersion], times: list[datetime], seed: int = 1) -> list[ExecutionEvent]:
    rng = random.Random(seed)
    return [
        ExecutionEvent(uuid.uuid4(), rvs[rng.randrange(len(rvs))], t.timestamp(), rng.choice([0.0002, 0.04, 3.0]),
                       rng.choice(["ok", "ok", "error"]), rng.choice([None, "long", "flat"]), 1.0,
                       rng.choice([None, 0.25]), rng.choice(["live", "backtest"]))
        for t in times
    ]


def _level_vs_raw(store: SqlStore, level: str) -> tuple[dict[tuple, tuple], dict[tuple, tuple]]:
    """(rollup, raw) totals per (version, bucket, mode, status, outcome) of one level: count,
    confidence count and the cumulative 0.05 s bucket."""
    table = rollups.LEVEL_TABLES[level]
    bucket = {"minute": "minute", "hour": "hour", "day": "day"}[level]
    with store.engine.connect() as conn:
        rolled = {tuple(r[:5]): tuple(r[5:]) for r in conn.execute(text(
            f"SELECT rule_version_id, bucket_start, mode, status, outcome, executions, confidence_count, "
            f"duration_le_0_05 FROM {table}"))}
        raw = {tuple(r[:5]): tuple(r[5:]) for r in conn.execute(text(
            f"SELECT rule_version_id, date_trunc('{bucket}', started_at, 'UTC'), mode, status, coalesce(outcome, ''), "
            "count(*), count(confidence), count(*) FILTER (WHERE duration_seconds <= 0.05) "
            "FROM heuristic_executions GROUP BY 1, 2, 3, 4, 5"))}
    return rolled, raw


def _rolled_total(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(sum(executions), 0) FROM execution_rollups")).scalar_one())


def _raw_per_version(store: SqlStore, lo: datetime, hi: datetime) -> dict[int, int]:
    with store.engine.connect() as conn:
        return {int(v): int(n) for v, n in conn.execute(text(
            "SELECT rule_version_id, count(*) FROM heuristic_executions WHERE started_at >= :lo AND started_at < :hi "
            "GROUP BY 1"), {"lo": lo, "hi": hi})}


def _readers_agree_with_raw(store: SqlStore, lo: datetime, hi: datetime) -> None:
    """The audit count, the panels' SQL function and the per-version count equal the raw rows."""
    raw = _raw_per_version(store, lo, hi)
    lo_minute, hi_minute = lo.replace(second=0, microsecond=0), hi.replace(second=0, microsecond=0)
    with store.engine.connect() as conn:
        counted: dict[int, int] = {}
        for (vid, _m, _s, _o), n in rollups.count_executions(conn, None, lo, hi).items():
            counted[vid] = counted.get(vid, 0) + n
        # The function covers whole minutes: those starting in [lo, hi), i.e. [ceil(lo), ceil(hi)).
        between = {int(v): int(n) for v, n in conn.execute(text(
            "SELECT rule_version_id, sum(executions) FROM execution_rollups_between(:lo, :hi) GROUP BY 1"),
            {"lo": lo_minute, "hi": hi_minute})}
        per_version = rollups.counts_per_version(conn, lo_minute, hi_minute)
    assert counted == raw
    assert between == per_version == _raw_per_version(store, lo_minute, hi_minute)


def test_rows_above_the_watermark_are_the_jobs_and_every_reader_stays_exact(
    pg: SqlStore, versions: list[RuleVersion]
) -> None:
    # 90 executions from 30 minutes before the watermark to 60 minutes after it.
    times = [W0 + timedelta(minutes=-30 + i, seconds=(7 * i) % 60, microseconds=i) for i in range(90)]
    batch = _events(versions, times)
    assert len(pg.insert_executions(batch)) == 90
    late = sum(1 for t in times if t < W0)
    assert _rolled_total(pg) == late == 30  # the writer rolled up its late rows only
    for lo, hi in [(W0 - timedelta(hours=1), W0 + timedelta(hours=2)),  # straddles the watermark
                   (W0 + timedelta(minutes=5, seconds=13), W0 + timedelta(minutes=47, seconds=2)),  # above it
                   (W0 - timedelta(minutes=20), W0 + timedelta(minutes=20))]:
        _readers_agree_with_raw(pg, lo, hi)

    until = W0 + timedelta(hours=1)
    assert pg.maintenance.roll_up(until) == until
    assert pg.maintenance.rollup_watermark() == until
    for level in ("minute", "hour", "day"):
        rolled, raw = _level_vs_raw(pg, level)
        assert rolled == raw, level  # every row in exactly one bucket of every level
    # A re-sent batch adds nothing anywhere; another run of the job changes nothing.
    assert pg.insert_executions(batch) == set()
    assert pg.maintenance.roll_up(until) == until
    assert _level_vs_raw(pg, "minute")[0] == _level_vs_raw(pg, "minute")[1]
    assert _rolled_total(pg) == 90
    # A late row (below the new watermark) is rolled up by its writer at once.
    pg.insert_executions(_events(versions, [W0 + timedelta(minutes=10, seconds=1)], seed=9))
    assert _rolled_total(pg) == 91
    _readers_agree_with_raw(pg, W0 - timedelta(days=1), W0 + timedelta(days=1))


def test_the_job_skips_empty_stretches_and_moves_by_whole_minutes(pg: SqlStore, versions: list[RuleVersion]) -> None:
    far = W0 + timedelta(days=3, minutes=7, seconds=30)
    pg.insert_executions(_events(versions, [far]))
    until = W0 + timedelta(days=4)
    # Three days of nothing, then one row: one transaction for the gap, one (of MAX_SPAN) for the row.
    assert rollup_job.advance(pg.engine, until, max_span=timedelta(minutes=1)) == until
    assert _rolled_total(pg) == 1
    with pytest.raises(ValueError, match="whole minutes"):
        rollup_job.advance(pg.engine, until + timedelta(seconds=1))


def test_writers_and_the_job_interleaved_count_every_row_once(pg: SqlStore, versions: list[RuleVersion]) -> None:
    """Three writers insert rows around a watermark that a fourth thread moves minute by minute."""
    end = W0 + timedelta(minutes=12)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for k in range(25):
                # Rows anywhere in the 12 minutes: some below the moving watermark (late), most above.
                times = [W0 + timedelta(seconds=rng.uniform(0, 719.999)) for _ in range(40)]
                batch = _events(versions, times, seed=seed * 100 + k)
                pg.insert_executions(batch)
                if k % 5 == 0:
                    pg.insert_executions(batch)  # a retry in the middle of it all
        except BaseException as exc:
            errors.append(exc)

    def job() -> None:
        try:
            minute = W0
            while not stop.is_set() and minute < end:
                minute += timedelta(minutes=1)
                rollup_job.advance(pg.engine, minute, max_span=timedelta(minutes=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2, 3)] + [threading.Thread(target=job)]
    for t in threads:
        t.start()
    for t in threads[:3]:
        t.join(timeout=120)
    stop.set()
    threads[3].join(timeout=120)
    assert not errors, errors
    _readers_agree_with_raw(pg, W0 - timedelta(minutes=1), end + timedelta(minutes=1))
    assert rollup_job.advance(pg.engine, end) == end
    for level in ("minute", "hour", "day"):
        rolled, raw = _level_vs_raw(pg, level)
        assert rolled == raw, level
    assert _rolled_total(pg) == sum(_raw_per_version(pg, W0, end).values()) == 3 * 25 * 40


def test_the_writer_runs_the_job_after_a_commit_when_it_is_due(pg: SqlStore, versions: list[RuleVersion]) -> None:
    import time

    pg.executions._roll_up = rollup_job.Schedule(pg.engine, interval=0.05)
    recent = rollup_job.closed_until() - timedelta(minutes=3)
    _set_watermark(pg, recent - timedelta(minutes=2))
    pg.insert_executions(_events(versions, [recent + timedelta(seconds=s) for s in (1, 30, 61, 125)]))
    deadline = time.monotonic() + 30
    while _rolled_total(pg) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The batch was above the watermark; the periodic runs it started rolled it up.
    assert _rolled_total(pg) == 4
    pg.executions._roll_up.close()
    through = pg.maintenance.rollup_watermark()
    assert through is not None and through >= recent + timedelta(minutes=3)


def test_no_watermark_means_every_row_is_rolled_up_by_its_writer(pg: SqlStore, versions: list[RuleVersion]) -> None:
    _set_watermark(pg, None)
    pg.insert_executions(_events(versions, [W0 + timedelta(days=400, seconds=s) for s in range(5)]))
    assert _rolled_total(pg) == 5
    assert rollup_job.advance(pg.engine, W0 + timedelta(days=500)) is None
    _readers_agree_with_raw(pg, W0, W0 + timedelta(days=401))


def test_the_migration_starts_the_watermark_after_every_rolled_up_minute(postgres_url: str) -> None:
    """Rows rolled up before 0009 (in their insert transaction) are never rolled up again."""
    engine = create_store_engine(postgres_url)
    try:
        migrations.upgrade(engine, "0008")
        future = (datetime.now(UTC) + timedelta(hours=5)).replace(second=0, microsecond=0)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO rules (name, created_at) VALUES ('r', now())"))
            rule_id = conn.execute(text("SELECT id FROM rules")).scalar_one()
            conn.execute(text(
                "INSERT INTO rule_versions (rule_id, version, content_hash, params, source, created_at, created_by, "
                "chain_position, prev_hash, row_hash) VALUES (:r, '1', 'h', '{}', '', now(), 't', 1, :z, :z)"),
                {"r": rule_id, "z": "0" * 64})
            vid = conn.execute(text("SELECT id FROM rule_versions")).scalar_one()
            buckets = ", ".join(["0"] * 17)
            conn.execute(text(
                f"INSERT INTO execution_rollups VALUES (:v, 0, :b, 0, '', 1, 0.1, 0, 0, {buckets})"),
                {"v": vid, "b": future})
        migrations.upgrade(engine)
        with engine.connect() as conn:
            assert rollup_job.watermark(conn) == future + timedelta(minutes=1)
    finally:
        engine.dispose()


def test_the_migration_waits_for_a_batch_of_an_older_writer_in_flight(postgres_url: str) -> None:
    """A pre-0009 writer mid-batch when 0009 runs: the watermark starts after the minute it rolled up
    (the migration waits for it), so the job never counts that minute again."""
    import psycopg

    from tests.conftest import _libpq

    engine = create_store_engine(postgres_url)
    try:
        migrations.upgrade(engine, "0008")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO rules (name, created_at) VALUES ('r', now())"))
            conn.execute(text(
                "INSERT INTO rule_versions (rule_id, version, content_hash, params, source, created_at, created_by, "
                "chain_position, prev_hash, row_hash) SELECT id, '1', 'h', '{}', '', now(), 't', 1, :z, :z FROM rules"),
                {"z": "0" * 64})
            vid = conn.execute(text("SELECT id FROM rule_versions")).scalar_one()
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        zeros = ", ".join(["0"] * 17)
        old_writer = psycopg.connect(_libpq(postgres_url))  # a transaction, like the old insert path's
        old_writer.execute(f"INSERT INTO execution_rollups VALUES (%s, 1, %s, 1, '', 1, 0.1, 0, 0, {zeros})",
                           (vid, minute))
        upgrade = threading.Thread(target=migrations.upgrade, args=(engine,))
        upgrade.start()
        upgrade.join(timeout=1.5)
        assert upgrade.is_alive()  # waiting for the old writer's batch
        old_writer.commit()
        old_writer.close()
        upgrade.join(timeout=30)
        with engine.connect() as conn:
            through = rollup_job.watermark(conn)
        assert through is not None and through > minute
    finally:
        engine.dispose()


def test_an_empty_database_starts_the_watermark_at_the_current_minute(postgres_url: str) -> None:
    """Nothing is rolled up yet: the rows of this very minute are the job's, not late rows."""
    engine = create_store_engine(postgres_url)
    try:
        before = datetime.now(UTC).replace(second=0, microsecond=0)
        migrations.upgrade(engine)
        after = datetime.now(UTC).replace(second=0, microsecond=0)
        with engine.connect() as conn:
            assert before <= rollup_job.watermark(conn) <= after  # type: ignore[operator]
    finally:
        engine.dispose()


def test_a_writer_from_before_0009_is_refused_above_the_watermark_and_retries(
    pg: SqlStore, versions: list[RuleVersion]
) -> None:
    """Code that rolls up in its transaction without the lock (before 0009) would count rows above
    the watermark twice: the guard refuses them as transient; below the watermark they pass."""
    import psycopg

    from heurmetrics.errors import StoreUnavailable
    from heurmetrics.store.errors import translated

    zeros = ", ".join(["0"] * 17)
    old_upsert = (f"INSERT INTO execution_rollups VALUES (:v, 1, :b, 1, '', 1, 0.1, 0, 0, {zeros}) "
                  "ON CONFLICT (rule_version_id, mode, bucket_start, status, outcome) DO UPDATE "
                  "SET executions = execution_rollups.executions + 1")
    above, below = W0 + timedelta(minutes=3), W0 - timedelta(minutes=3)
    with (
        pytest.raises(StoreUnavailable, match="predates migration 0009"),
        translated("an old writer"),
        pg.engine.begin() as conn,
    ):
        conn.execute(text(old_upsert), {"v": versions[0].id, "b": above})
    with pg.engine.begin() as conn:  # a late row of an old writer: below the watermark, counted once
        conn.execute(text(old_upsert), {"v": versions[0].id, "b": below})
    assert _rolled_total(pg) == 1
    assert psycopg.errors.lookup("55000").__mro__[1].__name__ == "OperationalError"  # transient to old code


def test_the_sqlite_store_has_no_job(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    migrations.upgrade(engine)
    try:
        with engine.connect() as conn:
            assert rollup_job.watermark(conn) is None
        assert rollup_job.advance(engine, W0) is None
    finally:
        engine.dispose()


def test_db_rollup_moves_the_watermark_and_says_so(pg: SqlStore, versions: list[RuleVersion], sqlite_url: str) -> None:
    import json

    from typer.testing import CliRunner

    from heurmetrics.cli import app

    pg.insert_executions(_events(versions, [W0 + timedelta(minutes=2, seconds=5)]))
    url = pg.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    result = runner.invoke(app, ["db", "rollup", "--database-url", url, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert datetime.fromisoformat(answer["before"]) == W0
    through = datetime.fromisoformat(answer["through"])
    assert through == rollup_job.closed_until() or through == rollup_job.closed_until() - timedelta(minutes=1)
    assert _rolled_total(pg) == 1
    engine = create_store_engine(sqlite_url)
    migrations.upgrade(engine)
    engine.dispose()
    plain = runner.invoke(app, ["db", "rollup", "--database-url", sqlite_url])
    assert plain.exit_code == 0 and "no roll-up job" in plain.output


def test_retention_runs_the_job_up_to_the_partition_it_drops(pg: SqlStore, versions: list[RuleVersion]) -> None:
    """Rows of an old month still above the watermark: retention rolls them up first, then drops."""
    from heurmetrics.store import retention

    month = datetime(2024, 3, 1, tzinfo=UTC)
    _set_watermark(pg, month)  # nothing of March 2024 is rolled up yet
    times = [month + timedelta(days=d, minutes=m, seconds=3) for d in range(0, 28, 3) for m in (0, 61)]
    pg.insert_executions(_events(versions, times))
    assert _rolled_total(pg) == 0
    before = _raw_per_version(pg, month, month + timedelta(days=31))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    policy = retention.parse_policy(f"live={(now - datetime(2024, 4, 1, tzinfo=UTC)).days}d,"
                                    f"backtest={(now - datetime(2024, 4, 1, tzinfo=UTC)).days}d")
    [event] = retention.apply(pg.engine, policy, actor="ops", now=now)
    assert event.partition_name == "heuristic_executions_p2024_03" and event.row_count == len(times)
    assert event.counts == {str(v): n for v, n in before.items()}
    through = pg.maintenance.rollup_watermark()
    assert through is not None and through >= datetime(2024, 4, 1, tzinfo=UTC)
    assert _raw_per_version(pg, month, month + timedelta(days=31)) == {}  # dropped
    with pg.engine.connect() as conn:  # the counts survive in the rollups
        assert rollups.counts_per_version(conn, month, datetime(2024, 4, 1, tzinfo=UTC), rollups_only=True) == before
