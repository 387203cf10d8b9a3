"""Rule-version lifecycle: registration and the transitions, with the policy they enforce.

    proposed ──approve──▶ approved ──activate(env)──▶ active in env ──retire──▶ retired
                                          ▲   │ rollback(env): back to the version it replaced
                                          └───┘ activate(other version, env) ends it implicitly

Every transition is an event appended to ``rule_version_events`` inside the chain lock
(:meth:`heurmetrics.store.versions.SqlVersions.lifecycle`; this module holds the policy, the store
the SQL): the state it checks is the state it extends,
even with concurrent writers. Policy (:class:`Policy`), enforced here and nowhere else:

- the approver must not be the author (``created_by``; compared case-insensitively);
- a version is activated only with an approval on record and, unless the policy says otherwise,
  at least one *completed* backtest run of that exact version (``backtest_runs.rule_version_id``);
  the evidence used (approval, backtest run id, the policy itself) is stored in the event's details;
- activating a version in an environment ends the version active there before (recorded as
  ``details.replaces``); ``rollback`` ends the active version and re-activates the one it replaced;
- a retired version can no longer be approved or activated; retiring ends it in every environment.

A violation raises :class:`~heurmetrics.audit.errors.PolicyViolation`, a transition that does not
fit the current state :class:`~heurmetrics.audit.errors.LifecycleError`; either way nothing is
written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from heurmetrics.audit.errors import LifecycleError, PolicyViolation
from heurmetrics.audit.model import (
    ACTIVATED,
    APPROVED,
    RETIRED,
    ROLLED_BACK,
    LifecycleEvent,
    RuleState,
    fold,
)
from heurmetrics.canonical import canonical_json
from heurmetrics.domain import RuleVersion
from heurmetrics.errors import InvalidEvent, UnknownRuleVersion
from heurmetrics.store.versions import MAX_CODE_REF_LENGTH, LifecycleTx, VersionRef
from heurmetrics.validation import check_label_value, check_non_blank

if TYPE_CHECKING:
    from heurmetrics.store.sql_store import SqlStore

__all__ = ["MAX_CODE_REF_LENGTH", "Policy", "activate", "approve", "propose", "register_version", "retire",
           "rollback", "seed_demo_lifecycle"]

MAX_ACTOR_LENGTH = 128
MAX_REASON_LENGTH = 10_000


@dataclass(frozen=True, slots=True)
class Policy:
    """What activation requires. The defaults are the safe ones; the policy used is recorded in
    every activation event (``details.policy``), so a relaxed policy is visible to auditors."""

    #: At least one completed backtest run of the exact version must be on record.
    require_backtest: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"require_backtest": self.require_backtest}


DEFAULT_POLICY = Policy()


# --- helpers -----------------------------------------------------------------------------------
def _check_actor(actor: object) -> str:
    return check_non_blank("actor", actor, MAX_ACTOR_LENGTH, "name who did it")


def _check_reason(reason: object) -> str:
    return check_non_blank("reason", reason, MAX_REASON_LENGTH, "say why: auditors read it")


def _same_person(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


# --- registration (= proposal) -----------------------------------------------------------------
def register_version(
    store: SqlStore,
    rule: str,
    version: str,
    *,
    params: dict[str, Any],
    source: str,
    created_by: str,
    description: str | None = None,
    parent: str | None = None,
    code_ref: str | None = None,
) -> tuple[RuleVersion, bool]:
    """Register ``rule@version`` with its chain record and a ``proposed`` event; returns (version, created).

    The store does it (:meth:`heurmetrics.store.versions.SqlVersions.register`): identical content
    is a no-op, different content raises :class:`VersionConflict`, ``parent`` must exist.
    """
    return store.versions.register(
        rule, version, params=params, source=source, created_by=created_by, description=description,
        parent=parent, code_ref=code_ref,
    )


def propose(
    store: SqlStore,
    rule: str,
    version: str,
    *,
    params: dict[str, Any] | None = None,
    source: str = "",
    created_by: str,
    description: str | None = None,
    parent: str | None = None,
    code_ref: str | None = None,
) -> tuple[RuleVersion, bool]:
    """Validate and register a version as a proposal (see :func:`register_version`).

    The same checks as every other registration path: label-safe rule and version names, params a
    JSON object without NaN/inf, source a string; a non-empty author.
    """
    check_label_value("rule", rule)
    check_label_value("version", version)
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise InvalidEvent("params", f"must be a JSON object, got {type(params).__name__}")
    if not isinstance(source, str):
        raise InvalidEvent("source", f"must be a string, got {type(source).__name__}")
    try:
        canonical_json(params)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent("params", f"must be JSON-serialisable without NaN/inf: {exc}") from None
    return register_version(
        store, rule, version, params=params, source=source, created_by=_check_actor(created_by),
        description=description, parent=parent, code_ref=code_ref,
    )


# --- transitions -------------------------------------------------------------------------------
def _locked_state(tx: LifecycleTx, rule: str, version: str) -> tuple[VersionRef, RuleState]:
    row = tx.version(rule, version)
    if row is None:
        raise UnknownRuleVersion(rule, version)
    state = fold(tx.events(rule=rule)).get(rule, RuleState())
    return row, state


def _refuse_retired(state: RuleState, version_id: int, ref: str, action: str) -> None:
    retired = state.retired.get(version_id)
    if retired is not None:
        raise LifecycleError(
            f"cannot {action} {ref}: it was retired by {retired.actor} at {retired.occurred_at.isoformat()} "
            f"({retired.reason!r}); register a new version instead"
        )


def approve(store: SqlStore, rule: str, version: str, *, actor: str, reason: str) -> LifecycleEvent:
    """Record the approval of ``rule@version`` by ``actor``, who must not be its author.

    Raises :class:`PolicyViolation` on self-approval, :class:`LifecycleError` when the version is
    retired or already approved (the message names who approved it and when).
    """
    actor, reason = _check_actor(actor), _check_reason(reason)
    ref = f"{rule}@{version}"
    with store.versions.lifecycle() as tx:
        row, state = _locked_state(tx, rule, version)
        if _same_person(actor, row.created_by):
            raise PolicyViolation(
                f"{actor} cannot approve {ref}: they are its author (created_by {row.created_by!r}); "
                "an approval must come from someone else"
            )
        _refuse_retired(state, row.id, ref, "approve")
        previous = state.approvals.get(row.id)
        if previous:
            raise LifecycleError(
                f"{ref} is already approved (by {previous[0].actor} at {previous[0].occurred_at.isoformat()})"
            )
        return tx.append_event(rule=rule, version=version, rule_version_id=row.id, event=APPROVED, actor=actor,
                             reason=reason)


def activate(
    store: SqlStore,
    rule: str,
    version: str,
    *,
    env: str,
    actor: str,
    reason: str,
    policy: Policy = DEFAULT_POLICY,
) -> LifecycleEvent:
    """Make ``rule@version`` the active version of its rule in ``env`` (``live``, ``paper``, …).

    Requires an approval and (``policy.require_backtest``) a completed backtest run of this exact
    version, else :class:`PolicyViolation`. The version active in ``env`` before is ended by this
    event (``details.replaces``). :class:`LifecycleError` when the version is retired or already
    active in ``env``.
    """
    actor, reason = _check_actor(actor), _check_reason(reason)
    check_label_value("env", env)
    ref = f"{rule}@{version}"
    with store.versions.lifecycle() as tx:
        row, state = _locked_state(tx, rule, version)
        _refuse_retired(state, row.id, ref, "activate")
        current = state.active.get(env)
        if current is not None and current.rule_version_id == row.id:
            raise LifecycleError(
                f"{ref} is already active in {env} (activated by {current.actor} at {current.occurred_at.isoformat()})"
            )
        approvals = state.approvals.get(row.id)
        if not approvals:
            raise PolicyViolation(f"cannot activate {ref} in {env}: it has no approval on record (approve it first, "
                                  "by someone other than its author)")
        details: dict[str, Any] = {
            "approved_by": approvals[0].actor, "approval_position": approvals[0].position,
            "replaces": None if current is None else current.version, "backtest_run_id": None,
            "policy": policy.as_dict(),
        }
        if policy.require_backtest:
            run_id = tx.latest_completed_backtest(row.id)
            if run_id is None:
                raise PolicyViolation(
                    f"cannot activate {ref} in {env}: no completed backtest run of this exact version "
                    f"(content hash {row.content_hash[:12]}…) is on record; record one first "
                    "(Recorder.record_backtest or POST /v1/backtests)"
                )
            details["backtest_run_id"] = str(run_id)
        return tx.append_event(rule=rule, version=version, rule_version_id=row.id, event=ACTIVATED, env=env,
                             actor=actor, reason=reason, details=details)


def retire(store: SqlStore, rule: str, version: str, *, actor: str, reason: str) -> LifecycleEvent:
    """Retire ``rule@version`` for good: it ends in every environment and can never be activated again."""
    actor, reason = _check_actor(actor), _check_reason(reason)
    ref = f"{rule}@{version}"
    with store.versions.lifecycle() as tx:
        row, state = _locked_state(tx, rule, version)
        _refuse_retired(state, row.id, ref, "retire")
        return tx.append_event(rule=rule, version=version, rule_version_id=row.id, event=RETIRED, actor=actor,
                             reason=reason, details={"ended_in": state.active_envs(row.id)})


def rollback(
    store: SqlStore, rule: str, version: str, *, env: str, actor: str, reason: str
) -> list[LifecycleEvent]:
    """Roll ``rule@version`` back in ``env``: it stops being active there and the version it replaced
    (if any, and not retired) is activated again.

    Writes a ``rolled_back`` event and, when a version is restored, an ``activated`` event for it
    (``details.rollback_of``) in the same transaction: the chain never shows a half rollback.
    :class:`LifecycleError` when the version is not the one active in ``env``.
    """
    actor, reason = _check_actor(actor), _check_reason(reason)
    check_label_value("env", env)
    ref = f"{rule}@{version}"
    with store.versions.lifecycle() as tx:
        row, state = _locked_state(tx, rule, version)
        current = state.active.get(env)
        if current is None or current.rule_version_id != row.id:
            active = "nothing" if current is None else current.ref
            raise LifecycleError(f"cannot roll back {ref} in {env}: it is not active there ({active} is)")
        restore = current.details.get("replaces")
        restored_id = None
        if restore is not None:
            restored = tx.version(rule, restore)
            restored_id = None if restored is None or restored.id in state.retired else restored.id
        events = [tx.append_event(
            rule=rule, version=version, rule_version_id=row.id, event=ROLLED_BACK, env=env, actor=actor,
            reason=reason, details={"restored": restore if restored_id is not None else None},
        )]
        if restored_id is not None:
            assert restore is not None
            events.append(tx.append_event(
                rule=rule, version=restore, rule_version_id=restored_id, event=ACTIVATED, env=env, actor=actor,
                reason=f"rollback of {ref}: {reason}",
                details={"rollback_of": version, "replaces": version, "restored_by_rollback": True},
                now=events[0].occurred_at,  # the same instant: no gap in which nothing was active
            ))
        return events


# --- the demo ----------------------------------------------------------------------------------
def seed_demo_lifecycle(store: SqlStore) -> list[LifecycleEvent]:
    """Give the demo database a real lifecycle history (call after the demo's backtests are stored).

    For every rule: the older version is approved by ``risk-officer`` and activated in ``live``;
    the newer one is approved and activated in ``live`` (which ends the older one there) and the
    older one is moved to ``paper``. Then ``range_bias``'s newer version is rolled back in
    ``live`` (the older one returns), and ``atr_breakout``'s older version is retired. Versions
    the demo registered are authored by ``demo``; every transition here is by another actor, as the
    policy demands. Returns the events written.
    """
    from heurmetrics.audit.model import version_sort_key

    events: list[LifecycleEvent] = []
    by_rule: dict[str, list[str]] = {}
    for rv in store.list_rule_versions():
        by_rule.setdefault(rv.rule, []).append(rv.version)
    for rule, versions in sorted(by_rule.items()):
        ordered = sorted(versions, key=version_sort_key)
        old, new = ordered[0], ordered[-1]
        events.append(approve(store, rule, old, actor="risk-officer", reason="backtest reviewed; within risk limits"))
        events.append(activate(store, rule, old, env="live", actor="ops-lead", reason="initial deployment"))
        if new != old:
            events.append(approve(store, rule, new, actor="risk-officer",
                                  reason="improvement over the previous version in backtest"))
            events.append(activate(store, rule, new, env="live", actor="ops-lead", reason="promote the new version"))
            events.append(activate(store, rule, old, env="paper", actor="ops-lead",
                                   reason="keep the previous version running on paper for comparison"))
    if "range_bias" in by_rule and len(by_rule["range_bias"]) > 1:
        newest = sorted(by_rule["range_bias"], key=version_sort_key)[-1]
        events += rollback(store, "range_bias", newest, env="live", actor="ops-lead",
                           reason="signal flips too often on live data")
    if "atr_breakout" in by_rule and len(by_rule["atr_breakout"]) > 1:
        oldest = sorted(by_rule["atr_breakout"], key=version_sort_key)[0]
        events.append(retire(store, "atr_breakout", oldest, actor="risk-officer",
                             reason="superseded; no longer needed for comparison"))
    return events
