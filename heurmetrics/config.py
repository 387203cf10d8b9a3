"""Configuration from ``HEURMETRICS_*`` environment variables; CLI options override them."""

from __future__ import annotations

import getpass

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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


def current_user() -> str:
    """The OS user running this process, recorded as the author or actor when none is given
    ("unknown" where the user has no passwd entry, as in many containers)."""
    try:
        return getpass.getuser()
    except Exception:  # KeyError / OSError: no user database entry
        return "unknown"
