"""Driver errors become domain errors here, at the store boundary, and nowhere else.

Callers above the store (SDK, server, CLI) catch :class:`~heurmetrics.errors.StoreUnavailable`
(the database cannot be reached or did not answer in time: retry later) and
:class:`~heurmetrics.errors.StoreRejectedData` (the database refuses the rows themselves: retrying
cannot help), never a SQLAlchemy or psycopg exception. Other driver errors (a bug in a query)
propagate unchanged.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

from heurmetrics.errors import StoreRejectedData, StoreUnavailable

#: The database is unreachable, went away, or no pooled connection was free in time.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    sqlite3.OperationalError,
)
#: The database refuses the data (constraint, type, encoding).
_REJECTED: tuple[type[BaseException], ...] = (sa_exc.IntegrityError, sa_exc.DataError, UnicodeError)


def _psycopg(*names: str) -> tuple[type[BaseException], ...]:
    """psycopg's error classes, if psycopg is loaded: it is the optional [postgres] extra, and
    while it is not imported no store has used it, so none of its errors can be in flight."""
    psycopg = sys.modules.get("psycopg")
    return tuple(getattr(psycopg, name) for name in names) if psycopg is not None else ()


def reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and background link."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip()


def _rejects(exc: BaseException) -> bool:
    return isinstance(exc, _REJECTED + _psycopg("IntegrityError", "DataError")) or (
        isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, UnicodeError)
    )


#: SQLite's generic error code: a bad statement (no such table or column, a syntax error), not an
#: unreachable database, although Python raises it as an OperationalError too.
_SQLITE_ERROR = 1


def _unavailable(exc: BaseException) -> bool:
    if not isinstance(exc, _UNAVAILABLE + _psycopg("OperationalError", "InterfaceError")):
        return False
    sqlite_error = getattr(exc, "orig", exc)
    code = getattr(sqlite_error, "sqlite_errorcode", None) if isinstance(sqlite_error, sqlite3.Error) else None
    # Busy, locked, I/O, full, cannot open…: the database cannot be used now. A query bug is not that.
    return code is None or (code & 0xFF) != _SQLITE_ERROR


@contextmanager
def translated(what: str, *, unavailable: str | None = None) -> Iterator[None]:
    """Run a store operation; a driver failure leaves it as a domain error naming ``what`` failed.

    ``unavailable`` replaces the ``"<what> failed"`` prefix of the :class:`StoreUnavailable` message.
    """
    try:
        yield
    except Exception as exc:
        if _unavailable(exc):
            raise StoreUnavailable(f"{unavailable or what + ' failed'}: {reason(exc)}") from exc
        if isinstance(exc, (sa_exc.SQLAlchemyError, UnicodeError, *_psycopg("Error"))) and _rejects(exc):
            raise StoreRejectedData(f"{what}: the database refused the data: {reason(exc)}") from exc
        raise
