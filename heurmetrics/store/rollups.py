"""Exact per-minute rollups of executions, maintained in the transaction that inserts them.

``execution_rollups`` holds one row per (rule version, minute, mode, status, outcome) with the
execution count, the duration sum, the cumulative duration-histogram counts (the Prometheus
histogram's bounds, :data:`heurmetrics.metrics.definitions.EXECUTION_DURATION_BUCKETS`) and the
confidence count and sum.

**Why exact.** The insert path knows exactly which events were new (the ids the idempotent insert
returned). It aggregates *those* in Python and upserts the aggregates in the *same* transaction:
a batch commits raw rows and their rollup increments together or not at all, and a re-sent event
is neither inserted nor counted again. The minute comes from the same microsecond timestamp the
raw row stores, so a raw row and its rollup row always agree on the bucket (and on the partition).

The alternative, a roll-up job with a watermark, needs an insertion order the job can trust
(rows commit out of ``started_at`` order, so a time watermark skips late rows): an extra sequence
column on every row, which the leaner-rows goal cannot afford. ``docs/storage.md`` has both
measured.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from heurmetrics.buckets import EXECUTION_DURATION_BUCKETS
from heurmetrics.domain import ExecutionEvent
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.schema import ROLLUP_BUCKET_COLUMNS, ExecutionRollupRow, ExecutionRow

TABLE = "execution_rollups"
KEY_COLUMNS = ("rule_version_id", "mode", "bucket_start", "status", "outcome")
VALUE_COLUMNS = ("executions", "duration_sum", "confidence_count", "confidence_sum", *ROLLUP_BUCKET_COLUMNS)
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
#: ``outcome`` of an execution without one (label values are never empty, so no clash).
NO_OUTCOME = ""
_BOUNDS = EXECUTION_DURATION_BUCKETS
_N = len(_BOUNDS)

Key = tuple[int, int, int, int, str]  # (rule_version_id, mode, minute, status, outcome)


def aggregate(events: Iterable[ExecutionEvent], started: Iterable[datetime]) -> dict[Key, list[Any]]:
    """Aggregate events (with the stored ``started_at`` of each) into rollup increments.

    Values per key: [executions, duration_sum, confidence_count, confidence_sum, per-bucket
    counts (not cumulative; the last one counts durations above every bound)].
    """
    acc: dict[Key, list[Any]] = {}
    statuses, modes = STATUS_CODES, MODE_CODES
    for e, t in zip(events, started, strict=True):
        # The minute of the float start time, unless it is within a microsecond of the next minute:
        # then the stored (rounded) datetime decides, exactly as the raw row will say.
        x = e.started_at
        minute = int(x) // 60 * 60
        if x - minute > 59.999998:
            minute = int(t.timestamp()) // 60 * 60
        key = (e.rule_version.id, modes[e.mode], minute, statuses[e.status], e.outcome or NO_OUTCOME)
        row = acc.get(key)
        if row is None:
            row = acc[key] = [0, 0.0, 0, 0.0] + [0] * (_N + 1)
        row[0] += 1
        row[1] += e.duration_seconds
        if e.confidence is not None:
            row[2] += 1
            row[3] += e.confidence
        row[4 + bisect_left(_BOUNDS, e.duration_seconds)] += 1
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


def upsert_sql(placeholder: str) -> str:
    """``INSERT … ON CONFLICT DO UPDATE`` adding the increments (same text on PostgreSQL and SQLite)."""
    sets = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in VALUE_COLUMNS)
    return (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join([placeholder] * len(COLUMNS))}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {sets}"
    )


def rebuild_select(source: str, *, sqlite: bool = False, where: str = "") -> str:
    """``SELECT`` computing rollup rows from raw rows of ``source`` (migration and verification)."""
    minute = (
        "substr(started_at, 1, 17) || '00.000000'" if sqlite else "date_trunc('minute', started_at)"
    )
    buckets = ", ".join(
        f"sum(CASE WHEN duration_seconds <= {b!r} THEN 1 ELSE 0 END)" for b in EXECUTION_DURATION_BUCKETS
    )
    return (
        f"SELECT rule_version_id, mode, {minute}, status, coalesce(outcome, ''), count(*), sum(duration_seconds), "
        f"count(confidence), coalesce(sum(confidence), 0), {buckets} FROM {source} {where} "
        f"GROUP BY rule_version_id, {minute}, mode, status, coalesce(outcome, '')"
    )


# --- reading -----------------------------------------------------------------------------------
def _ceil_minute(t: datetime) -> datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + timedelta(minutes=1)


def count_executions(
    conn: Connection,
    version_id: int | None,
    start: datetime | None,
    end: datetime | None,
    *,
    mode: str | None = None,
) -> Counter[tuple[int, str, str, str | None]]:
    """Exact execution counts by (rule_version_id, mode, status, outcome) in ``[start, end)``.

    Whole minutes come from the rollups (cheap over any range, and still there after retention);
    the partial minutes at either edge of an unaligned range come from raw rows.
    """
    r, e = ExecutionRollupRow, ExecutionRow
    inner_start = None if start is None else _ceil_minute(start)
    inner_end = None if end is None else end.replace(second=0, microsecond=0)
    out: Counter[tuple[int, str, str, str | None]] = Counter()
    if inner_start is None or inner_end is None or inner_start < inner_end:
        query = select(r.rule_version_id, r.mode, r.status, r.outcome, func.sum(r.executions)).group_by(
            r.rule_version_id, r.mode, r.status, r.outcome
        )
        query = _where(query, r, r.bucket_start, version_id, inner_start, inner_end, mode)
        for vid, m, s, o, n in conn.execute(query):
            out[(int(vid), m, s, o or None)] += int(n)
        edges = [(start, inner_start), (inner_end, end)]
    else:  # the whole range lies inside one minute
        edges = [(start, end)]
    for lo, hi in edges:
        if lo is None or hi is None or lo >= hi:
            continue
        raw = select(e.rule_version_id, e.mode, e.status, e.outcome, func.count()).group_by(
            e.rule_version_id, e.mode, e.status, e.outcome
        )
        for vid, m, s, o, n in conn.execute(_where(raw, e, e.started_at, version_id, lo, hi, mode)):
            out[(int(vid), m, s, o)] += int(n)
    return out


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
