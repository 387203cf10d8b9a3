"""``heurmetrics audit …``: the auditor's command line (read-only; every command has ``--json``).

Loaded by the main app (:mod:`heurmetrics.cli.main`) when ``audit`` runs. Every command
takes ``--database-url`` like the rest of the CLI and refuses a database that is not at head.

Exit codes: 0 success; 1 the chain is broken (``verify``) or the anchor was not found; 2 the
question could not be answered (unknown rule or version, bad time, database unreachable or not at
head, …), with the reason on stderr.

Why one module of ~480 lines: one command group, one small command per audit question.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from heurmetrics.audit import chain, queries
from heurmetrics.audit.errors import AuditError
from heurmetrics.audit.model import LifecycleEvent, jsonable, split_ref
from heurmetrics.cli.options import DatabaseUrl, json_errors, new_console, open_store
from heurmetrics.cli.options import fail as _fail
from heurmetrics.cli.options import settings_from as _settings
from heurmetrics.errors import HeurmetricsError
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.store.urls import redact_url

audit_app = typer.Typer(
    name="audit",
    help="Audit trail of rule versions: lifecycle, point-in-time answers, diffs, executions, export, "
    "hash-chain verification. Read-only.",
    no_args_is_help=True,
)

JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of tables.")]
_SHA256 = re.compile(r"[0-9a-f]{64}")
EXIT_BROKEN = 1
EXIT_ERROR = 2


def _console() -> Console:
    return new_console(highlight=False)  # hashes and times stay on one line; tables never cut


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(jsonable(payload), indent=2, ensure_ascii=False))


def _t(value: datetime | None) -> str:
    return "" if value is None else chain.format_time(value)


def _num(value: float | None, pattern: str = "{:.4g}") -> str:
    return "" if value is None else pattern.format(value)


@contextmanager
def _opened(database_url: str | None) -> Iterator[SqlStore]:
    """Open the store (refusing a database not at head) and turn known errors into exit code 2."""
    store = open_store(database_url)
    try:
        yield store
    except (HeurmetricsError, ValueError) as exc:
        raise _fail(str(exc), EXIT_ERROR) from None
    finally:
        store.close()


def _ref(value: str) -> tuple[str, str]:
    try:
        return split_ref(value)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_ERROR) from None


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return queries.parse_time(value)
    except AuditError as exc:
        raise _fail(f"{option}: {exc}", EXIT_ERROR) from None


_WIDTHS = {"(UTC)": 27, "run id": 36, "event id": 36}
_RIGHT = {"pos", "count", "versions"}


def _table(title: str, *columns: str) -> Table:
    """A table whose times, ids and hashes are never wrapped or truncated (auditors copy them)."""
    table = Table(title=title)
    for column in columns:
        width = next((w for key, w in _WIDTHS.items() if key in column), None)
        table.add_column(
            column, justify="right" if column in _RIGHT else "left", no_wrap=width is not None, min_width=width
        )
    return table


def _events_table(title: str, events: list[LifecycleEvent], *, with_version: bool = True) -> Table:
    version = ("version",) if with_version else ()
    table = _table(title, "pos", "time (UTC)", *version, "event", "env", "actor", "reason")
    for e in events:
        extra = ""
        if e.event == "activated" and e.details.get("replaces"):
            extra = f" (replaces {e.details['replaces']})"
        if e.event == "rolled_back" and e.details.get("restored"):
            extra = f" (restores {e.details['restored']})"
        table.add_row(
            str(e.position),
            _t(e.occurred_at),
            *((e.version,) if with_version else ()),
            e.event + extra,
            e.env or "",
            e.actor,
            e.reason,
        )
    return table


# --- commands ----------------------------------------------------------------------------------
@audit_app.command("rules")
def rules_cmd(database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """List every rule: number of versions, latest version, and what is active now per environment."""
    json_errors(as_json)
    with _opened(database_url) as store:
        rules = queries.list_rules(store)
    if as_json:
        return _print_json(rules)
    table = _table("Rules", "rule", "versions", "latest", "active now", "first registered (UTC)")
    for r in rules:
        active = ", ".join(f"{env}={v}" for env, v in r.active.items()) or "-"
        table.add_row(r.rule, str(r.versions), r.latest_version or "", active, _t(r.created_at))
    _console().print(table)


@audit_app.command("versions")
def versions_cmd(
    rule: Annotated[str, typer.Argument(help="Rule name.")],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """The versions of RULE in semantic-version order, with status, author, approver and lineage."""
    json_errors(as_json)
    with _opened(database_url) as store:
        versions = queries.list_versions(store, rule)
    if as_json:
        return _print_json(versions)
    table = _table(
        f"Versions of {rule}", "version", "status", "author", "approved by", "created (UTC)", "parent", "summary"
    )
    for v in versions:
        status = v.status + (f" ({', '.join(v.active_envs)})" if v.active_envs else "")
        table.add_row(
            v.version,
            status,
            v.created_by,
            ", ".join(v.approved_by) or "-",
            _t(v.created_at),
            v.parent or "",
            v.description or "",
        )
    _console().print(table)


@audit_app.command("show")
def show_cmd(
    ref: Annotated[str, typer.Argument(metavar="RULE@VERSION", help="The version, e.g. range_bias@1.0.0.")],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Everything about one version: params, source, hashes, author, approver, lifecycle, backtest
    evidence (run ids with headline metrics) and execution counts."""
    json_errors(as_json)
    rule, version = _ref(ref)
    with _opened(database_url) as store:
        detail = queries.show_version(store, rule, version)
    if as_json:
        return _print_json(detail)
    s = detail.summary
    console = _console()
    console.print(
        Text(f"{s.rule}@{s.version}", style="bold"),
        f"— {s.status}",
        f"({', '.join(s.active_envs)})" if s.active_envs else "",
    )
    fields = [
        ("summary", s.description or ""),
        ("author", s.created_by),
        ("registered", _t(s.created_at)),
        ("approved by", ", ".join(s.approved_by) or "nobody yet"),
        ("parent", s.parent or "-"),
        ("derived versions", ", ".join(detail.children) or "-"),
        ("code ref", s.code_ref or "-"),
        ("content hash", s.content_hash),
        ("chain", f"position {s.position}, row hash {detail.row_hash}"),
    ]
    for name, value in fields:
        console.print(f"  {name + ':':<18}{value}")
    console.print("\n[bold]params[/]")
    console.print(json.dumps(detail.params, indent=2, sort_keys=True, ensure_ascii=False), markup=False)
    console.print("\n[bold]source[/]")
    console.print(detail.source or "(empty)", markup=False)
    console.print(_events_table("Lifecycle", detail.events, with_version=False))
    runs = _table(
        "Backtest evidence", "run id", "status", "dataset", "finished (UTC)", "sharpe", "max drawdown", "total return"
    )
    for b in detail.backtests:
        runs.add_row(
            str(b.run_id),
            b.status,
            b.dataset,
            _t(b.finished_at),
            _num(b.sharpe, "{:.3f}"),
            _num(b.max_drawdown, "{:.2%}"),
            _num(b.total_return, "{:.2%}"),
        )
    console.print(runs)
    title = f"Executions ({detail.executions_total:,}; flagged live: {detail.flagged_live_executions:,})"
    counts = _table(title, "mode", "status", "outcome", "count")
    for c in detail.executions:
        counts.add_row(c.mode, c.status, c.outcome or "-", f"{c.count:,}")
    console.print(counts)


@audit_app.command("diff")
def diff_cmd(
    old: Annotated[str, typer.Argument(metavar="RULE@V1", help="The older version.")],
    new: Annotated[str, typer.Argument(metavar="RULE@V2", help="The newer version.")],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """What changed between two versions: params by key path and a unified diff of the source."""
    json_errors(as_json)
    a, b = _ref(old), _ref(new)
    with _opened(database_url) as store:
        diff = queries.diff_versions(store, a, b)
    if as_json:
        return _print_json(diff)
    console = _console()
    console.print(
        f"{diff.old} ({diff.old_hash[:12]}) → {diff.new} ({diff.new_hash[:12]})",
        "— identical content" if diff.identical else "",
    )
    table = _table("Params", "key", "change", "old", "new")
    for p in diff.params:
        table.add_row(
            p.path,
            p.change,
            "" if p.change == "added" else json.dumps(p.old),
            "" if p.change == "removed" else json.dumps(p.new),
        )
    console.print(table if diff.params else "params: no change")
    if not diff.source_diff:
        console.print("source: no change")
        return
    console.print("[bold]source[/]")
    for line in diff.source_diff.splitlines():
        style = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
        console.print(Text(line, style=style))


@audit_app.command("active")
def active_cmd(
    at: Annotated[str, typer.Option("--at", help="ISO 8601 time with a zone (2026-01-01T12:00:00Z) or 'now'.")] = "now",
    env: Annotated[str | None, typer.Option("--env", help="Only this environment (live, paper, …).")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Which version of each rule was active at --at (events at exactly that instant count)."""
    json_errors(as_json)
    when = _time(at, "--at")
    assert when is not None
    with _opened(database_url) as store:
        active = queries.active_at(store, when, env)
    if as_json:
        return _print_json({"at": when, "env": env, "active": active})
    title = f"Active at {_t(when)}" + (f" in {env}" if env else "")
    table = _table(title, "rule", "env", "version", "since (UTC)", "activated by", "reason")
    for a in active:
        table.add_row(a.rule, a.env, a.version, _t(a.since), a.activated_by, a.reason)
    _console().print(table if active else "No version was active then.")


@audit_app.command("history")
def history_cmd(
    rule: Annotated[str, typer.Argument(metavar="RULE[@VERSION]", help="A rule, or one version of it.")],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """The lifecycle timeline: who proposed, approved, activated, retired or rolled back what, when, why."""
    json_errors(as_json)
    name, _, version = rule.partition("@")
    with _opened(database_url) as store:
        events = queries.history(store, name, version or None)
    if as_json:
        return _print_json(events)
    _console().print(_events_table(f"History of {rule}", events))


@audit_app.command("executions")
def executions_cmd(
    ref: Annotated[str, typer.Argument(metavar="RULE@VERSION", help="The version.")],
    start: Annotated[str | None, typer.Option("--from", help="Start (inclusive), ISO 8601 with a zone.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (exclusive), ISO 8601 with a zone.")] = None,
    rows: Annotated[
        int, typer.Option("--rows", min=0, help=f"Also list up to N executions (at most {queries.MAX_ROWS}).")
    ] = 0,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """What a version produced: counts by mode, status and outcome, and live executions flagged because
    the version was not active in `live` at their time."""
    json_errors(as_json)
    rule, version = _ref(ref)
    t0, t1 = _time(start, "--from"), _time(end, "--to")
    with _opened(database_url) as store:
        report = queries.executions(store, rule, version, start=t0, end=t1, rows=rows)
    if as_json:
        return _print_json(report)
    console = _console()
    window = f"{_t(t0) or 'the beginning'} to {_t(t1) or 'now'}"
    console.print(
        f"{rule}@{version}, {window}: {report.total:,} executions; live {report.live:,}, "
        f"flagged live (version not active in live then): {report.flagged_live:,}"
    )
    for gone in report.rolled_up_only:
        console.print(
            f"rolled up only: {_t(gone.start)} → {_t(gone.end)} (raw rows dropped by retention; counts from the "
            "rollups, no execution rows)"
        )
    periods = "; ".join(f"{_t(p.start)} → {_t(p.end) or 'now'}" for p in report.live_periods) or "never"
    console.print(f"active in live: {periods}")
    table = _table("Counts", "mode", "status", "outcome", "count")
    for c in report.counts:
        table.add_row(c.mode, c.status, c.outcome or "-", f"{c.count:,}")
    console.print(table)
    if rows:
        items = _table(
            f"First {len(report.rows)} executions",
            "started (UTC)",
            "event id",
            "mode",
            "status",
            "outcome",
            "signal",
            "confidence",
            "flagged",
        )
        for r in report.rows:
            items.add_row(
                _t(r.started_at),
                str(r.event_id),
                r.mode,
                r.status,
                r.outcome or "-",
                _num(r.signal),
                _num(r.confidence),
                "FLAGGED" if r.flagged else "",
            )
        console.print(items)


@audit_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory to write (created if missing).")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or jsonl.")] = "csv",
    start: Annotated[str | None, typer.Option("--from", help="Only executions from this time.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Only executions before this time.")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Write rules, versions, lifecycle events, backtest runs and executions (with the live flag) to
    files for your own tools, plus manifest.json (row counts, sha256 per file, chain head and check)."""
    json_errors(as_json)
    from heurmetrics.audit.export import FORMATS, export

    if fmt not in FORMATS:
        raise _fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}", EXIT_ERROR)
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file; give a directory (created if missing)", EXIT_ERROR)
    t0, t1 = _time(start, "--from"), _time(end, "--to")
    with _opened(database_url) as store:
        try:
            result = export(
                store, out, fmt, start=t0, end=t1, source_url=redact_url(_settings(database_url).database_url)
            )
        except OSError as exc:
            raise _fail(f"writing {out}: {exc.strerror or exc}", EXIT_ERROR) from None
    if as_json:
        return _print_json(
            {
                "directory": str(result.directory),
                "format": result.format,
                "manifest": str(result.manifest),
                "chain_ok": result.chain_ok,
                "files": [
                    {"table": f.table, "path": str(f.path), "rows": f.rows, "sha256": f.sha256} for f in result.files
                ],
            }
        )
    console = _console()
    console.print(f"Exported to {result.directory} ({result.format}):")
    for f in result.files:
        console.print(f"  {f.path.name:<28} {f.rows:>12,} rows  sha256 {f.sha256}")
    console.print(f"manifest: {result.manifest}; hash chain at export: {'OK' if result.chain_ok else 'BROKEN'}")


@audit_app.command("verify")
def verify_cmd(
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", help="A head hash anchored earlier: fail unless the chain still contains it."),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Recompute the hash chain and every content hash; exit 1 naming the first broken record."""
    json_errors(as_json)
    if expect_head is not None and not _SHA256.fullmatch(expect_head):
        raise _fail(f"--expect-head {expect_head[:80]!r} is not a head hash (64 hex digits)", EXIT_ERROR)
    with _opened(database_url) as store:
        report = chain.verify(store, expect_head=expect_head)
    if as_json:
        _print_json(
            {
                "ok": report.ok,
                "records": report.records,
                "versions": report.versions,
                "events": report.events,
                "retention_events": report.retention_events,
                "head": report.head,
                "first_problem": report.first,
                "problems": report.problems,
                "anchor_found": report.anchor_found,
            }
        )
    else:
        console = _console()
        head = f"head: position {report.head.position}, hash {report.head.row_hash}"
        if report.ok:
            console.print(
                f"chain OK: {report.records} records ({report.versions} versions, {report.events} events"
                f"{f', {report.retention_events} retention events' if report.retention_events else ''}) "
                f"verified; {head}"
            )
        for problem in report.problems:
            console.print(
                Text(f"BROKEN at position {problem.position} ({problem.kind}): {problem.message}", style="bold red")
            )
        if report.anchor_found is False:
            console.print(
                Text(f"anchor {expect_head} is not in the chain: records were removed or replaced", style="bold red")
            )
        elif report.anchor_found:
            console.print(f"anchor {expect_head} found in the chain")
    if not report.ok:
        raise typer.Exit(EXIT_BROKEN)


@audit_app.command("head")
def head_cmd(database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """Print the chain head (position, hash, time) to anchor outside the database."""
    json_errors(as_json)
    with _opened(database_url) as store:
        head = chain.chain_head(store)
    if as_json:
        return _print_json(
            {
                "position": head.position,
                "row_hash": head.row_hash,
                "recorded_at": head.recorded_at,
                "table": head.table,
                "record_id": head.record_id,
            }
        )
    typer.echo(f"position {head.position}  hash {head.row_hash}  at {_t(head.recorded_at) or '-'}")
