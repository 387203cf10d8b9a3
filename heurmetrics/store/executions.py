"""Executions: the batched, idempotent insert path, start-time claims, partitions and deliveries.

Writes are batched, never row by row. On PostgreSQL executions go through psycopg 3 ``COPY``
(straight into the table; on a collision into a per-connection staging table followed by one
``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING``: idempotent on the event id at near-COPY
speed); on SQLite one ``executemany`` per batch. The ids returned are exactly the rows that were
new, which is what keeps Prometheus counts equal to stored rows. The batch's delivery record is
written in the same transaction, and so are the rollup increments of its late rows (all rows on
SQLite); the roll-up job (:mod:`heurmetrics.store.rollup_job`) adds the rest, once per minute.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, text

from heurmetrics.domain import ExecutionEvent
from heurmetrics.store import deliveries, partitions, pg_arrays, rollup_job, rollups
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.errors import translated
from heurmetrics.store.schema import ExecutionRow

log = logging.getLogger(__name__)

_EXECUTION_COLUMNS = (
    "started_at",
    "event_id",
    "duration_seconds",
    "signal",
    "confidence",
    "rule_version_id",
    "status",
    "mode",
    "outcome",
    "error_type",
    "backtest_run_id",
)
# Binary COPY needs the Postgres type of every column, in order: the type psycopg dumps each value
# with. The server reads every field with its *column's* type, so the two uuid columns travel as
# bytea of their 16 bytes (what uuid_send writes): psycopg's C bytea dumper instead of its Python
# UUID dumper per row (issue 11). _execution_tuple gives those columns as bytes accordingly.
_EXECUTION_PG_TYPES = (
    "timestamptz",
    "bytea",
    "float8",
    "float8",
    "float8",
    "int4",
    "int2",
    "int2",
    "text",
    "text",
    "bytea",
)


#: The batch transaction: statement snapshots, which the roll-up lock protocol relies on
#: (:mod:`heurmetrics.store.rollup_job`), whatever default isolation the database or role sets.
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_SQLITE_INSERT_EXECUTIONS = (
    f"INSERT INTO heuristic_executions ({', '.join(_EXECUTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_EXECUTION_COLUMNS))}) ON CONFLICT (started_at, event_id) DO NOTHING"
)


def _execution_tuple(e: ExecutionEvent, started: datetime | None = None) -> tuple[Any, ...]:
    """One COPY row of ``heuristic_executions`` in ``_EXECUTION_COLUMNS`` order (codes for status and
    mode, the uuids as their 16 bytes: see ``_EXECUTION_PG_TYPES``)."""
    run = e.backtest_run_id
    return (
        _utc(e.started_at) if started is None else started,
        e.event_id.int.to_bytes(16, "big"),
        e.duration_seconds,
        e.signal,
        e.confidence,
        e.rule_version.id,
        STATUS_CODES[e.status],
        MODE_CODES[e.mode],
        e.outcome,
        e.error_type,
        None if run is None else run.int.to_bytes(16, "big"),
    )


def _copy_rows(cursor: Any, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Binary COPY of execution rows into ``table``."""
    with cursor.copy(f"COPY {table} ({', '.join(_EXECUTION_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_EXECUTION_PG_TYPES)
        write = copy.write_row
        for row in rows:
            write(row)


def _first_of_each(
    events: Sequence[ExecutionEvent], started: Sequence[datetime], inserted: set[tuple[datetime, uuid.UUID]]
) -> list[int]:
    """Indexes of the events that were inserted (the first of any repeated identity)."""
    new, seen = [], set()
    for i, (e, t) in enumerate(zip(events, started, strict=True)):
        key = (t, e.event_id)
        if key in inserted and key not in seen:
            seen.add(key)
            new.append(i)
    return new


_PG_CLAIM_STARTS = (
    "WITH new AS (INSERT INTO execution_start_claims (event_id, started_at) "
    "SELECT * FROM unnest(%b::uuid[], %b::timestamptz[]) ON CONFLICT DO NOTHING RETURNING 1) "
    "SELECT count(*) FROM new"
)


def _abandon(conn: Any, driver: Any) -> None:
    """After a failed write: roll back what is open and hand the connection back in transaction
    mode, or never hand it back (invalidated) when it cannot even do that."""
    try:
        if driver.info.transaction_status != 0:  # not IDLE
            driver.rollback()
        driver.autocommit = False
    except Exception:
        conn.invalidate()


def _sqlite_time(value: datetime) -> str:
    """A UTC datetime the way SQLAlchemy's SQLite DateTime stores it (naive, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class SqlExecutions:
    """Execution writes and counts on one engine (thread-safe: SQLAlchemy's pool)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._partitions = partitions.PartitionCache(engine)
        self._roll_up = rollup_job.Schedule(engine)

    def close(self) -> None:
        """Let a roll-up run in progress finish (bounded: an unfinished one rolls back with its connection)."""
        self._roll_up.close(timeout=10.0)

    def prepare_partitions(self) -> list[str]:
        """Create the current and next partitions of ``heuristic_executions`` (PostgreSQL; no-op on SQLite).

        Called by ``heurmetrics serve`` and the SDK writer on start; returns the partitions created.
        Never raises: a failure is logged, and the insert path creates partitions on demand (the
        default partition catches the rest).
        """
        if self.dialect != "postgresql":
            return []
        try:
            created = partitions.ensure_ahead(self.engine)
            # Known ranges now, so that batches of this period never read the catalog (and never
            # wait on it while the database is slow: the insert's own timeouts apply instead).
            self._partitions.refresh()
        except Exception as exc:  # see docstring: never fatal
            log.warning("creating partitions ahead failed (%s): they will be created on demand", exc)
            return []
        if created:
            log.info("created partitions %s", ", ".join(created))
        return created

    def insert_executions(
        self, events: Sequence[ExecutionEvent], *, delivery: deliveries.DeliveryStamp | None = None
    ) -> set[uuid.UUID]:
        """Insert a batch in one transaction; returns the ids that were new.

        Ids already stored (a retry: same ``event_id`` and ``started_at``) or repeated inside the
        batch are skipped, never duplicated. New rows below the roll-up watermark (all of them
        where there is none) get their rollup increments in the same transaction, the others are
        the roll-up job's, run here at most every few seconds after the commit
        (:mod:`heurmetrics.store.rollup_job`): rollups stay exact either way. With
        ``delivery``, the batch's delivery record is written in the same transaction too (see
        :mod:`heurmetrics.store.deliveries`).
        """
        if not events:
            return set()
        if len({e.event_id.int for e in events}) != len(events):  # an id repeated in the batch: first wins
            events = list({e.event_id: e for e in reversed(events)}.values())[::-1]
        with translated(f"writing {len(events)} executions"):
            if self.dialect == "postgresql":
                inserted = self._insert_pg(events, delivery)
                self._roll_up.maybe_run()  # starts the periodic roll-up job (once)
                return inserted
            with self.engine.begin() as conn:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                if any(e.started_at_defaulted for e in events):
                    events = self._claim_start_times(cursor, events)
                started = [_utc(e.started_at) for e in events]
                new = self._insert_executions_sqlite(cursor, events, started)
                self._add_rollups(cursor, events, new)
                inserted = {events[i].event_id for i in new}
                if delivery is not None:
                    deliveries.record(conn, delivery, inserted, len(events))
                return inserted

    def _insert_pg(self, events: Sequence[ExecutionEvent], delivery: deliveries.DeliveryStamp | None) -> set[uuid.UUID]:
        """The PostgreSQL write (issue 11: few round trips, one pass over the batch).

        The common case -- every event new, none below the roll-up watermark -- is one
        transaction of four round trips after the pool's checkout ping: BEGIN, the writers'
        roll-up lock and watermark, the start-time claims and the delivery record in one pipeline
        (the record can be written before the COPY: a direct COPY that succeeds inserted every
        event), the direct COPY (two), the COMMIT. Late rows (below the watermark) add one rollup
        write. A collision (a re-sent batch, or an event stored already) makes the direct COPY
        fail: the transaction is rolled back whole and the batch is written again through the
        idempotent staging path, which records exactly what it inserted.
        """
        # The start-time claims reuse the rows' datetimes (the very values the rows store).
        rows = self._rows(events)
        times = [r[0] for r in rows]
        lo, hi = min(times), max(times)
        if not self._partitions.covers(lo, hi):
            self._partitions.ensure(set(times))
        with self.engine.connect() as conn:
            driver: Any = conn.connection.driver_connection
            # Explicit BEGIN and COMMIT (autocommit mode): psycopg's implicit BEGIN would be a
            # round trip of its own before the first pipeline; here it travels in that pipeline.
            driver.autocommit = True  # the pool hands out idle connections (the checkout listener sees to it)
            try:
                inserted = self._write_pg(conn, driver, events, rows, delivery)
            except BaseException:
                _abandon(conn, driver)
                raise
            driver.autocommit = False  # idle after the COMMIT
            return inserted

    def _write_pg(
        self,
        conn: Any,
        driver: Any,
        events: Sequence[ExecutionEvent],
        rows: list[tuple[Any, ...]],
        delivery: deliveries.DeliveryStamp | None,
    ) -> set[uuid.UUID]:
        """The transaction of :meth:`_insert_pg` (on ``driver`` in autocommit mode)."""
        import psycopg  # the [postgres] extra: only PostgreSQL stores get here

        received = events  # as received: a rolled-back attempt's start-time claims are undone too
        cursor, reader = driver.cursor(), driver.cursor()
        try:
            with driver.pipeline():
                cursor.execute(_BEGIN)
                self._request_watermark(reader)
                claimed = self._send_start_claims(cursor, events, rows)
                if delivery is not None:
                    deliveries.record(conn, delivery, None, len(events))
            through = rollup_job.fetch_watermark(reader)
            if claimed is not None:
                stored = self._claimed_start_times(cursor, events, claimed)
                if stored is not None:  # some ids were received before: their first start time
                    events = stored
                    rows = self._rows(events)
            _copy_rows(cursor, "heuristic_executions", rows)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK")  # the whole transaction, claims, record and lock included
        else:
            self._roll_up_late(cursor, events, rows, range(len(events)), through)
            cursor.execute("COMMIT")  # raises when the answer is lost: StoreUnavailable above
            return {e.event_id for e in events}  # every event was new
        # A collision: the idempotent path, in a fresh transaction on the same connection.
        events = received
        with driver.pipeline():
            cursor.execute(_BEGIN)
            self._request_watermark(reader)
        through = rollup_job.fetch_watermark(reader)
        if any(e.started_at_defaulted for e in events):
            events = self._claim_start_times(cursor, events)
            rows = self._rows(events)
        new = self._insert_staged(cursor, events, rows)
        self._roll_up_late(cursor, events, rows, new, through)
        inserted = {events[i].event_id for i in new}
        if delivery is not None:
            deliveries.record(conn, delivery, inserted, len(events))
        cursor.execute("COMMIT")
        return inserted

    @staticmethod
    def _rows(events: Sequence[ExecutionEvent]) -> list[tuple[Any, ...]]:
        """The COPY rows of ``events``."""
        fromtimestamp = datetime.fromtimestamp
        return [_execution_tuple(e, fromtimestamp(e.started_at, UTC)) for e in events]

    @staticmethod
    def _request_watermark(reader: Any) -> None:
        """Queue the writers' roll-up lock and the watermark read (:mod:`heurmetrics.store.rollup_job`)."""
        rollup_job.request_writer_watermark(reader)

    def _roll_up_late(
        self, cursor: Any, events: Sequence[ExecutionEvent], rows: Sequence[tuple[Any, ...]], new: Iterable[int],
        through: datetime | None,
    ) -> None:
        """Roll up, in this transaction, the new rows below the watermark (every new row without
        one); the roll-up job adds the others once their minute has closed."""
        if through is not None and min(rows)[0] >= through:  # the common case, in C: no row is late
            return
        late = list(new) if through is None else [i for i in new if rows[i][0] < through]
        if late:
            self._write_rollups(cursor, rollups.aggregate([events[i] for i in late]))

    def claim_delivery(self, delivery_id: uuid.UUID, token: uuid.UUID) -> list[deliveries.ClaimedRecord]:
        """See :func:`heurmetrics.store.deliveries.claim`."""
        return deliveries.claim(self.engine, delivery_id, token)

    @staticmethod
    def _send_start_claims(
        cursor: Any, events: Sequence[ExecutionEvent], rows: Sequence[tuple[Any, ...]]
    ) -> int | None:
        """Queue the start-time claims of the events received without ``started_at`` (in the
        caller's pipeline); returns how many were sent, None when there are none."""
        if all(e.started_at_defaulted for e in events):  # the common case: ids without start times
            ids, times = [r[1] for r in rows], [r[0] for r in rows]
        else:
            picked = [r for e, r in zip(events, rows, strict=True) if e.started_at_defaulted]
            if not picked:
                return None
            ids, times = [r[1] for r in picked], [r[0] for r in picked]
        # One statement over two arrays, not executemany: a row per round in the driver's
        # pipeline cost more CPU than everything else on the ingest path (issue 11). The arrays
        # are built in one pass each from the rows' values (pg_arrays): psycopg's list dumper
        # cost 0.3-0.5 µs per id.
        pg_arrays.register(cursor)
        cursor.execute(_PG_CLAIM_STARTS, (pg_arrays.uuid_array(ids), pg_arrays.timestamptz_array(cursor, times)))
        return len(ids)

    @staticmethod
    def _claimed_start_times(cursor: Any, events: Sequence[ExecutionEvent], sent: int) -> list[ExecutionEvent] | None:
        """None when every claim sent was ours (the events keep their times); otherwise the
        events, those without ``started_at`` given the start time of their id's first receipt."""
        if cursor.fetchone()[0] == sent:
            return None
        ids = [e.event_id for e in events if e.started_at_defaulted]
        # A separate statement: it sees the claims a concurrent first receipt committed.
        cursor.execute("SELECT event_id, started_at FROM execution_start_claims WHERE event_id = ANY(%b)", (ids,))
        stored = {eid: t.timestamp() for eid, t in cursor.fetchall()}
        return [
            e._replace(started_at=stored[e.event_id], started_at_defaulted=False) if e.started_at_defaulted else e
            for e in events
        ]

    def _claim_start_times(self, cursor: Any, events: Sequence[ExecutionEvent]) -> list[ExecutionEvent]:
        """The events, those received without ``started_at`` given the start time of their id's
        first receipt (new events: events are immutable).

        Same transaction as the insert: a concurrent first receipt of the same id waits on the
        claim's primary key and then reads the winner's time.
        """
        claims = [e for e in events if e.started_at_defaulted]
        if self.dialect == "postgresql":
            rows = [(_utc(e.started_at), e.event_id.int.to_bytes(16, "big")) for e in claims]
            sent = self._send_start_claims(cursor, claims, rows)
            stored_events = self._claimed_start_times(cursor, claims, sent or 0)
            if stored_events is None:  # every claim is ours: the times we sent
                return list(events)
            stored = {e.event_id: e.started_at for e in stored_events}
        else:
            if not cursor.connection.in_transaction:
                cursor.execute("BEGIN")
            cursor.executemany(
                "INSERT INTO execution_start_claims (event_id, started_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(e.event_id.hex, _sqlite_time(_utc(e.started_at))) for e in claims],
            )
            stored = {}
            for e in claims:
                cursor.execute("SELECT started_at FROM execution_start_claims WHERE event_id = ?", (e.event_id.hex,))
                text_time = cursor.fetchone()[0]
                stored[e.event_id] = datetime.fromisoformat(text_time).replace(tzinfo=UTC).timestamp()
        return [
            e._replace(started_at=stored[e.event_id], started_at_defaulted=False) if e.started_at_defaulted else e
            for e in events
        ]

    def _write_rollups(self, cursor: Any, acc: dict[rollups.Key, list[Any]]) -> None:
        """Upsert rollup increments into every level, in the insert's transaction."""
        rollups.write(cursor, acc, sqlite=self.dialect == "sqlite")

    def _add_rollups(self, cursor: Any, events: Sequence[ExecutionEvent], new: Sequence[int]) -> None:
        """Add the inserted events (indexes ``new``) to the rollups (every level), same transaction."""
        acc = rollups.aggregate(events if len(new) == len(events) else [events[i] for i in new])
        self._write_rollups(cursor, acc)

    @staticmethod
    def _insert_staged(cursor: Any, events: Sequence[ExecutionEvent], rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """The idempotent insert: COPY into a per-connection staging table, then one
        ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING``; the indexes of the new events."""
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _hm_stage_executions "
            "(LIKE heuristic_executions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy_rows(cursor, "_hm_stage_executions", rows)
        cols = ", ".join(_EXECUTION_COLUMNS)
        cursor.execute(
            f"INSERT INTO heuristic_executions ({cols}) SELECT {cols} FROM _hm_stage_executions "
            "ON CONFLICT (started_at, event_id) DO NOTHING RETURNING started_at, event_id"
        )
        inserted = set(cursor.fetchall())
        cursor.execute("DELETE FROM _hm_stage_executions")  # the same transaction may stage again
        return _first_of_each(events, [r[0] for r in rows], inserted)

    def _insert_executions_sqlite(
        self, cursor: Any, events: Sequence[ExecutionEvent], started: Sequence[datetime]
    ) -> list[int]:
        """One ``executemany`` through the driver: SQLAlchemy's per-row processing is most of the cost.

        Values are encoded exactly as SQLAlchemy stores them on SQLite (``Uuid`` as 32 hex digits,
        ``UTCDateTime`` as naive UTC text), so both paths read back the same.
        """
        rows = [
            (
                _sqlite_time(t),
                e.event_id.hex,
                e.duration_seconds,
                e.signal,
                e.confidence,
                e.rule_version.id,
                STATUS_CODES[e.status],
                MODE_CODES[e.mode],
                e.outcome,
                e.error_type,
                None if e.backtest_run_id is None else e.backtest_run_id.hex,
            )
            for e, t in zip(events, started, strict=True)
        ]
        if not cursor.connection.in_transaction:
            cursor.execute("BEGIN")  # pysqlite opens one lazily; a SAVEPOINT alone would commit on RELEASE
        cursor.execute("SAVEPOINT hm_batch")
        cursor.executemany(_SQLITE_INSERT_EXECUTIONS, rows)
        if cursor.rowcount == len(rows):
            cursor.execute("RELEASE SAVEPOINT hm_batch")
            return list(range(len(events)))
        # Some were stored already (a retried batch): redo row by row; rowcount says which were new.
        # The transaction holds SQLite's write lock, so nobody else inserts meanwhile.
        cursor.execute("ROLLBACK TO SAVEPOINT hm_batch")
        new = []
        for i, row in enumerate(rows):
            cursor.execute(_SQLITE_INSERT_EXECUTIONS, row)
            if cursor.rowcount == 1:
                new.append(i)
        cursor.execute("RELEASE SAVEPOINT hm_batch")
        return new

    def outcomes(self) -> list[tuple[str, str, str, float]]:
        """(rule, version, status, duration_seconds) of every stored execution (the demo's summary)."""
        query = (
            "SELECT r.name, v.version, s.name, e.duration_seconds "
            "FROM heuristic_executions e JOIN rule_versions v ON v.id = e.rule_version_id "
            "JOIN rules r ON r.id = v.rule_id JOIN execution_statuses s ON s.code = e.status"
        )
        with translated("reading executions"), self.engine.connect() as conn:
            return [(r[0], r[1], r[2], r[3]) for r in conn.execute(text(query)).all()]

    def count_executions(self) -> int:
        with translated("counting executions"), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ExecutionRow)).scalar_one())
