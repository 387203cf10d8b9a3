"""The ``heurmetrics`` command line. Options override ``HEURMETRICS_*`` environment variables."""

from __future__ import annotations

import gc
import ipaddress
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from heurmetrics.cli.db import partitions_cmd, retention_cmd, rollup_cmd
from heurmetrics.cli.lazy import LazyCommand, LazyGroup
from heurmetrics.cli.options import (
    EXIT_ERROR,
    DatabaseUrl,
    checked_database_url,
    console,
    fail,
    prepare_consoles,
    settings_from,
)
from heurmetrics.errors import HeurmetricsError, StoreUnavailable
from heurmetrics.extras import MissingExtra, require
from heurmetrics.store.urls import redact_url

T = TypeVar("T")

#: Sub-commands whose module is imported only when they run (or show their help): the SDK
#: commands stay fast, and those of an extra that is not installed fail with one line naming it.
LAZY_COMMANDS = (
    LazyCommand(
        "dashboards", "heurmetrics.cli.monitoring:dashboards_app", "Grafana dashboards and provisioning files."
    ),
    LazyCommand("alerts", "heurmetrics.cli.monitoring:alerts_app", "Prometheus alerting and recording rules."),
    LazyCommand(
        "audit",
        "heurmetrics.cli.audit:audit_app",
        "Audit trail of rule versions: lifecycle, point-in-time answers, diffs, executions, export, "
        "hash-chain verification. Read-only.",
    ),
    LazyCommand(
        "backtest",
        "heurmetrics.cli.backtest:backtest_app",
        "Backtests: walk-forward runs of rules defined in Python modules.",
    ),
    LazyCommand(
        "live",
        "heurmetrics.cli.live:live_app",
        "rule.version.performance: resolve signals, snapshot live performance and drift.",
    ),
    # The pre-0.2 name of the same commands, kept so existing runbooks and cron jobs keep working.
    LazyCommand("performance", "heurmetrics.cli.live:live_app", "", hidden=True),
    LazyCommand(
        "report",
        "heurmetrics.cli.report:report",
        "Tearsheet of a stored backtest run: equity with fold boundaries, drawdown, folds, metrics.",
    ),
)

app = typer.Typer(
    name="heurmetrics",
    cls=LazyGroup.with_commands(LAZY_COMMANDS),
    help="Heuristic-metrics exporter: every rule execution and backtest, counted and stored.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema, partitions, rollups and retention.", no_args_is_help=True)
app.add_typer(db_app, name="db")
db_app.command("partitions")(partitions_cmd)
db_app.command("retention")(retention_cmd)
db_app.command("rollup")(rollup_cmd)


@app.callback()
def _before_every_command() -> None:
    prepare_consoles()


# Shared with the sub-apps; the underscore names are kept for modules that imported them here.
_settings = settings_from
_fail = fail


def _on_store(url: str, doing: str, action: Callable[[Any], T]) -> T:
    """Run ``action`` on a store opened at ``url`` and closed after; any failure is one line, exit 2."""
    from heurmetrics.store.sql_store import SqlStore

    try:
        store = SqlStore.connect(url)
        try:
            return action(store)
        finally:
            store.close()
    except StoreUnavailable as exc:
        raise _fail(str(exc), EXIT_ERROR) from None
    except Exception as exc:
        raise _fail(f"{doing} {redact_url(url)} failed: {type(exc).__name__}: {exc}", EXIT_ERROR) from None


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply all migrations up to head (forward-only). Safe to run repeatedly."""
    url = checked_database_url(database_url, must_exist=False)  # the one command that creates a database
    before, after = _on_store(url, "upgrading", lambda store: store.upgrade())
    if before == after:
        console.print(f"{redact_url(url)} is already at head ({after}).")
    else:
        console.print(f"{redact_url(url)} upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the schema revision of the database and the head this version needs."""
    url = checked_database_url(database_url)
    current, head = _on_store(url, "reading", lambda store: store.revision())
    state = "at head" if current == head else "NOT at head: run `heurmetrics db upgrade`"
    console.print(f"current: {current or 'empty'}  head: {head}  ({state})")
    if current != head:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 9464,
    database_url: DatabaseUrl = None,
    api_token: Annotated[
        str | None, typer.Option(help="Bearer token required on POST [env: HEURMETRICS_API_TOKEN].")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json for JSON lines.")] = "text",
) -> None:
    """Run the exporter: HTTP ingest under /v1 and the Prometheus page at /metrics."""
    try:
        require("server")
    except MissingExtra as exc:
        raise _fail(str(exc), EXIT_ERROR) from None
    import uvicorn

    from heurmetrics.server.app import create_app
    from heurmetrics.server.logs import configure_logging

    settings = _settings(database_url, api_token=api_token)
    checked_database_url(settings.database_url)  # serving a file that is not there would create it
    if settings.api_token is None and not _is_loopback(host):
        raise _fail(
            f"refusing to bind {host} without an API token: set HEURMETRICS_API_TOKEN (or --api-token), "
            "or bind 127.0.0.1"
        )
    configure_logging(log_level, log_format)
    try:
        application = create_app(settings)
    except HeurmetricsError as exc:
        raise _fail(str(exc), EXIT_ERROR) from None
    except Exception as exc:  # a driver error: one line, no traceback
        raise _fail(f"cannot open database {redact_url(settings.database_url)}: {exc}", EXIT_ERROR) from None
    tune_gc_for_serving()
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False, log_config=None)


@app.command()
def demo(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Where to write [env: HEURMETRICS_DATABASE_URL; default: a fresh ./heurmetrics-demo.db SQLite file].",
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=60, help="Days of hourly synthetic data (the walk-forward needs 60).")] = 540,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market data.")] = 7,
) -> None:
    """Register three demo rules in two versions each, run and backtest them, print a summary."""
    from heurmetrics.demo.run import DEMO_DATABASE, run_demo

    given = database_url or os.environ.get("HEURMETRICS_DATABASE_URL")
    url = None if given is None else checked_database_url(given, must_exist=False)
    if url is None:
        path = Path(DEMO_DATABASE)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)  # the demo starts from a fresh file
        url = f"sqlite:///{path}"
    try:
        run_demo(url, days=days, seed=seed, console=console)
    except HeurmetricsError as exc:
        raise _fail(str(exc), EXIT_ERROR) from None


#: Allocations (minus deallocations) between young-generation collections while serving.
SERVING_GC_THRESHOLD0 = 20_000


def tune_gc_for_serving() -> None:
    """The exporter's process owns its garbage collector: freeze what start-up built, and collect
    the young generation less often.

    A batch of 1,000 executions allocates tens of thousands of short-lived objects; with the
    default thresholds every collection that reaches the oldest generation walked the whole
    start-up heap (FastAPI, pandas, SciPy: hundreds of thousands of objects). ``gc.freeze()`` moves
    those to a permanent generation the collector never scans; a young threshold of 20,000
    instead of 700 halves the collections of a batch. Together ~9 µs less CPU per execution
    (docs/benchmarks.md, issue 11). Cyclic garbage is still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(SERVING_GC_THRESHOLD0, gen1, gen2)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
