"""Walk-forward performance: execution resolutions and rule-version performance snapshots.

Both tables are append-only (a resolution and a snapshot are facts, never updated).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Tables created here whose rows are facts: UPDATE, DELETE and TRUNCATE are rejected by triggers.
APPEND_ONLY_TABLES = ("execution_resolutions", "rule_version_performance")


def upgrade() -> None:
    big_pk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "execution_resolutions",
        sa.Column("id", big_pk, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("horizon", sa.String(length=16), nullable=False),
        sa.Column("horizon_seconds", sa.Integer(), nullable=False),
        sa.Column("realized_return", sa.Float(), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("price_at_signal", sa.Float(), nullable=True),
        sa.Column("price_at_horizon", sa.Float(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "realized_return IS NOT NULL OR correct IS NOT NULL", name=op.f("ck_execution_resolutions_has_result")
        ),
        sa.CheckConstraint("horizon_seconds > 0", name=op.f("ck_execution_resolutions_horizon_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_resolutions")),
        sa.UniqueConstraint("event_id", "horizon", name=op.f("uq_execution_resolutions_event_id_horizon")),
    )
    op.create_table(
        "rule_version_performance",
        sa.Column("id", big_pk, autoincrement=True, nullable=False),
        sa.Column("rule_version_id", sa.Integer(), nullable=False),
        sa.Column("time_window", sa.String(length=8), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizon", sa.String(length=16), nullable=False),
        sa.Column("modes", sa.String(length=64), nullable=False),
        sa.Column("executions", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error_ratio", sa.Float(), nullable=True),
        sa.Column("latency_p50_seconds", sa.Float(), nullable=True),
        sa.Column("latency_p95_seconds", sa.Float(), nullable=True),
        sa.Column("signals", sa.Integer(), nullable=False),
        sa.Column("signal_ratio", sa.Float(), nullable=True),
        sa.Column("mean_confidence", sa.Float(), nullable=True),
        sa.Column("resolved", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("hit_ratio", sa.Float(), nullable=True),
        sa.Column("hit_ratio_low", sa.Float(), nullable=True),
        sa.Column("hit_ratio_high", sa.Float(), nullable=True),
        sa.Column("mean_realized_return", sa.Float(), nullable=True),
        sa.Column("expected_hit_ratio", sa.Float(), nullable=True),
        sa.Column("expected_return_per_signal", sa.Float(), nullable=True),
        sa.Column("expectation_signals", sa.Integer(), nullable=True),
        sa.Column("expectation_run_id", sa.Uuid(), nullable=True),
        sa.Column("drift_p_value", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=True),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_version_id"],
            ["rule_versions.id"],
            name=op.f("fk_rule_version_performance_rule_version_id_rule_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["expectation_run_id"],
            ["backtest_runs.run_id"],
            name=op.f("fk_rule_version_performance_expectation_run_id_backtest_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_version_performance")),
    )
    with op.batch_alter_table("rule_version_performance", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rule_version_performance_version_window_at",
            ["rule_version_id", "time_window", "computed_at"],
            unique=False,
        )
    # Append-only in the database itself, like the history tables of 0002 (which created the
    # Postgres trigger function heurmetrics_append_only()).
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()"
            )
    else:
        for table in APPEND_ONLY_TABLES:
            for op_name in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_append_only_{op_name.lower()} BEFORE {op_name} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'heurmetrics: table {table} is append-only: "
                    f"{op_name} is not allowed'); END"
                )


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
