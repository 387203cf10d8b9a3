"""The bearer token: a gate in front of every ``/v1`` request, and the dependency that documents it.

FastAPI parses a request's body and the app-level query-parameter check before a route's own
dependencies run, so a token dependency alone would answer an anonymous malformed request ``422``
(and count its event as rejected). :class:`BearerTokenGate` (an ASGI middleware) answers ``401``
before anything reads the request; :func:`bearer_authorization` stays on the routers so the
OpenAPI schema states the security scheme, and re-checks behind the gate.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from heurmetrics.server.errors import Refusal, error_body

UNAUTHORIZED_DETAIL = "missing or invalid bearer token"

_bearer = HTTPBearer(auto_error=False)  # a missing header is our 401 (counted), not FastAPI's 403


def bearer_authorization(token: bytes | None) -> Callable[..., None]:
    """A dependency refusing (``401``) a request without ``Authorization: Bearer <token>``.

    With no token configured every request passes (loopback-only deployments, tests).
    """

    def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if token is None:
            return
        # Constant-time comparison: no timing oracle on the token.
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token):
            raise Refusal("unauthorized", UNAUTHORIZED_DETAIL, {"WWW-Authenticate": "Bearer"})

    return authorize


class BearerTokenGate:
    """ASGI middleware: a ``/v1`` request without ``Authorization: Bearer <token>`` is answered
    ``401`` (the refusal body of every error) before its body or query is read; ``on_reject``
    counts and logs it once."""

    def __init__(self, app: Any, token: bytes, on_reject: Callable[[dict[str, Any]], None]) -> None:
        self.app = app
        self.token = token
        self.on_reject = on_reject

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1"):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, credentials = header.partition(b" ")
        # Constant-time comparison: no timing oracle on the token.
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token):
            await self.app(scope, receive, send)
            return
        self.on_reject(scope)
        body = json.dumps(error_body("unauthorized", UNAUTHORIZED_DETAIL)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
