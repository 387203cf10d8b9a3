"""The one ingest path: validation, persistence and metric updates, shared by the SDK and HTTP.

    runner ─┬─ SDK (Recorder → background writer) ─┐
            └─ HTTP (heurmetrics serve) ───────────┴─→ Ingest ─→ {SqlStore, PipelineMetrics}

An event is counted in Prometheus exactly once, and only once it is stored. The SDK counts ids it
generated itself up front (they cannot collide, and the SDK keeps them until they are stored or
reported lost). Every other event is counted after its commit, by *claiming* its batch's delivery
record (:mod:`heurmetrics.store.deliveries`): the write records which events it inserted in the
same transaction, and after an acknowledged commit the writer claims every unclaimed record of
the batch's delivery id and counts what they list. A commit whose answer was lost is therefore
counted by the re-send of the same batch (same delivery id, on any process), and a batch that
was counted is never counted again. So after any number of re-sent batches and lost answers,
counts equal rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd

from heurmetrics.backtest.record import build_backtest
from heurmetrics.domain import BacktestFold, BacktestRun, ExecutionEvent, IngestResult, RuleVersion
from heurmetrics.errors import CardinalityBudgetExceeded, InvalidEvent, StoreUnavailable, UnknownRuleVersion
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.metrics.store_collector import StoreCollector
from heurmetrics.store import deliveries
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.validation import (
    MAX_SOURCE_LENGTH,
    check_execution,
    check_finite,
    check_json_object,
    check_label_value,
    check_text,
    check_timestamp,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
#: Claims kept for a later retry when the database could not be asked right after a commit.
MAX_PENDING_CLAIMS = 10_000


@dataclasses.dataclass
class _Claim:
    """A claim to make (or whose answer was lost): the batch's uncounted events, by id."""

    delivery_id: uuid.UUID
    token: uuid.UUID
    events: list[ExecutionEvent]
    digest: bytes


class Ingest:
    """Validates, stores and counts rule versions, executions and backtests.

    Thread-safe. Every write method either commits completely (and then updates the metrics)
    or raises with nothing written and nothing counted.
    """

    def __init__(
        self,
        store: SqlStore,
        metrics: PipelineMetrics,
        collector: StoreCollector | None = None,
        *,
        max_rule_versions: int | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.collector = collector
        self.max_rule_versions = max_rule_versions
        self._versions: dict[tuple[str, str], RuleVersion] = {}
        self._with_series: set[int] = set()  # versions whose series exist (the cardinality budget)
        self._lock = threading.Lock()
        self._claims: list[_Claim] = []  # committed batches not counted yet (the claim failed)
        self._claimer: threading.Thread | None = None

    # --- rule versions ----------------------------------------------------------------------
    def register_rule_version(
        self,
        rule: str,
        version: str,
        *,
        params: dict[str, Any] | None = None,
        source: str = "",
        created_by: str = "unknown",
        description: str | None = None,
    ) -> tuple[RuleVersion, bool]:
        """Register (idempotently) a rule version; see :meth:`SqlStore.register_rule_version`."""
        check_label_value("rule", rule)
        check_label_value("version", version)
        params = check_json_object("params", {} if params is None else params)
        check_text("source", source, MAX_SOURCE_LENGTH)
        check_text("created_by", created_by, 128)
        if description is not None:
            check_text("description", description, 10_000)
        try:
            rv, created = self._timed(
                d.OP_REGISTER_RULE_VERSION,
                lambda: self.store.register_rule_version(
                    rule,
                    version,
                    params=params,
                    source=source,
                    created_by=created_by,
                    description=description,
                ),
            )
        except Exception:
            self.metrics.ingested.labels("rule_version", "rejected").inc()
            raise
        with self._lock:
            self._versions[(rule, version)] = rv
        self.metrics.ingested.labels("rule_version", "accepted" if created else "duplicate").inc()
        # The version is stored either way (an audit fact); over budget, its executions are refused.
        with contextlib.suppress(CardinalityBudgetExceeded):
            self.admit(rv)
        if created and self.collector is not None:
            self.collector.invalidate()
        return rv, created

    def rule_version(self, rule: str, version: str) -> RuleVersion:
        """The registered version ``rule@version``, admitted to the metrics.

        Raises :class:`UnknownRuleVersion` when it was never registered and
        :class:`CardinalityBudgetExceeded` when it would add series beyond the budget.
        """
        rv = self._versions.get((rule, version))
        if rv is None:
            rv = self.store.find_rule_version(rule, version)
            if rv is None:
                raise UnknownRuleVersion(rule, version)
            with self._lock:
                self._versions[(rule, version)] = rv
        if rv.id not in self._with_series:
            self.admit(rv)
        return rv

    def admit(self, rv: RuleVersion) -> None:
        """Give ``rv`` its (pre-initialised) series, within the cardinality budget."""
        with self._lock:
            if rv.id in self._with_series:
                return
            if self.max_rule_versions is not None and len(self._with_series) >= self.max_rule_versions:
                raise CardinalityBudgetExceeded(rv.rule, rv.version, self.max_rule_versions)
            self._with_series.add(rv.id)
        self.metrics.prepare_rule_version(rv)

    # --- executions -------------------------------------------------------------------------
    @staticmethod
    def make_execution(
        rv: RuleVersion,
        *,
        duration_seconds: float,
        status: str = "ok",
        outcome: str | None = None,
        signal: float | None = None,
        confidence: float | None = None,
        mode: str = "live",
        started_at: float | None = None,
        error_type: str | None = None,
        event_id: uuid.UUID | None = None,
        backtest_run_id: uuid.UUID | None = None,
    ) -> ExecutionEvent:
        """Validate one execution and build its event (``counted`` False: count after insert).

        ``started_at`` is Unix seconds; it defaults to now minus the duration.
        """
        check_execution(
            status=status,
            mode=mode,
            duration_seconds=duration_seconds,
            outcome=outcome,
            signal=signal,
            confidence=confidence,
            error_type=error_type,
        )
        now = time.time()
        started = now - duration_seconds if started_at is None else check_timestamp("started_at", started_at, now=now)
        return ExecutionEvent(
            event_id=uuid.uuid4() if event_id is None else event_id,
            rule_version=rv,
            started_at=started,
            duration_seconds=float(duration_seconds),
            status=status,
            outcome=outcome,
            signal=None if signal is None else float(signal),
            confidence=None if confidence is None else float(confidence),
            mode=mode,
            error_type=error_type,
            backtest_run_id=backtest_run_id,
            started_at_defaulted=started_at is None and event_id is not None,
        )

    def write_executions(
        self, events: Sequence[ExecutionEvent], *, delivery_id: uuid.UUID | None = None
    ) -> IngestResult:
        """Store a batch (one transaction) and count, once, the events it stored.

        ``delivery_id`` identifies the batch across attempts (the SDK's batch id, the HTTP
        ``Idempotency-Key``); pass the same id when re-sending the same batch. Repeated ids inside
        the batch and ids already stored are duplicates: skipped. Raises :class:`StoreUnavailable`
        when the write failed or its commit was not confirmed: then nothing is counted, and the
        batch may or may not be stored — re-send it with the same ``delivery_id`` to have it
        stored and counted exactly once (see the module doc).
        """
        unique: dict[uuid.UUID, ExecutionEvent] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        batch = list(unique.values())
        fresh = [e for e in batch if not e.counted]
        if not fresh:  # all counted at record time (SDK-generated ids): nothing to claim
            inserted = self._timed(d.OP_INSERT_EXECUTIONS, lambda: self.store.insert_executions(batch))
            self.metrics.ingested.labels("execution", "accepted").inc(len(inserted))
        else:
            self._retry_claims()
            stamp = deliveries.stamp(delivery_id or uuid.uuid4(), [e.event_id for e in fresh])
            inserted = self._timed(
                d.OP_INSERT_EXECUTIONS, lambda: self.store.insert_executions(batch, delivery=stamp)
            )
            # Committed: count what this delivery stored and nobody counted (this write's rows, and
            # those of an earlier attempt whose answer was lost).
            self.metrics.ingested.labels("execution", "accepted").inc(
                len(inserted) - sum(1 for e in fresh if e.event_id in inserted)
                if len(fresh) < len(batch)
                else 0
            )
            self._settle(_Claim(stamp.delivery_id, uuid.uuid4(), fresh, stamp.digest))
        duplicates = len(events) - len(inserted)
        if duplicates:
            self.metrics.ingested.labels("execution", "duplicate").inc(duplicates)
        return IngestResult(len(inserted), duplicates, tuple(e.event_id for e in batch))

    def _settle(self, claim: _Claim) -> bool:
        """Claim and count; on failure keep the claim for :meth:`_retry_claims`. True when settled."""
        try:
            records = self.store.claim_delivery(claim.delivery_id, claim.token)
        except StoreUnavailable as exc:
            with self._lock:
                self._claims.append(claim)
                if len(self._claims) > MAX_PENDING_CLAIMS:
                    lost = self._claims.pop(0)
                    log.error("too many unsettled delivery claims: %d events stay uncounted", len(lost.events))
            log.warning("counting delivery %s deferred (claim failed: %s)", claim.delivery_id, exc)
            self._start_claimer()
            return False
        observe = self.metrics.observe_execution
        counted = 0
        for rec in records:
            if rec.event_ids is not None:
                chosen = [e for e in claim.events if e.event_id in rec.event_ids]
            elif rec.digest == claim.digest:
                chosen = claim.events
            else:
                log.error(
                    "delivery %s was re-sent with other events than its stored attempt: the earlier attempt's "
                    "rows cannot be counted", claim.delivery_id,
                )
                continue
            for event in chosen:
                observe(event)
            counted += len(chosen)
        self.metrics.ingested.labels("execution", "accepted").inc(counted)
        return True

    def _start_claimer(self) -> None:
        """Retry deferred claims in the background too, so the last batch before a quiet period
        is counted without waiting for the next write."""
        with self._lock:
            if self._claimer is not None and self._claimer.is_alive():
                return
            self._claimer = threading.Thread(target=self._claim_until_settled, name="heurmetrics-claims", daemon=True)
            self._claimer.start()

    def _claim_until_settled(self) -> None:
        delay = 0.5
        while self._claims:
            time.sleep(delay)
            self._retry_claims()
            delay = min(delay * 2, 10.0)

    def _retry_claims(self) -> None:
        """Settle claims that failed earlier (the database was unreachable right after a commit)."""
        if not self._claims:
            return
        with self._lock:
            claims, self._claims = self._claims, []
        for i, claim in enumerate(claims):
            if not self._settle(claim):  # still unreachable: keep the rest for later, in order
                with self._lock:
                    self._claims[0:0] = claims[i + 1 :]
                return

    def count_rejected(self, kind: str, n: int = 1) -> None:
        self.metrics.ingested.labels(kind, "rejected").inc(n)

    # --- backtests --------------------------------------------------------------------------
    def record_backtest(
        self,
        rv: RuleVersion,
        equity: pd.Series,
        *,
        dataset: str,
        periods_per_year: float,
        risk_free_rate: float = 0.0,
        trades: pd.DataFrame | None = None,
        dataset_hash: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        run_id: uuid.UUID | None = None,
        config: dict[str, Any] | None = None,
        kind: str = "single",
        folds: Sequence[BacktestFold] = (),
        fold_equity: dict[int, pd.Series] | None = None,
    ) -> tuple[BacktestRun, bool]:
        """Compute the performance metrics of ``equity``, store the run and count it.

        Returns the run and whether it was new: re-sending a ``run_id`` stores and counts nothing.
        """
        run, points = build_backtest(
            rv,
            equity,
            dataset=dataset,
            periods_per_year=periods_per_year,
            risk_free_rate=risk_free_rate,
            trades=trades,
            dataset_hash=dataset_hash,
            started_at=started_at,
            finished_at=finished_at or datetime.now(UTC),
            run_id=run_id or uuid.uuid4(),
            config=config or {},
            kind=kind,
            fold_equity=fold_equity,
        )
        created = self._timed(d.OP_INSERT_BACKTEST, lambda: self.store.insert_backtest(run, points, folds))
        self.metrics.ingested.labels("backtest", "accepted" if created else "duplicate").inc()
        if not created:  # a re-sent run: answer with what is stored, not with what was re-sent
            stored = self.store.backtest_metrics(run.run_id)
            run = dataclasses.replace(run, metrics=stored if stored is not None else run.metrics)
        else:
            self.metrics.observe_backtest(run)
            if self.collector is not None:
                self.collector.invalidate()
        return run, created

    def record_failed_backtest(
        self,
        rv: RuleVersion,
        *,
        error_message: str,
        dataset: str,
        periods_per_year: float,
        kind: str = "single",
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        run_id: uuid.UUID | None = None,
        config: dict[str, Any] | None = None,
    ) -> tuple[BacktestRun, bool]:
        """Store a backtest run that failed (status ``failed``, no metrics, no points) and count it.

        It feeds the "Backtest failed" annotation and the ``BacktestFailed`` alert like a failed
        SDK walk-forward. Re-sending a ``run_id`` stores and counts nothing.
        """
        check_text("error_message", error_message, 4000)
        check_text("dataset", dataset, 256)
        periods = check_finite("periods_per_year", periods_per_year, low=1e-9)
        config = check_json_object("config", config or {})
        finished = finished_at or datetime.now(UTC)
        for name, value in (("started_at", started_at), ("finished_at", finished)):
            if value is not None and value.tzinfo is None:
                raise InvalidEvent(name, "naive datetime: pass a timezone-aware time (e.g. UTC)")
        run = BacktestRun(
            run_id=run_id or uuid.uuid4(),
            rule_version=rv,
            kind=kind,
            dataset=dataset,
            dataset_hash=None,
            period_start=None,
            period_end=None,
            periods_per_year=periods,
            status="failed",
            started_at=started_at or finished,
            finished_at=finished,
            metrics={},
            config=config,
            error_message=error_message,
        )
        created = self._timed(d.OP_INSERT_BACKTEST, lambda: self.store.insert_backtest(run))
        self.metrics.ingested.labels("backtest", "accepted" if created else "duplicate").inc()
        if created:
            self.metrics.observe_backtest(run)
            if self.collector is not None:
                self.collector.invalidate()
        return run, created

    # --- helpers ----------------------------------------------------------------------------
    def _timed(self, operation: str, write: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            result = write()
        except StoreUnavailable:
            self.metrics.store_write_errors.labels(operation).inc()
            raise
        self.metrics.store_write_duration.labels(operation).observe(time.perf_counter() - started)
        return result
