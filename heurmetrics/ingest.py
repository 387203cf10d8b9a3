"""The one ingest path: validation, persistence and metric updates, shared by the SDK and HTTP.

    runner ─┬─ SDK (Recorder → background writer) ─┐
            └─ HTTP (heurmetrics serve) ───────────┴─→ Ingest ─→ {SqlStore, PipelineMetrics}

An event is counted in Prometheus exactly once, when it is known to be new: the store returns
the ids it inserted, and only those are counted (the SDK counts ids it generated itself up front,
because they cannot collide). So after any number of re-sent batches, counts equal rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
        )

    def write_executions(self, events: Sequence[ExecutionEvent]) -> IngestResult:
        """Store a batch (one transaction) and count the events that were new.

        Repeated ids inside the batch and ids already stored are duplicates: skipped, not counted.
        Raises :class:`StoreUnavailable` when the write failed; then nothing was stored or counted.
        """
        unique: dict[uuid.UUID, ExecutionEvent] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        batch = list(unique.values())
        inserted = self._timed(d.OP_INSERT_EXECUTIONS, lambda: self.store.insert_executions(batch))
        observe = self.metrics.observe_execution
        for event in batch:
            if not event.counted and event.event_id in inserted:
                observe(event)
        duplicates = len(events) - len(inserted)
        self.metrics.ingested.labels("execution", "accepted").inc(len(inserted))
        if duplicates:
            self.metrics.ingested.labels("execution", "duplicate").inc(duplicates)
        return IngestResult(len(inserted), duplicates, tuple(e.event_id for e in batch))

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
