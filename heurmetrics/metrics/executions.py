"""Execution metrics for the hot path: a lock-free, per-thread sharded collector.

``heuristic_executions_total`` and the duration and confidence histograms are updated for every
single execution. prometheus_client's children take a lock per update and validate every exemplar
(~8 us for the three families with exemplars); this collector keeps one shard of plain counters
per thread instead, so an update is a few list and attribute writes that no other thread touches.
``collect()`` (the prometheus_client protocol) sums the shards. Counts are exact: a thread only
ever increments its own shard, and reading an int another thread is about to increment yields a
value that is at most one update behind, never a lost one.

Exemplars keep the event id *object* of the latest observation per series and bucket; turning it
into a string (the costly part) happens at scrape time.
"""

from __future__ import annotations

import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from heurmetrics.domain import ExecutionEvent
from heurmetrics.metrics import definitions as d

_INF = float("inf")


class _Histogram:
    """Non-cumulative bucket counts, their latest exemplars, and the sum of one series."""

    __slots__ = ("counts", "exemplars", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)  # the last slot is +Inf
        self.exemplars: list[tuple[uuid.UUID, float, float] | None] = [None] * (n_buckets + 1)
        self.sum = 0.0


class _Cell:
    """Everything one (rule, version, mode, status, outcome) combination counts in one shard."""

    __slots__ = ("confidence", "count", "duration", "exemplar")

    def __init__(self) -> None:
        self.count = 0
        self.exemplar: tuple[uuid.UUID, float] | None = None
        self.duration = _Histogram(len(d.EXECUTION_DURATION_BUCKETS))
        self.confidence = _Histogram(len(d.CONFIDENCE_BUCKETS))


CellKey = tuple[str, str, str, str, str]  # rule, rule_version, mode, status, outcome label


_LATENCY_MODES = frozenset(d.LATENCY_MODES)


class ExecutionMetrics(Collector):
    """The three ``heuristic.execution`` families, exposed with the names and labels of definitions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._local = threading.local()
        self._shards: list[dict[CellKey, _Cell]] = []
        self._lock = threading.Lock()  # only for creating shards and for collect
        self._duration_bounds = d.EXECUTION_DURATION_BUCKETS
        self._confidence_bounds = d.CONFIDENCE_BUCKETS
        if registry is not None:
            registry.register(self)

    def _new_shard(self) -> dict[CellKey, _Cell]:
        shard: dict[CellKey, _Cell] = {}
        with self._lock:
            self._shards.append(shard)
        self._local.shard = shard
        return shard

    def prepare(self, key: CellKey) -> None:
        """Make the series of ``key`` exist with value 0 (pre-initialisation)."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        if key not in shard:
            shard[key] = _Cell()

    def observe(self, key: CellKey, duration: float, confidence: float | None, event_id: uuid.UUID) -> None:
        """Count one execution (the hot path: no lock, no allocation beyond two tuples)."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        cell = shard.get(key)
        if cell is None:
            cell = shard[key] = _Cell()
        now = time.time()
        cell.count += 1
        cell.exemplar = (event_id, now)
        if key[2] in _LATENCY_MODES:  # only these modes' durations are exported (the series budget)
            hist = cell.duration
            i = bisect_left(self._duration_bounds, duration)
            hist.counts[i] += 1
            hist.sum += duration
            hist.exemplars[i] = (event_id, duration, now)
        if confidence is not None:
            hist = cell.confidence
            i = bisect_left(self._confidence_bounds, confidence)
            hist.counts[i] += 1
            hist.sum += confidence
            hist.exemplars[i] = (event_id, confidence, now)

    def observe_events(self, events: Iterable[ExecutionEvent]) -> None:
        """Count a committed batch: :meth:`observe` per event, inlined, with one shard lookup and
        one clock read per batch (the exemplars of a batch share its timestamp)."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard()
        now = time.time()
        latency, no_outcome = _LATENCY_MODES, d.NO_OUTCOME
        dbounds, cbounds, get = self._duration_bounds, self._confidence_bounds, shard.get
        for e in events:
            rv = e.rule_version
            key = (rv.rule, rv.version, e.mode, e.status, e.outcome or no_outcome)
            cell = get(key)
            if cell is None:
                cell = shard[key] = _Cell()
            event_id = e.event_id
            cell.count += 1
            cell.exemplar = (event_id, now)
            if e.mode in latency:
                duration = e.duration_seconds
                hist = cell.duration
                i = bisect_left(dbounds, duration)
                hist.counts[i] += 1
                hist.sum += duration
                hist.exemplars[i] = (event_id, duration, now)
            confidence = e.confidence
            if confidence is not None:
                hist = cell.confidence
                i = bisect_left(cbounds, confidence)
                hist.counts[i] += 1
                hist.sum += confidence
                hist.exemplars[i] = (event_id, confidence, now)

    # --- scrape side ------------------------------------------------------------------------------
    def _merged(self) -> dict[CellKey, list[_Cell]]:
        with self._lock:
            shards = list(self._shards)
        merged: dict[CellKey, list[_Cell]] = {}
        for shard in shards:
            for key, cell in list(shard.items()):  # list(): the owner thread may add keys meanwhile
                merged.setdefault(key, []).append(cell)
        return merged

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            d.HEURISTIC_EXECUTIONS.name, d.HEURISTIC_EXECUTIONS.documentation, labels=d.HEURISTIC_EXECUTIONS.labels
        )
        for spec in (d.HEURISTIC_EXECUTION_DURATION, d.HEURISTIC_EXECUTION_CONFIDENCE):
            yield HistogramMetricFamily(spec.name, spec.documentation, labels=spec.labels)

    def collect(self) -> Iterator[Metric]:
        merged = self._merged()
        counter = CounterMetricFamily(
            d.HEURISTIC_EXECUTIONS.name, d.HEURISTIC_EXECUTIONS.documentation, labels=d.HEURISTIC_EXECUTIONS.labels
        )
        histograms: dict[str, dict[tuple[str, ...], list[_Histogram]]] = {"duration": {}, "confidence": {}}
        for key, cells in sorted(merged.items()):
            latest = max((c.exemplar for c in cells if c.exemplar is not None), key=lambda e: e[1], default=None)
            exemplar = None if latest is None else Exemplar({"event_id": str(latest[0])}, 1.0, latest[1])
            counter.add_metric(list(key), float(sum(c.count for c in cells)), exemplar=exemplar)
            # The series budget (docs/metrics.md): durations by (rule, rule_version) of the latency
            # modes only; confidence by (rule, rule_version, mode).
            if key[2] in d.LATENCY_MODES:
                histograms["duration"].setdefault(key[:2], []).extend(c.duration for c in cells)
            histograms["confidence"].setdefault(key[:3], []).extend(c.confidence for c in cells)
        yield counter
        for name, spec, bounds in (
            ("duration", d.HEURISTIC_EXECUTION_DURATION, self._duration_bounds),
            ("confidence", d.HEURISTIC_EXECUTION_CONFIDENCE, self._confidence_bounds),
        ):
            family = HistogramMetricFamily(spec.name, spec.documentation, labels=spec.labels)
            for series, parts in sorted(histograms[name].items()):
                family.add_metric(list(series), _cumulative_buckets(parts, bounds), sum(p.sum for p in parts))
            yield family


def _cumulative_buckets(parts: list[_Histogram], bounds: tuple[float, ...]) -> list[Any]:
    buckets: list[Any] = []
    total = 0
    for i, bound in enumerate((*bounds, _INF)):
        total += sum(p.counts[i] for p in parts)
        candidates = [e for e in (p.exemplars[i] for p in parts) if e is not None]
        latest = max(candidates, key=lambda e: e[2], default=None)
        exemplar = None if latest is None else Exemplar({"event_id": str(latest[0])}, latest[1], latest[2])
        buckets.append((floatToGoString(bound), total, exemplar))
    return buckets
