"""The Python SDK: what a rule runner or backtest runner calls.

    with Recorder() as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0", params={...}, source=src)
        with rec.execution(rv, mode="live") as ex:
            ex.set_result(outcome="bullish", signal=1.0, confidence=0.72)

``record_execution`` is the hot path: it validates, updates the Prometheus metrics and appends to
an in-memory queue; a background thread writes batches to the store. ``flush()`` returns when
everything recorded before it is durable.
"""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry

from heurmetrics.config import Settings
from heurmetrics.domain import BacktestFold, BacktestRun, ExecutionEvent, RuleVersion
from heurmetrics.errors import InvalidEvent
from heurmetrics.ingest import Ingest
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.sdk.ids import EventIds
from heurmetrics.sdk.writer import BackgroundWriter, FlushResult
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.validation import check_execution, check_timestamp


class Recorder:
    """Records rule versions, executions and backtests of one runner process.

    ``database_url`` defaults to ``HEURMETRICS_DATABASE_URL`` (else ``./heurmetrics.db``). A
    brand-new empty database is initialised; one at an older schema revision is refused (run
    ``heurmetrics db upgrade``). ``registry`` receives the metrics (a fresh one by default); expose
    it with :meth:`start_metrics_server` or your own exporter.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: CollectorRegistry | None = None,
        created_by: str | None = None,
        batch_size: int = 5000,
        flush_interval: float = 0.05,
    ) -> None:
        url = database_url or Settings().database_url
        self.registry = registry if registry is not None else CollectorRegistry()
        self.store = SqlStore.open(url, initialize_empty=True)
        self.metrics = PipelineMetrics(self.registry)
        self.ingest = Ingest(self.store, self.metrics)
        self.created_by = created_by or _current_user()
        self._ids = EventIds()
        self._writer = BackgroundWriter(self.ingest, batch_size=batch_size, flush_interval=flush_interval)
        self._put = self._writer.put
        self._observe = self.metrics.observe_execution
        self._closed = False

    # --- rule versions ----------------------------------------------------------------------
    def register_rule_version(
        self,
        rule: str,
        version: str,
        params: dict[str, Any] | None = None,
        source: str = "",
        *,
        created_by: str | None = None,
        description: str | None = None,
    ) -> RuleVersion:
        """Register a rule version (synchronously, durable on return) and return it.

        Idempotent for identical content; raises :class:`~heurmetrics.errors.VersionConflict` when
        ``rule@version`` exists with other params or source (nothing is written).
        """
        rv, _created = self.ingest.register_rule_version(
            rule,
            version,
            params=params,
            source=source,
            created_by=created_by or self.created_by,
            description=description,
        )
        return rv

    # --- executions (hot path) --------------------------------------------------------------
    def record_execution(
        self,
        rule_version: RuleVersion,
        *,
        duration_seconds: float,
        status: str = "ok",
        outcome: str | None = None,
        signal: float | None = None,
        confidence: float | None = None,
        mode: str = "live",
        started_at: datetime | float | None = None,
        error_type: str | None = None,
        event_id: uuid.UUID | None = None,
        backtest_run_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Record one execution and return its event id; never touches the database.

        Pass ``event_id`` to make retries idempotent: an id seen before is stored and counted once.
        ``started_at`` is an aware datetime or Unix seconds (default: now minus the duration).
        Invalid values raise :class:`~heurmetrics.errors.InvalidEvent` and record nothing.
        """
        if self._closed:
            raise RuntimeError("Recorder is closed")
        if rule_version.__class__ is not RuleVersion:
            raise InvalidEvent("rule_version", "must be the RuleVersion returned by register_rule_version")
        check_execution(
            status=status,
            mode=mode,
            duration_seconds=duration_seconds,
            outcome=outcome,
            signal=signal,
            confidence=confidence,
            error_type=error_type,
        )
        if started_at is None:
            started = time.time() - duration_seconds
        else:
            started = check_timestamp("started_at", _epoch(started_at))
        generated = event_id is None
        event = ExecutionEvent(
            self._ids.next() if generated else _as_uuid(event_id),
            rule_version,
            started,
            duration_seconds,
            status,
            outcome,
            signal,
            confidence,
            mode,
            error_type,
            backtest_run_id,
            generated,
        )
        if generated:  # a fresh id cannot be a duplicate: count now (others count after insert)
            self._observe(event)
        self._put(event)
        return event.event_id

    def execution(
        self, rule_version: RuleVersion, *, mode: str = "live", backtest_run_id: uuid.UUID | None = None
    ) -> ExecutionContext:
        """Time a block as one execution: ``with rec.execution(rv) as ex: ex.set_result(...)``.

        An exception leaving the block records status ``error`` (``timeout`` for TimeoutError)
        with its type in ``error_type``, and is re-raised.
        """
        return ExecutionContext(self, rule_version, mode, backtest_run_id)

    # --- backtests --------------------------------------------------------------------------
    def record_backtest(
        self,
        rule_version: RuleVersion,
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
    ) -> BacktestRun:
        """Compute the performance metrics of an equity curve and store the run (durable on return).

        ``equity`` is a Series indexed by time; ``periods_per_year`` is explicit (365*24 for
        hourly crypto bars, 252 for daily equities). Returns the stored run with its metrics.
        """
        run, _created = self.ingest.record_backtest(
            rule_version,
            equity,
            dataset=dataset,
            periods_per_year=periods_per_year,
            risk_free_rate=risk_free_rate,
            trades=trades,
            dataset_hash=dataset_hash,
            started_at=started_at,
            finished_at=finished_at,
            run_id=run_id,
            config=config,
            kind=kind,
            folds=folds,
            fold_equity=fold_equity,
        )
        return run

    # --- lifecycle ----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> FlushResult:
        """Return when everything recorded so far is durable (or ``timeout`` seconds passed)."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> FlushResult:
        """Flush, stop the writer and release the database; reports what could not be written."""
        if self._closed:
            return FlushResult(0)
        self._closed = True
        result = self._writer.close(timeout)
        self.store.close()
        return result

    def start_metrics_server(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve this recorder's metrics on ``http://addr:port/metrics`` (embedded mode)."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr, registry=self.registry)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class ExecutionContext:
    """Times one execution; see :meth:`Recorder.execution`."""

    __slots__ = (
        "_confidence",
        "_mode",
        "_outcome",
        "_recorder",
        "_run_id",
        "_rv",
        "_signal",
        "_start",
        "_t0",
        "event_id",
    )

    def __init__(
        self, recorder: Recorder, rule_version: RuleVersion, mode: str, backtest_run_id: uuid.UUID | None
    ) -> None:
        self._recorder = recorder
        self._run_id = backtest_run_id
        self._rv = rule_version
        self._mode = mode
        self._outcome: str | None = None
        self._signal: float | None = None
        self._confidence: float | None = None
        self.event_id: uuid.UUID | None = None

    def set_result(
        self, outcome: str | None = None, signal: float | None = None, confidence: float | None = None
    ) -> None:
        self._outcome, self._signal, self._confidence = outcome, signal, confidence

    def __enter__(self) -> ExecutionContext:
        self._start = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = time.perf_counter() - self._t0
        if exc_type is None:
            self.event_id = self._recorder.record_execution(
                self._rv,
                duration_seconds=duration,
                outcome=self._outcome,
                signal=self._signal,
                confidence=self._confidence,
                mode=self._mode,
                started_at=self._start,
                backtest_run_id=self._run_id,
            )
            return
        # The rule failed: record it without the (possibly half-set) result and let it propagate.
        status = "timeout" if issubclass(exc_type, TimeoutError) else "error"
        self.event_id = self._recorder.record_execution(
            self._rv,
            duration_seconds=duration,
            status=status,
            mode=self._mode,
            started_at=self._start,
            error_type=exc_type.__qualname__[:128],
            backtest_run_id=self._run_id,
        )


def _epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEvent("started_at", "naive datetime: pass a timezone-aware time (e.g. UTC)")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent("started_at", f"must be a datetime or Unix seconds, got {type(value).__name__}")
    return float(value)


def _as_uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidEvent("event_id", f"{str(value)[:64]!r} is not a UUID") from None


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"
