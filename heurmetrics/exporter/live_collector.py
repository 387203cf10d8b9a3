"""Gauges ``rule_version_performance_*{rule, rule_version, window}`` from the latest snapshots.

Only the windows of ``definitions.EXPORTED_PERFORMANCE_WINDOWS`` are exported (the series
budget, docs/metrics.md); every window stays in the store.

A custom collector (like :mod:`heurmetrics.exporter.store_collector`): it reads the latest row of
``rule_version_performance`` per (version, window) for one horizon, cached for ``ttl_seconds``;
when the store is unreachable the last good answer is served. Every registered rule version gets
a series per window from the first scrape on: NaN until a snapshot exists (unknown, not 0), and
NaN for values a snapshot left undefined (no executions, no resolved signals, no expectation).
A series disappears when its rule version does.

It also exports ``backtest_overfitting_*{rule, rule_version}`` from the latest completed
walk-forward run per version that has overfitting statistics (``backtest_overfitting``): NaN
for a version without one, or for a statistic the run left undefined.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from heurmetrics.domain import RuleVersion
from heurmetrics.metrics import definitions as d
from heurmetrics.store.sql_store import SqlStore

log = logging.getLogger(__name__)


class PerformanceCollector(Collector):
    """Exposes the :data:`~heurmetrics.metrics.definitions.PERFORMANCE_GAUGES` families.

    Register it once per registry: ``registry.register(PerformanceCollector(store))``.
    """

    def __init__(
        self, store: SqlStore, ttl_seconds: float = 15.0, *, horizon: str = d.DEFAULT_PERFORMANCE_HORIZON
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._horizon = horizon
        self._lock = threading.Lock()
        self._fetched_at = float("-inf")
        self._versions: list[RuleVersion] = []
        self._rows: dict[tuple[int, str], dict[str, Any]] = {}
        self._overfitting: dict[int, dict[str, Any]] = {}
        #: Bumped on every successful read of the store (the exposition cache keys on it).
        self.generation = 0

    def invalidate(self) -> None:
        """Forget the cache: the next scrape reads the store."""
        with self._lock:
            self._fetched_at = float("-inf")

    def _refresh(self) -> tuple[list[RuleVersion], dict[tuple[int, str], dict[str, Any]]]:

        with self._lock:
            if time.monotonic() - self._fetched_at >= self._ttl:
                try:
                    self._versions = self._store.list_rule_versions()
                    rows = self._store.live.latest_snapshots(self._horizon, windows=d.PERFORMANCE_WINDOWS)
                    self._rows = {(row["rule_version_id"], row["time_window"]): row for row in rows}
                    overfit = self._store.backtests.latest_overfitting()
                    self._overfitting = {row["rule_version_id"]: row for row in overfit}
                    self._fetched_at = time.monotonic()
                    self.generation += 1
                except Exception as exc:  # serve the last good answer; the scrape must not fail
                    log.warning("performance collector: reading the store failed, serving cached values: %s", exc)
            return self._versions, self._rows

    def refresh(self) -> int:
        """Read the store if the cache expired; returns :attr:`generation`."""
        self._refresh()
        return self.generation

    def describe(self) -> list[Any]:
        return []  # unknown until the store is read; keeps registration free of database access

    def collect(self) -> Iterator[Any]:
        versions, rows = self._refresh()
        labels = list(d.RVP_HIT_RATIO.labels)
        for column, spec in d.PERFORMANCE_GAUGES.items():
            family = GaugeMetricFamily(spec.name, spec.documentation, labels=labels)
            for v in versions:
                for window in d.EXPORTED_PERFORMANCE_WINDOWS:
                    row = rows.get((v.id, window))
                    family.add_metric([v.rule, v.version, window], _value(None if row is None else row[column]))
            yield family
        spec = d.RVP_SNAPSHOT_TIMESTAMP
        family = GaugeMetricFamily(spec.name, spec.documentation, labels=labels)
        for v in versions:
            for window in d.EXPORTED_PERFORMANCE_WINDOWS:
                row = rows.get((v.id, window))
                family.add_metric(
                    [v.rule, v.version, window], math.nan if row is None else row["computed_at"].timestamp()
                )
        yield family
        overfitting = self._overfitting
        for column, (spec, factor) in d.OVERFITTING_GAUGES.items():
            family = GaugeMetricFamily(spec.name, spec.documentation, labels=list(spec.labels))
            for v in versions:
                found = overfitting.get(v.id)
                value = _value(None if found is None else found[column])
                family.add_metric([v.rule, v.version], value * factor)
            yield family


def _value(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return float(value)  # type: ignore[arg-type]
