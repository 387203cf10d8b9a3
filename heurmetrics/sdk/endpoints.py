"""Several exporter replicas behind one client: spread the requests, fail over when one is down.

:class:`EndpointPool` holds one ``httpx.Client`` per replica URL and offers the one method the
HTTP SDK needs, ``post(path, ...)``. Each call starts at the next replica (round robin, so
batches spread evenly) and, when that replica cannot take the request, tries the others at
once: a transport error (connection refused, reset, timeout) or an answer that another replica
may not give (429: each replica has its own cardinality budget; 500, 502, 503, 504). Only when every replica
failed does the caller see a failure (the last response, or the last transport error), and the
delivery loop's backoff, ``Retry-After`` handling and spool take over as with one URL. A replica
that failed at transport level is tried last for ``cooldown`` seconds.

Sending a batch again to another replica never duplicates anything: it keeps its event ids, every
replica writes into the same store with ``INSERT … ON CONFLICT DO NOTHING`` and counts only the
rows it inserted. A batch that replica A committed just before dying is answered by replica B with
``duplicates``, and counted by neither twice (see ``docs/scaling.md``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("heurmetrics.sdk")

#: Answers after which the same request is tried on the next replica.
_TRY_NEXT: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: Seconds a replica that failed at transport level is tried only after the others.
DEFAULT_COOLDOWN = 5.0


class Poster(Protocol):
    """What the HTTP sink and the registration call need of a client: ``post``."""

    def post(self, url: str, **kwargs: Any) -> httpx.Response: ...


def endpoint_urls(base_url: str | Sequence[str]) -> tuple[str, ...]:
    """The replica URLs of ``base_url`` (one URL or several), validated, without trailing ``/``.

    Raises :class:`ValueError` naming the bad entry: not http(s), no host, or a repeated URL (a
    replica listed twice would get twice the share of the batches).
    """
    raw = [base_url] if isinstance(base_url, str) else list(base_url)
    if not raw:
        raise ValueError("base_url: give at least one exporter URL")
    urls: list[str] = []
    for i, url in enumerate(raw):
        if not isinstance(url, str):
            raise ValueError(f"base_url[{i}]: expected a URL string, got {type(url).__name__}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url[{i}]: {url!r} is not an http(s) URL with a host")
        clean = url.rstrip("/")
        if clean in urls:
            raise ValueError(f"base_url[{i}]: {url!r} is listed twice")
        urls.append(clean)
    return tuple(urls)


class EndpointPool:
    """Round robin over replica URLs with immediate failover (see the module doc)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        cooldown: float = DEFAULT_COOLDOWN,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.urls = tuple(urls)
        self._clients = [
            httpx.Client(base_url=url, headers=dict(headers or {}), timeout=timeout, transport=transport)
            for url in self.urls
        ]
        self._timeout = timeout
        self._cooldown = cooldown
        self._down_until = [0.0] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()  # the delivery thread and the caller's thread both post

    def _order(self) -> list[int]:
        """Replica indexes to try: round robin from the next one, cooling-down replicas last."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.urls)
            now = time.monotonic()
            ring = [(start + k) % len(self.urls) for k in range(len(self.urls))]
            return [i for i in ring if self._down_until[i] <= now] + [i for i in ring if self._down_until[i] > now]

    def _mark(self, index: int, down: bool) -> None:
        with self._lock:
            self._down_until[index] = time.monotonic() + self._cooldown if down else 0.0

    def post(self, url: str, *, deadline: float | None = None, **kwargs: Any) -> httpx.Response:
        """POST ``url`` (a path) to one replica, failing over to the others (see the module doc).

        With ``deadline`` (a ``time.monotonic()`` value), no attempt outlasts it: each gets at
        most the time left, and replicas not tried by then are not tried.
        """
        last_error: httpx.TransportError | None = None
        last_response: httpx.Response | None = None
        for index in self._order():
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 and (last_error is not None or last_response is not None):
                    break
                kwargs["timeout"] = max(0.1, min(self._timeout, left))
            try:
                response = self._clients[index].post(url, **kwargs)
            except httpx.TransportError as exc:
                log.warning(
                    "exporter %s unreachable (%s: %s), trying the next", self.urls[index], type(exc).__name__, exc
                )
                self._mark(index, down=True)
                last_error = exc
                continue
            self._mark(index, down=False)
            if response.status_code not in _TRY_NEXT:
                return response
            log.warning("exporter %s answered HTTP %s, trying the next", self.urls[index], response.status_code)
            last_response = response
        if last_response is not None:
            return last_response
        assert last_error is not None  # at least one URL, and every attempt failed
        raise last_error

    def close(self) -> None:
        for client in self._clients:
            client.close()
