"""Engines for the two supported databases, with the settings durability and bounded waits need.

Every PostgreSQL connection gets (values from :class:`DatabaseTimeouts`, i.e. ``HEURMETRICS_DB_*``):

* ``connect_timeout`` — the whole connection attempt;
* ``statement_timeout``, ``lock_timeout`` and ``idle_in_transaction_session_timeout`` as session
  options, so the *server* cancels a long statement, gives up waiting on a row lock, and ends a
  transaction whose client went silent (its locks are released; a resend can proceed);
* TCP keepalives and ``tcp_user_timeout``, so a peer that vanished is noticed by the kernel;
* a client-side *checkout bound*: a watchdog shuts down the socket of a connection that stays
  checked out of the pool longer than ``checkout_seconds``. A connection whose network went silent
  (no RST, no answer) then fails with an error instead of blocking its thread forever: this is
  the bound on "silent connection detected" (keepalives cannot see silence behind a proxy that
  still acknowledges TCP). The pool's own liveness ping runs under the same bound.
* ``pool_timeout``: how long a request waits for a free pooled connection (then
  ``sqlalchemy.exc.TimeoutError``, which the exporter answers with 503 and ``Retry-After``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError

from heurmetrics.extras import require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Bounds on every PostgreSQL connection (seconds). See the module doc and docs/reliability.md."""

    connect: float = 5.0
    statement: float = 30.0
    lock: float = 10.0
    idle_in_transaction: float = 30.0
    checkout: float = 45.0
    pool: float = 10.0
    keepalives_idle: int = 10
    keepalives_interval: int = 5
    keepalives_count: int = 3

    @classmethod
    def from_settings(cls) -> DatabaseTimeouts:
        from heurmetrics.config import Settings

        s = Settings()
        return cls(
            connect=s.db_connect_timeout,
            statement=s.db_statement_timeout,
            lock=s.db_lock_timeout,
            idle_in_transaction=s.db_idle_in_transaction_timeout,
            checkout=s.db_checkout_timeout,
            pool=s.db_pool_timeout,
            keepalives_idle=s.db_keepalives_idle,
        )

    def connect_args(self) -> dict[str, Any]:
        """libpq parameters: connect timeout, server-side timeouts as session options, keepalives."""
        ms = lambda seconds: max(1, round(seconds * 1000))  # noqa: E731
        options = " ".join(
            (
                f"-c statement_timeout={ms(self.statement)}",
                f"-c lock_timeout={ms(self.lock)}",
                f"-c idle_in_transaction_session_timeout={ms(self.idle_in_transaction)}",
            )
        )
        return {
            "connect_timeout": max(1, round(self.connect)),
            "options": options,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            # Unacknowledged data (a peer that vanished mid-write) fails the connection too.
            "tcp_user_timeout": ms(self.keepalives_idle + self.keepalives_interval * self.keepalives_count),
        }


def create_store_engine(url: str, *, timeouts: DatabaseTimeouts | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url``: SQLite (embedded default) or PostgreSQL through psycopg 3.

    SQLite runs in WAL mode with ``synchronous=FULL`` (an acknowledged write survives power
    loss), foreign keys on, and a busy timeout so several processes can share one file.
    PostgreSQL connections get the bounds of ``timeouts`` (default: from the settings).
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
    require("postgres")  # one line naming heurmetrics[postgres] instead of a ModuleNotFoundError
    bounds = timeouts or DatabaseTimeouts.from_settings()
    # The exporter serves requests from a thread pool: keep enough connections open that
    # concurrent batches do not open and close connections all the time.
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_timeout", bounds.pool)
    connect_args = {**bounds.connect_args(), **kwargs.pop("connect_args", {})}
    # No pool_pre_ping: the checkout listener pings instead, under the watchdog (a pre-ping on a
    # silent connection would block before any listener could bound it).
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    event.listen(engine, "checkout", _on_checkout(bounds.checkout))
    event.listen(engine, "checkin", _on_checkin)
    return engine


# --- the checkout watchdog ---------------------------------------------------------------------------
class _Watchdog:
    """One daemon thread per process: shuts down sockets of connections checked out too long."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, Any]] = {}  # id(connection record) -> (deadline, dbapi conn)
        self._thread: threading.Thread | None = None

    def arm(self, key: int, dbapi_connection: Any, seconds: float) -> None:
        with self._lock:
            self._armed[key] = (time.monotonic() + seconds, dbapi_connection)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heurmetrics-db-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, key: int) -> None:
        with self._lock:
            self._armed.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self._lock:  # held while killing: a connection cannot be checked in (and closed) meanwhile
                for key, (deadline, conn) in list(self._armed.items()):
                    if now >= deadline:
                        del self._armed[key]
                        _shut_down(conn)


_WATCHDOG = _Watchdog()


def _shut_down(dbapi_connection: Any) -> None:
    """Make every pending and future read/write on this connection fail at once."""
    try:
        fd = dbapi_connection.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
    except Exception:  # already closed
        return
    try:
        log.warning("database connection silent beyond the checkout bound: shutting its socket down")
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _on_checkout(seconds: float) -> Any:
    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        _WATCHDOG.arm(id(record), dbapi_connection, seconds)
        try:  # the liveness ping SQLAlchemy's pre_ping would do, but bounded by the watchdog
            if dbapi_connection.info.transaction_status != 0:  # IDLE: leave it as the pool expects
                dbapi_connection.rollback()
            # In autocommit: one round trip (no BEGIN before it, no ROLLBACK after it; issue 11).
            dbapi_connection.autocommit = True
            try:
                dbapi_connection.execute("SELECT 1")
            finally:
                dbapi_connection.autocommit = False  # a broken connection raises here too: discarded
        except Exception as exc:
            _WATCHDOG.disarm(id(record))
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc

    return checkout


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    _WATCHDOG.disarm(id(record))


@contextlib.contextmanager
def unbounded(conn: Connection) -> Iterator[None]:
    """Lift the statement timeout and the checkout bound for one long operation (migrations).

    The connection is discarded afterwards (not returned to the pool). The lock timeout stays: a
    migration must not queue behind a stuck transaction forever.
    """
    if conn.dialect.name != "postgresql":
        yield
        return
    record = conn.connection._connection_record
    if record is not None:
        _WATCHDOG.disarm(id(record))
    conn.exec_driver_sql("SET statement_timeout = 0")
    conn.exec_driver_sql("SET idle_in_transaction_session_timeout = 0")
    try:
        yield
    finally:
        conn.invalidate()  # never hand this session (timeouts lifted) back to the pool


def lift_bounds_for_transaction(conn: Connection) -> None:
    """Lift the statement, idle-in-transaction and checkout bounds until the current transaction
    ends (``SET LOCAL``; the connection goes back to the pool with its normal bounds). For one
    long, deliberate operation such as a retention run; the lock timeout stays."""
    if conn.dialect.name != "postgresql":
        return
    record = conn.connection._connection_record
    if record is not None:
        _WATCHDOG.disarm(id(record))  # re-armed at the next checkout
    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
