"""Request body size limit, enforced before the body is parsed (an ASGI middleware).

A ``Content-Length`` over the limit is refused at once; a chunked body is counted while it is
received and refused as soon as it crosses the limit. The refusal is ``413`` with the refusal
body of every error (``{"error": "too_large", "detail": …}``, :mod:`heurmetrics.server.errors`)
naming the limit, so a client knows to split its batch. ``on_reject`` counts and logs it once, in
one line (the app's own reaction to the cut-off body is not an error).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect

from heurmetrics.server.errors import error_body

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

#: Default limit: 10,000 executions of a few hundred bytes each fit with room to spare.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class BodySizeLimit:
    def __init__(
        self, app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES, on_reject: Callable[[Scope], None] | None = None
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message: Message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the app the client went away: it stops reading, and
                    # whatever it tries to send afterwards is dropped below.
                    refused = True
                    await self._reject(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            if not refused:
                raise
            # The app stopped reading because we told it the client left: the refusal was
            # answered and logged once already; no traceback for it.

    async def _reject(self, scope: Scope, send: Send) -> None:
        detail = f"request body exceeds the limit of {self.max_bytes} bytes; send smaller batches"
        if self.on_reject is not None:
            self.on_reject(scope)
        body = json.dumps(error_body("too_large", detail)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
