"""Drift FDR and overfitting statistics: the BH-adjusted drift p-value of each performance
snapshot, and the Deflated Sharpe Ratio / PBO / minimum backtest length of each walk-forward run.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (not batch mode): SQLite keeps the table and its append-only triggers.
    op.add_column("rule_version_performance", sa.Column("drift_adjusted_p_value", sa.Float(), nullable=True))
    op.create_table(
        "backtest_overfitting",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("trials_sharpe_variance", sa.Float(), nullable=True),
        sa.Column("sharpe", sa.Float(), nullable=True),
        sa.Column("deflated_sharpe_ratio", sa.Float(), nullable=True),
        sa.Column("benchmark_sharpe", sa.Float(), nullable=True),
        sa.Column("pbo", sa.Float(), nullable=True),
        sa.Column("pbo_blocks", sa.Integer(), nullable=True),
        sa.Column("pbo_splits", sa.Integer(), nullable=True),
        sa.Column("probability_of_loss", sa.Float(), nullable=True),
        sa.Column("min_backtest_years", sa.Float(), nullable=True),
        sa.Column("backtest_years", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["backtest_runs.run_id"], name=op.f("fk_backtest_overfitting_run_id_backtest_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_backtest_overfitting")),
    )


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
