"""The exporter service (``heurmetrics serve``): HTTP ingest and the Prometheus ``/metrics`` page.

Every POST is acknowledged only after its rows are committed. The SDK and this API share one
ingest path (:class:`heurmetrics.ingest.Ingest`): validation, persistence and counting are the same.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from heurmetrics import __version__
from heurmetrics.config import Settings, redact_url
from heurmetrics.errors import (
    CardinalityBudgetExceeded,
    InvalidEvent,
    StoreUnavailable,
    UnknownRuleVersion,
    VersionConflict,
)
from heurmetrics.ingest import Ingest
from heurmetrics.live.snapshot import PeriodicSnapshots
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.exposition import StoreFamilies
from heurmetrics.metrics.exposition import metrics_page as render_metrics_page
from heurmetrics.metrics.live_collector import PerformanceCollector
from heurmetrics.metrics.pipeline import PipelineMetrics, build_metric
from heurmetrics.metrics.store_collector import StoreCollector
from heurmetrics.server.audit_routes import build_audit_router
from heurmetrics.server.idempotency import IDEMPOTENCY_HEADER, idempotency_key
from heurmetrics.server.limits import BodySizeLimit
from heurmetrics.server.models import (
    MAX_EXECUTIONS_PER_REQUEST,
    UNKNOWN_RULE_VERSION,
    BacktestFailureIn,
    BacktestIn,
    BacktestOut,
    ErrorOut,
    ExecutionBatchIn,
    ExecutionBatchOut,
    RuleVersionIn,
    RuleVersionOut,
    equity_series,
)
from heurmetrics.server.openapi import document_statuses
from heurmetrics.server.query_params import known_query_only
from heurmetrics.server.walkforward_routes import walkforward_router
from heurmetrics.store.sql_store import SqlStore

log = logging.getLogger("heurmetrics.server")
RETRY_AFTER_SECONDS = 5
_bearer = HTTPBearer(auto_error=False)


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"detail": ...}``."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.headers = headers


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if item in ("body", "[key]"):  # "[key]": pydantic's marker for a bad dict key
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


#: Every refusal's label in ``heurmetrics_rejected_requests_total`` (anything else: ``invalid``).
_REASON_BY_STATUS = {
    401: "unauthorized",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "over_budget",
    503: "unavailable",
}
_KIND_BY_PATH = {
    "/v1/executions": "execution",
    "/v1/backtests": "backtest",
    "/v1/backtests/failed": "backtest",
    "/v1/rule-versions": "rule_version",
}


def _json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for an endpoint that parses its raw body with ``model``."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _document_raw_bodies(app: FastAPI, *models: type[BaseModel], token: bool) -> None:
    """Add the schemas of raw-body models to the OpenAPI components (FastAPI only adds models
    that appear as parameters), and every status each operation can answer."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(doc.pop("$defs", {}))
                components[model.__name__] = doc
            document_statuses(schema, token=token)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_error(error: Any) -> dict[str, str]:
    """A pydantic/FastAPI validation error as ``{"field", "message"}`` with a readable path.

    Only pydantic's message is used, never the input: a 100 kB value is not echoed back.
    """
    if error.get("type") == "json_invalid":  # loc ends with a character position, or nothing
        reason = (error.get("ctx") or {}).get("error", error["msg"])
        position = error["loc"][-1] if error["loc"] and isinstance(error["loc"][-1], int) else None
        where = f" at character {position}" if position is not None else ""
        return {"field": "body", "message": f"invalid JSON{where}: {reason}"}
    return {"field": _field_path(tuple(error["loc"])), "message": error["msg"]}


_UNPARSABLE: dict[type[BaseException], str] = {
    UnicodeDecodeError: "the body is not valid UTF-8",
    RecursionError: "nested too deeply",
}


def create_app(settings: Settings | None = None, *, store: SqlStore | None = None) -> FastAPI:
    """Build the exporter app. ``store`` defaults to ``settings.database_url`` (must be at head)."""
    settings = settings or Settings()
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    owns_store = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ingest.store.prepare_partitions()  # this month's and the next ones (PostgreSQL)
        snapshots = (
            PeriodicSnapshots(app.state.ingest.store, interval_seconds=settings.performance_snapshot_seconds).start()
            if settings.performance_snapshot_seconds > 0
            else None
        )
        yield
        if snapshots is not None:
            snapshots.stop()
        if owns_store:
            app.state.ingest.store.close()

    app = FastAPI(
        title="heurmetrics exporter",
        version=__version__,
        lifespan=lifespan,
        responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
        dependencies=[Depends(known_query_only)],
    )
    store = store or SqlStore.open(settings.database_url)
    # No ``*_created`` series (the series budget, docs/metrics.md): Prometheus does not need them
    # for rate()/increase(). prometheus_client's switch is process-wide; the exporter owns its process.
    disable_created_metrics()
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    rejected = build_metric(d.REJECTED_REQUESTS, registry)
    for reason in d.REJECT_REASONS:
        rejected.labels(reason)
    collector = StoreCollector(store, ttl_seconds=settings.metrics_cache_seconds)
    # Store-derived families: rendered once per cache refresh, not per scrape (issue 11).
    store_families = StoreFamilies([collector, PerformanceCollector(store, ttl_seconds=settings.metrics_cache_seconds)])
    ProcessCollector(registry=registry)
    ingest = Ingest(store, metrics, collector, max_rule_versions=settings.max_rule_versions)
    # Error series read 0 from the first scrape: pre-initialise the newest versions, within budget.
    for rv in sorted(store.list_rule_versions(), key=lambda v: v.created_at, reverse=True)[
        : settings.max_rule_versions
    ]:
        ingest.admit(rv)
    app.state.ingest = ingest
    app.state.registry = registry
    app.state.store_families = store_families
    _document_raw_bodies(app, ExecutionBatchIn, token=token is not None)
    log.info("exporter using database %s", redact_url(settings.database_url))

    def reject(
        request: Request, status: int, reason: str, detail: Any, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        """Answer a refused request: count it by reason and log it once, structured."""
        rejected.labels(reason).inc()
        log.info(
            "rejected %s %s: %s %s",
            request.method,
            request.url.path,
            status,
            reason,
            extra={
                "event": "request_rejected",
                "method": request.method,
                "path": request.url.path,
                "status": status,
                "reason": reason,
                "detail": detail,
            },
        )
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    def on_body_too_large(scope: dict[str, Any]) -> None:
        rejected.labels("too_large").inc()
        log.info(
            "rejected %s %s: 413 too_large",
            scope.get("method"),
            scope.get("path"),
            extra={
                "event": "request_rejected",
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": 413,
                "reason": "too_large",
            },
        )

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, on_reject=on_body_too_large)

    def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if token is None:
            return
        # Constant-time comparison: no timing oracle on the token.
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token):
            raise ApiError(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return reject(request, exc.status, _REASON_BY_STATUS.get(exc.status, "invalid"), exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        kind = _KIND_BY_PATH.get(request.url.path)
        if kind is not None:
            ingest.count_rejected(kind)
        return reject(request, 422, "invalid", [_describe_error(e) for e in exc.errors()])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot decode (not UTF-8, nested too deeply for the JSON
        # parser) with an undocumented 400 ("error parsing the body"); it is invalid JSON like
        # any other: 422 in the documented shape, as POST /v1/executions answers it.
        if exc.status_code == 400 and exc.__cause__ is not None:
            why = _UNPARSABLE.get(type(exc.__cause__), "the body cannot be parsed")
            error = {"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "ctx": {"error": why}}
            return await _validation_error(request, RequestValidationError([error]))
        if exc.status_code == 422 and isinstance(exc.detail, list):
            kind = _KIND_BY_PATH.get(request.url.path)
            if kind is not None:
                ingest.count_rejected(kind)
        headers = getattr(exc, "headers", None)
        return reject(request, exc.status_code, _REASON_BY_STATUS.get(exc.status_code, "invalid"), exc.detail, headers)

    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)  # every pooled connection busy for db_pool_timeout seconds
    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        # Never "nothing was written": a commit whose answer was lost may have stored the batch.
        # Re-sending it (same event ids, same Idempotency-Key) stores and counts it exactly once.
        return reject(
            request,
            503,
            "unavailable",
            "the store is unavailable or did not confirm the write; re-send the same request later "
            "(it is stored and counted exactly once)",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(CardinalityBudgetExceeded)
    async def _over_budget(request: Request, exc: CardinalityBudgetExceeded) -> JSONResponse:
        return reject(request, 429, "over_budget", str(exc), {"Retry-After": "60"})

    def invalid(kind: str, field: str, message: str, n: int = 1) -> ApiError:
        ingest.count_rejected(kind, n)
        return ApiError(422, [{"field": field, "message": message}])

    @app.get("/metrics", include_in_schema=False)
    def metrics_page(request: Request) -> Response:
        body, content_type = render_metrics_page(registry, store_families, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorOut}})
    def readyz() -> Response:
        """The database is reachable and its schema is at head."""
        try:
            store.ping()
        except Exception as exc:
            return JSONResponse({"detail": f"not ready: {type(exc).__name__}"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.post(
        "/v1/rule-versions",
        response_model=RuleVersionOut,
        status_code=201,
        responses={200: {"model": RuleVersionOut}, 409: {"model": ErrorOut}},
        dependencies=[Depends(authorize)],
    )
    def register_rule_version(body: RuleVersionIn, response: Response) -> RuleVersionOut:
        """Register a rule version: 201 created, 200 identical content exists, 409 conflict."""
        try:
            rv, created = ingest.register_rule_version(
                body.rule,
                body.version,
                params=body.params,
                source=body.source,
                created_by=body.created_by or "api",
                description=body.description,
            )
        except InvalidEvent as exc:  # counted by ingest
            raise ApiError(422, [{"field": exc.field, "message": exc.message}]) from None
        except VersionConflict as exc:
            raise ApiError(409, str(exc)) from None
        response.status_code = 201 if created else 200
        return RuleVersionOut(rule=rv.rule, version=rv.version, content_hash=rv.content_hash)

    @app.post(
        "/v1/executions",
        response_model=ExecutionBatchOut,
        status_code=202,
        responses=UNKNOWN_RULE_VERSION,
        dependencies=[Depends(authorize)],
        openapi_extra=_json_request_body(ExecutionBatchIn),
    )
    async def post_executions(request: Request) -> ExecutionBatchOut:
        """Store a batch of executions; 202 only after the rows are committed.

        Re-sending a batch (same event ids) stores and counts nothing twice. Any invalid item
        rejects the whole batch with 422 naming it; nothing is written.
        """
        # The hottest endpoint parses its raw body in one pass (pydantic-core's JSON parser)
        # instead of json.loads plus dict validation: about half the CPU per execution.
        try:
            batch = ExecutionBatchIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        try:
            delivery_id = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
        except ValueError as exc:
            raise ApiError(422, [{"field": f"headers.{IDEMPOTENCY_HEADER}", "message": str(exc)}]) from None
        return await run_in_threadpool(ingest_batch, batch, delivery_id)

    def ingest_batch(body: ExecutionBatchIn, delivery_id: uuid.UUID | None = None) -> ExecutionBatchOut:
        items = body.executions
        if len(items) > MAX_EXECUTIONS_PER_REQUEST:
            ingest.count_rejected("execution", len(items))
            raise ApiError(
                413,
                f"batch of {len(items)} executions exceeds the limit of "
                f"{MAX_EXECUTIONS_PER_REQUEST} per request; split it",
            )
        events = []
        make = ingest.make_execution
        for i, item in enumerate(items):
            try:
                rv = ingest.rule_version(item.rule, item.rule_version)
            except UnknownRuleVersion as exc:
                ingest.count_rejected("execution", len(items))
                raise ApiError(404, [{"field": f"executions[{i}].rule_version", "message": str(exc)}]) from None
            try:
                events.append(
                    make(
                        rv,
                        duration_seconds=item.duration_seconds,
                        status=item.status,
                        outcome=item.outcome,
                        signal=item.signal,
                        confidence=item.confidence,
                        mode=item.mode,
                        started_at=None if item.started_at is None else item.started_at.timestamp(),
                        error_type=item.error_type,
                        event_id=item.event_id,
                        backtest_run_id=item.backtest_run_id,
                    )
                )
            except InvalidEvent as exc:
                raise invalid("execution", f"executions[{i}].{exc.field}", exc.message, len(items)) from None
        result = ingest.write_executions(events, delivery_id=delivery_id)
        return ExecutionBatchOut(accepted=result.accepted, duplicates=result.duplicates)

    @app.post(
        "/v1/backtests",
        response_model=BacktestOut,
        status_code=201,
        responses={200: {"model": BacktestOut}, **UNKNOWN_RULE_VERSION},
        dependencies=[Depends(authorize)],
    )
    def post_backtest(body: BacktestIn, response: Response) -> BacktestOut:
        """Store a finished backtest run from its equity curve; metrics are computed here."""
        rv = known_rule_version(body.rule, body.rule_version)
        try:
            equity = equity_series("equity", body.equity)
        except InvalidEvent as exc:
            raise invalid("backtest", exc.field, exc.message) from None
        try:  # a refusal here is counted by ingest
            run, created = ingest.record_backtest(
                rv,
                equity,
                dataset=body.dataset,
                periods_per_year=body.periods_per_year,
                risk_free_rate=body.risk_free_rate,
                dataset_hash=body.dataset_hash,
                started_at=body.started_at,
                finished_at=body.finished_at,
                run_id=body.run_id,
                config=body.config,
            )
        except InvalidEvent as exc:
            raise ApiError(422, [{"field": exc.field, "message": exc.message}]) from None
        response.status_code = 201 if created else 200
        return BacktestOut(
            run_id=run.run_id, rule=rv.rule, rule_version=rv.version, created=created, metrics=run.metrics
        )

    @app.post(
        "/v1/backtests/failed",
        response_model=BacktestOut,
        status_code=201,
        responses={200: {"model": BacktestOut}, **UNKNOWN_RULE_VERSION},
        dependencies=[Depends(authorize)],
    )
    def post_failed_backtest(body: BacktestFailureIn, response: Response) -> BacktestOut:
        """Record a backtest run that failed (status ``failed``, no metrics): it feeds the
        "Backtest failed" annotation and the BacktestFailed alert. 200 when the run id exists."""
        rv = known_rule_version(body.rule, body.rule_version)
        try:
            run, created = ingest.record_failed_backtest(
                rv,
                error_message=body.error_message,
                dataset=body.dataset,
                periods_per_year=body.periods_per_year,
                kind=body.kind,
                started_at=body.started_at,
                finished_at=body.finished_at,
                run_id=body.run_id,
                config=body.config,
            )
        except InvalidEvent as exc:  # counted by ingest
            raise ApiError(422, [{"field": exc.field, "message": exc.message}]) from None
        response.status_code = 201 if created else 200
        return BacktestOut(run_id=run.run_id, rule=rv.rule, rule_version=rv.version, created=created, metrics={})

    def known_rule_version(rule: str, version: str) -> Any:
        try:
            return ingest.rule_version(rule, version)
        except UnknownRuleVersion as exc:
            ingest.count_rejected("backtest")
            raise ApiError(404, [{"field": "rule_version", "message": str(exc)}]) from None

    # Audit trail reads and lifecycle transitions (heurmetrics.audit), behind the same token rule.
    app.include_router(build_audit_router(ingest, authorize))
    app.include_router(walkforward_router(ingest, authorize))
    return app
