"""The exporter service (``heurmetrics serve``): the app factory, wiring the parts together.

Every POST is acknowledged only after its rows are committed. The SDK and this API share one
ingest path (:class:`heurmetrics.ingest.Ingest`): validation, persistence and counting are the same.
The routes live in :mod:`heurmetrics.server.routes` (one router per concern); every refusal is
answered, counted and logged by :mod:`heurmetrics.server.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

from heurmetrics.config import Settings
from heurmetrics.exporter.exposition import StoreFamilies
from heurmetrics.exporter.live_collector import PerformanceCollector
from heurmetrics.exporter.store_collector import StoreCollector
from heurmetrics.ingest import Ingest
from heurmetrics.live.snapshot import PeriodicSnapshots
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.server.auth import BearerTokenGate, bearer_authorization
from heurmetrics.server.errors import ANSWERS, Refusals
from heurmetrics.server.limits import BodySizeLimit
from heurmetrics.server.models import ErrorOut, ExecutionBatchIn
from heurmetrics.server.openapi import install_openapi
from heurmetrics.server.query_params import known_query_only
from heurmetrics.server.routes import (
    audit,
    backtests,
    executions,
    exposition,
    health,
    resolutions,
    rule_versions,
    walkforward,
)
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.store.urls import redact_url
from heurmetrics.version import __version__

log = logging.getLogger("heurmetrics.server")

#: The ingest and audit routers, in the order their operations appear in the OpenAPI schema.
_API_ROUTERS = (rule_versions, executions, backtests, walkforward, resolutions, audit)


def create_app(settings: Settings | None = None, *, store: SqlStore | None = None) -> FastAPI:
    """Build the exporter app. ``store`` defaults to ``settings.database_url`` (must be at head)."""
    settings = settings or Settings()
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    owns_store = store is None
    app = FastAPI(
        title="heurmetrics exporter",
        version=__version__,
        lifespan=_lifespan(settings, owns_store),
        responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
        dependencies=[Depends(known_query_only)],
    )
    store = store or SqlStore.open(settings.database_url)
    # No ``*_created`` series (the series budget, docs/metrics.md): Prometheus does not need them
    # for rate()/increase(). prometheus_client's switch is process-wide; the exporter owns its process.
    disable_created_metrics()
    registry = CollectorRegistry()
    collector = StoreCollector(store, ttl_seconds=settings.metrics_cache_seconds)
    # Store-derived families: rendered once per cache refresh, not per scrape (issue 11).
    store_families = StoreFamilies([collector, PerformanceCollector(store, ttl_seconds=settings.metrics_cache_seconds)])
    ingest = Ingest(store, PipelineMetrics(registry), collector, max_rule_versions=settings.max_rule_versions)
    refusals = Refusals(registry, ingest)
    ProcessCollector(registry=registry)
    # Error series read 0 from the first scrape: pre-initialise the newest versions, within budget.
    for rv in sorted(store.list_rule_versions(), key=lambda v: v.created_at, reverse=True)[
        : settings.max_rule_versions
    ]:
        ingest.admit(rv)
    app.state.ingest = ingest
    app.state.registry = registry
    app.state.store_families = store_families

    refusals.install(app)
    too_large = ANSWERS["too_large"]

    def on_body_too_large(scope: dict[str, Any]) -> None:
        refusals.record(scope.get("method"), scope.get("path"), too_large.status, too_large.reason)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, on_reject=on_body_too_large)
    if token is not None:  # outermost: an anonymous request is refused before anything reads it
        unauthorized = ANSWERS["unauthorized"]

        def on_unauthorized(scope: dict[str, Any]) -> None:
            refusals.record(scope.get("method"), scope.get("path"), unauthorized.status, unauthorized.reason)

        app.add_middleware(BearerTokenGate, token=token, on_reject=on_unauthorized)
    app.include_router(exposition.build_router(registry, store_families))
    app.include_router(health.build_router(store))
    authorize = bearer_authorization(token)
    for concern in _API_ROUTERS:
        app.include_router(concern.build_router(ingest, authorize))
    install_openapi(app, ExecutionBatchIn, token=token is not None)
    log.info("exporter using database %s", redact_url(settings.database_url))
    return app


def _lifespan(settings: Settings, owns_store: bool) -> Any:
    """Partitions ahead, the periodic performance snapshots, and closing the store we opened."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = app.state.ingest.store
        store.prepare_partitions()  # this month's and the next ones (PostgreSQL)
        interval = settings.performance_snapshot_seconds
        snapshots = PeriodicSnapshots(store, interval_seconds=interval).start() if interval > 0 else None
        yield
        if snapshots is not None:
            snapshots.stop()
        app.state.ingest.close()  # deferred delivery claims: counted now if the database answers
        if owns_store:
            store.close()

    return lifespan
