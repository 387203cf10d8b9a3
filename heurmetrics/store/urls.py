"""Database URLs: parsing, checking and redacting them (SQLAlchemy's URL grammar, used only here).

Everything above the store handles URLs as plain strings and asks this module what they mean.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url


def redact_url(url: str) -> str:
    """A database URL safe for logs and error messages: the password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still carry a secret: show nothing of it
        return "<unparsable database URL>"


#: The URLs heurmetrics can open (SQLAlchemy driver names).
SUPPORTED_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"})
_EXPECTED = "use sqlite:///FILE.db or postgresql+psycopg://USER@HOST:PORT/DB"


def database_url_problem(url: str, *, must_exist: bool = False) -> str | None:
    """What is wrong with ``url`` before anything connects, or None.

    Catches what would otherwise surface as a traceback deep in SQLAlchemy: text that is not a
    URL, a port that is not a number, an unsupported database; and with ``must_exist``, a SQLite
    file that does not exist (a command that only reads must not create one).
    """
    try:
        parsed = make_url(url)
        _ = parsed.port
    except Exception:  # ArgumentError, ValueError (bad port): never echo the text, it may hold a secret
        return f"the database URL is not a valid URL: {_EXPECTED}"
    if parsed.drivername not in SUPPORTED_DRIVERS:
        return f"unsupported database {parsed.drivername!r} in {redact_url(url)}: {_EXPECTED}"
    if parsed.get_backend_name() == "postgresql":
        from heurmetrics.extras import MissingExtra, missing_module

        missing = missing_module("postgres")
        if missing is not None:
            return str(MissingExtra("postgres", missing))
    if must_exist and parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
            return f"no such database file: {path} (create it with `heurmetrics db upgrade` or `heurmetrics demo`)"
    return None


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
