"""Roll-up job with a watermark (PostgreSQL): writers no longer upsert rollups for every batch.

- ``rollup_watermark`` (one row): every execution with ``started_at < through`` is in the rollups.
  PostgreSQL starts at the minute after the newest rollup row (an empty database: the current
  minute), so every row stored so far (rolled up in its insert transaction) is below it and
  nothing is rolled up twice. From then
  on writers roll up only late rows (below the watermark) in their transaction, and the roll-up
  job (``heurmetrics.store.rollup_job``) adds each closed minute once and moves the watermark.
  SQLite keeps ``NULL``: every execution rolled up in its insert transaction, as before.
- ``execution_rollups_between(lo, hi)`` adds the raw rows at or above the watermark, aggregated
  per minute, to the rollup rows below it (one statement: exact while the job runs).
- A guard trigger on ``execution_rollups`` refuses rollup rows at or above the watermark from
  writers that predate this revision (they would count them twice); they retry until upgraded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def _raw_minutes_select(where: str) -> str:
    buckets = ", ".join(f"(count(*) FILTER (WHERE x.duration_seconds <= {b!r}))::int4" for b in DURATION_BUCKETS)
    return (
        "SELECT x.rule_version_id, x.mode, date_trunc('minute', x.started_at, 'UTC'), x.status, "
        "coalesce(x.outcome, '')::varchar(64), count(*)::int4, sum(x.duration_seconds), "
        f"count(x.confidence)::int4, coalesce(sum(x.confidence), 0), {buckets} "
        f"FROM heuristic_executions AS x {where} GROUP BY 1, 2, 3, 4, 5"
    )


def _rollups_between_sql() -> str:
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
    body += "\nUNION ALL\n" + _raw_minutes_select(
        f"WHERE x.started_at >= (SELECT w.through FROM rollup_watermark AS w) AND x.started_at >= {a} "
        f"AND x.started_at < {b}"
    )
    return (
        "CREATE OR REPLACE FUNCTION execution_rollups_between(lo timestamptz, hi timestamptz)\n"
        f"RETURNS SETOF execution_rollups LANGUAGE sql STABLE PARALLEL SAFE AS $fn$\n{body}\n$fn$\n"
    )


FUNCTION = _rollups_between_sql()

#: Refuses minute rollup rows at or above the watermark from a writer that did not set
#: ``heurmetrics.rollup_writer`` (code from before 0009, which would count them a second time).
#: SQLSTATE 55000 (object not in prerequisite state): such a writer treats it as transient and
#: retries or spools its batch, so nothing is lost while it waits for its upgrade. The hour and
#: day buckets of a row are never later than its minute, so guarding the minute level suffices.
GUARD = """
CREATE OR REPLACE FUNCTION heurmetrics_rollup_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF current_setting('heurmetrics.rollup_writer', true) IS DISTINCT FROM 'on'
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


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "rollup_watermark",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("through", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_rollup_watermark_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollup_watermark")),
    )
    if bind.dialect.name != "postgresql":
        op.execute("INSERT INTO rollup_watermark (id, through) VALUES (1, NULL)")
        return
    # Writers of the previous revision may be mid-batch: wait for them and hold new ones back until
    # this migration commits (then the guard refuses what they would count twice), so the newest
    # rollup row read below includes every batch they committed.
    op.execute("LOCK TABLE execution_rollups IN SHARE ROW EXCLUSIVE MODE")
    # Every stored execution has its rollup (0007 filled the levels, writers rolled up in their
    # transaction): the minute after the newest rollup row is past every rolled-up row. An empty
    # database starts at the current minute.
    op.execute(
        "INSERT INTO rollup_watermark (id, through) SELECT 1, coalesce("
        "(SELECT max(bucket_start) + interval '1 minute' FROM execution_rollups), "
        "date_trunc('minute', now(), 'UTC'))"
    )
    op.execute(FUNCTION)
    op.execute(GUARD)


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
