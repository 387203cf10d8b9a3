"""Room for a named content digest in ``retention_events`` (``sha256:`` + 64 hex digits).

``content_digest`` grows from 64 to 128 characters: its prefix names the algorithm (``mh64:`` or
``sha256:``, see ``heurmetrics.store.digests``); events already chained keep their value, so
``audit verify`` recomputes the same hashes. On PostgreSQL widening a ``varchar`` rewrites nothing.
SQLite (where retention is refused, so the table is empty) rebuilds the table in batch mode, which
drops its triggers: the append-only triggers are read first and created again, unchanged.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.alter_column("retention_events", "content_digest", type_=sa.String(length=128),
                        existing_type=sa.String(length=64), existing_nullable=False)
        return
    triggers = bind.execute(sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'retention_events' ORDER BY name"
    )).scalars().all()
    with op.batch_alter_table("retention_events", recreate="always") as batch:
        batch.alter_column("content_digest", type_=sa.String(length=128), existing_type=sa.String(length=64),
                           existing_nullable=False)
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
