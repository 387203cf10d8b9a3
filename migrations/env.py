"""Alembic environment for heurmetrics.

Run through ``heurmetrics db upgrade`` (which passes its engine in ``config.attributes``), or with
plain ``alembic`` and ``HEURMETRICS_DATABASE_URL`` set.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from heurmetrics.store.engine import unbounded
from heurmetrics.store.partitions import include_name
from heurmetrics.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is None:
        from heurmetrics.config import Settings
        from heurmetrics.store.engine import create_store_engine

        engine = create_store_engine(Settings().database_url)
    return engine


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection, unbounded(connection):  # a migration may take long
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode recreates tables instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_name=include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("heurmetrics migrations run online only: use `heurmetrics db upgrade`")
run_migrations_online()
