"""The Recorder's rule-version lifecycle calls: thin wrappers over the ingest service.

The policy is :mod:`heurmetrics.audit.lifecycle`; :class:`~heurmetrics.ingest.Ingest` writes and
counts each transition, exactly as the exporter's lifecycle routes do.
"""

from __future__ import annotations

from typing import Any

from heurmetrics.audit import lifecycle
from heurmetrics.audit.model import LifecycleEvent, split_ref
from heurmetrics.domain import RuleVersion
from heurmetrics.errors import InvalidEvent
from heurmetrics.ingest import Ingest


class LifecycleCalls:
    """Mixed into :class:`~heurmetrics.sdk.recorder.Recorder`."""

    ingest: Ingest
    created_by: str

    # --- rule-version lifecycle: thin wrappers over Ingest (policy: heurmetrics.audit.lifecycle) --
    def propose(
        self,
        rule: str,
        version: str,
        params: dict[str, Any] | None = None,
        source: str = "",
        *,
        description: str | None = None,
        parent: str | None = None,
        code_ref: str | None = None,
        created_by: str | None = None,
    ) -> RuleVersion:
        """Register a version as a proposal with its lineage: ``description`` (what changed),
        ``parent`` (the version it derives from, e.g. ``"1.0.0"``) and ``code_ref`` (e.g. a git
        commit). Idempotent and conflict-checked exactly like :meth:`register_rule_version`."""
        self.ingest.propose(
            rule,
            version,
            params=params,
            source=source,
            created_by=created_by or self.created_by,
            description=description,
            parent=parent,
            code_ref=code_ref,
        )
        return self.ingest.rule_version(rule, version)

    def approve(self, rule_version: RuleVersion | str, *, reason: str, actor: str | None = None) -> LifecycleEvent:
        """Approve a version (``RuleVersion`` or ``"rule@version"``); the approver must not be its author."""
        rule, version = _ref(rule_version)
        return self.ingest.approve(rule, version, actor=actor or self.created_by, reason=reason)

    def activate(
        self,
        rule_version: RuleVersion | str,
        env: str = "live",
        *,
        reason: str,
        actor: str | None = None,
        require_backtest: bool = True,
    ) -> LifecycleEvent:
        """Activate a version in ``env``; needs an approval and (by default) a completed backtest of it.

        Ends the version active in ``env`` before. ``require_backtest=False`` relaxes the policy
        for this activation and is recorded in the event."""
        rule, version = _ref(rule_version)
        return self.ingest.activate(
            rule,
            version,
            env=env,
            actor=actor or self.created_by,
            reason=reason,
            policy=lifecycle.Policy(require_backtest=require_backtest),
        )

    def retire(self, rule_version: RuleVersion | str, *, reason: str, actor: str | None = None) -> LifecycleEvent:
        """Retire a version for good (it ends in every environment)."""
        rule, version = _ref(rule_version)
        return self.ingest.retire(rule, version, actor=actor or self.created_by, reason=reason)

    def rollback(
        self, rule_version: RuleVersion | str, env: str = "live", *, reason: str, actor: str | None = None
    ) -> list[LifecycleEvent]:
        """Roll the active version back in ``env``: the version it replaced becomes active again."""
        rule, version = _ref(rule_version)
        return self.ingest.rollback(rule, version, env=env, actor=actor or self.created_by, reason=reason)


def _ref(rule_version: RuleVersion | str) -> tuple[str, str]:
    if isinstance(rule_version, RuleVersion):
        return rule_version.rule, rule_version.version
    try:
        return split_ref(rule_version)
    except ValueError as exc:
        raise InvalidEvent("rule_version", str(exc)) from None
