"""The SQL store: SQLite (embedded default) and PostgreSQL behind one interface.

Writes are batched, never row by row. On PostgreSQL executions and equity points go through
psycopg 3 ``COPY`` into a per-connection staging table followed by one
``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`` (idempotent on the event id at near-COPY
speed); on SQLite one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` per batch. The ids returned
are exactly the rows that were new, which is what keeps Prometheus counts equal to stored rows.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, Table, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from heurmetrics.audit.lifecycle import register_version
from heurmetrics.config import redact_url
from heurmetrics.domain import (
    BacktestFold,
    BacktestRun,
    EquityPoint,
    ExecutionEvent,
    LatestBacktest,
    RuleVersion,
)
from heurmetrics.errors import StoreUnavailable
from heurmetrics.store import deliveries, migrations, partitions, rollups
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.overfitting import insert_overfitting
from heurmetrics.store.schema import (
    BacktestFoldRow,
    BacktestRunRow,
    EquityPointRow,
    ExecutionRow,
    RuleRow,
    RuleVersionRow,
)

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
# Binary COPY needs the Postgres type of every column, in order.
_EXECUTION_PG_TYPES = (
    "timestamptz",
    "uuid",
    "float8",
    "float8",
    "float8",
    "int4",
    "int2",
    "int2",
    "text",
    "text",
    "uuid",
)
_EQUITY_COLUMNS = ("run_id", "fold_index", "ts", "equity", "drawdown")
_EQUITY_PG_TYPES = ("uuid", "int4", "timestamptz", "float8", "float8")
_HEADLINE = ("total_return", "cagr", "volatility", "sharpe", "max_drawdown")


def _table(row: type[Any]) -> Table:
    """The Core table of an ORM row class (typed for the insert constructs)."""
    table: Table = row.__table__
    return table


_SQLITE_INSERT_EXECUTIONS = (
    f"INSERT INTO heuristic_executions ({', '.join(_EXECUTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_EXECUTION_COLUMNS))}) ON CONFLICT (started_at, event_id) DO NOTHING"
)


def _execution_tuple(e: ExecutionEvent, started: datetime | None = None) -> tuple[Any, ...]:
    """One row of ``heuristic_executions`` in ``_EXECUTION_COLUMNS`` order (codes for status and mode)."""
    return (
        _utc(e.started_at) if started is None else started,
        e.event_id,
        e.duration_seconds,
        e.signal,
        e.confidence,
        e.rule_version.id,
        STATUS_CODES[e.status],
        MODE_CODES[e.mode],
        e.outcome,
        e.error_type,
        e.backtest_run_id,
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


def _sqlite_time(value: datetime) -> str:
    """A UTC datetime the way SQLAlchemy's SQLite DateTime stores it (naive, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class SqlStore:
    """Persistence of rule versions, executions and backtests.

    Thread-safe (one SQLAlchemy engine with a connection pool). Every public write is one
    transaction: it either commits completely or raises and leaves nothing behind.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._partitions = partitions.PartitionCache(engine)

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, initialize_empty: bool = False, **engine_kwargs: Any) -> SqlStore:
        """Open the database at ``url`` and check that its schema is at head.

        ``initialize_empty`` migrates a database that has no tables at all (a fresh SQLite file):
        there is nothing to lose. A database at any other revision is refused with
        :class:`~heurmetrics.errors.SchemaNotAtHead` naming the command to run.
        """
        engine = create_store_engine(url, **engine_kwargs)
        try:
            if initialize_empty and migrations.is_empty(engine):
                migrations.upgrade(engine)
            migrations.require_head(engine)
        except OperationalError as exc:
            engine.dispose()
            raise StoreUnavailable(f"cannot reach database {redact_url(url)}: {exc.orig}") from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raise when the database is unreachable or not at head (readiness)."""
        migrations.require_head(self.engine)

    # --- rule versions ----------------------------------------------------------------------
    def register_rule_version(
        self,
        rule: str,
        version: str,
        *,
        params: dict[str, Any],
        source: str,
        created_by: str,
        description: str | None = None,
        parent: str | None = None,
        code_ref: str | None = None,
    ) -> tuple[RuleVersion, bool]:
        """Store a rule version; returns it and whether it was created.

        Identical content under an existing version is a no-op (``created`` False); different
        content raises :class:`VersionConflict` and writes nothing. A new version is appended to the
        audit hash chain together with its ``proposed`` event (actor ``created_by``, reason
        ``description``); ``parent`` and ``code_ref`` are the optional lineage fields. Safe under
        concurrent registration from several processes (appends are serialised by the chain lock).
        See :func:`heurmetrics.audit.lifecycle.register_version`.
        """
        return register_version(
            self,
            rule,
            version,
            params=params,
            source=source,
            created_by=created_by,
            description=description,
            parent=parent,
            code_ref=code_ref,
        )

    def find_rule_version(self, rule: str, version: str) -> RuleVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                self._version_query().where(RuleRow.name == rule, RuleVersionRow.version == version)
            ).first()
        return None if row is None else self._to_version(row)

    def list_rule_versions(self) -> list[RuleVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._version_query().order_by(RuleRow.name, RuleVersionRow.id)).all()
        return [self._to_version(r) for r in rows]

    @staticmethod
    def _version_query() -> Any:
        return select(
            RuleVersionRow.id,
            RuleRow.name,
            RuleVersionRow.version,
            RuleVersionRow.content_hash,
            RuleVersionRow.params,
            RuleVersionRow.source,
            RuleVersionRow.created_at,
            RuleVersionRow.created_by,
            RuleVersionRow.description,
        ).join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)

    @staticmethod
    def _to_version(row: Any) -> RuleVersion:
        return RuleVersion(
            id=row.id,
            rule=row.name,
            version=row.version,
            content_hash=row.content_hash,
            params=row.params,
            source=row.source,
            created_at=row.created_at,
            created_by=row.created_by,
            description=row.description,
        )

    # --- executions -------------------------------------------------------------------------
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
        batch are skipped, never duplicated. The new rows' rollup increments are written in the
        same transaction (:mod:`heurmetrics.store.rollups`), so rollups stay exact. With
        ``delivery``, the batch's delivery record is written in the same transaction too (see
        :mod:`heurmetrics.store.deliveries`).
        """
        if not events:
            return set()
        if len({e.event_id for e in events}) != len(events):  # an id repeated in the batch: first wins
            events = list({e.event_id: e for e in reversed(events)}.values())[::-1]
        try:
            if self.dialect == "postgresql":
                times = [e.started_at for e in events]
                if not self._partitions.covers(_utc(min(times)), _utc(max(times))):
                    self._partitions.ensure({_utc(t) for t in times})
            with self.engine.begin() as conn:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                if any(e.started_at_defaulted for e in events):
                    events = self._claim_start_times(cursor, events)
                started = [_utc(e.started_at) for e in events]
                if self.dialect == "postgresql":
                    new = self._insert_executions_pg(cursor, events, started)
                else:
                    new = self._insert_executions_sqlite(cursor, events, started)
                self._add_rollups(cursor, events, started, new)
                inserted = {events[i].event_id for i in new}
                if delivery is not None:
                    deliveries.record(conn, delivery, inserted, len(events))
                return inserted
        except (OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(
                f"writing {len(events)} executions failed: {getattr(exc, 'orig', None) or exc}"
            ) from exc

    def claim_delivery(self, delivery_id: uuid.UUID, token: uuid.UUID) -> list[deliveries.ClaimedRecord]:
        """See :func:`heurmetrics.store.deliveries.claim`."""
        return deliveries.claim(self.engine, delivery_id, token)

    def _claim_start_times(self, cursor: Any, events: Sequence[ExecutionEvent]) -> list[ExecutionEvent]:
        """The events, those received without ``started_at`` given the start time of their id's
        first receipt (new events: events are immutable).

        Same transaction as the insert: a concurrent first receipt of the same id waits on the
        claim's primary key and then reads the winner's time.
        """
        claims = [e for e in events if e.started_at_defaulted]
        if self.dialect == "postgresql":
            ids = [e.event_id for e in claims]
            times = [_utc(e.started_at) for e in claims]
            # One statement over two arrays, not executemany: a row per round in the driver's
            # pipeline cost more CPU than everything else on the ingest path (issue 11).
            cursor.execute(
                "WITH new AS (INSERT INTO execution_start_claims (event_id, started_at) "
                "SELECT * FROM unnest(%b::uuid[], %b::timestamptz[]) ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT count(*) FROM new",
                (ids, times),
            )
            if cursor.fetchone()[0] == len(claims):  # every claim is ours: the times we sent
                return [e._replace(started_at_defaulted=False) if e.started_at_defaulted else e for e in events]
            # A separate statement: it sees the claims a concurrent first receipt committed.
            cursor.execute("SELECT event_id, started_at FROM execution_start_claims WHERE event_id = ANY(%b)", (ids,))
            stored = {eid: t.timestamp() for eid, t in cursor.fetchall()}
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

    def _add_rollups(
        self, cursor: Any, events: Sequence[ExecutionEvent], started: Sequence[datetime], new: Sequence[int]
    ) -> None:
        """Add the inserted events (indexes ``new``) to ``execution_rollups``, same transaction."""
        if len(new) == len(events):
            acc = rollups.aggregate(events, started)
        else:
            acc = rollups.aggregate([events[i] for i in new], [started[i] for i in new])
        sqlite = self.dialect == "sqlite"
        params = rollups.rows(acc, sqlite=sqlite)
        if params:
            cursor.executemany(rollups.upsert_sql("?" if sqlite else "%s"), params)

    def _insert_executions_pg(
        self, cursor: Any, events: Sequence[ExecutionEvent], started: Sequence[datetime]
    ) -> list[int]:
        rows = [_execution_tuple(e, t) for e, t in zip(events, started, strict=True)]
        # New events are the common case: COPY straight into the table (raw COPY speed). A
        # collision -- a re-sent batch, or an id repeated inside one -- raises, rolls back to the
        # savepoint, and the batch takes the idempotent staging path below.
        cursor.execute("SAVEPOINT hm_direct_copy")
        try:
            _copy_rows(cursor, "heuristic_executions", rows)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT hm_direct_copy")
        else:
            cursor.execute("RELEASE SAVEPOINT hm_direct_copy")
            return list(range(len(events)))
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
        return _first_of_each(events, started, inserted)

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

    def count_executions(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ExecutionRow)).scalar_one())

    # --- backtests --------------------------------------------------------------------------
    def insert_backtest(
        self,
        run: BacktestRun,
        equity: Iterable[EquityPoint] = (),
        folds: Iterable[BacktestFold] = (),
    ) -> bool:
        """Store a run with its equity points and folds in one transaction.

        Returns False (and writes nothing) when a run with this id is already stored: a re-sent
        run is a no-op, like a re-sent execution.
        """
        row = {
            "run_id": run.run_id,
            "rule_version_id": run.rule_version.id,
            "kind": run.kind,
            "dataset": run.dataset,
            "dataset_hash": run.dataset_hash,
            "period_start": run.period_start,
            "period_end": run.period_end,
            "periods_per_year": run.periods_per_year,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_seconds": run.duration_seconds,
            "metrics": run.metrics,
            "config": run.config,
            "observations": int(run.metrics.get("observations") or 0),
            "missing": int(run.metrics.get("missing") or 0),
            "error_message": run.error_message,
            **{name: run.headline(name) for name in _HEADLINE},
        }
        try:
            with self.engine.begin() as conn:
                table = _table(BacktestRunRow)
                insert = pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)
                result = conn.execute(
                    insert.values(row).on_conflict_do_nothing(index_elements=["run_id"]).returning(table.c.run_id)
                )
                if result.first() is None:
                    return False
                fold_rows = [
                    {
                        "run_id": run.run_id,
                        "fold_index": f.fold_index,
                        "in_sample_start": f.in_sample_start,
                        "in_sample_end": f.in_sample_end,
                        "out_of_sample_start": f.out_of_sample_start,
                        "out_of_sample_end": f.out_of_sample_end,
                        "params": f.params,
                        "trials": f.trials,
                        "in_sample_metrics": f.in_sample_metrics,
                        "out_of_sample_metrics": f.out_of_sample_metrics,
                    }
                    for f in folds
                ]
                if fold_rows:
                    conn.execute(_table(BacktestFoldRow).insert(), fold_rows)
                insert_overfitting(conn, run)  # walk-forward runs: DSR / PBO row (issue 12)
                self._insert_equity(conn, run.run_id, equity)
        except OperationalError as exc:
            raise StoreUnavailable(f"writing backtest run {run.run_id} failed: {exc.orig}") from exc
        return True

    def _insert_equity(self, conn: Connection, run_id: uuid.UUID, points: Iterable[EquityPoint]) -> None:
        if self.dialect == "postgresql":
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cols = ", ".join(_EQUITY_COLUMNS)
            with cursor.copy(f"COPY equity_points ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_EQUITY_PG_TYPES)
                for p in points:
                    copy.write_row((run_id, p.fold_index, p.ts, p.equity, p.drawdown))
            return
        rows = [
            {"run_id": run_id, "fold_index": p.fold_index, "ts": p.ts, "equity": p.equity, "drawdown": p.drawdown}
            for p in points
        ]
        if rows:
            conn.execute(_table(EquityPointRow).insert(), rows)

    def backtest_metrics(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        """The stored metrics of a run, or None when no run has this id."""
        with self.engine.connect() as conn:
            value = conn.execute(select(BacktestRunRow.metrics).where(BacktestRunRow.run_id == run_id)).scalar()
        return None if value is None else dict(value)

    def latest_backtests(self) -> list[LatestBacktest]:
        """The latest completed run of every rule version that has one."""
        latest = (
            select(BacktestRunRow.rule_version_id, func.max(BacktestRunRow.finished_at).label("finished_at"))
            .where(BacktestRunRow.status == "completed")
            .group_by(BacktestRunRow.rule_version_id)
            .subquery()
        )
        query = (
            select(
                RuleRow.name,
                RuleVersionRow.version,
                BacktestRunRow.finished_at,
                BacktestRunRow.total_return,
                BacktestRunRow.cagr,
                BacktestRunRow.sharpe,
                BacktestRunRow.max_drawdown,
            )
            .join(
                latest,
                (latest.c.rule_version_id == BacktestRunRow.rule_version_id)
                & (latest.c.finished_at == BacktestRunRow.finished_at),
            )
            .join(RuleVersionRow, RuleVersionRow.id == BacktestRunRow.rule_version_id)
            .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
            .where(BacktestRunRow.status == "completed")
            .order_by(RuleRow.name, RuleVersionRow.version)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        seen: set[tuple[str, str]] = set()
        out = []
        for r in rows:  # two runs finishing in the same instant: keep one
            if (r.name, r.version) not in seen:
                seen.add((r.name, r.version))
                out.append(
                    LatestBacktest(r.name, r.version, r.finished_at, r.total_return, r.cagr, r.sharpe, r.max_drawdown)
                )
        return out

    def table_counts(self) -> dict[str, int]:
        """Row count of every heurmetrics table (for the demo summary and tests)."""
        counts = {}
        with self.engine.connect() as conn:
            for table in (
                "rules",
                "rule_versions",
                "heuristic_executions",
                "backtest_runs",
                "backtest_folds",
                "equity_points",
            ):
                counts[table] = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        return counts
