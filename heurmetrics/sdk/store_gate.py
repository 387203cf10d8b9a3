"""Opening the SDK's store: a database that may be down at start, checked once it is reachable."""

from __future__ import annotations

import logging
import threading

from heurmetrics.errors import StoreUnavailable
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.store.urls import database_identity as database_identity  # re-exported

log = logging.getLogger("heurmetrics.sdk")

__all__ = ["StoreGate", "database_identity", "open_store"]


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
        with self._lock:
            if self.verified:
                return
            self.store.check_schema(initialize_empty=self._initialize_empty)  # StoreUnavailable while down
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
        return StoreGate(SqlStore.connect(url), verified=False)
    store.prepare_partitions()  # this month's and the next ones (PostgreSQL)
    return StoreGate(store, verified=True)
