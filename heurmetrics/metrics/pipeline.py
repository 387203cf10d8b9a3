"""Ingest-side Prometheus metrics: exact counters and histograms, updated once per new event.

All families come from :mod:`heurmetrics.metrics.definitions`. The three per-execution families
live in a lock-free sharded collector (:mod:`heurmetrics.metrics.executions`): they are on the
SDK hot path. Everything else is a plain prometheus_client metric.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from heurmetrics.domain import BacktestRun, ExecutionEvent, RuleVersion
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.executions import ExecutionMetrics
from heurmetrics.version import __version__

_CLASSES: dict[str, Any] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram, "info": Info}


def build_metric(spec: d.MetricSpec, registry: CollectorRegistry) -> Any:
    """Create the prometheus_client object that exposes ``spec`` on ``registry``."""
    # An Info's labels are the keys of the dict passed to .info(), not label names.
    kwargs: dict[str, Any] = {"registry": registry}
    if spec.kind != "info":
        kwargs["labelnames"] = spec.labels
    if spec.buckets is not None:
        kwargs["buckets"] = spec.buckets
    return _CLASSES[spec.kind](spec.name, spec.documentation, **kwargs)


class PipelineMetrics:
    """The metrics ingest updates: executions, backtests and the pipeline's own health.

    One instance per registry. Every event new to the store (or, in the SDK, every event whose id
    cannot collide) is counted exactly once — by :meth:`observe_execution`, or within a committed
    batch by :meth:`observe_executions` — so counts equal rows.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.executions = ExecutionMetrics(registry)
        self.backtest_runs = build_metric(d.BACKTEST_RUNS, registry)
        self.backtest_duration = build_metric(d.BACKTEST_DURATION, registry)
        self.ingested = build_metric(d.INGESTED_EVENTS, registry)
        self.store_write_duration = build_metric(d.STORE_WRITE_DURATION, registry)
        self.store_write_errors = build_metric(d.STORE_WRITE_ERRORS, registry)
        self.writer_queue = build_metric(d.WRITER_QUEUE_EVENTS, registry)
        self.dropped = build_metric(d.DROPPED_EVENTS, registry)
        # Delivery self-monitoring: updated by the SDK's delivery loop (heurmetrics.sdk.delivery);
        # they stay 0 in the exporter, which has no spool and never retries.
        self.retries = build_metric(d.DELIVERY_RETRIES, registry)
        self.spool_events = build_metric(d.SPOOL_EVENTS, registry)
        self.spool_bytes = build_metric(d.SPOOL_BYTES, registry)
        build_metric(d.BUILD_INFO, registry).info({"version": __version__, "python_version": platform.python_version()})
        self._observe = self.executions.observe
        # Series that must read 0, not be missing, from the first scrape on.
        for reason in d.DROP_REASONS:
            self.dropped.labels(reason=reason)
        for kind in d.INGEST_KINDS:
            for result in d.INGEST_RESULTS:
                self.ingested.labels(kind=kind, result=result)
        for operation in d.STORE_WRITE_OPERATIONS:
            self.store_write_errors.labels(operation)

    def prepare_rule_version(self, rv: RuleVersion) -> None:
        """Pre-initialise the error series of a version so error ratios read 0, not nothing."""
        for mode in d.EXECUTION_MODES:
            for status in d.EXECUTION_STATUSES:
                if status != "ok":
                    self.executions.prepare((rv.rule, rv.version, mode, status, d.NO_OUTCOME))
        for status in d.BACKTEST_STATUSES:
            self.backtest_runs.labels(rv.rule, rv.version, status)

    def observe_execution(self, event: ExecutionEvent) -> None:
        """Count one execution (hot path: see :class:`~heurmetrics.metrics.executions.ExecutionMetrics`)."""
        rv = event.rule_version
        self._observe(
            (rv.rule, rv.version, event.mode, event.status, event.outcome or d.NO_OUTCOME),
            event.duration_seconds,
            event.confidence,
            event.event_id,
        )

    def observe_executions(self, events: Iterable[ExecutionEvent]) -> None:
        """Count a committed batch of executions (one call per batch, not per event)."""
        self.executions.observe_events(events)

    def observe_backtest(self, run: BacktestRun) -> None:
        rv = run.rule_version
        exemplar = {"run_id": str(run.run_id)}
        self.backtest_runs.labels(rv.rule, rv.version, run.status).inc(1, exemplar)
        self.backtest_duration.labels(rv.rule).observe(run.duration_seconds, exemplar)
