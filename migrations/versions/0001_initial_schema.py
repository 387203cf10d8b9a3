"""Initial schema: rules, rule versions, executions, backtest runs, folds, equity points.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 13:22:28.193632
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_rules_name")),
    )
    op.create_table(
        "rule_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["rule_id"], ["rules.id"], name=op.f("fk_rule_versions_rule_id_rules")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_versions")),
        sa.UniqueConstraint("rule_id", "version", name=op.f("uq_rule_versions_rule_id_version")),
    )
    with op.batch_alter_table("rule_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rule_versions_content_hash"), ["content_hash"], unique=False)

    op.create_table(
        "backtest_runs",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("rule_version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("dataset", sa.String(length=256), nullable=False),
        sa.Column("dataset_hash", sa.String(length=64), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("periods_per_year", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("total_return", sa.Float(), nullable=True),
        sa.Column("cagr", sa.Float(), nullable=True),
        sa.Column("volatility", sa.Float(), nullable=True),
        sa.Column("sharpe", sa.Float(), nullable=True),
        sa.Column("max_drawdown", sa.Float(), nullable=True),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("config", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('completed', 'failed')", name=op.f("ck_backtest_runs_status")),
        sa.ForeignKeyConstraint(
            ["rule_version_id"],
            ["rule_versions.id"],
            name=op.f("fk_backtest_runs_rule_version_id_rule_versions"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_backtest_runs")),
    )
    with op.batch_alter_table("backtest_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backtest_runs_rule_version_id_finished_at", ["rule_version_id", "finished_at"], unique=False
        )

    op.create_table(
        "backtest_folds",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("fold_index", sa.Integer(), nullable=False),
        sa.Column("in_sample_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("in_sample_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("out_of_sample_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("out_of_sample_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("params", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("in_sample_metrics", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("out_of_sample_metrics", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["backtest_runs.run_id"], name=op.f("fk_backtest_folds_run_id_backtest_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "fold_index", name=op.f("pk_backtest_folds")),
    )
    op.create_table(
        "equity_points",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("fold_index", sa.Integer(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("drawdown", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["backtest_runs.run_id"], name=op.f("fk_equity_points_run_id_backtest_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_points")),
    )
    with op.batch_alter_table("equity_points", schema=None) as batch_op:
        batch_op.create_index("ix_equity_points_run_id_fold_index_ts", ["run_id", "fold_index", "ts"], unique=False)

    op.create_table(
        "heuristic_executions",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("rule_version_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("signal", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("error_type", sa.String(length=128), nullable=True),
        sa.Column("backtest_run_id", sa.Uuid(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("mode IN ('live', 'paper', 'backtest')", name=op.f("ck_heuristic_executions_mode")),
        sa.CheckConstraint("status IN ('ok', 'error', 'timeout')", name=op.f("ck_heuristic_executions_status")),
        sa.CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)",
            name=op.f("ck_heuristic_executions_confidence_range"),
        ),
        sa.CheckConstraint("duration_seconds >= 0", name=op.f("ck_heuristic_executions_duration_nonnegative")),
        sa.ForeignKeyConstraint(
            ["rule_version_id"],
            ["rule_versions.id"],
            name=op.f("fk_heuristic_executions_rule_version_id_rule_versions"),
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_heuristic_executions")),
    )
    with op.batch_alter_table("heuristic_executions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_heuristic_executions_backtest_run_id"), ["backtest_run_id"], unique=False)
        batch_op.create_index(
            "ix_heuristic_executions_rule_version_id_started_at",
            ["rule_version_id", "started_at"],
            unique=False,
        )


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
