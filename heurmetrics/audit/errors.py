"""Errors of the audit trail. Each message names the rule version and exactly what clashed."""

from __future__ import annotations

from heurmetrics.errors import HeurmetricsError


class LifecycleError(HeurmetricsError):
    """A lifecycle transition that does not fit the version's current state; nothing was written.

    Examples: approving a retired version, activating a version that is already active in that
    environment, rolling back a version that is not active there.
    """


class PolicyViolation(LifecycleError):
    """A transition the approval policy forbids; nothing was written.

    Examples: the author approving their own version, activating without an approval or without a
    completed backtest of that exact version.
    """


class AuditError(HeurmetricsError):
    """An audit read or export could not be done as asked (bad reference, missing dependency…)."""
