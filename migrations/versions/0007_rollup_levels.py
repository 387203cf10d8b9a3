"""Hour and day rollup levels; ``execution_rollups_between``; denser execution key index.

- ``execution_rollups_hour`` and ``execution_rollups_day``: the same columns and key as
  ``execution_rollups`` (minute), bucket = UTC hour / UTC day. Filled from the minute rollups
  (exact: the minute level counts every stored execution and retention never removes rollups),
  maintained from now on in the insert transaction with the minute level. Same append-only
  guards as the minute level (no DELETE, no TRUNCATE; rows are incremented in place).
- PostgreSQL: ``execution_rollups_between(lo, hi)`` returns the rollup rows covering exactly the
  minutes in ``[lo, hi)`` from whole days, whole hours and edge minutes (dashboard SQL panels).
- PostgreSQL: the primary-key index of every execution partition gets ``fillfactor = 100``: keys
  arrive in time order, so leaf pages split at the right edge and the default 90 % leaves 10 % of
  every leaf empty for inserts that never come (new partitions get it on creation). Existing leaves
  keep their fill until a ``REINDEX`` of the partition (optional; not run here: it would lock).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
)
_TIME = sa.DateTime(timezone=True)
LEVELS = (("execution_rollups_hour", "hour"), ("execution_rollups_day", "day"))
VALUES = ("executions", "duration_sum", "confidence_count", "confidence_sum")

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
    return (
        "CREATE OR REPLACE FUNCTION execution_rollups_between(lo timestamptz, hi timestamptz)\n"
        f"RETURNS SETOF execution_rollups LANGUAGE sql STABLE PARALLEL SAFE AS $fn$\n{body}\n$fn$\n"
    )


FUNCTION = _rollups_between_sql()


def _bucket_column(bound: float) -> str:
    return "duration_le_" + repr(float(bound)).replace(".", "_")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    buckets = [_bucket_column(b) for b in DURATION_BUCKETS]
    for table, level in LEVELS:
        op.create_table(
            table,
            sa.Column("rule_version_id", sa.Integer(), nullable=False),
            sa.Column("mode", sa.SmallInteger(), nullable=False),
            sa.Column("bucket_start", _TIME, nullable=False),
            sa.Column("status", sa.SmallInteger(), nullable=False),
            sa.Column("outcome", sa.String(length=64), nullable=False),
            sa.Column("executions", sa.Integer(), nullable=False),
            sa.Column("duration_sum", sa.Float(), nullable=False),
            sa.Column("confidence_count", sa.Integer(), nullable=False),
            sa.Column("confidence_sum", sa.Float(), nullable=False),
            *[sa.Column(name, sa.Integer(), nullable=False) for name in buckets],
            sa.ForeignKeyConstraint(
                ["rule_version_id"], ["rule_versions.id"], name=op.f(f"fk_{table}_rule_version_id_rule_versions")
            ),
            sa.PrimaryKeyConstraint(
                "rule_version_id", "mode", "bucket_start", "status", "outcome", name=op.f(f"pk_{table}")
            ),
        )
        op.create_index(f"ix_{table}_bucket_start", table, ["bucket_start"], unique=False)
        if sqlite:
            bucket = ("substr(bucket_start, 1, 13) || ':00:00.000000'" if level == "hour"
                      else "substr(bucket_start, 1, 10) || ' 00:00:00.000000'")
        else:
            bucket = f"date_trunc('{level}', bucket_start, 'UTC')"
        columns = [*VALUES, *buckets]
        op.execute(
            f"INSERT INTO {table} (rule_version_id, mode, bucket_start, status, outcome, {', '.join(columns)}) "
            f"SELECT rule_version_id, mode, {bucket}, status, outcome, {', '.join(f'sum({c})' for c in columns)} "
            f"FROM execution_rollups GROUP BY rule_version_id, mode, {bucket}, status, outcome"
        )
        if sqlite:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} BEGIN SELECT RAISE(ABORT, "
                f"'heurmetrics: table {table} is append-only: DELETE is not allowed'); END"
            )
        else:
            for event, name in (("DELETE", "no_delete"), ("TRUNCATE", "no_truncate")):
                op.execute(
                    f"CREATE TRIGGER {table}_{name} BEFORE {event} ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()"
                )
    if sqlite:
        return
    op.execute(FUNCTION)
    indexes = bind.execute(
        sa.text(
            "SELECT ic.relname FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid AND x.indisprimary "
            "JOIN pg_class ic ON ic.oid = x.indexrelid WHERE i.inhparent = 'heuristic_executions'::regclass"
        )
    ).scalars()
    for name in list(indexes):
        op.execute(f'ALTER INDEX "{name}" SET (fillfactor = 100)')


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
