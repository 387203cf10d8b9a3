"""Audit reads: versions, lifecycle, point-in-time answers, diffs and what each version produced.

Every function takes the store (:class:`heurmetrics.store.sql_store.SqlStore`, read through its
``audit`` reader) and returns plain dataclasses (turn them into
JSON with :func:`heurmetrics.audit.model.jsonable`). The lifecycle state is always derived from
``rule_version_events`` by :func:`heurmetrics.audit.model.fold`, never stored separately.

**Flagged live executions.** An execution in mode ``live`` whose version was not the active one of
its rule in environment ``live`` at its ``started_at`` is *flagged*. The flag is computed at read
time from the activation intervals ``[activated, ended)`` (an execution at the exact activation
instant is covered, one at the exact end is not); the row itself is stored, counted and never
dropped like any other. Nothing is added to the SDK hot path.

Why one module of ~430 lines: the auditor's read models, each a short function over the store.
"""

from __future__ import annotations

import difflib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from heurmetrics.audit.errors import AuditError
from heurmetrics.audit.model import (
    Interval,
    LifecycleEvent,
    RuleState,
    VersionRecord,
    fold,
    version_sort_key,
)
from heurmetrics.domain import BacktestEvidence
from heurmetrics.errors import UnknownRule, UnknownRuleVersion

if TYPE_CHECKING:
    from heurmetrics.store.audit_reads import AuditReader
    from heurmetrics.store.sql_store import SqlStore

__all__ = ["BacktestEvidence"]  # re-exported: it moved to heurmetrics.domain (the store builds it)

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
def load_versions(reader: AuditReader, rule: str | None = None) -> list[VersionRecord]:
    """Every version (of ``rule``), in registration order."""
    return reader.versions(rule)


def _find(r: AuditReader, rule: str, version: str) -> VersionRecord:
    for v in r.versions(rule):
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
def list_rules(store: SqlStore) -> list[RuleSummary]:
    """Every rule with its number of versions, its latest version and what is active now, per env."""
    with store.audit.reader() as r:
        rules = r.rules()
        versions = r.versions()
        states = fold(r.events())
    out = []
    for name, created_at in rules:
        mine = _sorted([v for v in versions if v.rule == name])
        state = states.get(name, RuleState())
        out.append(RuleSummary(
            rule=name, created_at=created_at, versions=len(mine), latest_version=mine[-1].version if mine else None,
            active={env: ev.version for env, ev in sorted(state.active.items())},
        ))
    return out


def list_versions(store: SqlStore, rule: str) -> list[VersionSummary]:
    """The versions of ``rule``, semantically ordered (non-semantic version strings last)."""
    with store.audit.reader() as r:
        versions = r.versions(rule)
        if not versions:
            raise UnknownRule(rule)
        state = fold(r.events(rule=rule)).get(rule, RuleState())
    return [_summary(v, state) for v in _sorted(versions)]


def version_statuses(store: SqlStore) -> dict[int, tuple[str, list[str]]]:
    """rule_version id → (status, envs it is active in); for the metrics collector."""
    with store.audit.reader() as r:
        versions = [(vid, rule) for vid, rule, _version in r.version_keys()]
        states = fold(r.events())
    out = {}
    for vid, rule in versions:
        state = states.get(rule, RuleState())
        out[int(vid)] = (state.status(vid), state.active_envs(vid))
    return out


def show_version(store: SqlStore, rule: str, version: str) -> VersionDetail:
    """Everything about one version: content, author, approvals, lifecycle, backtests, executions."""
    with store.audit.reader() as r:
        v = _find(r, rule, version)
        rule_events = r.events(rule=rule)
        state = fold(rule_events).get(rule, RuleState())
        backtests = r.backtests(v.id)
        counts = _execution_counts(r, v.id, None, None)
        flagged, _live = _flagged_live(r, v.id, state.intervals.get((v.id, LIVE_ENV), []), None, None)
        children = [c.version for c in r.versions(rule) if c.parent_id == v.id]
    return VersionDetail(
        summary=_summary(v, state), params=v.params, source=v.source, prev_hash=v.prev_hash, row_hash=v.row_hash,
        events=[e for e in rule_events if e.rule_version_id == v.id],
        backtests=backtests,
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


def diff_versions(store: SqlStore, old: tuple[str, str], new: tuple[str, str]) -> VersionDiff:
    """What changed from ``old`` to ``new`` (each ``(rule, version)``): params by key path, source as a
    unified diff. Versions of different rules may be compared too."""
    with store.audit.reader() as r:
        a = _find(r, *old)
        b = _find(r, *new)
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
def active_at(store: SqlStore, at: datetime, env: str | None = None) -> list[ActiveVersion]:
    """Which version of each rule was active at ``at`` (per environment, or only in ``env``).

    Derived by replaying every lifecycle event with ``occurred_at <= at``: a version activated at
    exactly ``at`` is active at ``at``; one retired, rolled back or replaced at exactly ``at`` is not.
    """
    if at.tzinfo is None:
        raise AuditError(f"point in time {at.isoformat()} has no time zone: give one (e.g. 2026-01-01T12:00:00Z)")
    with store.audit.reader() as r:
        states = fold(r.events(), until=at)
    out = []
    for rule, state in sorted(states.items()):
        for e, ev in sorted(state.active.items()):
            if env is None or e == env:
                out.append(ActiveVersion(rule, e, ev.version, ev.occurred_at, ev.actor, ev.reason, ev.position))
    return out


def history(store: SqlStore, rule: str, version: str | None = None) -> list[LifecycleEvent]:
    """The lifecycle timeline of ``rule`` (or of one version), in chain order."""
    with store.audit.reader() as r:
        if not r.versions(rule):
            raise UnknownRule(rule)
        vid = None if version is None else _find(r, rule, version).id
        return r.events(rule=rule, rule_version_id=vid)


# --- executions --------------------------------------------------------------------------------
def _execution_counts(
    r: AuditReader, version_id: int, start: datetime | None, end: datetime | None
) -> list[ExecutionCount]:
    """Counts by mode, status and outcome: rollups for whole minutes, raw rows for the edges."""
    agg: Counter[tuple[str, str, str | None]] = Counter()
    for (_vid, m, s, o), n in r.count_executions(version_id, start, end).items():
        agg[(m, s, o)] += n
    return [ExecutionCount(m, s, o, n) for (m, s, o), n in sorted(agg.items(), key=lambda kv: _count_order(kv[0]))]


def _count_order(key: tuple[str, str, str | None]) -> tuple[str, str, str]:
    return key[0], key[1], key[2] or ""


def _clip(i: Interval, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime | None] | None:
    """The part of an activation interval inside ``[start, end)`` (None when they do not meet)."""
    lo = i.start if start is None else max(i.start, start)
    hi = i.end if end is None else (end if i.end is None else min(i.end, end))
    return None if hi is not None and lo >= hi else (lo, hi)


def _live_inside(r: AuditReader, version_id: int, intervals: list[Interval], start: datetime | None,
                 end: datetime | None) -> int:
    """Live executions of a version inside its activation intervals (which never overlap)."""
    inside = 0
    for i in intervals:
        clipped = _clip(i, start, end)
        if clipped is not None:
            inside += sum(r.count_executions(version_id, *clipped, mode="live").values())
    return inside


def _flagged_live(
    r: AuditReader, version_id: int, intervals: list[Interval], start: datetime | None, end: datetime | None
) -> tuple[int, int]:
    """(flagged, total) live executions of a version in ``[start, end)``."""
    total = sum(r.count_executions(version_id, start, end, mode="live").values())
    return total - _live_inside(r, version_id, intervals, start, end), total


def flagged_live_counts(store: SqlStore) -> dict[tuple[str, str], int]:
    """(rule, version) → number of its flagged live executions, for every version with live executions.

    Read from ``execution_rollups`` (raw rows only for the minutes an activation starts or ends in),
    so it stays cheap at any volume and exact after retention.
    """
    with store.audit.reader() as r:
        versions = {vid: (rule, version) for vid, rule, version in r.version_keys()}
        states = fold(r.events())
        totals: Counter[int] = Counter()
        for (vid, _m, _s, _o), n in r.count_executions(None, None, None, mode="live").items():
            totals[vid] += n
        out = {}
        for vid, total in totals.items():
            rule = versions[vid][0]
            intervals = states.get(rule, RuleState()).intervals.get((vid, LIVE_ENV), [])
            out[versions[vid]] = total - _live_inside(r, vid, intervals, None, None)
    return out


def executions(
    store: SqlStore,
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
    with store.audit.reader() as r:
        v = _find(r, rule, version)
        state = fold(r.events(rule=rule)).get(rule, RuleState())
        intervals = state.intervals.get((v.id, LIVE_ENV), [])
        counts = _execution_counts(r, v.id, start, end)
        flagged, live = _flagged_live(r, v.id, intervals, start, end)
        rolled_up_only = [RolledUpRange(a, b) for a, b in r.rolled_up_ranges(start, end)]
        items: list[ExecutionItem] = []
        if rows > 0:
            for x in r.executions(v.id, start, end, rows):
                live_flag = x.mode == "live" and not any(i.covers(x.started_at) for i in intervals)
                items.append(ExecutionItem(
                    x.event_id, x.started_at, x.mode, x.status, x.outcome, x.signal, x.confidence, x.duration_seconds,
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
