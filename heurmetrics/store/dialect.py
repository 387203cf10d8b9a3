"""The one place that picks the PostgreSQL or SQLite ``INSERT … ON CONFLICT DO NOTHING`` construct."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection


def insert_ignoring(conn: Connection, target: Any, index_elements: Sequence[str]) -> Any:
    """``INSERT INTO target … ON CONFLICT (index_elements) DO NOTHING`` in the connection's dialect."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return insert(target).on_conflict_do_nothing(index_elements=list(index_elements))
