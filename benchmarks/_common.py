"""Helpers shared by the benchmark scripts: timing statistics, tables, environment, scratch Postgres.

Not part of the package: the scripts put this folder on ``sys.path`` themselves, so they run as
``python benchmarks/bench_xxx.py`` from the repository root.
"""

from __future__ import annotations

import os
import platform
import signal
import statistics
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

#: Admin connection of the PostgreSQL server the persistence benchmark creates its scratch DB on.
DEFAULT_POSTGRES_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    return (
        os.environ.get("HEURMETRICS_BENCH_POSTGRES_URL")
        or os.environ.get("HEURMETRICS_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL
    )


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def git_revision() -> str:
    """The checkout being measured: short commit, plus "+ local changes" when the tree is dirty."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "-"
    return f"{commit}{' + local changes' if dirty else ''}"


def print_environment(title: str, extra: dict[str, str] | None = None) -> None:
    """The header every benchmark prints: when, where, with what."""
    print(f"== {title}")
    info = {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": str(cpu_count()),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(terse=True),
        "prometheus_client": _version("prometheus_client"),
        "SQLAlchemy": _version("SQLAlchemy"),
        "psycopg": _version("psycopg"),
        "heurmetrics": f"{_version('heurmetrics')} (git {git_revision()})",
        **(extra or {}),
    }
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"   {key:<{width}}  {value}")
    print()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    """A plain, aligned text table (first column left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join((c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])) for i, c in enumerate(row)).rstrip()

    if title:
        print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    print()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so ``finally`` blocks (dropping scratch databases) run."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def scratch_postgres(admin_url: str | None = None) -> Iterator[str]:
    """Create a database ``bench_<random>`` on the server, yield its SQLAlchemy URL, drop it after."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url or postgres_admin_url())
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"(scratch database {name} dropped)", file=sys.stderr)


def libpq_url(sqlalchemy_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
