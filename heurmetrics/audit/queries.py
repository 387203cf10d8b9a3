"""Audit reads: versions, lifecycle, point-in-time answers, diffs and what each version produced.

Every function takes an engine of a database at head and returns plain dataclasses (turn them into
JSON with :func:`heurmetrics.audit.model.jsonable`). The lifecycle state is always derived from
``rule_version_events`` by :func:`heurmetrics.audit.model.fold`, never stored separately.

**Flagged live executions.** An execution in mode ``live`` whose version was not the active one of
its rule in environment ``live`` at its ``started_at`` is *flagged*. The flag is computed at read
time from the activation intervals ``[activated, ended)`` (an execution at the exact activation
instant is covered, one at the exact end is not); the row itself is stored, counted and never
dropped like any other. Nothing is added to the SDK hot path.
"""

from __future__ import annotations

import difflib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from heurmetrics.audit.errors import AuditError
from heurmetrics.audit.lifecycle import load_events
from heurmetrics.audit.model import (
    Interval,
    LifecycleEvent,
    RuleState,
    VersionRecord,
    fold,
    version_sort_key,
)
from heurmetrics.errors import UnknownRule, UnknownRuleVersion
from heurmetrics.store import rollups
from heurmetrics.store.schema import BacktestRunRow, ExecutionRow, RuleRow, RuleVersionRow

#: The environment whose activations authorise executions in mode ``live``.
LIVE_ENV = "live"
#: Most execution rows a single request returns.
MAX_ROWS = 10_000


# --- read models -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RolledUpRange:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class RuleSummary:
    rule: str
    created_at: datetime
    versions: int
    latest_version: str | None
    #: env → version active there now.
    active: dict[str, str]


@dataclass(frozen=True, slots=True)
class VersionSummary:
    rule: str
    version: str
    content_hash: str
    created_at: datetime
    created_by: str
    description: str | None
    parent: str | None
    code_ref: str | None
    status: str
    active_envs: list[str]
    approved_by: list[str]
    position: int


@dataclass(frozen=True, slots=True)
class BacktestEvidence:
    run_id: uuid.UUID
    status: str
    kind: str
    dataset: str
    dataset_hash: str | None
    period_start: datetime | None
    period_end: datetime | None
    finished_at: datetime
    sharpe: float | None
    max_drawdown: float | None
    total_return: float | None
    cagr: float | None


@dataclass(frozen=True, slots=True)
class ExecutionCount:
    mode: str
    status: str
    outcome: str | None
    count: int


@dataclass(frozen=True, slots=True)
class VersionDetail:
    summary: VersionSummary
    params: dict[str, Any]
    source: str
    prev_hash: str
    row_hash: str
    events: list[LifecycleEvent]
    backtests: list[BacktestEvidence]
    executions: list[ExecutionCount]
    executions_total: int
    flagged_live_executions: int
    children: list[str]


@dataclass(frozen=True, slots=True)
class ParamChange:
    path: str
    change: str  # "added" | "removed" | "changed"
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class VersionDiff:
    old: str
    new: str
    old_hash: str
    new_hash: str
    identical: bool
    params: list[ParamChange]
    source_diff: str


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    rule: str
    env: str
    version: str
    since: datetime
    activated_by: str
    reason: str
    position: int


@dataclass(frozen=True, slots=True)
class ExecutionItem:
    event_id: uuid.UUID
    started_at: datetime
    mode: str
    status: str
    outcome: str | None
    signal: float | None
    confidence: float | None
    duration_seconds: float
    flagged: bool


@dataclass(frozen=True, slots=True)
class ActivePeriod:
    env: str
    start: datetime
    end: datetime | None
    activated_by: str
    ended_by: str | None


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    rule: str
    version: str
    start: datetime | None
    end: datetime | None
    total: int
    counts: list[ExecutionCount]
    live: int
    flagged_live: int
    live_periods: list[ActivePeriod]
    rows: list[ExecutionItem] = field(default_factory=list)
    #: Parts of the range whose raw rows retention dropped: counts there come from the rollups
    #: (exact), but no execution rows can be listed.
    rolled_up_only: list[RolledUpRange] = field(default_factory=list)


# --- loading -----------------------------------------------------------------------------------
def load_versions(conn: Connection, rule: str | None = None) -> list[VersionRecord]:
    """Every version (of ``rule``), in registration order."""
    parent = aliased(RuleVersionRow)
    parent_rule = aliased(RuleRow)
    v = RuleVersionRow
    query = (
        select(v.__table__, RuleRow.name, parent.version.label("parent_version"), parent_rule.name.label("parent_rule"))
        .join(RuleRow, RuleRow.id == v.rule_id)
        .outerjoin(parent, parent.id == v.parent_id)
        .outerjoin(parent_rule, parent_rule.id == parent.rule_id)
        .order_by(v.id)
    )
    if rule is not None:
        query = query.where(RuleRow.name == rule)
    out = []
    for r in conn.execute(query).all():
        row = r
        parent_ref = None
        if r.parent_version is not None:
            parent_ref = r.parent_version if r.parent_rule == r.name else f"{r.parent_rule}@{r.parent_version}"
        out.append(VersionRecord(
            id=row.id, rule=r.name, version=row.version, content_hash=row.content_hash, params=row.params,
            source=row.source, created_at=row.created_at, created_by=row.created_by, description=row.description,
            parent_id=row.parent_id, parent=parent_ref, code_ref=row.code_ref, position=row.chain_position,
            prev_hash=row.prev_hash, row_hash=row.row_hash,
        ))
    return out


def _find(conn: Connection, rule: str, version: str) -> VersionRecord:
    for v in load_versions(conn, rule):
        if v.version == version:
            return v
    raise UnknownRuleVersion(rule, version)


def _summary(v: VersionRecord, state: RuleState) -> VersionSummary:
    return VersionSummary(
        rule=v.rule, version=v.version, content_hash=v.content_hash, created_at=v.created_at, created_by=v.created_by,
        description=v.description, parent=v.parent, code_ref=v.code_ref, status=state.status(v.id),
        active_envs=state.active_envs(v.id), approved_by=[e.actor for e in state.approvals.get(v.id, [])],
        position=v.position,
    )


def _sorted(versions: list[VersionRecord]) -> list[VersionRecord]:
    return sorted(versions, key=lambda v: version_sort_key(v.version, v.id))


# --- rules and versions ------------------------------------------------------------------------
def list_rules(engine: Engine) -> list[RuleSummary]:
    """Every rule with its number of versions, its latest version and what is active now, per env."""
    with engine.connect() as conn:
        rules = conn.execute(select(RuleRow.name, RuleRow.created_at).order_by(RuleRow.name)).all()
        versions = load_versions(conn)
        states = fold(load_events(conn))
    out = []
    for name, created_at in rules:
        mine = _sorted([v for v in versions if v.rule == name])
        state = states.get(name, RuleState())
        out.append(RuleSummary(
            rule=name, created_at=created_at, versions=len(mine), latest_version=mine[-1].version if mine else None,
            active={env: ev.version for env, ev in sorted(state.active.items())},
        ))
    return out


def list_versions(engine: Engine, rule: str) -> list[VersionSummary]:
    """The versions of ``rule``, semantically ordered (non-semantic version strings last)."""
    with engine.connect() as conn:
        versions = load_versions(conn, rule)
        if not versions:
            raise UnknownRule(rule)
        state = fold(load_events(conn, rule=rule)).get(rule, RuleState())
    return [_summary(v, state) for v in _sorted(versions)]


def version_statuses(engine: Engine) -> dict[int, tuple[str, list[str]]]:
    """rule_version id → (status, envs it is active in); for the metrics collector."""
    with engine.connect() as conn:
        versions = conn.execute(select(RuleVersionRow.id, RuleRow.name).join(RuleRow)).all()
        states = fold(load_events(conn))
    out = {}
    for vid, rule in versions:
        state = states.get(rule, RuleState())
        out[int(vid)] = (state.status(vid), state.active_envs(vid))
    return out


def show_version(engine: Engine, rule: str, version: str) -> VersionDetail:
    """Everything about one version: content, author, approvals, lifecycle, backtests, executions."""
    with engine.connect() as conn:
        v = _find(conn, rule, version)
        rule_events = load_events(conn, rule=rule)
        state = fold(rule_events).get(rule, RuleState())
        runs = conn.execute(
            select(BacktestRunRow.__table__)
            .where(BacktestRunRow.rule_version_id == v.id)
            .order_by(BacktestRunRow.finished_at)
        ).all()
        counts = _execution_counts(conn, v.id, None, None)
        flagged, _live = _flagged_live(conn, v.id, state.intervals.get((v.id, LIVE_ENV), []), None, None)
        children = [c.version for c in load_versions(conn, rule) if c.parent_id == v.id]
    return VersionDetail(
        summary=_summary(v, state), params=v.params, source=v.source, prev_hash=v.prev_hash, row_hash=v.row_hash,
        events=[e for e in rule_events if e.rule_version_id == v.id],
        backtests=[
            BacktestEvidence(
                run_id=r.run_id, status=r.status, kind=r.kind, dataset=r.dataset, dataset_hash=r.dataset_hash,
                period_start=r.period_start, period_end=r.period_end, finished_at=r.finished_at, sharpe=r.sharpe,
                max_drawdown=r.max_drawdown, total_return=r.total_return, cagr=r.cagr,
            )
            for r in runs
        ],
        executions=counts, executions_total=sum(c.count for c in counts), flagged_live_executions=flagged,
        children=children,
    )


# --- diff --------------------------------------------------------------------------------------
def _param_changes(old: Any, new: Any, path: str = "") -> list[ParamChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[ParamChange] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                changes.append(ParamChange(sub, "removed", old[key], None))
            elif key not in old:
                changes.append(ParamChange(sub, "added", None, new[key]))
            else:
                changes += _param_changes(old[key], new[key], sub)
        return changes
    if old == new and type(old) is type(new):
        return []
    return [ParamChange(path or "(params)", "changed", old, new)]


def diff_versions(engine: Engine, old: tuple[str, str], new: tuple[str, str]) -> VersionDiff:
    """What changed from ``old`` to ``new`` (each ``(rule, version)``): params by key path, source as a
    unified diff. Versions of different rules may be compared too."""
    with engine.connect() as conn:
        a = _find(conn, *old)
        b = _find(conn, *new)
    source_diff = "".join(difflib.unified_diff(
        a.source.splitlines(keepends=True), b.source.splitlines(keepends=True), fromfile=a.ref, tofile=b.ref,
    ))
    if source_diff and not source_diff.endswith("\n"):
        source_diff += "\n"
    return VersionDiff(
        old=a.ref, new=b.ref, old_hash=a.content_hash, new_hash=b.content_hash,
        identical=a.content_hash == b.content_hash, params=_param_changes(a.params, b.params), source_diff=source_diff,
    )


# --- point in time -----------------------------------------------------------------------------
def active_at(engine: Engine, at: datetime, env: str | None = None) -> list[ActiveVersion]:
    """Which version of each rule was active at ``at`` (per environment, or only in ``env``).

    Derived by replaying every lifecycle event with ``occurred_at <= at``: a version activated at
    exactly ``at`` is active at ``at``; one retired, rolled back or replaced at exactly ``at`` is not.
    """
    if at.tzinfo is None:
        raise AuditError(f"point in time {at.isoformat()} has no time zone: give one (e.g. 2026-01-01T12:00:00Z)")
    with engine.connect() as conn:
        states = fold(load_events(conn), until=at)
    out = []
    for rule, state in sorted(states.items()):
        for e, ev in sorted(state.active.items()):
            if env is None or e == env:
                out.append(ActiveVersion(rule, e, ev.version, ev.occurred_at, ev.actor, ev.reason, ev.position))
    return out


def history(engine: Engine, rule: str, version: str | None = None) -> list[LifecycleEvent]:
    """The lifecycle timeline of ``rule`` (or of one version), in chain order."""
    with engine.connect() as conn:
        if not load_versions(conn, rule):
            raise UnknownRule(rule)
        vid = None if version is None else _find(conn, rule, version).id
        return load_events(conn, rule=rule, rule_version_id=vid)


# --- executions --------------------------------------------------------------------------------
def _window(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def _execution_counts(
    conn: Connection, version_id: int, start: datetime | None, end: datetime | None
) -> list[ExecutionCount]:
    """Counts by mode, status and outcome: rollups for whole minutes, raw rows for the edges."""
    agg: Counter[tuple[str, str, str | None]] = Counter()
    for (_vid, m, s, o), n in rollups.count_executions(conn, version_id, start, end).items():
        agg[(m, s, o)] += n
    return [ExecutionCount(m, s, o, n) for (m, s, o), n in sorted(agg.items(), key=lambda kv: _count_order(kv[0]))]


def _count_order(key: tuple[str, str, str | None]) -> tuple[str, str, str]:
    return key[0], key[1], key[2] or ""


def _clip(i: Interval, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime | None] | None:
    """The part of an activation interval inside ``[start, end)`` (None when they do not meet)."""
    lo = i.start if start is None else max(i.start, start)
    hi = i.end if end is None else (end if i.end is None else min(i.end, end))
    return None if hi is not None and lo >= hi else (lo, hi)


def _live_inside(conn: Connection, version_id: int, intervals: list[Interval], start: datetime | None,
                 end: datetime | None) -> int:
    """Live executions of a version inside its activation intervals (which never overlap)."""
    inside = 0
    for i in intervals:
        clipped = _clip(i, start, end)
        if clipped is not None:
            inside += sum(rollups.count_executions(conn, version_id, *clipped, mode="live").values())
    return inside


def _flagged_live(
    conn: Connection, version_id: int, intervals: list[Interval], start: datetime | None, end: datetime | None
) -> tuple[int, int]:
    """(flagged, total) live executions of a version in ``[start, end)``."""
    total = sum(rollups.count_executions(conn, version_id, start, end, mode="live").values())
    return total - _live_inside(conn, version_id, intervals, start, end), total


def flagged_live_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """(rule, version) → number of its flagged live executions, for every version with live executions.

    Read from ``execution_rollups`` (raw rows only for the minutes an activation starts or ends in),
    so it stays cheap at any volume and exact after retention.
    """
    with engine.connect() as conn:
        versions = {int(vid): (rule, version) for vid, rule, version in conn.execute(
            select(RuleVersionRow.id, RuleRow.name, RuleVersionRow.version).join(RuleRow)
        )}
        states = fold(load_events(conn))
        totals: Counter[int] = Counter()
        for (vid, _m, _s, _o), n in rollups.count_executions(conn, None, None, None, mode="live").items():
            totals[vid] += n
        out = {}
        for vid, total in totals.items():
            rule = versions[vid][0]
            intervals = states.get(rule, RuleState()).intervals.get((vid, LIVE_ENV), [])
            out[versions[vid]] = total - _live_inside(conn, vid, intervals, None, None)
    return out


def executions(
    engine: Engine,
    rule: str,
    version: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    rows: int = 0,
) -> ExecutionReport:
    """What ``rule@version`` produced in ``[start, end)``: counts by mode, status and outcome, the
    live executions flagged because the version was not active in ``live`` then, and (``rows`` > 0)
    up to ``rows`` executions, oldest first, each with its flag."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise AuditError(f"--{name} {value.isoformat()} has no time zone: give one (e.g. 2026-01-01T00:00:00Z)")
    if rows > MAX_ROWS:
        raise AuditError(f"at most {MAX_ROWS} rows per request (asked for {rows}); use `audit export` for more")
    with engine.connect() as conn:
        v = _find(conn, rule, version)
        state = fold(load_events(conn, rule=rule)).get(rule, RuleState())
        intervals = state.intervals.get((v.id, LIVE_ENV), [])
        counts = _execution_counts(conn, v.id, start, end)
        flagged, live = _flagged_live(conn, v.id, intervals, start, end)
        rolled_up_only = [RolledUpRange(a, b) for a, b in rollups.rolled_up_ranges(conn, start, end)]
        items: list[ExecutionItem] = []
        if rows > 0:
            e = ExecutionRow
            for r in conn.execute(
                select(e.__table__).where(e.rule_version_id == v.id, *_window(e.started_at, start, end))
                .order_by(e.started_at, e.event_id).limit(rows)
            ).all():
                live_flag = r.mode == "live" and not any(i.covers(r.started_at) for i in intervals)
                items.append(ExecutionItem(
                    r.event_id, r.started_at, r.mode, r.status, r.outcome, r.signal, r.confidence, r.duration_seconds,
                    live_flag,
                ))
    periods = [
        ActivePeriod(i.env, i.start, i.end, i.started_by.actor, None if i.ended_by is None else i.ended_by.actor)
        for i in intervals
    ]
    return ExecutionReport(
        rule=rule, version=version, start=start, end=end, total=sum(c.count for c in counts), counts=counts,
        live=live, flagged_live=flagged, live_periods=periods, rows=items, rolled_up_only=rolled_up_only,
    )


def parse_time(value: str) -> datetime:
    """An ISO 8601 time with a zone (``2026-01-01T12:00:00Z``, ``…+02:00``) or ``now``; naive is refused."""
    if value.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise AuditError(f"{value!r} is not an ISO 8601 time (e.g. 2026-01-01T12:00:00Z)") from None
    if parsed.tzinfo is None:
        raise AuditError(f"{value!r} has no time zone: add Z for UTC or an offset like +02:00")
    return parsed.astimezone(UTC)
