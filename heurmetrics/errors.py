"""Exceptions of heurmetrics. Each message says exactly what clashed and what to do.

An error says what kind of refusal it is by its type, never by its text: :class:`InvalidEvent`
(bad input), :class:`NotFound` (a reference to something that does not exist), :class:`Conflict`
(clashes with what is stored). The exporter maps these types to HTTP answers in one table
(:mod:`heurmetrics.server.errors`).
"""

from __future__ import annotations

from typing import Any


class HeurmetricsError(Exception):
    """Base class of every error heurmetrics raises on purpose.

    Subclasses whose ``__init__`` takes other arguments than the message record them in
    ``_init_args`` so the error survives pickling (a worker process can raise it to its parent).
    """

    _init_args: tuple[object, ...] | None = None

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self._init_args is None:
            return super().__reduce__()
        return (type(self), self._init_args)


class InvalidEvent(HeurmetricsError, ValueError):
    """An event or request field failed validation; nothing was written.

    ``field`` names the offending field (``executions[3].confidence`` over HTTP), so a caller can fix
    exactly that.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self._init_args = (field, message)
        self.field = field
        self.message = message

    def at(self, prefix: str) -> InvalidEvent:
        """The same error with its field path prefixed (for items inside a batch)."""
        return InvalidEvent(f"{prefix}.{self.field}", self.message)


class NotFound(HeurmetricsError, LookupError):
    """Something a request or an event references does not exist; nothing was written."""


class Conflict(HeurmetricsError):
    """The request clashes with what is stored; nothing was written."""


class VersionConflict(Conflict):
    """The same rule and version were registered before with different content; nothing was written."""

    def __init__(self, rule: str, version: str, existing_hash: str, new_hash: str) -> None:
        self._init_args = (rule, version, existing_hash, new_hash)
        super().__init__(
            f"rule version {rule}@{version} already exists with content hash {existing_hash}; "
            f"the new content hashes to {new_hash}. A version is immutable: register the change "
            "under a new version string."
        )
        self.rule = rule
        self.version = version
        self.existing_hash = existing_hash
        self.new_hash = new_hash


class UnknownRuleVersion(NotFound):
    """An event names a rule version that was never registered."""

    def __init__(self, rule: str, version: str) -> None:
        self._init_args = (rule, version)
        super().__init__(
            f"unknown rule version {rule}@{version}: register it first "
            "(Recorder.register_rule_version or POST /v1/rule-versions)"
        )
        self.rule = rule
        self.version = version


class UnknownRule(NotFound):
    """A rule name that no registered version carries."""

    def __init__(self, rule: str) -> None:
        self._init_args = (rule,)
        super().__init__(f"unknown rule {rule!r}: no version of it is registered")
        self.rule = rule


class SchemaNotAtHead(HeurmetricsError):
    """The database schema is not at the revision this code expects."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        self._init_args = (url, current, head)
        where = "an empty database" if current is None else f"revision {current}"
        super().__init__(
            f"database {url} is at {where}, but this heurmetrics needs revision {head}. "
            "Run `heurmetrics db upgrade` (with the same HEURMETRICS_DATABASE_URL) first."
        )
        self.current = current
        self.head = head


class StoreError(HeurmetricsError):
    """The database failed an operation (the message names the database and the driver's reason)."""


class StoreUnavailable(StoreError):
    """The database could not be reached or refused the write; the caller may retry.

    Raised by :mod:`heurmetrics.store` in place of the driver's connection, pool-timeout and
    disconnection errors (the message names what failed and the driver's reason).
    """


class StoreRejectedData(StoreError):
    """The database refused the rows themselves (constraint, type, encoding): retrying cannot help."""


class CardinalityBudgetExceeded(HeurmetricsError):
    """A new rule version would add Prometheus series beyond the configured budget."""

    def __init__(self, rule: str, version: str, budget: int) -> None:
        self._init_args = (rule, version, budget)
        super().__init__(
            f"cardinality budget exhausted: {budget} rule versions already have series in this exporter, "
            f"so {rule}@{version} was refused (nothing written). Retire unused versions or raise "
            "HEURMETRICS_MAX_RULE_VERSIONS."
        )
        self.rule = rule
        self.version = version
        self.budget = budget
