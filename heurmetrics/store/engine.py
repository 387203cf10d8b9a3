"""Engines for the two supported databases, with the settings durability needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def create_store_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``: SQLite (embedded default) or PostgreSQL through psycopg 3.

    SQLite runs in WAL mode with ``synchronous=FULL`` (an acknowledged write survives power
    loss), foreign keys on, and a busy timeout so several processes can share one file.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///file.db or "
            "postgresql+psycopg://user@host:port/db"
        )
    # The exporter serves requests from a thread pool: keep enough connections open that
    # concurrent batches do not open and close connections all the time.
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
