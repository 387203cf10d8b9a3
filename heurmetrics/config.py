"""Configuration from ``HEURMETRICS_*`` environment variables; CLI options override them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite:///heurmetrics.db"


class Settings(BaseSettings):
    """Runtime settings. ``Settings()`` reads the environment; keyword arguments win."""

    model_config = SettingsConfigDict(env_prefix="HEURMETRICS_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (default ./heurmetrics.db) or "
        "postgresql+psycopg://user@host:port/db",
    )
    api_token: SecretStr | None = Field(None, description="Bearer token required on every POST when set.")
    max_rule_versions: int = Field(
        1000, ge=1, description="Cardinality budget: rule versions that may have series in one exporter."
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    performance_snapshot_seconds: float = Field(
        300.0, ge=0, description="How often `serve` appends a rule_version_performance snapshot (0 = never)."
    )
    metrics_cache_seconds: float = Field(
        15.0, ge=0, description="How long gauges read from the store are cached between scrapes."
    )
    # Bounds on every PostgreSQL connection (docs/reliability.md, heurmetrics.store.engine).
    db_connect_timeout: float = Field(5.0, gt=0, le=300, description="Seconds to establish a connection.")
    db_statement_timeout: float = Field(
        30.0, gt=0, le=3600, description="Server-side statement_timeout in seconds (migrations are exempt)."
    )
    db_lock_timeout: float = Field(10.0, gt=0, le=3600, description="Server-side lock_timeout in seconds.")
    db_idle_in_transaction_timeout: float = Field(
        30.0, gt=0, le=3600, description="Server-side idle_in_transaction_session_timeout in seconds."
    )
    db_checkout_timeout: float = Field(
        45.0,
        gt=0,
        le=3600,
        description="Client-side bound: a connection checked out longer than this has its socket shut "
        "down (detects a silent connection).",
    )
    db_pool_timeout: float = Field(10.0, gt=0, le=300, description="Seconds to wait for a free pooled connection.")
    db_keepalives_idle: int = Field(10, ge=1, le=3600, description="Seconds of idle before TCP keepalive probes.")


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
