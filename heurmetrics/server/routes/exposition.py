"""``GET /metrics``: the Prometheus page (text format, or OpenMetrics with exemplars when asked)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry

from heurmetrics.exporter.exposition import StoreFamilies
from heurmetrics.exporter.exposition import metrics_page as render_metrics_page


def build_router(registry: CollectorRegistry, store_families: StoreFamilies) -> APIRouter:
    """The page of ``registry`` plus the store-derived families (rendered once per cache refresh)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)  # scrape configs may add their own parameters
    def metrics_page(request: Request) -> Response:
        body, content_type = render_metrics_page(registry, store_families, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    return router
