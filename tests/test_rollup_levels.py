"""Multi-level rollups (minute, hour, day) answer any range exactly, retries included (issue 10).

Real SQLite and PostgreSQL. Ranges cut through days, hours and minutes; every answer is compared
with counts of the raw rows themselves.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.metrics.definitions import EXECUTION_MODES, EXECUTION_STATUSES
from heurmetrics.store import migrations, rollups
from heurmetrics.store.codes import MODE_NAMES, STATUS_NAMES
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.sql_store import SqlStore

T0 = datetime(2025, 3, 30, 21, 47, 13, tzinfo=UTC)  # not aligned to anything
SPAN = timedelta(days=3, hours=5)


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _ranges(rng: random.Random, n: int) -> list[tuple[datetime, datetime]]:
    """Ranges with random second/microsecond edges: inside a minute, an hour, a day, across days."""
    out = []
    for k in range(n):
        lo = T0 - timedelta(hours=2) + timedelta(seconds=rng.uniform(0, SPAN.total_seconds()))
        scale = [(0, 50), (60, 3000), (3600, 80000), (86400, 300000)][k % 4]
        length = rng.uniform(*scale)
        out.append((lo, lo + timedelta(seconds=length)))
    # Aligned edges too (midnight to midnight, hour to hour, minute to minute) and an empty range.
    day = datetime(2025, 3, 31, tzinfo=UTC)
    out += [(day, day + timedelta(days=1)), (day + timedelta(hours=3), day + timedelta(hours=30)),
            (day + timedelta(minutes=7), day + timedelta(hours=1, minutes=2)), (day, day)]
    return out


def test_segments_cover_every_minute_exactly_once() -> None:
    rng = random.Random(7)
    for lo, hi in _ranges(rng, 120):
        if hi - lo > timedelta(days=2):
            hi = lo + timedelta(days=2)  # keep the minute enumeration small
        parts = rollups.segments(lo, hi)
        covered: Counter[datetime] = Counter()
        for level, s, e in parts:
            width = timedelta(seconds=rollups.LEVEL_SECONDS[level])
            assert s is not None and e is not None and s < e
            assert s.timestamp() % width.total_seconds() == 0 == e.timestamp() % width.total_seconds(), (level, s, e)
            t = s
            while t < e:
                covered[t] += 1
                t += timedelta(minutes=1)
        expected, t = set(), _minute(lo) + (timedelta(minutes=1) if _minute(lo) < lo else timedelta(0))
        while t < hi:
            expected.add(t)
            t += timedelta(minutes=1)
        assert set(covered) == expected and set(covered.values()) <= {1}, (lo, hi)
    day = datetime(2025, 3, 31, tzinfo=UTC)
    assert rollups.segments(day, day + timedelta(days=2)) == [("day", day, day + timedelta(days=2))]
    # Open ends read the day level up to (or from) the first whole day.
    assert rollups.segments(None, day + timedelta(hours=1)) == [
        ("day", None, day), ("hour", day, day + timedelta(hours=1))
    ]
    assert rollups.segments(None, None) == [("day", None, None)]
    assert rollups.segments(day, day - timedelta(minutes=1)) == []
    # Naive times are UTC (the store's convention), whatever the machine's time zone.
    naive = datetime(2025, 3, 31, 5, 17, 30)
    assert rollups.segments(naive, naive + timedelta(days=2)) == rollups.segments(
        naive.replace(tzinfo=UTC), naive.replace(tzinfo=UTC) + timedelta(days=2)
    )


def _events(rvs: list[RuleVersion], n: int, seed: int) -> list[ExecutionEvent]:
    rng = random.Random(seed)
    return [
        ExecutionEvent(
            uuid.uuid4(), rvs[i % len(rvs)], (T0 + timedelta(seconds=rng.uniform(0, SPAN.total_seconds()))).timestamp(),
            rng.choice([0.00005, 0.003, 0.3, 42.0]), rng.choice(EXECUTION_STATUSES),
            rng.choice([None, "bullish", "bearish"]), 1.0, rng.choice([None, 0.5]), rng.choice(EXECUTION_MODES),
        )
        for i in range(n)
    ]


@pytest.fixture
def loaded(store: SqlStore) -> Iterator[tuple[SqlStore, list[RuleVersion]]]:
    """900 executions over 3 days and 5 hours, inserted in batches, half of them re-sent."""
    rvs = [store.register_rule_version("range_bias", f"2.{i}.0", params={"i": i}, source="s", created_by="t")[0]
           for i in range(3)]
    events = _events(rvs, 900, seed=3)
    for k in range(0, 900, 150):
        store.insert_executions(events[k : k + 150])
    # Retries: whole batches again, and overlapping slices mixed with a few new events.
    assert store.insert_executions(events[:150]) == set()
    fresh = _events(rvs, 12, seed=4)
    assert store.insert_executions([*events[140:460], *fresh]) == {e.event_id for e in fresh}
    yield store, rvs


Counts = Counter[tuple[int, str, str, str | None]]


def _raw(store: SqlStore, lo: datetime, hi: datetime, vid: int | None = None) -> Counts:
    out: Counts = Counter()
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT rule_version_id, mode, status, outcome, count(*) FROM heuristic_executions "
                 "WHERE started_at >= :lo AND started_at < :hi GROUP BY 1, 2, 3, 4"),
            {"lo": _param(store, lo), "hi": _param(store, hi)},
        )
        for v, m, s, o, n in rows:
            if vid is None or int(v) == vid:
                out[(int(v), MODE_NAMES[int(m)], STATUS_NAMES[int(s)], o)] += int(n)
    return out


def _param(store: SqlStore, t: datetime) -> object:
    return t.replace(tzinfo=None).isoformat(" ", "microseconds") if store.dialect == "sqlite" else t


def test_levels_answer_any_range_exactly_after_retries(loaded: tuple[SqlStore, list[RuleVersion]]) -> None:
    store, rvs = loaded
    rng = random.Random(11)
    with store.engine.connect() as conn:
        for lo, hi in _ranges(rng, 40):
            assert rollups.count_executions(conn, None, lo, hi) == _raw(store, lo, hi), (lo, hi)
            vid = rvs[1].id
            assert rollups.count_executions(conn, vid, lo, hi) == _raw(store, lo, hi, vid), (lo, hi)
        everything = rollups.count_executions(conn, None, None, None)
    assert sum(everything.values()) == 912 == sum(_raw(store, T0 - timedelta(days=1), T0 + SPAN * 2).values())


def test_every_level_holds_every_execution_once(loaded: tuple[SqlStore, list[RuleVersion]]) -> None:
    store, _ = loaded
    sums = {}
    with store.engine.connect() as conn:
        for level, table in rollups.LEVEL_TABLES.items():
            sums[level] = tuple(conn.execute(text(
                f"SELECT sum(executions), sum(confidence_count), sum(duration_le_0_005), count(*) FROM {table}"
            )).one())
    assert sums["minute"][:3] == sums["hour"][:3] == sums["day"][:3]
    assert sums["minute"][0] == 912
    # Coarser levels have fewer rows (the data spans 3 days: at most 4 day buckets per key).
    assert sums["minute"][3] > sums["hour"][3] > sums["day"][3]


def test_counts_per_version_reads_levels_and_refuses_unaligned_bounds(
    loaded: tuple[SqlStore, list[RuleVersion]],
) -> None:
    store, _ = loaded
    lo, hi = datetime(2025, 3, 31, 5, 17, tzinfo=UTC), datetime(2025, 4, 2, 1, 3, tzinfo=UTC)
    with store.engine.connect() as conn:
        per_version = rollups.counts_per_version(conn, lo, hi)
        with pytest.raises(ValueError, match="minute-aligned"):
            rollups.counts_per_version(conn, lo + timedelta(seconds=1), hi)
    raw: Counter[int] = Counter()
    for (v, *_), n in _raw(store, lo, hi).items():
        raw[v] += n
    assert per_version == dict(raw) and sum(raw.values()) > 0


def test_sql_function_equals_raw_counts_for_any_range(postgres_url: str) -> None:
    engine = create_store_engine(postgres_url)
    migrations.upgrade(engine)
    engine.dispose()
    store = SqlStore.open(postgres_url)
    try:
        rvs = [store.register_rule_version("range_bias", f"3.{i}.0", params={}, source="s", created_by="t")[0]
               for i in range(2)]
        events = _events(rvs, 600, seed=5)
        store.insert_executions(events[:400])
        store.insert_executions(events[300:])  # overlapping retry
        rng = random.Random(13)
        with store.engine.connect() as conn:
            for lo, hi in _ranges(rng, 40):
                got = Counter({
                    (int(v), MODE_NAMES[int(m)], STATUS_NAMES[int(s)], o or None): int(n)
                    for v, m, s, o, n in conn.execute(text(
                        "SELECT rule_version_id, mode, status, outcome, sum(executions) "
                        "FROM execution_rollups_between(:lo, :hi) GROUP BY 1, 2, 3, 4"), {"lo": lo, "hi": hi})
                })
                # The function answers whole minutes: those starting in [lo, hi).
                a = _minute(lo) + (timedelta(minutes=1) if _minute(lo) < lo else timedelta(0))
                b = _minute(hi) + (timedelta(minutes=1) if _minute(hi) < hi else timedelta(0))
                assert got == (_raw(store, a, b) if a < b else Counter()), (lo, hi)
                levels = {level for level, _, _ in rollups.segments(lo, hi)}
                if hi - lo > timedelta(days=2):
                    assert "day" in levels  # long ranges really read the day level
    finally:
        store.close()


def test_migration_0007_fills_hour_and_day_from_the_minutes(database_url: str) -> None:
    engine = create_store_engine(database_url)
    migrations.upgrade(engine, "0006")
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO rules (id, name, created_at) VALUES (1, 'r', '2025-01-01')"))
        conn.execute(text(
            "INSERT INTO rule_versions (id, rule_id, version, content_hash, params, source, created_at, created_by, "
            "chain_position, prev_hash, row_hash) VALUES (1, 1, '1', 'h', '{}', 's', '2025-01-01', 'b', 1, 'p', 'r')"
        ))
        names = ", ".join(rollups.COLUMNS)
        for k, t in enumerate(["2025-03-30 23:59:00", "2025-03-31 00:00:00", "2025-03-31 00:59:00",
                               "2025-03-31 01:00:00", "2025-03-31 01:01:00"]):
            stamp = f"'{t}.000000'" if sqlite else f"'{t}+00'"
            values = ", ".join(["1", "1", stamp, "1", "'x'", str(k + 1), "0.5", "1", "0.5", *["1"] * 17])
            conn.execute(text(f"INSERT INTO execution_rollups ({names}) VALUES ({values})"))
    migrations.upgrade(engine)
    with engine.connect() as conn:
        hours = sorted((str(b)[:13], int(n)) for b, n in conn.execute(text(
            "SELECT bucket_start, executions FROM execution_rollups_hour")))
        days = sorted((str(b)[:10], int(n)) for b, n in conn.execute(text(
            "SELECT bucket_start, executions FROM execution_rollups_day")))
    engine.dispose()
    assert hours == [("2025-03-30 23", 1), ("2025-03-31 00", 5), ("2025-03-31 01", 9)]
    assert days == [("2025-03-30", 1), ("2025-03-31", 14)]


def test_rollup_levels_refuse_delete(store: SqlStore) -> None:
    rv = store.register_rule_version("range_bias", "9.0.0", params={}, source="s", created_by="t")[0]
    store.insert_executions(_events([rv], 5, seed=1))  # SQLite's row triggers need a row to fire on
    for table in ("execution_rollups_hour", "execution_rollups_day"):
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))


def test_migration_and_schema_define_the_same_function() -> None:
    """``create_all`` (tests, fresh schemas) and the latest migration (0009) install the same SQL function."""
    import importlib.util
    from pathlib import Path

    from heurmetrics.store.schema import ROLLUP_GUARD, ROLLUPS_BETWEEN_FUNCTION

    path = Path(migrations.migrations_dir()) / "versions" / "0009_rollup_watermark.py"
    spec = importlib.util.spec_from_file_location("m0009", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert " ".join(module.FUNCTION.split()) == " ".join(ROLLUPS_BETWEEN_FUNCTION.split())
    assert " ".join(module.GUARD.split()) == " ".join(ROLLUP_GUARD.split())
