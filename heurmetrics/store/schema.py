"""ORM rows of the store (SQLAlchemy 2 typed declarative).

Table and column names are a public, documented contract (``docs/schema.md``): auditors and
Grafana SQL panels query them directly. Change them only with a migration and a docs update.
Domain objects live in :mod:`heurmetrics.domain`; these rows never leave the store package.

Why one module of ~540 lines: the declarative schema of every table, in one place so a
reviewer compares it with the migrations and docs/schema.md at a glance.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from heurmetrics.buckets import EXECUTION_DURATION_BUCKETS
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES, CodeType

# Deterministic constraint names, so migrations can refer to them on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every dialect.

    Postgres stores ``timestamptz``; SQLite has no time zones, so values are normalised to UTC
    on the way in and get ``tzinfo=UTC`` on the way out. Naive datetimes are refused: a time
    without a zone is ambiguous, and an audit trail must not guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: heurmetrics stores timezone-aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON columns are JSONB on Postgres (indexable, queryable from Grafana) and JSON elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# An auto-incrementing 64-bit key; SQLite only auto-increments "INTEGER PRIMARY KEY".
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}  # noqa: RUF012


class RuleRow(Base):
    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class RuleVersionRow(Base):
    __tablename__ = "rule_versions"
    __table_args__ = (
        UniqueConstraint("rule_id", "version"),
        Index("ix_rule_versions_chain_position", "chain_position", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"))
    version: Mapped[str] = mapped_column(String(64))
    #: sha256 of the canonical JSON of {"params": ..., "source": ...} (see heurmetrics.canonical).
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(128))
    #: What changed, in plain language (the change summary).
    description: Mapped[str | None] = mapped_column(Text)
    #: The version this one was derived from (same rule), if any.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("rule_versions.id"))
    #: Where the code lives, e.g. a git commit (``git:3f2a…``); free text.
    code_ref: Mapped[str | None] = mapped_column(String(256))
    # Audit hash chain (heurmetrics.audit.chain): one chain over rule_versions and
    # rule_version_events, ordered by chain_position.
    chain_position: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class RuleVersionEventRow(Base):
    """One lifecycle event of a rule version (append-only, hash-chained; see heurmetrics.audit)."""

    __tablename__ = "rule_version_events"
    __table_args__ = (
        Index("ix_rule_version_events_chain_position", "chain_position", unique=True),
        CheckConstraint(
            "event IN ('proposed', 'approved', 'activated', 'retired', 'rolled_back')", name="event"
        ),
        CheckConstraint("(env IS NOT NULL) = (event IN ('activated', 'rolled_back'))", name="env_when_deployed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("rule_versions.id"), index=True)
    event: Mapped[str] = mapped_column(String(16))
    #: Deployment environment (``live``, ``paper``, …) of ``activated`` and ``rolled_back``.
    env: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime]
    #: Evidence and context: approval and backtest used for an activation, version replaced, ….
    details: Mapped[dict[str, Any]]
    chain_position: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


#: Tables whose rows are facts: never updated or deleted (database triggers enforce it).
APPEND_ONLY_TABLES = (
    "rules", "rule_versions", "rule_version_events", "heuristic_executions", "backtest_runs", "backtest_folds",
    "equity_points", "retention_events",
)
#: Derived tables: rows are incremented in place but never deleted (triggers refuse DELETE/TRUNCATE).
NO_DELETE_TABLES = ("execution_rollups", "execution_rollups_hour", "execution_rollups_day")


class ExecutionStatusRow(Base):
    """Lookup: the name of each ``status`` code (:data:`heurmetrics.store.codes.STATUS_CODES`)."""

    __tablename__ = "execution_statuses"

    code: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(16), unique=True)


class ExecutionModeRow(Base):
    """Lookup: the name of each ``mode`` code (:data:`heurmetrics.store.codes.MODE_CODES`)."""

    __tablename__ = "execution_modes"

    code: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(16), unique=True)


class ExecutionRow(Base):
    """One execution (``heuristic.execution``); see ``docs/storage.md`` for the layout.

    PostgreSQL range-partitions the table by ``started_at`` (monthly by default) and keys it on
    (``started_at``, ``event_id``): a unique constraint of a partitioned table must contain the
    partition key. A retry resends the same event, ``started_at`` included, so it still collides.
    Columns are ordered for alignment (8-byte values first) and ``status``/``mode`` are
    ``smallint`` codes (:mod:`heurmetrics.store.codes`): about 140 bytes per row with its index,
    196 before. SQLite keeps the same columns in one flat table.
    """

    __tablename__ = "heuristic_executions"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(map(str, STATUS_CODES.values()))})", name="status"),
        CheckConstraint(f"mode IN ({', '.join(map(str, MODE_CODES.values()))})", name="mode"),
        CheckConstraint("duration_seconds >= 0", name="duration_nonnegative"),
        CheckConstraint("confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", name="confidence_range"),
        {"postgresql_partition_by": "RANGE (started_at)"},
    )

    started_at: Mapped[datetime] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    duration_seconds: Mapped[float] = mapped_column(Float)
    signal: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("rule_versions.id"))
    status: Mapped[str] = mapped_column(CodeType(STATUS_CODES))
    mode: Mapped[str] = mapped_column(CodeType(MODE_CODES))
    outcome: Mapped[str | None] = mapped_column(String(64))
    error_type: Mapped[str | None] = mapped_column(String(128))
    #: The backtest run this execution belongs to (mode ``backtest``). Refers to
    #: ``backtest_runs.run_id`` but is not a foreign key: a runner records a backtest's executions
    #: while it runs, before the finished run itself is stored.
    backtest_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class ExecutionStartClaimRow(Base):
    """The ``started_at`` given to an execution received with an ``event_id`` but without a start time.

    Only such executions get a row here (SDK- and HTTP-client-generated events always carry their
    start time). A retry of one gets a fresh default start time; the store replaces it with the
    claimed one before inserting, so the retry hits the (``started_at``, ``event_id``) key.
    """

    __tablename__ = "execution_start_claims"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    started_at: Mapped[datetime]


def rollup_bucket_column(bound: float) -> str:
    """Column of ``execution_rollups`` counting executions with ``duration_seconds <= bound``."""
    return "duration_le_" + repr(float(bound)).replace(".", "_").replace("-", "m")


#: One cumulative count column per bucket of the Prometheus duration histogram (same bounds).
ROLLUP_BUCKET_COLUMNS: tuple[str, ...] = tuple(rollup_bucket_column(b) for b in EXECUTION_DURATION_BUCKETS)


class _RollupColumns:
    """Key and value columns shared by the three rollup levels (minute, hour, day)."""

    # Key order (version, mode, bucket, …): "last live execution of a version" is one index probe.
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("rule_versions.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(CodeType(MODE_CODES), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(CodeType(STATUS_CODES), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(64), primary_key=True)
    # 4-byte counts (one row type for every level, so execution_rollups_between returns one type):
    # 2^31 per bucket is 24,855 executions per second, all day, of one (version, mode, status, outcome).
    executions: Mapped[int] = mapped_column(Integer)
    duration_sum: Mapped[float] = mapped_column(Float)
    confidence_count: Mapped[int] = mapped_column(Integer)
    confidence_sum: Mapped[float] = mapped_column(Float)


class ExecutionRollupRow(_RollupColumns, Base):
    """Exact per-minute aggregates of ``heuristic_executions`` (see :mod:`heurmetrics.store.rollups`).

    Every stored execution is counted in exactly one row, in the same transaction that inserts it;
    retention never removes rollups. ``outcome`` is ``''`` for an execution without one.
    """

    __tablename__ = "execution_rollups"
    __table_args__ = (Index("ix_execution_rollups_bucket_start", "bucket_start"),)


class ExecutionRollupHourRow(_RollupColumns, Base):
    """The same aggregates per UTC hour (``bucket_start`` is the hour), same transaction as the minute."""

    __tablename__ = "execution_rollups_hour"
    __table_args__ = (Index("ix_execution_rollups_hour_bucket_start", "bucket_start"),)


class ExecutionRollupDayRow(_RollupColumns, Base):
    """The same aggregates per UTC day (``bucket_start`` is midnight UTC), same transaction as the minute."""

    __tablename__ = "execution_rollups_day"
    __table_args__ = (Index("ix_execution_rollups_day_bucket_start", "bucket_start"),)


class RollupWatermarkRow(Base):
    """Where the roll-up job stands: every execution with ``started_at < through`` is in the rollups.

    One row. On PostgreSQL (migration 0009) writers read it under a shared advisory lock and roll
    up in their own transaction only their rows below it (late rows); the roll-up job
    (:mod:`heurmetrics.store.rollup_job`) adds the rows at or above it once per closed minute and
    moves it, under the exclusive lock. ``through`` is ``NULL`` where no job runs (SQLite): then
    every execution is rolled up in the transaction that inserts it. Readers add the raw rows at
    or above ``through`` to the rollups, in the same statement, so their counts stay exact.
    """

    __tablename__ = "rollup_watermark"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    through: Mapped[datetime | None]


#: Rollup levels, finest first: (name, table, bucket width in seconds).
ROLLUP_LEVELS: tuple[tuple[str, str, int], ...] = (
    ("minute", "execution_rollups", 60),
    ("hour", "execution_rollups_hour", 3600),
    ("day", "execution_rollups_day", 86400),
)
for _row in (ExecutionRollupRow, ExecutionRollupHourRow, ExecutionRollupDayRow):
    _rollup_table: Table = _row.__table__  # type: ignore[assignment]
    for _column in ROLLUP_BUCKET_COLUMNS:
        _rollup_table.append_column(Column(_column, Integer, nullable=False))

#: ``execution_rollups_between(lo, hi)`` (PostgreSQL): the rollup rows covering exactly the minutes
#: ``m`` with ``lo <= m < hi``, read from whole UTC days, then whole hours, then minutes at the
#: edges (see :func:`heurmetrics.store.rollups.segments`, the same split in Python). Rows come in
#: the minute table's row type; ``bucket_start`` is the start of the day, hour or minute.
def _rollups_between_sql() -> str:
    """The function's text. No CTE: the bounds are plain expressions of ``lo``/``hi``, so once the
    function is inlined into a panel's query the planner sees the actual range (a CTE hid it and
    the planner, expecting millions of rows, spent seconds on JIT compilation)."""

    def ceil(unit: str, x: str) -> str:  # timestamps are whole microseconds
        width = {"minute": "59.999999 seconds", "hour": "3599.999999 seconds", "day": "86399.999999 seconds"}[unit]
        return f"date_trunc('{unit}', {x} + interval '{width}', 'UTC')"

    a, b = ceil("minute", "lo"), ceil("minute", "hi")
    hl, hh = ceil("hour", a), f"date_trunc('hour', {b}, 'UTC')"
    dl, dh = ceil("day", a), f"date_trunc('day', {b}, 'UTC')"
    hlo, hhi = f"(CASE WHEN {hl} < {hh} THEN {hl} ELSE {b} END)", f"(CASE WHEN {hl} < {hh} THEN {hh} ELSE {b} END)"
    dlo, dhi = f"(CASE WHEN {dl} < {dh} THEN {dl} ELSE {hhi} END)", f"(CASE WHEN {dl} < {dh} THEN {dh} ELSE {hhi} END)"
    branches = [
        ("execution_rollups_day", dlo, dhi),
        ("execution_rollups_hour", hlo, dlo),
        ("execution_rollups_hour", dhi, hhi),
        ("execution_rollups", a, hlo),
        ("execution_rollups", hhi, b),
    ]
    body = "\nUNION ALL\n".join(
        f"SELECT x.* FROM {table} AS x WHERE x.bucket_start >= {lo} AND x.bucket_start < {hi}"
        for table, lo, hi in branches
    )
    # Minutes at or above the watermark are not rolled up yet: aggregated from the raw rows. The
    # rollup branches hold only minutes below it, so nothing is counted twice; one statement, one
    # snapshot, so a job moving the watermark meanwhile changes nothing. No watermark (NULL): none.
    body += "\nUNION ALL\n" + raw_minutes_select(
        f"WHERE x.started_at >= (SELECT w.through FROM rollup_watermark AS w) AND x.started_at >= {a} "
        f"AND x.started_at < {b}"
    )
    return (
        "CREATE OR REPLACE FUNCTION execution_rollups_between(lo timestamptz, hi timestamptz)\n"
        f"RETURNS SETOF execution_rollups LANGUAGE sql STABLE PARALLEL SAFE AS $fn$\n{body}\n$fn$\n"
    )


def raw_minutes_select(where: str) -> str:
    """Raw executions (alias ``x``) aggregated per minute, in the row type of ``execution_rollups``."""
    buckets = ", ".join(
        f"(count(*) FILTER (WHERE x.duration_seconds <= {b!r}))::int4" for b in EXECUTION_DURATION_BUCKETS
    )
    return (
        "SELECT x.rule_version_id, x.mode, date_trunc('minute', x.started_at, 'UTC'), x.status, "
        "coalesce(x.outcome, '')::varchar(64), count(*)::int4, sum(x.duration_seconds), "
        f"count(x.confidence)::int4, coalesce(sum(x.confidence), 0), {buckets} "
        f"FROM heuristic_executions AS x {where} GROUP BY 1, 2, 3, 4, 5"
    )


ROLLUPS_BETWEEN_FUNCTION = _rollups_between_sql()
# After every table (the function's body is checked against the rollup and watermark tables).
event.listen(
    Base.metadata,
    "after_create",
    DDL(ROLLUPS_BETWEEN_FUNCTION).execute_if(dialect="postgresql"),
)
#: Set (``on``) by every transaction of this version that writes rollups (the writers and the
#: roll-up job, :mod:`heurmetrics.store.rollup_job`); :data:`ROLLUP_GUARD` checks it.
ROLLUP_WRITER_SETTING = "heurmetrics.rollup_writer"
#: The guard of migration 0009 (see there and :mod:`heurmetrics.store.rollup_job`): refuses minute
#: rollup rows at or above the watermark from writers that do not set :data:`ROLLUP_WRITER_SETTING`.
ROLLUP_GUARD = f"""
CREATE OR REPLACE FUNCTION heurmetrics_rollup_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF current_setting('{ROLLUP_WRITER_SETTING}', true) IS DISTINCT FROM 'on'
     AND NEW.bucket_start >= (SELECT w.through FROM rollup_watermark AS w) THEN
    RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
      'heurmetrics: rollup row for %s is at or above the roll-up watermark: this writer predates '
      'migration 0009 and must be upgraded (its batch is retried meanwhile)', NEW.bucket_start);
  END IF;
  RETURN NEW;
END
$fn$;
CREATE TRIGGER execution_rollups_guard BEFORE INSERT OR UPDATE ON execution_rollups
  FOR EACH ROW EXECUTE FUNCTION heurmetrics_rollup_guard();
"""
event.listen(Base.metadata, "after_create", DDL(ROLLUP_GUARD).execute_if(dialect="postgresql"))
# A schema made by ``create_all`` (tests) rolls up in the insert transaction: no watermark.
event.listen(Base.metadata, "after_create", DDL("INSERT INTO rollup_watermark (id, through) VALUES (1, NULL)"))


class RetentionEventRow(Base):
    """One applied retention run on one partition (append-only, hash-chained; see heurmetrics.audit).

    ``content_digest`` is a digest of the dropped rows whose prefix names the algorithm (``mh64:…``
    checksum or ``sha256:…``, see :mod:`heurmetrics.store.digests` and ``docs/storage.md``), so an
    auditor holding an export can check exactly what was removed.
    """

    __tablename__ = "retention_events"
    __table_args__ = (Index("ix_retention_events_chain_position", "chain_position", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64))
    partition_name: Mapped[str] = mapped_column(String(128))
    range_start: Mapped[datetime]
    range_end: Mapped[datetime]
    row_count: Mapped[int] = mapped_column(BigInteger)
    #: rule_version_id (as text) → rows dropped, equal to the rollups' count for that range.
    counts: Mapped[dict[str, Any]]
    content_digest: Mapped[str] = mapped_column(String(128))  # prefix + hex (migration 0008)
    policy: Mapped[dict[str, Any]]
    actor: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime]
    chain_position: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class BacktestRunRow(Base):
    __tablename__ = "backtest_runs"
    __table_args__ = (
        Index("ix_backtest_runs_rule_version_id_finished_at", "rule_version_id", "finished_at"),
        CheckConstraint("status IN ('completed', 'failed')", name="status"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("rule_versions.id"))
    kind: Mapped[str] = mapped_column(String(16))  # "single" or "walk_forward"
    dataset: Mapped[str] = mapped_column(String(256))
    dataset_hash: Mapped[str | None] = mapped_column(String(64))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    periods_per_year: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    duration_seconds: Mapped[float] = mapped_column(Float)
    total_return: Mapped[float | None] = mapped_column(Float)
    cagr: Mapped[float | None] = mapped_column(Float)
    volatility: Mapped[float | None] = mapped_column(Float)
    sharpe: Mapped[float | None] = mapped_column(Float)
    max_drawdown: Mapped[float | None] = mapped_column(Float)
    observations: Mapped[int] = mapped_column(Integer)
    missing: Mapped[int] = mapped_column(Integer)
    #: Every metric of the performance suite (the headline columns above are copies for SQL panels).
    metrics: Mapped[dict[str, Any]]
    config: Mapped[dict[str, Any]]
    error_message: Mapped[str | None] = mapped_column(Text)


class BacktestFoldRow(Base):
    __tablename__ = "backtest_folds"

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backtest_runs.run_id"), primary_key=True)
    fold_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    in_sample_start: Mapped[datetime]
    in_sample_end: Mapped[datetime]
    out_of_sample_start: Mapped[datetime]
    out_of_sample_end: Mapped[datetime]
    params: Mapped[dict[str, Any]]
    trials: Mapped[int] = mapped_column(Integer)
    in_sample_metrics: Mapped[dict[str, Any]]
    out_of_sample_metrics: Mapped[dict[str, Any]]


class EquityPointRow(Base):
    __tablename__ = "equity_points"
    __table_args__ = (Index("ix_equity_points_run_id_fold_index_ts", "run_id", "fold_index", "ts"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backtest_runs.run_id"))
    #: NULL for the run's (stitched) curve, the fold index for a fold's own curve.
    fold_index: Mapped[int | None] = mapped_column(Integer)
    ts: Mapped[datetime]
    equity: Mapped[float] = mapped_column(Float)
    drawdown: Mapped[float] = mapped_column(Float)


class ExecutionResolutionRow(Base):
    """The realised outcome of one execution's signal after a horizon (append-only).

    ``event_id`` refers to ``heuristic_executions.event_id`` without a foreign key: an SDK runner
    may resolve an execution that its background writer has not stored yet. One row per
    (``event_id``, ``horizon``): a re-sent resolution is a no-op, never an overwrite.
    """

    __tablename__ = "execution_resolutions"
    __table_args__ = (
        UniqueConstraint("event_id", "horizon"),
        CheckConstraint("realized_return IS NOT NULL OR correct IS NOT NULL", name="has_result"),
        CheckConstraint("horizon_seconds > 0", name="horizon_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    horizon: Mapped[str] = mapped_column(String(16))
    horizon_seconds: Mapped[int] = mapped_column(Integer)
    #: Direction-signed return of the signal over the horizon (positive = the signal was right).
    realized_return: Mapped[float | None] = mapped_column(Float)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    #: Prices the resolver used (method ``prices``); null when the caller reported the outcome.
    price_at_signal: Mapped[float | None] = mapped_column(Float)
    price_at_horizon: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))  # "reported" or "prices"
    resolved_at: Mapped[datetime]
    ingested_at: Mapped[datetime]


class RuleVersionPerformanceRow(Base):
    """One snapshot of a rule version's live performance over a window (``rule.version.performance``).

    Append-only: every snapshot is a new row; the exporter reads the latest per version and window.
    """

    __tablename__ = "rule_version_performance"
    __table_args__ = (
        Index("ix_rule_version_performance_version_window_at", "rule_version_id", "time_window", "computed_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("rule_versions.id"))
    time_window: Mapped[str] = mapped_column(String(8))
    window_start: Mapped[datetime]
    computed_at: Mapped[datetime]
    horizon: Mapped[str] = mapped_column(String(16))
    modes: Mapped[str] = mapped_column(String(64))
    executions: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    error_ratio: Mapped[float | None] = mapped_column(Float)
    latency_p50_seconds: Mapped[float | None] = mapped_column(Float)
    latency_p95_seconds: Mapped[float | None] = mapped_column(Float)
    signals: Mapped[int] = mapped_column(Integer)
    signal_ratio: Mapped[float | None] = mapped_column(Float)
    mean_confidence: Mapped[float | None] = mapped_column(Float)
    resolved: Mapped[int] = mapped_column(Integer)
    hits: Mapped[int] = mapped_column(Integer)
    hit_ratio: Mapped[float | None] = mapped_column(Float)
    hit_ratio_low: Mapped[float | None] = mapped_column(Float)
    hit_ratio_high: Mapped[float | None] = mapped_column(Float)
    mean_realized_return: Mapped[float | None] = mapped_column(Float)
    expected_hit_ratio: Mapped[float | None] = mapped_column(Float)
    expected_return_per_signal: Mapped[float | None] = mapped_column(Float)
    expectation_signals: Mapped[int | None] = mapped_column(Integer)
    #: The walk-forward run the expectation comes from (``backtest_runs.run_id``).
    expectation_run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("backtest_runs.run_id"))
    drift_p_value: Mapped[float | None] = mapped_column(Float)
    drifted: Mapped[bool | None] = mapped_column(Boolean)
    alpha: Mapped[float] = mapped_column(Float)
    #: Benjamini-Hochberg adjusted drift p-value across the versions of the same snapshot and window.
    drift_adjusted_p_value: Mapped[float | None] = mapped_column(Float)


class BacktestOverfittingRow(Base):
    """Overfitting statistics of one walk-forward run (heurmetrics.stats; docs/walk-forward.md)."""

    __tablename__ = "backtest_overfitting"

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backtest_runs.run_id"), primary_key=True)
    n_trials: Mapped[int] = mapped_column(Integer)
    #: Variance of the trials' annualised Sharpe ratios (the DSR's V).
    trials_sharpe_variance: Mapped[float | None] = mapped_column(Float)
    #: Annualised Sharpe ratio of the stitched out-of-sample returns.
    sharpe: Mapped[float | None] = mapped_column(Float)
    deflated_sharpe_ratio: Mapped[float | None] = mapped_column(Float)
    #: SR0: expected maximum annualised Sharpe ratio of n_trials trials without skill.
    benchmark_sharpe: Mapped[float | None] = mapped_column(Float)
    pbo: Mapped[float | None] = mapped_column(Float)
    pbo_blocks: Mapped[int | None] = mapped_column(Integer)
    pbo_splits: Mapped[int | None] = mapped_column(Integer)
    probability_of_loss: Mapped[float | None] = mapped_column(Float)
    min_backtest_years: Mapped[float | None] = mapped_column(Float)
    backtest_years: Mapped[float | None] = mapped_column(Float)


class DeliveryRow(Base):
    """One write of a batch that inserted executions nobody had counted yet (exactly-once counting).

    Written in the same transaction as those executions, so it exists exactly when they do.
    ``delivery_id`` is the batch's id (the SDK's, or the ``Idempotency-Key`` of a request), the
    same on every attempt; ``attempt_id`` is this write. ``event_ids`` lists the ids it inserted
    (16 bytes each) or is NULL when it inserted every uncounted event of the batch, whose sorted
    ids hash to ``digest``. ``claimed_by`` is set, once, by the process that counts them. About
    100 bytes per batch, nothing per execution row. See :mod:`heurmetrics.store.deliveries`.
    """

    __tablename__ = "heuristic_deliveries"

    attempt_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime]
    events: Mapped[int] = mapped_column(Integer)
    digest: Mapped[bytes] = mapped_column(LargeBinary(16))
    event_ids: Mapped[bytes | None] = mapped_column(LargeBinary)
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
