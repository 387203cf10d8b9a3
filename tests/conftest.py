"""Shared fixtures: real databases (SQLite file and PostgreSQL), services, free ports.

Tests that need a service skip when it is missing, except when ``HEURMETRICS_REQUIRE_SERVICES=1``
(CI sets it): then a missing service is a failure, so nothing is silently skipped in CI.
PostgreSQL comes from ``HEURMETRICS_TEST_POSTGRES_URL`` (default: the local trust-auth server);
every test session works in a database of its own, dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.sql_store import SqlStore

REQUIRE_SERVICES = os.environ.get("HEURMETRICS_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("HEURMETRICS_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def require_service(name: str, available: bool, why: str = "") -> None:
    """Skip (locally) or fail (in CI) when a service the test needs is missing."""
    if available:
        return
    message = f"{name} is not available{': ' + why if why else ''}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (HEURMETRICS_REQUIRE_SERVICES=1: services are mandatory here)")
    pytest.skip(message)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require_service(name, path is not None, "install Debian's prometheus package")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _libpq(url: str) -> str:
    """A psycopg connection string from a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a fresh, empty database on the PostgreSQL server, dropped after the session."""
    try:
        admin = psycopg.connect(_libpq(POSTGRES_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", False, str(exc).strip().splitlines()[0])
        raise
    name = f"heurmetrics_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """An empty Postgres schema per test (the session database, reset)."""
    engine = create_store_engine(postgres_server_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    yield postgres_server_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'heurmetrics.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each supported kind: every store test runs on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'heurmetrics.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """``database_url`` upgraded to head."""
    engine = create_store_engine(database_url)
    migrations.upgrade(engine)
    engine.dispose()
    return database_url


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    s = SqlStore.open(migrated_url)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _stop_rollup_jobs() -> Iterator[None]:
    """No roll-up job thread outlives its test: a store a test left open must not move the next
    test's watermark (every test's PostgreSQL schema is the same database, reset)."""
    yield
    from heurmetrics.store import rollup_job

    rollup_job.stop_all()
