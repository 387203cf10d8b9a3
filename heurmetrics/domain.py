"""Domain entities, independent of the database rows that store them (see heurmetrics.store)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class RuleVersion:
    """An immutable, registered version of a rule, identified by its content hash."""

    id: int
    rule: str
    version: str
    content_hash: str
    params: dict[str, Any]
    source: str
    created_at: datetime
    created_by: str
    description: str | None = None

    @property
    def key(self) -> str:
        """``rule@version``, the way humans and the CLI name a version."""
        return f"{self.rule}@{self.version}"


class ExecutionEvent(NamedTuple):
    """One run of a rule version (``heuristic.execution``); immutable.

    ``started_at`` is Unix time in seconds (a float keeps the SDK hot path free of datetime
    construction; the store converts in bulk). A named tuple rather than a frozen dataclass:
    a frozen dataclass costs ~1.2 µs more to build (``object.__setattr__`` per field), half
    the SDK's whole per-call budget. Whether an event was counted already is not the event's
    business: the delivery layer keeps that with its batch (docs/reliability.md).
    """

    event_id: uuid.UUID
    rule_version: RuleVersion
    started_at: float
    duration_seconds: float
    status: str
    outcome: str | None
    signal: float | None
    confidence: float | None
    mode: str
    error_type: str | None = None
    backtest_run_id: uuid.UUID | None = None
    #: True when the caller gave an ``event_id`` but no ``started_at``: the store then keeps the
    #: start time of the id's first receipt, so a retry stays one execution (``docs/storage.md``).
    started_at_defaulted: bool = False


@dataclass(frozen=True, slots=True)
class EquityPoint:
    ts: datetime
    equity: float
    drawdown: float
    fold_index: int | None = None


@dataclass(frozen=True, slots=True)
class BacktestFold:
    """One walk-forward fold: windows, the params chosen in-sample, and both metric sets."""

    fold_index: int
    in_sample_start: datetime
    in_sample_end: datetime
    out_of_sample_start: datetime
    out_of_sample_end: datetime
    params: dict[str, Any]
    trials: int
    in_sample_metrics: dict[str, Any]
    out_of_sample_metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BacktestRun:
    """One backtest run (``backtest.result``) with its headline and full metrics."""

    run_id: uuid.UUID
    rule_version: RuleVersion
    kind: str
    dataset: str
    dataset_hash: str | None
    period_start: datetime | None
    period_end: datetime | None
    periods_per_year: float
    status: str
    started_at: datetime
    finished_at: datetime
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def headline(self, name: str) -> float | None:
        """A headline metric as stored in its own column: None when missing or not finite."""
        value = self.metrics.get(name)
        if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
            return float(value)
        return None


@dataclass(frozen=True, slots=True)
class LatestBacktest:
    """The latest completed backtest of a rule version, as the metrics collector reads it."""

    rule: str
    version: str
    finished_at: datetime
    total_return: float | None
    cagr: float | None
    sharpe: float | None
    max_drawdown: float | None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a batch ingest did: ``accepted`` new rows, ``duplicates`` already stored (or repeated)."""

    accepted: int
    duplicates: int
    event_ids: tuple[uuid.UUID, ...] = ()


#: Outcomes that carry no direction (see :func:`heurmetrics.live.resolution.signal_direction`).
NON_DIRECTIONAL_OUTCOMES = frozenset({"neutral", "no_signal"})


# --- audit entities (stored by heurmetrics.store, folded by heurmetrics.audit.model) ---------------
#: Lifecycle event types, in the order a version normally goes through them.
PROPOSED, APPROVED, ACTIVATED, RETIRED, ROLLED_BACK = "proposed", "approved", "activated", "retired", "rolled_back"
# The statuses a version can have are heurmetrics.metrics.definitions.RULE_VERSION_STATUSES.


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One row of ``rule_version_events``."""

    id: int
    position: int
    rule: str
    version: str
    rule_version_id: int
    event: str
    env: str | None
    actor: str
    reason: str
    occurred_at: datetime
    details: dict[str, Any]
    prev_hash: str
    row_hash: str

    @property
    def ref(self) -> str:
        return f"{self.rule}@{self.version}"


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """Everything stored about one rule version (the audit view of ``rule_versions``)."""

    id: int
    rule: str
    version: str
    content_hash: str
    params: dict[str, Any]
    source: str
    created_at: datetime
    created_by: str
    description: str | None
    parent_id: int | None
    parent: str | None
    code_ref: str | None
    position: int
    prev_hash: str
    row_hash: str

    @property
    def ref(self) -> str:
        return f"{self.rule}@{self.version}"


@dataclass(frozen=True, slots=True)
class BacktestEvidence:
    """A backtest run of a version, as the audit shows it."""

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
