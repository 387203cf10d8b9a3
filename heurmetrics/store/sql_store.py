"""The SQL store: SQLite (embedded default) and PostgreSQL behind one facade, one store per concern.

:class:`SqlStore` owns the engine and composes the concern stores, each in its own module:

- ``versions`` (:mod:`heurmetrics.store.versions`): rule versions and lifecycle events;
- ``executions`` (:mod:`heurmetrics.store.executions`): the batched execution insert path;
- ``backtests`` (:mod:`heurmetrics.store.backtests`): runs, folds, equity, overfitting;
- ``live`` (:mod:`heurmetrics.store.live`): resolutions and live-performance snapshots;
- ``audit`` (:mod:`heurmetrics.store.audit_reads`): audit reads and exports;
- ``chain`` (:mod:`heurmetrics.store.chain`): the hash chain's head and stored links;
- ``maintenance`` (:mod:`heurmetrics.store.maintenance`): partitions and retention.

The facade keeps the historical methods (``register_rule_version``, ``insert_executions``,
``insert_backtest``, …) as one-line delegations. Every driver error leaves the store as a domain
error (:mod:`heurmetrics.store.errors`): callers never see SQLAlchemy or psycopg exceptions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, text

from heurmetrics.domain import BacktestFold, BacktestRun, EquityPoint, ExecutionEvent, LatestBacktest, RuleVersion
from heurmetrics.store import deliveries
from heurmetrics.store.audit_reads import SqlAuditReads
from heurmetrics.store.backtests import SqlBacktests
from heurmetrics.store.chain import SqlChain
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.errors import translated
from heurmetrics.store.executions import SqlExecutions
from heurmetrics.store.live import SqlLiveStore
from heurmetrics.store.maintenance import SqlMaintenance
from heurmetrics.store.urls import redact_url
from heurmetrics.store.versions import SqlVersions

#: The tables :meth:`SqlStore.table_counts` reports.
_COUNTED_TABLES = ("rules", "rule_versions", "heuristic_executions", "backtest_runs", "backtest_folds", "equity_points")


class SqlStore:
    """Persistence of rule versions, executions, backtests, live performance and the audit chain.

    Thread-safe (one SQLAlchemy engine with a connection pool). Every public write is one
    transaction: it either commits completely or raises and leaves nothing behind.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.versions = SqlVersions(engine)
        self.executions = SqlExecutions(engine)
        self.backtests = SqlBacktests(engine)
        self.live = SqlLiveStore(engine)
        self.audit = SqlAuditReads(engine)
        self.chain = SqlChain(engine)
        self.maintenance = SqlMaintenance(engine, self.url)

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, initialize_empty: bool = False, **engine_kwargs: Any) -> SqlStore:
        """Open the database at ``url`` and check that its schema is at head.

        ``initialize_empty`` migrates a database that has no tables at all (a fresh SQLite file):
        there is nothing to lose. A database at any other revision is refused with
        :class:`~heurmetrics.errors.SchemaNotAtHead` naming the command to run; an unreachable one
        with :class:`~heurmetrics.errors.StoreUnavailable`.
        """
        store = cls.connect(url, **engine_kwargs)
        try:
            store.check_schema(initialize_empty=initialize_empty)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def connect(cls, url: str, **engine_kwargs: Any) -> SqlStore:
        """A store on ``url`` without touching the database (it may be down); see :meth:`check_schema`."""
        return cls(create_store_engine(url, **engine_kwargs))

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return redact_url(self.engine.url.render_as_string(hide_password=False))

    def check_schema(self, *, initialize_empty: bool = False) -> None:
        """Raise unless the schema is at head (migrating a database without any table first when
        ``initialize_empty``): :class:`SchemaNotAtHead`, or :class:`StoreUnavailable` when unreachable."""
        from heurmetrics.store import migrations  # alembic loads only when a store is opened

        with translated("checking the schema", unavailable=f"cannot reach database {self.url}"):
            if initialize_empty and migrations.is_empty(self.engine):
                migrations.upgrade(self.engine)
            migrations.require_head(self.engine)

    def upgrade(self) -> tuple[str | None, str]:
        """Apply all migrations up to head; returns (revision before, revision after)."""
        from heurmetrics.store import migrations

        with translated("upgrading the schema", unavailable=f"cannot reach database {self.url}"):
            return migrations.upgrade(self.engine)

    def revision(self) -> tuple[str | None, str]:
        """(the database's schema revision or None when empty, the head this version needs)."""
        from heurmetrics.store import migrations

        with translated("reading the schema revision", unavailable=f"cannot reach database {self.url}"):
            return migrations.current_revision(self.engine), migrations.head_revision()

    def close(self) -> None:
        self.executions.close()
        self.engine.dispose()

    def ping(self) -> None:
        """Raise when the database is unreachable or not at head (readiness)."""
        self.check_schema()

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
        """Store a rule version; returns it and whether it was created (see :meth:`SqlVersions.register`)."""
        return self.versions.register(
            rule, version, params=params, source=source, created_by=created_by, description=description,
            parent=parent, code_ref=code_ref,
        )

    def find_rule_version(self, rule: str, version: str) -> RuleVersion | None:
        return self.versions.find(rule, version)

    def list_rule_versions(self) -> list[RuleVersion]:
        return self.versions.list()

    # --- executions -------------------------------------------------------------------------
    def prepare_partitions(self) -> list[str]:
        """See :meth:`SqlExecutions.prepare_partitions`."""
        return self.executions.prepare_partitions()

    def insert_executions(
        self, events: Sequence[ExecutionEvent], *, delivery: deliveries.DeliveryStamp | None = None
    ) -> set[uuid.UUID]:
        """See :meth:`SqlExecutions.insert_executions`."""
        return self.executions.insert_executions(events, delivery=delivery)

    def claim_delivery(self, delivery_id: uuid.UUID, token: uuid.UUID) -> list[deliveries.ClaimedRecord]:
        """See :func:`heurmetrics.store.deliveries.claim`."""
        return self.executions.claim_delivery(delivery_id, token)

    def count_executions(self) -> int:
        return self.executions.count_executions()

    # --- backtests --------------------------------------------------------------------------
    def insert_backtest(
        self, run: BacktestRun, equity: Iterable[EquityPoint] = (), folds: Iterable[BacktestFold] = ()
    ) -> bool:
        """See :meth:`SqlBacktests.insert_backtest`."""
        return self.backtests.insert_backtest(run, equity, folds)

    def backtest_metrics(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        return self.backtests.backtest_metrics(run_id)

    def latest_backtests(self) -> list[LatestBacktest]:
        return self.backtests.latest_backtests()

    # --- summaries --------------------------------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        """Row count of every heurmetrics table (for the demo summary and tests)."""
        with translated("counting rows"), self.engine.connect() as conn:
            return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in _COUNTED_TABLES}
