"""Delivery records: which batch write inserted which executions, for exactly-once counting.

One small row per batch write (not per execution): see ``heurmetrics.store.deliveries``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heuristic_deliveries",
        sa.Column("attempt_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("event_ids", sa.LargeBinary(), nullable=True),
        sa.Column("claimed_by", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_heuristic_deliveries")),
    )
    op.create_index(
        op.f("ix_heuristic_deliveries_delivery_id"), "heuristic_deliveries", ["delivery_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_heuristic_deliveries_delivery_id"), table_name="heuristic_deliveries")
    op.drop_table("heuristic_deliveries")
