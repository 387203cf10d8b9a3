"""Time partitions of ``heuristic_executions`` on PostgreSQL: naming, creation ahead, on demand, listing.

The table is ``PARTITION BY RANGE (started_at)``. Each partition covers one month (default) or one
day (``HEURMETRICS_PARTITION_INTERVAL=daily``) in UTC and is named like pg_partman's
``<table>_p<start>``: ``heuristic_executions_p2026_01`` or ``heuristic_executions_p2026_01_15``.
Both sizes can coexist (a range already covered is never created again).

No execution is lost or refused for want of a partition:

1. ``heurmetrics serve`` and the SDK writer create the current and the next ``AHEAD`` partitions
   on start (:func:`ensure_ahead`), and so does ``heurmetrics db partitions --create``;
2. the insert path creates, before its transaction, any partition its batch needs
   (:class:`PartitionCache`), so a backfill of last year lands in last year's partition;
3. ``heuristic_executions_default`` catches anything else (e.g. the creation lost a lock race
   after its timeout); ``db partitions`` reports rows found there.

Every partition gets the table's ``BEFORE TRUNCATE`` trigger (statement triggers are not
inherited); the row-level UPDATE/DELETE trigger of the parent is cloned onto it by PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from heurmetrics.store import rollups

log = logging.getLogger(__name__)

TABLE = "heuristic_executions"
DEFAULT_PARTITION = f"{TABLE}_default"
#: Partitions created ahead of the current one.
AHEAD = 2
#: Partitions one batch may create on demand (the default partition takes rows beyond them).
MAX_CREATED_PER_BATCH = 4
Interval = Literal["monthly", "daily"]
INTERVALS: tuple[Interval, ...] = ("monthly", "daily")
# A partition created on demand must not wait behind a long reader forever.
_DDL_LOCK_TIMEOUT = "5s"


def configured_interval() -> Interval:
    """``HEURMETRICS_PARTITION_INTERVAL`` (``monthly`` by default, or ``daily``)."""
    value = os.environ.get("HEURMETRICS_PARTITION_INTERVAL", "monthly").strip().lower()
    if value not in INTERVALS:
        raise ValueError(f"HEURMETRICS_PARTITION_INTERVAL={value!r}: expected one of {', '.join(INTERVALS)}")
    return value


def bounds(t: datetime, interval: Interval) -> tuple[datetime, datetime]:
    """The [start, end) range of the partition of ``interval`` that contains ``t`` (UTC)."""
    t = t.astimezone(UTC)
    if interval == "daily":
        start = datetime(t.year, t.month, t.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    start = datetime(t.year, t.month, 1, tzinfo=UTC)
    end = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def partition_name(start: datetime, interval: Interval) -> str:
    suffix = start.strftime("%Y_%m_%d" if interval == "daily" else "%Y_%m")
    return f"{TABLE}_p{suffix}"


def create_partition_sql(start: datetime, end: datetime, interval: Interval) -> list[str]:
    """DDL of one partition and its TRUNCATE guard (idempotent)."""
    name = partition_name(start, interval)
    return [
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {TABLE} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')",
        f"CREATE OR REPLACE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
        "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()",
        # Keys arrive in time order, so leaves split at the right edge: fill them completely
        # (PostgreSQL does not copy an index's storage parameters onto a new partition's index).
        f"ALTER INDEX {name}_pkey SET (fillfactor = 100)",
    ]


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    #: None for the default partition.
    start: datetime | None
    end: datetime | None
    rows: int
    bytes: int


def _ranges(conn: Connection) -> list[tuple[str, datetime | None, datetime | None]]:
    """(name, start, end) of every partition, oldest first, the default partition last."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:t AS regclass)"
        ),
        {"t": TABLE},
    ).all()
    out: list[tuple[str, datetime | None, datetime | None]] = []
    for name, bound in rows:
        if bound == "DEFAULT":
            out.append((name, None, None))
            continue
        # "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')"
        parts = bound.split("'")
        out.append((name, _parse(parts[1]), _parse(parts[3])))
    return sorted(out, key=lambda r: (r[1] is None, r[1] or datetime.min.replace(tzinfo=UTC)))


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value if len(value) > 22 else value + ":00")
    return parsed.astimezone(UTC)


def covered_ranges(conn: Connection) -> list[tuple[datetime, datetime]]:
    return [(s, e) for _, s, e in _ranges(conn) if s is not None and e is not None]


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": TABLE}).scalar()
    return kind == "p"


def create_ranges(
    engine: Engine, start: datetime, end: datetime, interval: Interval | None = None
) -> list[str]:
    """Create every partition of ``interval`` needed to cover [start, end); returns the names created.

    A range overlapping an existing partition (another size, or a concurrent creator) is skipped.
    Runs in its own short transactions with a lock timeout, never inside a caller's transaction.
    """
    interval = interval or configured_interval()
    created: list[str] = []
    t = start
    while t < end:
        lo, hi = bounds(t, interval)
        t = hi
        with engine.begin() as conn:
            if not is_partitioned(conn):
                return created
            if any(s < hi and lo < e for s, e in covered_ranges(conn)):
                continue
            conn.execute(text(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'"))
            for statement in create_partition_sql(lo, hi, interval):
                conn.execute(text(statement))
            created.append(partition_name(lo, interval))
    return created


def ensure_ahead(engine: Engine, *, ahead: int = AHEAD, now: datetime | None = None,
                 interval: Interval | None = None) -> list[str]:
    """Create the current partition and the next ``ahead`` ones (no-op on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    interval = interval or configured_interval()
    now = now or datetime.now(UTC)
    start, end = bounds(now, interval)
    for _ in range(ahead):
        end = bounds(end, interval)[1]
    return create_ranges(engine, start, end, interval)


def list_partitions(engine: Engine) -> list[Partition]:
    """Every partition with its size (heap + indexes + TOAST) and exact row count.

    Row counts of range partitions come from the rollups (exact by construction and far cheaper
    than counting millions of rows; read from the day level); the default partition is counted
    directly.
    """
    with engine.connect() as conn:
        out = []
        for name, start, end in _ranges(conn):
            size = int(
                conn.execute(text("SELECT pg_total_relation_size(CAST(:n AS regclass))"), {"n": name}).scalar_one()
            )
            if start is None:
                rows = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            else:  # day rows for whole days (partition bounds are UTC days): ~30 per key and month
                rows = sum(rollups.counts_per_version(conn, start, end or start).values())
            out.append(Partition(name, start, end, rows, size))
    return out


class PartitionCache:
    """Creates partitions on demand for the insert path, remembering which ranges exist.

    Before each batch's transaction the insert path asks :meth:`covers` for the batch's earliest
    and latest ``started_at`` (the common case: both in one known partition), and otherwise
    :meth:`ensure` for the batch's start times.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ranges: list[tuple[datetime, datetime]] | None = None
        self._lock = threading.Lock()

    def _covered(self, t: datetime) -> bool:
        return any(s <= t < e for s, e in self._ranges or ())

    def refresh(self) -> None:
        """Read the existing ranges (called after partitions are created ahead, on start)."""
        with self._lock, self.engine.connect() as conn:
            self._ranges = covered_ranges(conn)

    def covers(self, earliest: datetime, latest: datetime) -> bool:
        """True when one known partition holds the whole span (the common case: two comparisons)."""
        return any(s <= earliest and latest < e for s, e in self._ranges or ())

    def ensure(self, times: Iterable[datetime]) -> None:
        """Make sure the partitions holding ``times`` exist (creating at most
        :data:`MAX_CREATED_PER_BATCH`; the default partition takes the rest, nothing is refused)."""
        missing = sorted({t for t in times if not (self._ranges is not None and self._covered(t))})
        if not missing:
            return
        with self._lock:
            with self.engine.connect() as conn:
                self._ranges = covered_ranges(conn)
            interval = configured_interval()
            # Only the partitions that hold this batch's own rows, never the span between them: an
            # execution from years ago must not make one batch run hundreds of DDL transactions.
            starts = sorted({bounds(t, interval)[0] for t in missing if not self._covered(t)})
            for lo in starts[:MAX_CREATED_PER_BATCH]:
                try:
                    create_ranges(self.engine, lo, bounds(lo, interval)[1], interval)
                except Exception as exc:
                    log.warning("creating the partition for %s failed (%s): its rows go to %s",
                                lo.isoformat(), exc, DEFAULT_PARTITION)
            if starts:
                with self.engine.connect() as conn:
                    self._ranges = covered_ranges(conn)


def include_name(name: str | None, type_: str, _parent: object = None) -> bool:
    """Alembic ``include_name`` hook: partitions are managed here, not by autogenerate."""
    return not ((type_ == "table" and name is not None and name.startswith(f"{TABLE}_p")) or name == DEFAULT_PARTITION)
