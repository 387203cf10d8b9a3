"""Gauges derived from the store: latest backtest results and rule-version info.

``rule_version_info`` carries each version's lifecycle status (derived from
``rule_version_events`` by :func:`heurmetrics.audit.queries.version_statuses`): ``proposed``,
``approved``, or ``active`` with one series per environment; retired versions have no series.

A custom collector (the prometheus_client ``collect()`` protocol): a series exists exactly while
its row does. Query results are cached for ``ttl_seconds`` so a scrape does not hit the database
every time; when the database is unreachable the last good answer is served and the failure is
logged (a scrape never fails because of the store).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from heurmetrics.audit.queries import version_statuses
from heurmetrics.domain import LatestBacktest, RuleVersion
from heurmetrics.metrics import definitions as d
from heurmetrics.store.sql_store import SqlStore

log = logging.getLogger(__name__)


class StoreCollector(Collector):
    def __init__(self, store: SqlStore, ttl_seconds: float = 15.0) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._fetched_at = float("-inf")
        self._versions: list[RuleVersion] = []
        self._statuses: dict[int, tuple[str, list[str]]] = {}
        self._backtests: list[LatestBacktest] = []
        #: Bumped on every successful read of the store (the exposition cache keys on it).
        self.generation = 0

    def invalidate(self) -> None:
        """Forget the cache: the next scrape reads the store (after a write that changes it)."""
        with self._lock:
            self._fetched_at = float("-inf")

    def _refresh(self) -> tuple[list[RuleVersion], dict[int, tuple[str, list[str]]], list[LatestBacktest]]:
        with self._lock:
            if time.monotonic() - self._fetched_at >= self._ttl:
                try:
                    self._versions = self._store.list_rule_versions()
                    self._statuses = version_statuses(self._store)
                    self._backtests = self._store.latest_backtests()
                    self._fetched_at = time.monotonic()
                    self.generation += 1
                except Exception as exc:  # serve the last good answer; the scrape must not fail
                    log.warning("store collector: reading the store failed, serving cached values: %s", exc)
            return self._versions, self._statuses, self._backtests

    def refresh(self) -> int:
        """Read the store if the cache expired (or was invalidated); returns :attr:`generation`."""
        self._refresh()
        return self.generation

    def describe(self) -> list[Any]:
        return []  # unknown until the store is read; keeps registration free of database access

    def collect(self) -> Iterator[Any]:
        versions, statuses, backtests = self._refresh()
        info = InfoMetricFamily(
            d.RULE_VERSION_INFO.name, d.RULE_VERSION_INFO.documentation, labels=d.RULE_VERSION_INFO.labels
        )
        for v in versions:
            # Lifecycle status from rule_version_events: one series per env where active, none when
            # retired; env is empty ("no env") for proposed and approved versions.
            status, envs = statuses.get(v.id, ("proposed", []))
            if status == "retired":
                continue
            for env in envs or [""]:
                info.add_metric([v.rule, v.version, v.content_hash, status, env], {})
        yield info
        labels = [d.RULE, d.RULE_VERSION]
        for field, spec in d.BACKTEST_RESULT_GAUGES.items():
            family = GaugeMetricFamily(spec.name, spec.documentation, labels=labels)
            for b in backtests:
                value = getattr(b, field)
                if value is not None:
                    family.add_metric([b.rule, b.version], value)
            yield family
        ts = d.BACKTEST_RESULT_TIMESTAMP
        family = GaugeMetricFamily(ts.name, ts.documentation, labels=labels)
        for b in backtests:
            family.add_metric([b.rule, b.version], b.finished_at.timestamp())
        yield family
