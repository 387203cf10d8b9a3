"""Partitioned, leaner executions; exact per-minute rollups; chained retention events.

- ``heuristic_executions`` is rebuilt: ``status`` and ``mode`` become ``smallint`` codes
  (lookup tables ``execution_statuses`` / ``execution_modes``), ``ingested_at`` and the two
  secondary indexes go, the key becomes (``started_at``, ``event_id``). On PostgreSQL the new
  table is ``PARTITION BY RANGE (started_at)``: one partition per month holding existing rows,
  the current month and the next two, plus ``heuristic_executions_default``. Every existing row
  is moved (``INSERT … SELECT``); the old table is dropped.
- ``execution_start_claims`` remembers the start time given to an execution received with an
  ``event_id`` but no ``started_at``, so its retries map onto the same key.
- ``execution_rollups`` is created and filled from the moved rows (so it is exact from the start).
- ``retention_events`` (hash-chained, append-only) records every partition dropped by retention.
- Append-only guards: on PostgreSQL a row-level ``BEFORE UPDATE OR DELETE`` trigger on the
  partitioned table (PostgreSQL clones it onto every partition, present and future) and a
  ``BEFORE TRUNCATE`` trigger on the table and on each partition; ``execution_rollups`` refuses
  DELETE and TRUNCATE (its rows are incremented in place). On SQLite the rebuilt table gets its
  triggers back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATUS_CODES = {"ok": 1, "error": 2, "timeout": 3}
MODE_CODES = {"live": 1, "paper": 2, "backtest": 3}
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = sa.DateTime(timezone=True)


def _bucket_column(bound: float) -> str:
    return "duration_le_" + repr(float(bound)).replace(".", "_")


def _case(column: str, codes: dict[str, int]) -> str:
    return "CASE " + column + " " + " ".join(f"WHEN '{n}' THEN {c}" for n, c in codes.items()) + " END"


def _months(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    out = []
    t = datetime(start.year, start.month, 1, tzinfo=UTC)
    while t < end:
        nxt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
        out.append((t, nxt))
        t = nxt
    return out


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"

    for table, codes in (("execution_statuses", STATUS_CODES), ("execution_modes", MODE_CODES)):
        op.create_table(
            table,
            sa.Column("code", sa.SmallInteger(), nullable=False),
            sa.Column("name", sa.String(length=16), nullable=False),
            sa.PrimaryKeyConstraint("code", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("name", name=op.f(f"uq_{table}_name")),
        )
        op.bulk_insert(
            sa.table(table, sa.column("code", sa.SmallInteger()), sa.column("name", sa.String())),
            [{"code": c, "name": n} for n, c in codes.items()],
        )

    # 1. The old table steps aside (its triggers go with it; DROP is never blocked).
    if sqlite:
        for op_name in ("update", "delete"):
            op.execute(f"DROP TRIGGER heuristic_executions_append_only_{op_name}")
        op.execute("DROP INDEX ix_heuristic_executions_backtest_run_id")
        op.execute("DROP INDEX ix_heuristic_executions_rule_version_id_started_at")
    else:
        op.execute("DROP INDEX ix_heuristic_executions_backtest_run_id")
        op.execute("DROP INDEX ix_heuristic_executions_rule_version_id_started_at")
        op.execute("ALTER TABLE heuristic_executions RENAME CONSTRAINT pk_heuristic_executions TO pk_he_0003")
    op.execute("ALTER TABLE heuristic_executions RENAME TO heuristic_executions_0003")

    # 2. The new table.
    columns = [
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("signal", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("rule_version_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("mode", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("error_type", sa.String(length=128), nullable=True),
        sa.Column("backtest_run_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint("status IN (1, 2, 3)", name=op.f("ck_heuristic_executions_status")),
        sa.CheckConstraint("mode IN (1, 2, 3)", name=op.f("ck_heuristic_executions_mode")),
        sa.CheckConstraint("duration_seconds >= 0", name=op.f("ck_heuristic_executions_duration_nonnegative")),
        sa.CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)",
            name=op.f("ck_heuristic_executions_confidence_range"),
        ),
        sa.ForeignKeyConstraint(
            ["rule_version_id"], ["rule_versions.id"],
            name=op.f("fk_heuristic_executions_rule_version_id_rule_versions"),
        ),
        sa.PrimaryKeyConstraint("started_at", "event_id", name=op.f("pk_heuristic_executions")),
    ]
    if sqlite:
        op.create_table("heuristic_executions", *columns)
    else:
        op.create_table("heuristic_executions", *columns, postgresql_partition_by="RANGE (started_at)")
        first, last = bind.execute(
            sa.text("SELECT min(started_at), max(started_at) FROM heuristic_executions_0003")
        ).one()
        now = datetime.now(UTC)
        start = min(first or now, now)
        end = max(last or now, now + timedelta(days=62)) + timedelta(microseconds=1)
        for lo, hi in _months(start, end):
            name = f"heuristic_executions_p{lo:%Y_%m}"
            op.execute(
                f"CREATE TABLE {name} PARTITION OF heuristic_executions "
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
        op.execute("CREATE TABLE heuristic_executions_default PARTITION OF heuristic_executions DEFAULT")

    # 3. Move every row, mapping names to codes.
    cols = "started_at, event_id, duration_seconds, signal, confidence, rule_version_id"
    op.execute(
        f"INSERT INTO heuristic_executions ({cols}, status, mode, outcome, error_type, backtest_run_id) "
        f"SELECT {cols}, {_case('status', STATUS_CODES)}, {_case('mode', MODE_CODES)}, outcome, error_type, "
        "backtest_run_id FROM heuristic_executions_0003"
    )
    op.execute("DROP TABLE heuristic_executions_0003")

    # 4. Rollups, filled from the moved rows.
    op.create_table(
        "execution_rollups",
        sa.Column("rule_version_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.SmallInteger(), nullable=False),
        sa.Column("bucket_start", _TIME, nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("executions", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        sa.Column("confidence_count", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        *[sa.Column(_bucket_column(b), sa.Integer(), nullable=False) for b in DURATION_BUCKETS],
        sa.ForeignKeyConstraint(
            ["rule_version_id"], ["rule_versions.id"], name=op.f("fk_execution_rollups_rule_version_id_rule_versions")
        ),
        sa.PrimaryKeyConstraint(
            "rule_version_id", "mode", "bucket_start", "status", "outcome", name=op.f("pk_execution_rollups")
        ),
    )
    op.create_index("ix_execution_rollups_bucket_start", "execution_rollups", ["bucket_start"], unique=False)
    minute = "substr(started_at, 1, 17) || '00.000000'" if sqlite else "date_trunc('minute', started_at)"
    buckets = ", ".join(f"sum(CASE WHEN duration_seconds <= {b!r} THEN 1 ELSE 0 END)" for b in DURATION_BUCKETS)
    names = ", ".join(_bucket_column(b) for b in DURATION_BUCKETS)
    op.execute(
        "INSERT INTO execution_rollups (rule_version_id, mode, bucket_start, status, outcome, executions, "
        f"duration_sum, confidence_count, confidence_sum, {names}) "
        f"SELECT rule_version_id, mode, {minute}, status, coalesce(outcome, ''), count(*), sum(duration_seconds), "
        f"count(confidence), coalesce(sum(confidence), 0), {buckets} FROM heuristic_executions "
        f"GROUP BY rule_version_id, {minute}, mode, status, coalesce(outcome, '')"
    )

    op.create_table(
        "execution_start_claims",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_execution_start_claims")),
    )

    # 5. Retention events: one chain with rule_versions and rule_version_events.
    op.create_table(
        "retention_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("partition_name", sa.String(length=128), nullable=False),
        sa.Column("range_start", _TIME, nullable=False),
        sa.Column("range_end", _TIME, nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("counts", _JSON, nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("policy", _JSON, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("chain_position", sa.Integer(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_events")),
    )
    op.create_index("ix_retention_events_chain_position", "retention_events", ["chain_position"], unique=True)

    # 6. Append-only guards.
    for statement in _sqlite_guards() if sqlite else _postgres_guards(bind):
        op.execute(statement)


def _postgres_guards(bind: sa.engine.Connection) -> list[str]:
    statements = [
        # Row-level: cloned onto every partition, so a DELETE aimed at a partition is refused too.
        "CREATE TRIGGER heuristic_executions_append_only BEFORE UPDATE OR DELETE ON heuristic_executions "
        "FOR EACH ROW EXECUTE FUNCTION heurmetrics_append_only()",
        "CREATE TRIGGER heuristic_executions_no_truncate BEFORE TRUNCATE ON heuristic_executions "
        "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()",
        "CREATE TRIGGER retention_events_append_only BEFORE UPDATE OR DELETE ON retention_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()",
        "CREATE TRIGGER retention_events_no_truncate BEFORE TRUNCATE ON retention_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()",
        "CREATE TRIGGER execution_rollups_no_delete BEFORE DELETE ON execution_rollups "
        "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()",
        "CREATE TRIGGER execution_rollups_no_truncate BEFORE TRUNCATE ON execution_rollups "
        "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()",
    ]
    partitions = bind.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'heuristic_executions'::regclass"
        )
    ).scalars()
    for name in partitions:
        statements.append(
            f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
            "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()"
        )
    return statements


def _sqlite_guards() -> list[str]:
    out = [
        f"CREATE TRIGGER {table}_append_only_{op_name.lower()} BEFORE {op_name} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'heurmetrics: table {table} is append-only: {op_name} is not allowed'); END"
        for table in ("heuristic_executions", "retention_events")
        for op_name in ("UPDATE", "DELETE")
    ]
    out.append(
        "CREATE TRIGGER execution_rollups_no_delete BEFORE DELETE ON execution_rollups "
        "BEGIN SELECT RAISE(ABORT, 'heurmetrics: table execution_rollups is append-only: DELETE is not allowed'); END"
    )
    return out


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
