"""Opening the SDK's store: a database that may be down at start, checked once it is reachable."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy.engine import make_url

from heurmetrics.errors import StoreUnavailable
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.sql_store import SqlStore

log = logging.getLogger("heurmetrics.sdk")

__all__ = ["StoreGate", "database_identity", "open_store"]


def database_identity(url: str) -> str:
    """What a spool's events belong to: the database of ``url`` without credentials.

    ``sqlite:///<absolute path>`` or ``postgresql://user@host:port/database``.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            database = str(Path(database).resolve())
        return f"sqlite:///{database}"
    return f"{backend}://{parsed.username or ''}@{parsed.host or ''}:{parsed.port or 5432}/{parsed.database or ''}"


class StoreGate:
    """Schema check of a store opened while the database was down; runs once it is reachable.

    :meth:`ensure` is thread-safe and cheap after the first success. It raises what
    :meth:`SqlStore.open` would: :class:`StoreUnavailable` while unreachable,
    :class:`~heurmetrics.errors.SchemaNotAtHead` when the schema is behind.
    """

    def __init__(self, store: SqlStore, *, verified: bool, initialize_empty: bool = True) -> None:
        self.store = store
        self.verified = verified
        self._initialize_empty = initialize_empty
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self.verified:
            return
        from sqlalchemy.exc import OperationalError

        with self._lock:
            if self.verified:
                return
            engine = self.store.engine
            try:
                if self._initialize_empty and migrations.is_empty(engine):
                    migrations.upgrade(engine)
                migrations.require_head(engine)
            except OperationalError as exc:
                raise StoreUnavailable(f"database unreachable: {exc.orig}") from None
            self.verified = True
            log.info("database reachable and at head")


def open_store(url: str, *, allow_offline: bool) -> StoreGate:
    """Open the store at ``url`` (initialising a brand-new empty database).

    When the database cannot be reached: raise :class:`StoreUnavailable`, unless
    ``allow_offline`` — then return an unverified store whose schema is checked on first use.
    """
    try:
        store = SqlStore.open(url, initialize_empty=True)
    except StoreUnavailable as exc:
        if not allow_offline:
            raise
        log.warning("database unreachable at start (%s): recording to the spool until it is back", exc)
        return StoreGate(SqlStore(create_store_engine(url)), verified=False)
    store.prepare_partitions()  # this month's and the next ones (PostgreSQL)
    return StoreGate(store, verified=True)
