"""Exact rollups of executions per minute, hour and day: how they are written and read.

``execution_rollups`` (minute), ``execution_rollups_hour`` and ``execution_rollups_day`` each hold
one row per (rule version, bucket, mode, status, outcome) with the execution count, the duration
sum, the cumulative duration-histogram counts (the Prometheus histogram's bounds,
:data:`heurmetrics.buckets.EXECUTION_DURATION_BUCKETS`) and the confidence count and
sum. A range is answered from whole UTC days, whole hours inside it and minutes at its edges
(:func:`segments`; on PostgreSQL also the SQL function ``execution_rollups_between``), so its cost
follows days + 46 hours + 118 minutes at most, not the number of minutes.

**Who writes them.** On PostgreSQL the roll-up job (:mod:`heurmetrics.store.rollup_job`) adds
every closed minute once (:func:`stage_from_raw`, :func:`apply_stage`) and moves a watermark;
a writer adds, in its own transaction, only its rows below that watermark (late rows), and on
SQLite all of its rows (:func:`aggregate`, :func:`write`). Either way a re-sent event is neither
inserted nor counted again: the insert path knows exactly which events were new.

**How reads stay exact.** Rollup rows hold only minutes below the watermark; the readers here
add the raw rows at or above it in the same statement (one snapshot), so a count never misses
or doubles a row while the job runs. The minute of an execution comes from the same microsecond
timestamp the raw row stores, so a raw row and its rollup row always agree on the bucket (and on
the partition).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, union_all
from sqlalchemy.engine import Connection

from heurmetrics.buckets import EXECUTION_DURATION_BUCKETS
from heurmetrics.domain import ExecutionEvent
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.schema import (
    ROLLUP_BUCKET_COLUMNS,
    ROLLUP_LEVELS,
    ExecutionRollupDayRow,
    ExecutionRollupHourRow,
    ExecutionRollupRow,
    ExecutionRow,
    RollupWatermarkRow,
)

TABLE = "execution_rollups"
#: Table of each level (the minute level keeps its historical name).
LEVEL_TABLES: dict[str, str] = {name: table for name, table, _ in ROLLUP_LEVELS}
LEVEL_SECONDS: dict[str, int] = {name: width for name, _, width in ROLLUP_LEVELS}
_LEVEL_ROWS: dict[str, Any] = {
    "minute": ExecutionRollupRow, "hour": ExecutionRollupHourRow, "day": ExecutionRollupDayRow,
}
KEY_COLUMNS = ("rule_version_id", "mode", "bucket_start", "status", "outcome")
VALUE_COLUMNS = ("executions", "duration_sum", "confidence_count", "confidence_sum", *ROLLUP_BUCKET_COLUMNS)
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
#: ``outcome`` of an execution without one (label values are never empty, so no clash).
NO_OUTCOME = ""
_BOUNDS = EXECUTION_DURATION_BUCKETS
_N = len(_BOUNDS)
#: The roll-up job's watermark as a scalar subquery: raw rows at or above it are in no rollup row
#: yet (``NULL``, where no job runs, matches no row). See :mod:`heurmetrics.store.rollup_job`.
_WATERMARK = select(RollupWatermarkRow.through).scalar_subquery()

Key = tuple[int, int, int, int, str]  # (rule_version_id, mode, minute, status, outcome)


def aggregate(events: Iterable[ExecutionEvent]) -> dict[Key, list[Any]]:
    """Aggregate events into minute rollup increments (a writer's late rows; every row on SQLite).

    Values per key: [executions, duration_sum, confidence_count, confidence_sum, per-bucket
    counts (not cumulative; the last one counts durations above every bound)].
    """
    acc: dict[Key, list[Any]] = {}
    statuses, modes, bounds, get = STATUS_CODES, MODE_CODES, _BOUNDS, acc.get
    for e in events:
        x = e.started_at
        minute = int(x) // 60 * 60
        # The minute of the float start time, unless it is within a microsecond of the next minute:
        # then the stored (rounded) datetime decides, exactly as the raw row will say.
        if x - minute > 59.999998:
            minute = int(datetime.fromtimestamp(x, UTC).timestamp()) // 60 * 60
        key = (e.rule_version.id, modes[e.mode], minute, statuses[e.status], e.outcome or NO_OUTCOME)
        row = get(key)
        if row is None:
            row = acc[key] = [0, 0.0, 0, 0.0] + [0] * (_N + 1)
        d = e.duration_seconds
        row[0] += 1
        row[1] += d
        c = e.confidence
        if c is not None:
            row[2] += 1
            row[3] += c
        row[4 + bisect_left(bounds, d)] += 1
    return acc


def rows(acc: dict[Key, list[Any]], *, sqlite: bool = False) -> list[tuple[Any, ...]]:
    """Upsert parameters in :data:`COLUMNS` order, sorted by key (a fixed lock order: no deadlocks)."""
    out = []
    for key in sorted(acc):
        rv, mode, minute, status, outcome = key
        values = acc[key]
        cumulative, running = [], 0
        for count in values[4 : 4 + _N]:
            running += count
            cumulative.append(running)
        bucket = datetime.fromtimestamp(minute, UTC)
        stamp: Any = bucket.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else bucket
        out.append((rv, mode, stamp, status, outcome, values[0], values[1], values[2], values[3], *cumulative))
    return out


def coarsen(acc: dict[Key, list[Any]], seconds: int) -> dict[Key, list[Any]]:
    """Minute aggregates summed into buckets of ``seconds`` (3600: hours, 86400: UTC days)."""
    out: dict[Key, list[Any]] = {}
    for (rv, mode, minute, status, outcome), values in acc.items():
        key = (rv, mode, minute // seconds * seconds, status, outcome)
        row = out.get(key)
        if row is None:
            out[key] = list(values)
        else:
            for i, v in enumerate(values):
                row[i] += v
    return out


def upsert_sql(placeholder: str, table: str = TABLE) -> str:
    """``INSERT … ON CONFLICT DO UPDATE`` adding the increments, one row per execution (SQLite)."""
    return (
        f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join([placeholder] * len(COLUMNS))}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {_increments(table)}"
    )


def _increments(table: str) -> str:
    return ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in VALUE_COLUMNS)


#: PostgreSQL type of each of :data:`COLUMNS` (binary COPY into the staging table).
_PG_TYPES = ("int4", "int2", "timestamptz", "int2", "text", "int4", "float8", "int4", "float8",
             *(["int4"] * len(ROLLUP_BUCKET_COLUMNS)))  # fmt: skip
#: Per-connection staging table of a batch's minute increments (PostgreSQL); emptied at commit.
STAGE = "_hm_stage_rollups"


def write(cursor: Any, acc: dict[Key, list[Any]], *, sqlite: bool = False) -> None:
    """Upsert minute aggregates ``acc`` into every level, on the caller's cursor (its transaction).

    Levels are written finest first, each in key order: concurrent writers take row locks in the
    same order, so they never deadlock.

    On PostgreSQL the minute increments go in by binary COPY into a staging table, and one
    ``INSERT … SELECT … ON CONFLICT`` per level adds them (the hour and day levels summed there
    by :func:`coarsen_select`): four statements for any number of rollup rows. With mixed labels a
    batch of 1,000 touches hundreds of rollup rows; a prepared statement run once per row cost
    the driver and the server more than the raw rows' COPY (``docs/benchmarks.md``, issue 10).
    """
    if not acc:
        return
    if sqlite:
        for _, table, seconds in ROLLUP_LEVELS:
            params = rows(acc if seconds == 60 else coarsen(acc, seconds), sqlite=True)
            cursor.executemany(upsert_sql("?", table), params)
        return
    _create_stage(cursor)
    with cursor.copy(f"COPY {STAGE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_PG_TYPES)
        for row in rows(acc):
            copy.write_row(row)
    apply_stage(cursor)


def stage_from_raw(cursor: Any, start: datetime, end: datetime) -> None:
    """Stage the minute aggregates of the raw rows with ``start <= started_at < end`` (PostgreSQL).

    With :func:`apply_stage`, the roll-up job's work for a closed range. (One statement with
    data-modifying CTEs for the three levels measured no faster: 143 against 132 ms for a minute of
    120,000 rows over 200 versions.)
    """
    _create_stage(cursor)
    select = rebuild_select("heuristic_executions", where="WHERE started_at >= %s AND started_at < %s")
    cursor.execute(f"INSERT INTO {STAGE} ({', '.join(COLUMNS)}) {select}", (start, end))


def apply_stage(cursor: Any) -> None:
    """Add the staged minute increments to every level (hour and day summed by :func:`coarsen_select`)."""
    columns = ", ".join(COLUMNS)
    # Byte order of the outcome (COLLATE "C"): the order Python's sort gave before, whatever the
    # database's collation, so writers of either version lock rows in one order.
    order = 'ORDER BY rule_version_id, mode, 3, status, outcome COLLATE "C"'
    with cursor.connection.pipeline():
        for level, table, _ in ROLLUP_LEVELS:
            select = f"SELECT {columns} FROM {STAGE}" if level == "minute" else coarsen_select(level, source=STAGE)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) {select} {order} "
                f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {_increments(table)}"
            )
        cursor.execute(f"DELETE FROM {STAGE}")  # the same transaction may write again


def _create_stage(cursor: Any) -> None:
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")


def coarsen_select(level: str, *, sqlite: bool = False, where: str = "", source: str = TABLE) -> str:
    """``SELECT`` computing ``level`` rows (hour or day) from minute rows of ``source`` (the minute
    rollups: migration, bulk loads; a batch's staged increments: :func:`write`)."""
    if sqlite:
        bucket = ("substr(bucket_start, 1, 13) || ':00:00.000000'" if level == "hour"
                  else "substr(bucket_start, 1, 10) || ' 00:00:00.000000'")
    else:
        bucket = f"date_trunc('{level}', bucket_start, 'UTC')"
    sums = ", ".join(f"sum({c})" for c in VALUE_COLUMNS)
    return (
        f"SELECT rule_version_id, mode, {bucket}, status, outcome, {sums} FROM {source} {where} "
        f"GROUP BY rule_version_id, mode, {bucket}, status, outcome"
    )


def rebuild_select(source: str, *, sqlite: bool = False, where: str = "") -> str:
    """``SELECT`` computing rollup rows from raw rows of ``source`` (the roll-up job, migrations,
    verification)."""
    minute = "substr(started_at, 1, 17) || '00.000000'" if sqlite else "date_trunc('minute', started_at, 'UTC')"
    # FILTER counts without adding zeros: ~7 % less of the job's aggregation on PostgreSQL.
    count = (
        "sum(CASE WHEN duration_seconds <= {} THEN 1 ELSE 0 END)" if sqlite
        else "count(*) FILTER (WHERE duration_seconds <= {})"
    )  # fmt: skip
    buckets = ", ".join(count.format(repr(b)) for b in EXECUTION_DURATION_BUCKETS)
    return (
        f"SELECT rule_version_id, mode, {minute}, status, coalesce(outcome, ''), count(*), sum(duration_seconds), "
        f"count(confidence), coalesce(sum(confidence), 0), {buckets} FROM {source} {where} "
        f"GROUP BY rule_version_id, {minute}, mode, status, coalesce(outcome, '')"
    )


# --- reading -----------------------------------------------------------------------------------
def _floor(t: datetime, seconds: int) -> datetime:
    # A naive datetime is UTC here (the store's convention), never the machine's local time.
    stamp = (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()
    return datetime.fromtimestamp(stamp // seconds * seconds, UTC)


def _ceil(t: datetime, seconds: int) -> datetime:
    floor = _floor(t, seconds)
    aware = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return floor if floor == aware else floor + timedelta(seconds=seconds)


def _ceil_minute(t: datetime) -> datetime:
    return _ceil(t, 60)


Segment = tuple[str, datetime | None, datetime | None]  # (level, lo, hi): bucket_start in [lo, hi)


def segments(lo: datetime | None, hi: datetime | None) -> list[Segment]:
    """Split the minutes ``m`` with ``lo <= m < hi`` into whole days, whole hours and minutes.

    Same split as the SQL function ``execution_rollups_between``: days ``[dlo, dhi)``, hours
    ``[hlo, dlo)`` and ``[dhi, hhi)``, minutes ``[a, hlo)`` and ``[hhi, b)``, where ``a``/``b``
    are ``lo``/``hi`` rounded up to a minute. Every minute of the range lies in exactly one
    segment; ``None`` is an open end (read from the day level). Empty segments are left out.
    """
    a = None if lo is None else _ceil(lo, 60)
    b = None if hi is None else _ceil(hi, 60)
    if a is not None and b is not None and a >= b:
        return []
    hl = None if a is None else _ceil(a, 3600)
    hh = None if b is None else _floor(b, 3600)
    if hl is not None and hh is not None and hl >= hh:
        return [("minute", a, b)]
    dl = None if a is None else _ceil(a, 86400)
    dh = None if b is None else _floor(b, 86400)
    if dl is not None and dh is not None and dl >= dh:
        parts: list[Segment] = [("minute", a, hl), ("hour", hl, hh), ("minute", hh, b)]
    else:
        parts = [("minute", a, hl), ("hour", hl, dl), ("day", dl, dh), ("hour", dh, hh), ("minute", hh, b)]
    # An open end has no edge: its neighbour segment reaches to it.
    return [(level, s, e) for level, s, e in parts if not (s is not None and e is not None and s >= e)
            and not (level != "day" and (s is None or e is None))]


def count_executions(
    conn: Connection,
    version_id: int | None,
    start: datetime | None,
    end: datetime | None,
    *,
    mode: str | None = None,
) -> Counter[tuple[int, str, str, str | None]]:
    """Exact execution counts by (rule_version_id, mode, status, outcome) in ``[start, end)``.

    Whole days, hours and minutes come from the rollup levels (:func:`segments`: cheap over any
    range, and still there after retention); the partial minutes at either edge of an unaligned
    range come from raw rows.
    """
    e = ExecutionRow
    # Naive times are UTC (as in :func:`segments`): one convention for every comparison below.
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    inner_start = None if start is None else _ceil_minute(start)
    inner_end = None if end is None else end.replace(second=0, microsecond=0)
    parts: list[Any] = []
    if inner_start is None or inner_end is None or inner_start < inner_end:
        for level, lo, hi in segments(inner_start, inner_end):
            r = _LEVEL_ROWS[level]
            part = select(r.rule_version_id, r.mode, r.status, r.outcome, r.executions.label("n"))
            parts.append(_where(part, r, r.bucket_start, version_id, lo, hi, mode))
        # Minutes at or above the roll-up watermark are in no rollup row yet: read raw (in the
        # same statement as the rollups, so a job moving the watermark meanwhile changes nothing).
        tail = select(e.rule_version_id, e.mode, e.status, e.outcome, func.count().label("n")).where(
            e.started_at >= _WATERMARK
        )
        tail = tail.group_by(e.rule_version_id, e.mode, e.status, e.outcome)
        parts.append(_where(tail, e, e.started_at, version_id, inner_start, inner_end, mode))
        edges = [(start, inner_start), (inner_end, end)]
    else:  # the whole range lies inside one minute
        edges = [(start, end)]
    for lo, hi in edges:
        if lo is None or hi is None or lo >= hi:
            continue
        raw = select(e.rule_version_id, e.mode, e.status, e.outcome, func.count().label("n")).group_by(
            e.rule_version_id, e.mode, e.status, e.outcome
        )
        parts.append(_where(raw, e, e.started_at, version_id, lo, hi, mode))
    out: Counter[tuple[int, str, str, str | None]] = Counter()
    if not parts:
        return out
    # One statement (one round trip) for every level and both raw edges.
    u = union_all(*parts).subquery()
    query = select(u.c.rule_version_id, u.c.mode, u.c.status, u.c.outcome, func.sum(u.c.n)).group_by(
        u.c.rule_version_id, u.c.mode, u.c.status, u.c.outcome
    )
    for vid, m, s, o, n in conn.execute(query):
        out[(int(vid), m, s, o or None)] += int(n)
    return out


def counts_per_version(conn: Connection, start: datetime, end: datetime, *, rollups_only: bool = False
                       ) -> dict[int, int]:  # fmt: skip
    """Executions per rule version with ``start <= started_at < end``.

    ``start`` and ``end`` must be minute-aligned (partition bounds are). Reads days, hours and
    minutes (:func:`segments`: for a month, ~30 day rows per (version, mode, status, outcome))
    and, unless ``rollups_only``, the raw rows at or above the roll-up watermark, in one
    statement. ``rollups_only`` is what survives retention: its coverage check compares it with
    the raw rows of a partition wholly below the watermark. ``db partitions`` counts both.
    """
    if start != _floor(start, 60) or end != _floor(end, 60):
        raise ValueError("counts_per_version needs minute-aligned bounds")
    parts: list[Any] = []
    for level, lo, hi in segments(start, end):
        r = _LEVEL_ROWS[level]
        query = select(r.rule_version_id, r.executions.label("n"))
        parts.append(query.where(r.bucket_start >= lo, r.bucket_start < hi))
    if not rollups_only:
        e = ExecutionRow
        tail = select(e.rule_version_id, func.count().label("n")).group_by(e.rule_version_id)
        parts.append(tail.where(e.started_at >= _WATERMARK, e.started_at >= start, e.started_at < end))
    u = union_all(*parts).subquery()
    query = select(u.c.rule_version_id, func.sum(u.c.n)).group_by(u.c.rule_version_id)
    return {int(vid): int(n) for vid, n in conn.execute(query) if n}


def _where(query: Any, row: Any, time: Any, version_id: int | None, lo: datetime | None, hi: datetime | None,
           mode: str | None) -> Any:
    if version_id is not None:
        query = query.where(row.rule_version_id == version_id)
    if lo is not None:
        query = query.where(time >= lo)
    if hi is not None:
        query = query.where(time < hi)
    # Naming the mode(s) lets a per-version range use the rollups' key (version, mode, minute).
    query = query.where(row.mode.in_(tuple(MODE_CODES) if mode is None else (mode,)))
    return query


def rolled_up_ranges(conn: Connection, start: datetime | None, end: datetime | None) -> list[tuple[datetime, datetime]]:
    """Ranges inside [start, end) whose raw executions retention dropped (only rollups remain)."""
    rows = conn.execute(
        text("SELECT range_start, range_end FROM retention_events ORDER BY range_start")
    ).all()
    out = []
    for s, e in rows:
        s = s if isinstance(s, datetime) else datetime.fromisoformat(s)
        e = e if isinstance(e, datetime) else datetime.fromisoformat(e)
        s, e = s.replace(tzinfo=s.tzinfo or UTC), e.replace(tzinfo=e.tzinfo or UTC)
        if (end is None or s < end) and (start is None or e > start):
            out.append((s, e))
    return out
