"""The bearer token: the one dependency every ``/v1`` route is mounted behind."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from heurmetrics.server.errors import Refusal

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
            raise Refusal("unauthorized", "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

    return authorize
