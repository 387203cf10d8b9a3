"""The roll-up job: adds each closed minute's raw executions to the rollups once, behind a watermark.

Why a job. Upserting a batch's rollup increments in its own transaction costs one rollup row
update per (rule version, mode, status, outcome) the batch touches, at three levels: with 200
versions and mixed labels, ~760 rows three times per batch of 1,000, which cut ingest to
0.28-0.35 times the raw insert (``bench_storage.py --section ingest --ingest-versions 200``). The
job aggregates a closed minute once, in SQL, whatever its label set: 0.84-0.93 times the raw
insert, the job's own work included.

Why exact (PostgreSQL). ``rollup_watermark.through`` splits time in two: every execution with
``started_at < through`` is in the rollups, none at or above it is.

- A writer takes :data:`ROLLUP_LOCK` *shared* for its transaction, then reads ``through`` (a
  second statement: its snapshot is taken after the lock is held). It rolls up its new rows below
  ``through`` (late rows, e.g. a spool replayed after an outage) in the same transaction, and
  leaves the rest to the job.
- The job takes :data:`ROLLUP_LOCK` *exclusive*: it waits until every writer that read the old
  watermark has committed or rolled back, and holds new writers back. It then aggregates the
  raw rows of ``[through, new)`` (its statement sees every committed row), adds them to every
  level, moves ``through`` to ``new`` and commits, releasing the writers, which read the new
  watermark.

Readers add the raw rows at or above ``through`` to the rollup rows in one statement (one
snapshot), so a count is exact at any moment; the rollup tables alone are exact below
``through``. ``through = NULL`` (SQLite, or a database without the job): writers roll up every
row in their transaction and the job does nothing.

Who runs it. Every PostgreSQL writer process (``heurmetrics serve``, the SDK's store writer)
runs it every :data:`INTERVAL` seconds in a background thread from its first committed batch
until it closes, one process at a time (:data:`JOB_LOCK`, tried without waiting);
``heurmetrics db rollup`` runs it on demand and retention before it checks coverage. A run
rolls up minutes that closed at least :data:`GRACE` ago, at most :data:`MAX_SPAN` per
transaction, so writers are held back for one short statement.

Upgrades. A writer still running code from before migration 0009 would roll up its rows in its
transaction whatever the watermark, and the job would count those above it a second time. The
guard trigger of 0009 refuses such rollup rows unless the transaction set
:data:`WRITER_SETTING`, which only this version's writers and job do: an old writer's batch fails
(and is retried or spooled) instead of being counted twice.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from heurmetrics.store import rollups
from heurmetrics.store.errors import translated
from heurmetrics.store.schema import ROLLUP_WRITER_SETTING

log = logging.getLogger("heurmetrics.store")

#: Advisory lock (64-bit key) between writers (shared) and the job (exclusive).
ROLLUP_LOCK = 0x686D_726F_6C6C_7570  # "hmrollup"
#: Set (``on``) by every transaction of this version that writes rollups: the guard trigger of
#: migration 0009 refuses rollup rows at or above the watermark from any other writer -- an
#: exporter or SDK process still running code from before 0009, which would count them twice.
WRITER_SETTING = ROLLUP_WRITER_SETTING
#: Advisory lock held by the one job run at a time (tried, never waited for).
JOB_LOCK = 0x686D_726F_6C6C_6A62  # "hmrolljb"
#: Seconds between a writer's job runs.
INTERVAL = 10.0
#: A minute is rolled up once it closed at least this long ago (rows still arriving for it are
#: late rows: exact too, but rolled up by their writer, which costs more).
GRACE = timedelta(seconds=60)
#: At most this much time per job transaction: writers wait for one such statement at most.
MAX_SPAN = timedelta(minutes=5)
#: How long the job waits for writers in flight before it gives up this run.
LOCK_TIMEOUT = "5s"


def watermark(conn: Connection) -> datetime | None:
    """``through``: every execution started before it is in the rollups (``None``: every execution)."""
    value = conn.execute(text("SELECT through FROM rollup_watermark")).scalar_one_or_none()
    return _aware(value)


def request_writer_watermark(cursor: Any) -> None:
    """Queue the writer's shared lock for this transaction and the read of ``through`` on a
    PostgreSQL cursor (in a pipeline, with the writer's other first statements: one round trip);
    :func:`fetch_watermark` reads the answer.

    Two statements on purpose: in a READ COMMITTED transaction (the writer begins one
    explicitly) the second one's snapshot is taken after the lock is held, so it sees the
    watermark of any job that committed while this writer waited.
    """
    cursor.execute(f"SET LOCAL {WRITER_SETTING} = 'on'")
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", (ROLLUP_LOCK,))
    cursor.execute("SELECT through FROM rollup_watermark")


def fetch_watermark(cursor: Any) -> datetime | None:
    """The ``through`` read by :func:`request_writer_watermark` on ``cursor``."""
    row = cursor.fetchone()
    return None if row is None else _aware(row[0])


def closed_until(now: datetime | None = None) -> datetime:
    """The end of the minutes a run may roll up: those that closed at least :data:`GRACE` ago."""
    now = datetime.now(UTC) if now is None else now
    return (now - GRACE).replace(second=0, microsecond=0)


def advance(
    engine: Engine, until: datetime | None = None, *, max_span: timedelta = MAX_SPAN,
    stop: threading.Event | None = None,
) -> datetime | None:  # fmt: skip
    """Roll up every raw execution with ``through <= started_at < until``; returns the new ``through``.

    ``until`` (minute-aligned; default :func:`closed_until`) is reached in transactions of at
    most ``max_span`` each, skipping stretches without executions. Returns ``None`` where no job
    runs (SQLite, ``through`` NULL) and the current watermark unchanged while another process runs
    the job.
    """
    if engine.dialect.name != "postgresql":
        return None
    until = closed_until() if until is None else until
    if until != until.replace(second=0, microsecond=0):
        raise ValueError(f"the roll-up job moves by whole minutes: {until.isoformat()} is not one")
    while stop is None or not stop.is_set():
        with translated("rolling up executions"), engine.begin() as conn:
            # Statement snapshots: the aggregation must see every row committed before the lock was
            # granted, whatever default isolation the database or role sets.
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"))
            conn.execute(text(f"SET LOCAL {WRITER_SETTING} = 'on'"))
            if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": JOB_LOCK}).scalar_one():
                return watermark(conn)  # another process is at it
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROLLUP_LOCK})
            through = watermark(conn)
            if through is None or through >= until:
                return through
            # Skip a stretch without executions in one step (the primary key leads with started_at).
            first = conn.execute(
                text("SELECT min(started_at) FROM heuristic_executions WHERE started_at >= :lo AND started_at < :hi"),
                {"lo": through, "hi": until},
            ).scalar_one()
            if first is None:
                new = until
            else:
                start = first.astimezone(UTC).replace(second=0, microsecond=0)
                new = min(until, start + max_span)
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                rollups.stage_from_raw(cursor, start, new)
                rollups.apply_stage(cursor)
            conn.execute(text("UPDATE rollup_watermark SET through = :t"), {"t": new})
        if new >= until:
            return new
    return None  # stopped (the store is closing)


class Schedule:
    """Runs :func:`advance` every :data:`INTERVAL` seconds in a background thread of a writer process.

    The first committed batch starts the thread (a process that never writes runs no job); it
    keeps the watermark following the clock while the store is open, writes or not, so a version
    that ran for a few seconds is rolled up a minute later without waiting for the next batch. A
    failed run is logged and left to the next one: rollups stay exact either way (readers add the
    raw rows above the watermark). :meth:`close` stops it between two transactions.
    """

    def __init__(self, engine: Engine, interval: float = INTERVAL) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        _SCHEDULES.add(self)

    def maybe_run(self) -> None:
        """Start the periodic runs (once; never with an infinite interval or after :meth:`close`)."""
        if self._thread is not None or self.interval == float("inf"):
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                thread = threading.Thread(target=self._loop, name="heurmetrics-rollup", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutdown (Python 3.12+): db rollup or the next process
                    return
                self._thread = thread

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the runs; a run in progress ends after its current transaction (or rolls back
        with its connection when ``timeout`` passes first)."""
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float | None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                advance(self.engine, stop=self._stop)
            except Exception as exc:  # the batches are committed; the next run retries
                log.warning("the roll-up job did not run: %s", exc)


#: Every schedule of this process, so that :func:`stop_all` reaches those whose store was never closed.
_SCHEDULES: weakref.WeakSet[Schedule] = weakref.WeakSet()


@atexit.register
def stop_all(timeout: float = 5.0) -> None:
    """Stop every schedule of this process between two transactions (at exit; between tests)."""
    schedules = list(_SCHEDULES)
    for schedule in schedules:  # all told first, then waited for within one deadline
        schedule._stop.set()
    deadline = time.monotonic() + timeout
    for schedule in schedules:
        schedule.join(max(0.0, deadline - time.monotonic()))


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


__all__ = ["GRACE", "INTERVAL", "JOB_LOCK", "MAX_SPAN", "ROLLUP_LOCK", "WRITER_SETTING", "Schedule", "advance",
           "closed_until", "fetch_watermark", "request_writer_watermark", "stop_all", "watermark"]
