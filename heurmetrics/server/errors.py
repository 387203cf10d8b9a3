"""Refusals: one table from errors to HTTP answers, and one handler that answers, counts and logs.

Every refusal of the exporter goes through :class:`Refusals` — a domain error raised by ingest, the
store or the audit trail, an invalid request (body, path or query), a missing token, a body or a
batch over its limit — and is answered in one JSON shape::

    {"error": "version_conflict", "detail": "rule version r@1 already exists …",
     "existing_content_hash": "9f2c…"}

``error`` is one of :data:`ERROR_CODES`: stable, so a client branches on it and never on the
text. ``detail`` is a message or a list of ``{"field", "message"}`` naming what to fix. A conflict
over a rule version's content adds ``existing_content_hash``. Each refusal is counted once in
``heurmetrics_rejected_requests_total{reason}`` (a reason of ``REJECT_REASONS`` in
:mod:`heurmetrics.metrics.definitions`) and logged once (``event="request_rejected"``).

A domain error says what it is by its type (:mod:`heurmetrics.errors`); :data:`CODE_BY_TYPE` maps
types to codes and :data:`ANSWERS` codes to status, reason and ``Retry-After``. A route raises
:class:`Refusal` only for what is about HTTP itself (a batch over its item limit, a bad header,
an unknown rule version located at a field of the request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from heurmetrics.audit.errors import AuditError, LifecycleError, PolicyViolation
from heurmetrics.errors import (
    CardinalityBudgetExceeded,
    InvalidEvent,
    NotFound,
    StoreRejectedData,
    StoreUnavailable,
    VersionConflict,
)
from heurmetrics.ingest import Ingest
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.pipeline import build_metric

log = logging.getLogger("heurmetrics.server")

#: The ``error`` of every refusal body (also the enum of ``ErrorOut.error`` in the OpenAPI schema).
ErrorCode = Literal[
    "invalid",
    "not_found",
    "method_not_allowed",
    "version_conflict",
    "lifecycle_conflict",
    "policy_violation",
    "unauthorized",
    "too_large",
    "over_budget",
    "unavailable",
]
ERROR_CODES: Final[tuple[str, ...]] = get_args(ErrorCode)
#: Seconds a client should wait before re-sending after a 503 (the store) or a 429 (the budget).
RETRY_AFTER_SECONDS: Final = 5
OVER_BUDGET_RETRY_AFTER_SECONDS: Final = 60


@dataclass(frozen=True, slots=True)
class Answer:
    """How a refusal is answered: HTTP status, the reason it is counted under, ``Retry-After``."""

    status: int
    reason: str  # a label value of heurmetrics_rejected_requests_total
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.reason not in d.REJECT_REASONS:  # label values are defined once, in definitions.py
            raise ValueError(f"refusal reason {self.reason!r} is not one of {d.REJECT_REASONS}")


#: THE table: error code → answer. 404 and 405 are counted as ``invalid`` requests.
ANSWERS: Final[Mapping[ErrorCode, Answer]] = {
    "invalid": Answer(422, "invalid"),
    "not_found": Answer(404, "invalid"),
    "method_not_allowed": Answer(405, "invalid"),
    "version_conflict": Answer(409, "conflict"),
    "lifecycle_conflict": Answer(409, "conflict"),
    "policy_violation": Answer(409, "conflict"),
    "unauthorized": Answer(401, "unauthorized"),
    "too_large": Answer(413, "too_large"),
    "over_budget": Answer(429, "over_budget", OVER_BUDGET_RETRY_AFTER_SECONDS),
    "unavailable": Answer(503, "unavailable", RETRY_AFTER_SECONDS),
}

#: Domain error type → error code; the most specific type of an error's MRO wins.
CODE_BY_TYPE: Final[Mapping[type[Exception], ErrorCode]] = {
    InvalidEvent: "invalid",
    AuditError: "invalid",  # an audit read asked in a way it cannot answer (rows over the limit…)
    NotFound: "not_found",  # UnknownRuleVersion, UnknownRule
    VersionConflict: "version_conflict",
    PolicyViolation: "policy_violation",
    LifecycleError: "lifecycle_conflict",
    CardinalityBudgetExceeded: "over_budget",
    StoreUnavailable: "unavailable",
    # The database refused the rows themselves (a value validation let through): retrying cannot help.
    StoreRejectedData: "invalid",
}
#: Starlette's own refusals (no route, wrong method) by status.
_CODE_BY_HTTP_STATUS: Final[dict[int, ErrorCode]] = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}

#: Never "nothing was written": a commit whose answer was lost may have stored the batch.
STORE_UNAVAILABLE_DETAIL: Final = (
    "the store is unavailable or did not confirm the write; re-send the same request later with "
    "the same Idempotency-Key (it is then stored and counted exactly once)"
)

#: Ingest routes whose invalid requests also count their event as rejected (ingested_events_total).
_EVENT_KIND_BY_PATH: Final = {
    "/v1/executions": d.KIND_EXECUTION,
    "/v1/backtests": d.KIND_BACKTEST,
    "/v1/backtests/failed": d.KIND_BACKTEST,
    "/v1/rule-versions": d.KIND_RULE_VERSION,
    "/v1/walk-forward": d.KIND_BACKTEST,  # a walk-forward run is stored as a backtest
    "/v1/resolutions": d.KIND_RESOLUTION,
}
#: Why FastAPI could not parse a body (its undocumented 400), as a JSON error message.
_UNPARSABLE: Final[dict[type[BaseException], str]] = {
    UnicodeDecodeError: "the body is not valid UTF-8",
    RecursionError: "nested too deeply",
}


class Refusal(Exception):
    """A refusal about HTTP itself, raised by a route or dependency with its error code."""

    def __init__(
        self,
        code: ErrorCode,
        detail: Any,
        headers: dict[str, str] | None = None,
        *,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        malformed: bool = False,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.headers = headers
        self.status = status  # only for an HTTP status the table does not know (kept as answered)
        self.extra = extra or {}
        self.malformed = malformed  # the request failed validation before any route ran


def field_error(field: str, message: str) -> list[dict[str, str]]:
    """The ``detail`` of a refusal that names one field."""
    return [{"field": field, "message": message}]


def error_body(code: str, detail: Any, **extra: Any) -> dict[str, Any]:
    """The JSON body of every refusal."""
    return {"error": code, "detail": detail, **extra}


def code_of(exc: BaseException) -> ErrorCode | None:
    """The error code of a domain error, by type (None: not a refusal, a bug)."""
    for cls in type(exc).__mro__:
        code = CODE_BY_TYPE.get(cls)
        if code is not None:
            return code
    return None


def refusal_of(exc: Exception) -> Refusal:
    """The refusal a domain error, a request-validation error or an HTTP exception stands for."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, RequestValidationError):
        return Refusal("invalid", [describe_validation_error(e) for e in exc.errors()], malformed=True)
    if isinstance(exc, StarletteHTTPException):
        # FastAPI answers a body it cannot decode (not UTF-8, nested too deeply for the JSON
        # parser) with an undocumented 400 ("error parsing the body"); it is invalid JSON like
        # any other: 422 in the documented shape, as POST /v1/executions answers it.
        if exc.status_code == 400 and exc.__cause__ is not None:
            why = _UNPARSABLE.get(type(exc.__cause__), "the body cannot be parsed")
            return refusal_of(RequestValidationError([_json_invalid(why)]))
        by_status = _CODE_BY_HTTP_STATUS.get(exc.status_code, "invalid")
        status = None if ANSWERS[by_status].status == exc.status_code else exc.status_code
        return Refusal(by_status, exc.detail, getattr(exc, "headers", None), status=status)
    code = code_of(exc)
    if code is None:
        raise TypeError(f"{type(exc).__name__} is not a refusal")  # the handler is installed per type
    if isinstance(exc, InvalidEvent):
        return Refusal("invalid", field_error(exc.field, exc.message))
    if code == "unavailable":
        return Refusal("unavailable", STORE_UNAVAILABLE_DETAIL)
    if isinstance(exc, VersionConflict):
        return Refusal("version_conflict", str(exc), extra={"existing_content_hash": exc.existing_hash})
    return Refusal(code, str(exc))


class Refusals:
    """The one exception handler of the app: answers, counts and logs every refusal once."""

    def __init__(self, registry: CollectorRegistry, ingest: Ingest) -> None:
        self.counter = build_metric(d.REJECTED_REQUESTS, registry)
        for reason in d.REJECT_REASONS:  # every reason reads 0 from the first scrape
            self.counter.labels(reason)
        self.ingest = ingest

    def install(self, app: FastAPI) -> None:
        """Register :meth:`handle` for every type a refusal can come as."""
        types = (Refusal, RequestValidationError, StarletteHTTPException, *CODE_BY_TYPE)
        for exc_type in types:
            app.add_exception_handler(exc_type, self.handle)

    async def handle(self, request: Request, exc: Exception) -> JSONResponse:
        refusal = refusal_of(exc)
        if refusal.code == "unavailable":
            log.warning("store unavailable: %s", exc)
        if refusal.malformed:  # an invalid request to an ingest route: its event is rejected
            kind = _EVENT_KIND_BY_PATH.get(request.url.path)
            if kind is not None:
                self.ingest.count_rejected(kind)
        answer = ANSWERS[refusal.code]
        status = refusal.status or answer.status
        self.record(request.method, request.url.path, status, answer.reason, refusal.detail)
        headers = dict(refusal.headers or {})
        if answer.retry_after is not None:
            headers.setdefault("Retry-After", str(answer.retry_after))
        body = error_body(refusal.code, refusal.detail, **refusal.extra)
        return JSONResponse(body, status_code=status, headers=headers or None)

    def record(self, method: str | None, path: str | None, status: int, reason: str, detail: Any = None) -> None:
        """Count a refusal by reason and log it once, structured (also used by the body-size limit)."""
        self.counter.labels(reason).inc()
        fields = {"event": "request_rejected", "method": method, "path": path, "status": status, "reason": reason}
        if detail is not None:
            fields["detail"] = detail
        log.info("rejected %s %s: %s %s", method, path, status, reason, extra=fields)


def describe_validation_error(error: Any) -> dict[str, str]:
    """A pydantic/FastAPI validation error as ``{"field", "message"}`` with a readable path.

    Only pydantic's message is used, never the input: a 100 kB value is not echoed back.
    """
    if error.get("type") == "json_invalid":  # loc ends with a character position, or nothing
        reason = (error.get("ctx") or {}).get("error", error["msg"])
        position = error["loc"][-1] if error["loc"] and isinstance(error["loc"][-1], int) else None
        where = f" at character {position}" if position is not None else ""
        return {"field": "body", "message": f"invalid JSON{where}: {reason}"}
    return {"field": _field_path(tuple(error["loc"])), "message": error["msg"]}


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


def _json_invalid(why: str) -> dict[str, Any]:
    return {"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "ctx": {"error": why}}
