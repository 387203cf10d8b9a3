"""``heurmetrics db partitions``, ``db retention`` and ``db rollup``: the storage commands.

Mounted on the ``db`` sub-app by :mod:`heurmetrics.cli.main`; the work is done by
``SqlStore.maintenance``. Errors print one line naming the problem, no traceback: a refused
retention or bad policy exits 1, a store that cannot be reached or used and an unknown
``--digest`` exit 2; ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from heurmetrics.cli.options import EXIT_ERROR, DatabaseUrl, checked_database_url, console, fail
from heurmetrics.config import current_user
from heurmetrics.errors import HeurmetricsError, StoreError
from heurmetrics.store import digests, partitions, retention
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.store.urls import redact_url

JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def _time(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _partition_json(p: partitions.Partition) -> dict[str, Any]:
    return {"name": p.name, "start": None if p.start is None else p.start.isoformat(),
            "end": None if p.end is None else p.end.isoformat(), "rows": p.rows, "bytes": p.bytes}


def partitions_cmd(
    create: Annotated[bool, typer.Option("--create", help="Create the current and the next partitions first.")] = False,
    ahead: Annotated[int, typer.Option(min=0, max=36, help="With --create: partitions ahead of the current one.")] = (
        partitions.AHEAD
    ),
    interval: Annotated[
        str | None, typer.Option(help="monthly or daily [env: HEURMETRICS_PARTITION_INTERVAL; default monthly]")
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """List the partitions of heuristic_executions with their sizes and row counts (PostgreSQL)."""
    url = checked_database_url(database_url)
    if interval is not None and interval not in partitions.INTERVALS:
        raise fail(f"--interval {interval!r}: expected one of {', '.join(partitions.INTERVALS)}")
    with _store(url) as store:
        if store.dialect != "postgresql":
            raise fail(f"{redact_url(url)} is SQLite: one flat heuristic_executions table, no partitions "
                       "(see docs/storage.md)")
        created = (
            store.maintenance.ensure_partitions(ahead=ahead, interval=interval or partitions.configured_interval())
            if create else []
        )
        listed = store.maintenance.list_partitions()
    if as_json:
        console.print_json(json.dumps({"created": created, "partitions": [_partition_json(p) for p in listed]}))
        return
    table = Table(title=f"heuristic_executions partitions ({len(listed)})")
    for column in ("partition", "from", "to", "rows", "size", "bytes/row"):
        table.add_column(column, justify="right" if column in ("rows", "size", "bytes/row") else "left")
    for p in listed:
        per_row = f"{p.bytes / p.rows:,.0f}" if p.rows else "-"
        table.add_row(p.name, _time(p.start), _time(p.end) if p.start else "DEFAULT", f"{p.rows:,}", _size(p.bytes),
                      per_row)
    console.print(table)
    if created:
        console.print(f"created: {', '.join(created)}")
    default = next((p for p in listed if p.start is None), None)
    if default is not None and default.rows:
        console.print(f"[bold yellow]warning:[/] {default.rows:,} executions are in {default.name}: "
                      "their month had no partition when they arrived (see docs/storage.md)")


def retention_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be dropped; change nothing.")] = False,
    keep: Annotated[
        str | None,
        typer.Option("--keep", help="Raw executions kept per mode, e.g. live=400d,paper=400d,backtest=30d "
                                    "(defaults: live 400d, paper 400d, backtest 30d)."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Who applies the policy (recorded in the audit chain; default: OS user).")
    ] = None,
    digest: Annotated[
        str, typer.Option("--digest", help="Content digest of the dropped rows recorded in the chain: mh64 (fast "
                                           "checksum, catches accidents) or sha256 (collision-resistant, slower; "
                                           "for auditors). See docs/storage.md.")
    ] = digests.FAST,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Drop whole partitions of raw executions older than the policy, verified against the rollups
    and recorded in the audit hash chain (PostgreSQL; refused on SQLite)."""
    try:
        digests.check(digest)
    except digests.DigestError as exc:  # a usage error: exit 2, one line
        raise fail(str(exc), EXIT_ERROR) from None
    url = checked_database_url(database_url)
    with _store(url) as store:
        policy = retention.parse_policy(keep)
        planned = store.maintenance.retention_plan(policy)
        events = [] if dry_run else [
            store.maintenance.drop_partition(c, policy, actor=actor or current_user(), digest=digest)
            for c in planned
        ]
    if as_json:
        console.print_json(json.dumps({
            "dry_run": dry_run, "policy": policy.as_record(), "digest": digest,
            "partitions": [{**_partition_json(c.partition), "modes": c.modes} for c in planned],
            "events": [{"id": e.id, "chain_position": e.chain_position, "partition": e.partition_name,
                        "rows": e.row_count, "content_digest": e.content_digest, "row_hash": e.row_hash}
                       for e in events],
        }))
        return
    verb = "would drop" if dry_run else "dropped"
    policy_text = ", ".join(f"{m} {w}" for m, w in policy.as_record().items())
    if not planned:
        console.print(f"policy ({policy_text}): nothing is due")
        return
    table = Table(title=f"retention ({policy_text}): {verb} {len(planned)} partition(s)")
    for column in ("partition", "from", "to", "modes", "rows", "size"):
        table.add_column(column, justify="right" if column in ("rows", "size") else "left")
    for c in planned:
        p = c.partition
        table.add_row(p.name, _time(p.start), _time(p.end), ",".join(c.modes) or "-", f"{p.rows:,}", _size(p.bytes))
    console.print(table)
    for e in events:
        console.print(f"{e.partition_name}: {e.row_count:,} rows dropped; retention event {e.id} at chain position "
                      f"{e.chain_position}, content digest {e.content_digest}")


def rollup_cmd(
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Roll up every execution of the minutes closed a minute ago into the rollup tables, and show
    the watermark (PostgreSQL; writers also run this every few seconds, see docs/storage.md)."""
    url = checked_database_url(database_url)
    with _store(url) as store:
        before = store.maintenance.rollup_watermark()
        after = store.maintenance.roll_up()
    if as_json:
        console.print_json(json.dumps({"before": before.isoformat() if before else None,
                                       "through": after.isoformat() if after else None}))
        return
    if after is None:
        console.print("every execution is rolled up in the transaction that stores it (no roll-up job here)")
        return
    console.print(f"executions started before {_time(after)} are in the rollups (was {_time(before)})")


@contextmanager
def _store(url: str) -> Iterator[SqlStore]:
    """A store for one command; its errors become one ``error: …`` line (no traceback)."""
    store = SqlStore.connect(url)
    try:
        yield store
    except StoreError as exc:  # unreachable or failing database: the store names it
        raise fail(str(exc), EXIT_ERROR) from None
    except (HeurmetricsError, ValueError) as exc:  # ValueError: a bad policy or interval, named
        raise fail(str(exc)) from None
    finally:
        store.close()
