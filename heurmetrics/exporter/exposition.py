"""The exporter's ``/metrics`` page: ingest families rendered per scrape, store families per refresh.

Store-derived families (latest backtests, version info, performance snapshots) only change when
their collectors read the store again (every ``HEURMETRICS_METRICS_CACHE_SECONDS``, or after a
write that invalidates them). :class:`StoreFamilies` renders them once per such refresh, in each
format that is asked for, and keeps the bytes; a scrape within the cache interval neither
queries the database nor re-renders those families. The ingest families (counters and
histograms that move with every execution) are rendered per scrape with prometheus_client's own
encoders, and the two parts are concatenated (OpenMetrics: one ``# EOF`` at the very end).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

_EOF = b"# EOF\n"


class RefreshingCollector(Protocol):
    """A store-backed collector: ``refresh()`` reads the store when its cache expired and returns
    a number that changes whenever what ``collect()`` yields may have changed."""

    def refresh(self) -> int: ...

    def collect(self) -> Iterable[Any]: ...


class _Fixed:
    """A collector that yields families collected before (so rendering does not collect again)."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


class StoreFamilies:
    """The rendered text of store-derived collectors, re-rendered only after they refreshed."""

    def __init__(self, collectors: Sequence[RefreshingCollector]) -> None:
        self.collectors = tuple(collectors)
        self._lock = threading.Lock()
        self._generations: tuple[int, ...] | None = None
        self._families: list[Any] = []
        self._rendered: dict[bool, bytes] = {}
        #: The same collectors in a registry of their own (for generate_latest comparisons, tests).
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in self.collectors:
            self.registry.register(collector)

    def render(self, openmetrics: bool) -> bytes:
        """The families' exposition text (OpenMetrics without ``# EOF``)."""
        with self._lock:
            generations = tuple(c.refresh() for c in self.collectors)
            if generations != self._generations:
                self._families = [f for c in self.collectors for f in c.collect()]
                self._rendered = {}
                self._generations = generations
            if openmetrics not in self._rendered:
                registry = CollectorRegistry(auto_describe=False)
                registry.register(_Fixed(self._families))
                text = generate_openmetrics(registry) if openmetrics else generate_text(registry)
                self._rendered[openmetrics] = text.removesuffix(_EOF)
            return self._rendered[openmetrics]


def metrics_page(registry: CollectorRegistry, store: StoreFamilies, accept: str) -> tuple[bytes, str]:
    """Body and content type of ``GET /metrics`` for the scraper's ``Accept`` header."""
    encoder: Callable[[CollectorRegistry], bytes]
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith(OPENMETRICS_CONTENT_TYPE.split(";")[0])
    live = encoder(registry)
    if openmetrics:
        return live.removesuffix(_EOF) + store.render(True) + _EOF, content_type
    return live + store.render(False), content_type
