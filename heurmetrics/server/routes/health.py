"""Probes: ``GET /healthz`` (the process is up) and ``GET /readyz`` (the store answers, at head)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from heurmetrics.server.errors import error_body
from heurmetrics.server.models import ErrorOut
from heurmetrics.store.sql_store import SqlStore


def build_router(store: SqlStore) -> APIRouter:
    """The probes over ``store``; no token (orchestrators probe without one)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"model": ErrorOut}})
    def readyz() -> Response:
        """The database is reachable and its schema is at head."""
        try:
            store.ping()
        except Exception as exc:  # any failure means "not ready"; the probe itself is not a refusal
            return JSONResponse(error_body("unavailable", f"not ready: {type(exc).__name__}"), status_code=503)
        return JSONResponse({"status": "ready"})

    return router
