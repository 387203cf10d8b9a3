"""Audit read models and the pure derivation of lifecycle state from events.

Nothing here touches the database: :func:`fold` replays events (in chain order) into the state of
each rule, which is how "which version is active", "who approved" and activation intervals are
derived — the events are the only source of truth.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from packaging.version import InvalidVersion, Version

from heurmetrics.domain import (  # noqa: F401  (re-exported: the audit vocabulary)
    ACTIVATED,
    APPROVED,
    PROPOSED,
    RETIRED,
    ROLLED_BACK,
    LifecycleEvent,
    VersionRecord,
)


@dataclass(slots=True)
class Interval:
    """A period during which a version was active in one environment: ``[start, end)``."""

    env: str
    start: datetime
    end: datetime | None
    started_by: LifecycleEvent
    ended_by: LifecycleEvent | None = None

    def covers(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


@dataclass(slots=True)
class RuleState:
    """The lifecycle state of one rule after replaying its events."""

    #: env → the activation event of the version active there.
    active: dict[str, LifecycleEvent] = field(default_factory=dict)
    #: version id → its approval events.
    approvals: dict[int, list[LifecycleEvent]] = field(default_factory=dict)
    #: version id → its retirement event.
    retired: dict[int, LifecycleEvent] = field(default_factory=dict)
    #: version id → its proposal event.
    proposed: dict[int, LifecycleEvent] = field(default_factory=dict)
    #: (version id, env) → activation intervals, oldest first.
    intervals: dict[tuple[int, str], list[Interval]] = field(default_factory=dict)

    def active_envs(self, version_id: int) -> list[str]:
        return sorted(env for env, ev in self.active.items() if ev.rule_version_id == version_id)

    def status(self, version_id: int) -> str:
        """``retired``, ``active`` (in at least one env), ``approved`` or ``proposed``."""
        if version_id in self.retired:
            return "retired"
        if self.active_envs(version_id):
            return "active"
        if self.approvals.get(version_id):
            return "approved"
        return "proposed"


def _end(state: RuleState, env: str, ending: LifecycleEvent) -> None:
    current = state.active.pop(env, None)
    if current is None:
        return
    interval = state.intervals[(current.rule_version_id, env)][-1]
    interval.end = ending.occurred_at
    interval.ended_by = ending


def apply(state: RuleState, ev: LifecycleEvent) -> None:
    """Apply one event to its rule's state (events must come in chain order)."""
    vid = ev.rule_version_id
    if ev.event == PROPOSED:
        state.proposed.setdefault(vid, ev)
    elif ev.event == APPROVED:
        state.approvals.setdefault(vid, []).append(ev)
    elif ev.event == ACTIVATED:
        assert ev.env is not None
        _end(state, ev.env, ev)  # activating ends whatever was active in that env
        state.active[ev.env] = ev
        state.intervals.setdefault((vid, ev.env), []).append(Interval(ev.env, ev.occurred_at, None, ev))
    elif ev.event == ROLLED_BACK:
        assert ev.env is not None
        current = state.active.get(ev.env)
        if current is not None and current.rule_version_id == vid:
            _end(state, ev.env, ev)
    elif ev.event == RETIRED:
        state.retired.setdefault(vid, ev)
        for env in state.active_envs(vid):
            _end(state, env, ev)


def fold(events: Iterable[LifecycleEvent], *, until: datetime | None = None) -> dict[str, RuleState]:
    """Replay events (chain order) into each rule's state, optionally only those at or before ``until``.

    An event at exactly ``until`` counts: a version activated at T is active at T.
    """
    states: dict[str, RuleState] = {}
    for ev in events:
        if until is not None and ev.occurred_at > until:
            continue
        apply(states.setdefault(ev.rule, RuleState()), ev)
    return states


def split_ref(ref: str) -> tuple[str, str]:
    """``"rule@version"`` → ``("rule", "version")``; raises ValueError naming the expected form."""
    rule, sep, version = ref.rpartition("@")
    if not sep or not rule or not version:
        raise ValueError(f"{ref!r} is not a rule version reference: write RULE@VERSION, e.g. range_bias@1.0.0")
    return rule, version


def version_sort_key(version: str, fallback: int = 0) -> tuple[int, Any, int]:
    """Order versions semantically where they parse (PEP 440 / semver), others after, by ``fallback``."""
    try:
        return (0, Version(version), fallback)
    except InvalidVersion:
        return (1, version, fallback)


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of a read model: dataclasses → dicts, datetimes → ISO 8601, UUIDs → str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value
