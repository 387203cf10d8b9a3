"""Alembic migrations: locate them, apply them, and refuse to run on a schema that is not at head.

Migrations are forward-only. They live in the repository's top-level ``migrations/`` folder and
are shipped inside the wheel as ``heurmetrics/_migrations`` so an installed package can upgrade a
database without a checkout.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from heurmetrics.errors import SchemaNotAtHead
from heurmetrics.store.urls import redact_url

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def migrations_dir() -> Path:
    """The migration scripts: inside the installed wheel, else the checkout's top-level folder."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"heurmetrics migrations not found next to {_PACKAGE_DIR}")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # env.py runs on this engine instead of building its own from a URL (no password in config).
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(migrations_dir())).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Apply migrations up to ``revision``; returns (revision before, revision after)."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), revision)
    after = current_revision(engine)
    assert after is not None
    return before, after


def is_empty(engine: Engine) -> bool:
    """True when the database holds no tables at all (a brand-new file or schema)."""
    return not inspect(engine).get_table_names()


def require_head(engine: Engine) -> None:
    """Raise :class:`SchemaNotAtHead` unless the schema is exactly at the head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotAtHead(redact_url(engine.url.render_as_string(hide_password=False)), current, head)
