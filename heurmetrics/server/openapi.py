"""The statuses of the OpenAPI schema: every status an operation can answer, on that operation.

Some answers do not come from a route but from the app around it: the body-size middleware
(``413``), the cardinality budget (``429``), the store being down (``503``), the bearer token
(``401``). They are added here, in one place, so no operation forgets one; and when no API token
is configured the schema says so (no security requirement, no ``401``), as the server behaves.
Every error answer has the body ``ErrorOut`` (``ConflictOut`` for a ``409``): see
:mod:`heurmetrics.server.errors`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")
#: Operations that answer without touching the store.
_NO_STORE = {("get", "/healthz")}
#: POSTs that never admit a rule version to the metrics (so never hit the cardinality budget).
_NO_BUDGET = {"/v1/resolutions"}

STATUSES: dict[str, str] = {
    "401": "Missing or invalid bearer token.",
    "413": "The request body exceeds the limit (HEURMETRICS_MAX_BODY_BYTES) or a batch exceeds its item limit.",
    "429": "A new rule version would exceed the cardinality budget (HEURMETRICS_MAX_RULE_VERSIONS); see Retry-After.",
    "503": "The store is unavailable; nothing was written. Retry after Retry-After seconds.",
}


def document_statuses(schema: dict[str, Any], *, token: bool) -> None:
    """Add 401/413/429/503 where they can be answered; drop security when there is no token."""
    for path, item in schema.get("paths", {}).items():
        for method in _HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            if not token:
                operation.pop("security", None)
                responses.pop("401", None)
            elif operation.get("security"):
                _add(responses, "401")
            if method == "post":
                _add(responses, "413")
                if path not in _NO_BUDGET:
                    _add(responses, "429")
            if (method, path) not in _NO_STORE:
                _add(responses, "503")
            else:
                responses.pop("503", None)
    if not token:
        schema.get("components", {}).pop("securitySchemes", None)


def _add(responses: dict[str, Any], status: str) -> None:
    if status not in responses:
        responses[status] = {"description": STATUSES[status], **_ERROR}


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for an endpoint that parses its raw body with ``model``."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def install_openapi(app: FastAPI, *models: type[BaseModel], token: bool) -> None:
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
