"""The ingest service: every write goes through it, from the SDK and from HTTP alike.

    runner ─┬─ SDK (Recorder → background writer) ─┐
            └─ HTTP (heurmetrics serve) ───────────┴─→ Ingest ─→ {SqlStore, PipelineMetrics}

Rule versions, lifecycle transitions, executions, backtests (completed and failed, walk-forward
included) and outcome resolutions: :class:`Ingest` validates, writes and counts each of them in
``heurmetrics_ingested_events_total``, so the SDK and HTTP count the same operations identically.

An event is counted in Prometheus exactly once, and only once it is stored. The SDK counts ids it
generated itself up front (they cannot collide, and the SDK keeps them until they are stored or
reported lost) and tells :meth:`Ingest.write_executions` which ids of a batch it did not count.
Every other execution is counted after its commit, by *claiming* its batch's delivery record
(:mod:`heurmetrics.ingest.claims`). So after any number of re-sent batches and lost answers,
counts equal rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from heurmetrics.audit import lifecycle
from heurmetrics.audit.model import LifecycleEvent
from heurmetrics.backtest.record import build_backtest
from heurmetrics.domain import BacktestFold, BacktestRun, ExecutionEvent, IngestResult, RuleVersion
from heurmetrics.errors import (
    CardinalityBudgetExceeded,
    HeurmetricsError,
    InvalidEvent,
    StoreUnavailable,
    UnknownRuleVersion,
)
from heurmetrics.execution_builder import build_execution
from heurmetrics.exporter.store_collector import StoreCollector
from heurmetrics.ids import new_id
from heurmetrics.ingest.claims import Claim, Claims
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.store import deliveries
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.validation import (
    MAX_SOURCE_LENGTH,
    check_finite,
    check_json_object,
    check_label_value,
    check_text,
)

if TYPE_CHECKING:
    from heurmetrics.live.resolution import Resolution
    from heurmetrics.store.live import ResolutionResult

T = TypeVar("T")


class Ingest:
    """Validates, stores and counts every write (see the module doc).

    Thread-safe. Every write method either commits completely (and then updates the metrics)
    or raises with nothing written; a refusal (invalid value, conflict, policy) is counted as
    ``rejected`` under its kind, once, here.
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
        self.claims = Claims(store, metrics)

    def close(self, timeout: float = 5.0) -> None:
        """Count what is still countable before the process stops: deferred delivery claims are
        retried for up to ``timeout`` seconds (the store stays open; its owner closes it)."""
        self.claims.drain(timeout)

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
        with self._refusing(d.KIND_RULE_VERSION):
            check_label_value("rule", rule)
            check_label_value("version", version)
            params = check_json_object("params", {} if params is None else params)
            check_text("source", source, MAX_SOURCE_LENGTH)
            check_text("created_by", created_by, 128)
            if description is not None:
                check_text("description", description, 10_000)
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
        self._registered(rv, created)
        return rv, created

    def _registered(self, rv: RuleVersion, created: bool) -> None:
        with self._lock:
            self._versions[(rv.rule, rv.version)] = rv
        self.metrics.ingested.labels(d.KIND_RULE_VERSION, "accepted" if created else "duplicate").inc()
        # The version is stored either way (an audit fact); over budget, its executions are refused.
        with contextlib.suppress(CardinalityBudgetExceeded):
            self.admit(rv)
        if created:
            self._changed()

    # --- lifecycle (heurmetrics.audit.lifecycle: the policy; here: write and count) -------------
    def propose(
        self,
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
        """Register a version as a proposal with its lineage; counted as a ``rule_version``."""
        with self._refusing(d.KIND_RULE_VERSION):
            rv, created = lifecycle.propose(
                self.store, rule, version, params=params, source=source, created_by=created_by,
                description=description, parent=parent, code_ref=code_ref,
            )  # fmt: skip
        self._registered(rv, created)
        return rv, created

    def approve(self, rule: str, version: str, *, actor: str, reason: str) -> LifecycleEvent:
        with self._transition():
            return lifecycle.approve(self.store, rule, version, actor=actor, reason=reason)

    def activate(
        self, rule: str, version: str, *, env: str, actor: str, reason: str, policy: lifecycle.Policy | None = None
    ) -> LifecycleEvent:
        with self._transition():
            return lifecycle.activate(
                self.store, rule, version, env=env, actor=actor, reason=reason,
                policy=lifecycle.DEFAULT_POLICY if policy is None else policy,
            )  # fmt: skip

    def retire(self, rule: str, version: str, *, actor: str, reason: str) -> LifecycleEvent:
        with self._transition():
            return lifecycle.retire(self.store, rule, version, actor=actor, reason=reason)

    def rollback(self, rule: str, version: str, *, env: str, actor: str, reason: str) -> list[LifecycleEvent]:
        with self._transition():
            return lifecycle.rollback(self.store, rule, version, env=env, actor=actor, reason=reason)

    @contextlib.contextmanager
    def _transition(self) -> Iterator[None]:
        """Count one lifecycle transition (``kind="lifecycle"``): accepted, or rejected when refused."""
        with self._refusing(d.KIND_LIFECYCLE):
            yield
        self.metrics.ingested.labels(d.KIND_LIFECYCLE, "accepted").inc()
        self._changed()  # rule_version_info{status} changes with the lifecycle

    def _changed(self) -> None:
        if self.collector is not None:
            self.collector.invalidate()

    # --- outcome resolutions ------------------------------------------------------------------
    def resolve(self, items: Sequence[Resolution]) -> ResolutionResult:
        """Append resolutions (one transaction) and count them (``kind="resolution"``)."""
        with self._refusing(d.KIND_RESOLUTION, len(items)):
            result = self.store.live.insert_resolutions(items)
        self.metrics.ingested.labels(d.KIND_RESOLUTION, "accepted").inc(result.accepted)
        self.metrics.ingested.labels(d.KIND_RESOLUTION, "duplicate").inc(result.duplicates)
        return result

    def rule_version(self, rule: str, version: str, *, admit: bool = True) -> RuleVersion:
        """The registered version ``rule@version``, admitted to the metrics (unless not ``admit``:
        a batch checks all its items first, then admits its versions with :meth:`admit`).

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
        if admit and rv.id not in self._with_series:
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
        """Validate one execution and build its event (:func:`heurmetrics.execution_builder.build_execution`).

        ``started_at`` is Unix seconds; it defaults to now minus the duration.
        """
        return build_execution(
            rv, duration_seconds, status, outcome, signal, confidence, mode, started_at, error_type, event_id,
            backtest_run_id, new_id,
        )  # fmt: skip

    def write_executions(
        self,
        events: Sequence[ExecutionEvent],
        *,
        delivery_id: uuid.UUID | None = None,
        uncounted: Collection[uuid.UUID] | None = None,
    ) -> IngestResult:
        """Store a batch (one transaction) and count, once, the events it stored.

        ``delivery_id`` identifies the batch across attempts (the SDK's batch id, the HTTP
        ``Idempotency-Key``); pass the same id when re-sending the same batch. Repeated ids inside
        the batch and ids already stored are duplicates: skipped. Raises :class:`StoreUnavailable`
        when the write failed or its commit was not confirmed: then nothing is counted, and the
        batch may or may not be stored — re-send it with the same ``delivery_id`` to have it
        stored and counted exactly once (see the module doc).

        ``uncounted``: the ids the sender has not counted (None, the default: none was counted;
        the SDK counts the ids it generated at record time and passes the caller-given ones).
        """
        ids = [e.event_id for e in events]
        if len({u.int for u in ids}) == len(ids):  # the common case: no id repeated (ints: C hashing)
            batch = events if isinstance(events, list) else list(events)
        else:
            unique: dict[uuid.UUID, ExecutionEvent] = {}
            for event in events:
                unique.setdefault(event.event_id, event)
            batch = list(unique.values())
            ids = list(unique)
        fresh, fresh_ids = batch, ids
        if uncounted is not None:
            fresh = [e for e in batch if e.event_id in uncounted] if uncounted else []
            fresh_ids = [e.event_id for e in fresh]
        if not fresh:  # all counted at record time (SDK-generated ids): nothing to claim
            inserted = self._timed(d.OP_INSERT_EXECUTIONS, lambda: self.store.insert_executions(batch))
            self.metrics.ingested.labels(d.KIND_EXECUTION, "accepted").inc(len(inserted))
        else:
            self.claims.retry()
            stamp = deliveries.stamp(delivery_id or uuid.uuid4(), fresh_ids)
            inserted = self._timed(d.OP_INSERT_EXECUTIONS, lambda: self.store.insert_executions(batch, delivery=stamp))
            # Committed: count what this delivery stored and nobody counted (this write's rows, and
            # those of an earlier attempt whose answer was lost).
            self.metrics.ingested.labels(d.KIND_EXECUTION, "accepted").inc(
                len(inserted) - sum(1 for e in fresh if e.event_id in inserted) if len(fresh) < len(batch) else 0
            )
            self.claims.settle(Claim(stamp.delivery_id, uuid.uuid4(), fresh, stamp.digest))
        duplicates = len(events) - len(inserted)
        if duplicates:
            self.metrics.ingested.labels(d.KIND_EXECUTION, "duplicate").inc(duplicates)
        return IngestResult(len(inserted), duplicates, tuple(ids))

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
        with self._refusing(d.KIND_BACKTEST):
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
        with self._refusing(d.KIND_BACKTEST):  # the database may refuse the rows themselves
            created = self._timed(d.OP_INSERT_BACKTEST, lambda: self.store.insert_backtest(run, points, folds))
        self.metrics.ingested.labels(d.KIND_BACKTEST, "accepted" if created else "duplicate").inc()
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
        with self._refusing(d.KIND_BACKTEST):
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
        with self._refusing(d.KIND_BACKTEST):
            created = self._timed(d.OP_INSERT_BACKTEST, lambda: self.store.insert_backtest(run))
        self.metrics.ingested.labels(d.KIND_BACKTEST, "accepted" if created else "duplicate").inc()
        if created:
            self.metrics.observe_backtest(run)
            if self.collector is not None:
                self.collector.invalidate()
        return run, created

    # --- helpers ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _refusing(self, kind: str, n: int = 1) -> Iterator[None]:
        """Count a refusal raised here as ``n`` ``rejected`` events of ``kind``: the one rule of
        every write. A refusal is any :class:`HeurmetricsError` (invalid, conflict, policy,
        rejected data, over budget) except :class:`StoreUnavailable`: an outage refuses nothing,
        and the retry that follows is counted when it lands."""
        try:
            yield
        except StoreUnavailable:
            raise
        except HeurmetricsError:
            self.metrics.ingested.labels(kind, "rejected").inc(n)
            raise

    def _timed(self, operation: str, write: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            result = write()
        except StoreUnavailable:
            self.metrics.store_write_errors.labels(operation).inc()
            raise
        self.metrics.store_write_duration.labels(operation).observe(time.perf_counter() - started)
        return result
