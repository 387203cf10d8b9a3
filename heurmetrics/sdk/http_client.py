"""The HTTP flavour of the SDK: for runners that send to ``heurmetrics serve`` instead of a database.

    from heurmetrics.sdk.http_client import ExporterClient

    with ExporterClient("http://127.0.0.1:9464", spool_dir="/var/lib/runner-7/spool") as client:
        client.register_rule_version("range_bias", "1.0.0", params={"window_hours": 24}, source=src)
        client.record_execution("range_bias", "1.0.0", duration_seconds=0.004, outcome="bullish")
        result = client.flush()          # same FlushResult contract as Recorder.flush()

``record_execution`` validates locally with the same rules as the exporter (so a batch is almost
never refused), gives every execution an event id and its start time *now* (not when it is
sent), and enqueues it. A background thread posts batches of up to ``batch_size`` (≤ 10,000) to
``POST /v1/executions``, which answers 202 only after commit. Failures are retried with
exponential backoff and jitter; 429 and 503 honour ``Retry-After``; connection errors, timeouts,
401/403/404 and other 5xx are retried too (a misconfigured token or URL must not lose data). With
``spool_dir`` a batch still failing after ``spool_after`` seconds goes to the local spool and is
replayed in order when the exporter answers again (see :mod:`heurmetrics.sdk.delivery`). A 422
(or a 404: unknown rule version) naming one item drops that item (counted with reason
``rejected``) and re-sends the rest; 400, 409 and 413 refuse the batch for good. Re-sent
batches carry the same event ids, so the exporter stores each execution once.

This module needs ``httpx`` at runtime.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
from prometheus_client import CollectorRegistry
from tenacity import RetryCallState

from heurmetrics.canonical import content_hash
from heurmetrics.errors import HeurmetricsError, InvalidEvent, StoreUnavailable, VersionConflict
from heurmetrics.execution_builder import as_uuid, start_time
from heurmetrics.idempotency import IDEMPOTENCY_HEADER
from heurmetrics.ids import EventIds
from heurmetrics.sdk.delivery import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SPOOL_AFTER,
    DeliveryLoop,
    DeliveryMetrics,
    FlushResult,
    FullPolicy,
    Rejected,
    RetryLater,
    derived_delivery_id,
)
from heurmetrics.sdk.endpoints import EndpointPool, Poster, endpoint_urls
from heurmetrics.sdk.retry import RetryPolicy, before_deadline
from heurmetrics.sdk.spool import DEFAULT_MAX_BYTES, Spool
from heurmetrics.validation import check_label_value

log = logging.getLogger("heurmetrics.sdk")

__all__ = ["ExporterClient", "ExporterError", "HttpRecorder", "RemoteRuleVersion"]

#: Largest batch the exporter accepts (``heurmetrics.server.models.MAX_EXECUTIONS_PER_REQUEST``).
MAX_BATCH: Final = 10_000
#: Statuses that refuse a batch for good: re-sending the same bytes cannot succeed.
_PERMANENT: Final = frozenset({400, 409, 413, 422})
_ITEM_FIELD = re.compile(r"^executions\[(\d+)\]")
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
#: Spool bytes of a typical execution item (the construction check: the spool must hold one batch).
SPOOL_BYTES_PER_EVENT: Final = 256


class ExporterError(HeurmetricsError):
    """The exporter answered a request with an error that retrying cannot fix."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"exporter answered HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RemoteRuleVersion:
    """A rule version as registered through the exporter."""

    rule: str
    version: str
    content_hash: str
    created: bool

    @property
    def key(self) -> str:
        return f"{self.rule}@{self.version}"


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unparsable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text[:500])
    except (ValueError, AttributeError):
        return response.text[:500]


def _existing_hash(response: httpx.Response) -> str:
    """The content hash a 409 says is stored (``existing_content_hash`` of the refusal body)."""
    try:
        value = response.json().get("existing_content_hash")
    except (ValueError, AttributeError):
        value = None
    return value if isinstance(value, str) else "unknown"


class HttpSink:
    """Posts batches of execution items to ``POST /v1/executions`` (see the module doc)."""

    def __init__(self, http: Poster) -> None:
        self._http = http

    def deliver(self, batch: list[dict[str, Any]], delivery_id: uuid.UUID) -> int:
        refused = 0
        # The same Idempotency-Key on every attempt of this batch: the exporter counts a batch
        # whose earlier attempt was committed but not confirmed exactly once.
        headers = {**_JSON_HEADERS, IDEMPOTENCY_HEADER: str(delivery_id)}
        while batch:
            response = self._http.post("/v1/executions", content=self.encode_body(batch), headers=headers)
            status = response.status_code
            if 200 <= status < 300:
                return refused
            if status in (429, 503):
                raise RetryLater(f"HTTP {status}: {_detail(response)}", retry_after_seconds(response))
            if status in (404, 422):  # 404 naming an item: its rule version does not exist
                index = self._refused_item(response)
                if index is not None and index < len(batch):
                    log.error(
                        "exporter refused execution %s for good: %s", batch[index].get("event_id"), _detail(response)
                    )
                    batch = batch[:index] + batch[index + 1 :]
                    refused += 1
                    # Other content, other delivery (nothing of the refused request was written).
                    headers[IDEMPOTENCY_HEADER] = str(derived_delivery_id(delivery_id, f"-{index}"))
                    continue
            if status in _PERMANENT:
                raise Rejected(f"HTTP {status}: {_detail(response)}")
            raise ExporterError(status, _detail(response))  # 401/403/404/5xx: retried (configuration or outage)
        return refused

    @staticmethod
    def _refused_item(response: httpx.Response) -> int | None:
        detail = _detail(response)
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            match = _ITEM_FIELD.match(str(detail[0].get("field", "")))
            if match:
                return int(match.group(1))
        return None

    @staticmethod
    def encode_body(batch: list[dict[str, Any]]) -> bytes:
        return json.dumps({"executions": batch}, separators=(",", ":")).encode()

    def encode(self, batch: list[dict[str, Any]]) -> bytes:
        return json.dumps(batch, separators=(",", ":")).encode()

    def decode(self, payload: bytes) -> list[dict[str, Any]]:
        items = json.loads(payload)
        if not isinstance(items, list):
            raise ValueError("spool record is not a list of executions")
        return items


class ExporterClient:
    """Records executions over HTTP to a ``heurmetrics serve`` exporter (see the module doc).

    ``token``: the exporter's bearer token. ``registry`` receives the client's self-monitoring
    metrics (queue, retries, spool, dropped; a fresh registry by default). The delivery options
    are those of :class:`~heurmetrics.sdk.recorder.Recorder`; ``spool_dir`` is bound to
    ``base_url`` and must belong to this process alone. ``transport`` is for tests.

    ``base_url`` may list several replicas of the exporter (``["http://a:9464", "http://b:9464"]``,
    one database behind them): batches are spread over them round robin and a batch a replica
    cannot take goes to the next one at once (:mod:`heurmetrics.sdk.endpoints`).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        token: str | None = None,
        registry: CollectorRegistry | None = None,
        batch_size: int = 1000,
        flush_interval: float = 0.05,
        timeout: float = 30.0,
        max_backoff: float = 5.0,
        max_queue: int = DEFAULT_MAX_QUEUE,
        full_policy: FullPolicy = "block",
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        spool_after: float = DEFAULT_SPOOL_AFTER,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be within 1..{MAX_BATCH}, got {batch_size}")
        # --- several replicas (issue 11): one pool of clients instead of one client ------------
        self.base_urls = endpoint_urls(base_url)
        self.base_url = ",".join(self.base_urls)  # one URL: unchanged (the spool identity uses it)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = EndpointPool(self.base_urls, headers=headers, timeout=timeout, transport=transport)
        # Registration retries: the SDK's one policy, starting slower than a batch's (one request).
        self._retry = RetryPolicy(first=0.1, cap=max_backoff, max_hint=math.inf)  # the deadline bounds hints
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = DeliveryMetrics.create(self.registry)
        try:
            self.spool = (
                None
                if spool_dir is None
                else Spool(spool_dir, max_bytes=spool_max_bytes, identity=f"exporter:{self.base_url}")
            )
        except BaseException:
            self._http.close()
            raise
        self._ids = EventIds()
        try:
            self._loop: DeliveryLoop[dict[str, Any]] = DeliveryLoop(
                HttpSink(self._http),
                self.metrics,
                name="heurmetrics-http",
                batch_size=batch_size,
                flush_interval=flush_interval,
                max_backoff=max_backoff,
                max_queue=max_queue,
                full_policy=full_policy,
                block_timeout=block_timeout,
                spool=self.spool,
                spool_after=spool_after,
                event_spool_bytes=SPOOL_BYTES_PER_EVENT,
            )
        except BaseException:
            if self.spool is not None:
                self.spool.close()
            self._http.close()
            raise
        self._put = self._loop.put
        self._closed = False

    # --- rule versions ----------------------------------------------------------------------
    def register_rule_version(
        self,
        rule: str,
        version: str,
        params: dict[str, Any] | None = None,
        source: str = "",
        *,
        created_by: str | None = None,
        description: str | None = None,
        timeout: float = 30.0,
    ) -> RemoteRuleVersion:
        """Register a version (synchronously; durable when this returns).

        Retries connection errors, 429 and 503 for up to ``timeout`` seconds, then raises
        :class:`StoreUnavailable`. Raises :class:`VersionConflict` (409), :class:`InvalidEvent`
        (422) or :class:`ExporterError` (any other refusal).
        """
        body: dict[str, Any] = {"rule": rule, "version": version, "params": params or {}, "source": source}
        if created_by is not None:
            body["created_by"] = created_by
        if description is not None:
            body["description"] = description
        deadline = time.monotonic() + timeout

        def before_sleep(state: RetryCallState) -> None:
            self.metrics.retries.inc()
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("registering %s@%s failed (%s), retrying in %.2fs", rule, version, error, state.upcoming_sleep)

        retrying = self._retry.retrying(
            stop=before_deadline(deadline), retry_on=lambda exc: isinstance(exc, RetryLater), before_sleep=before_sleep
        )
        try:
            return retrying(self._register_once, body, deadline)
        except RetryLater as exc:  # still failing, and no retry would end before the deadline
            self.metrics.retries.inc()
            raise StoreUnavailable(f"cannot register {rule}@{version} at {self.base_url}: {exc}") from None

    def _register_once(self, body: dict[str, Any], deadline: float) -> RemoteRuleVersion:
        """One registration attempt: the answer, a refusal, or :class:`RetryLater` when it may pass."""
        rule, version = body["rule"], body["version"]
        try:
            response = self._http.post("/v1/rule-versions", json=body, deadline=deadline)
        except httpx.TransportError as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status in (200, 201):
            data = response.json()
            return RemoteRuleVersion(data["rule"], data["version"], data["content_hash"], status == 201)
        if status == 409:
            existing = _existing_hash(response)
            raise VersionConflict(rule, version, existing, content_hash(body["params"], body["source"]))
        if status == 422:
            detail = _detail(response)
            if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                raise InvalidEvent(str(detail[0].get("field")), str(detail[0].get("message")))
            raise InvalidEvent("body", str(detail))
        if status not in (429, 503) and status < 500:
            raise ExporterError(status, _detail(response))
        raise RetryLater(f"HTTP {status}: {_detail(response)}", retry_after_seconds(response))

    # --- executions ---------------------------------------------------------------------------
    def record_execution(
        self,
        rule: str,
        version: str,
        *,
        duration_seconds: float,
        status: str = "ok",
        outcome: str | None = None,
        signal: float | None = None,
        confidence: float | None = None,
        mode: str = "live",
        started_at: datetime | float | None = None,
        error_type: str | None = None,
        event_id: uuid.UUID | None = None,
        backtest_run_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Validate and enqueue one execution of ``rule@version``; returns its event id.

        Never touches the network. Invalid values raise :class:`InvalidEvent` and enqueue nothing.
        Pass ``event_id`` to make your own retries idempotent.
        """
        if self._closed:
            raise RuntimeError("ExporterClient is closed")
        check_label_value("rule", rule)
        check_label_value("rule_version", version)
        started = start_time(duration_seconds, status, outcome, signal, confidence, mode, started_at, error_type)
        eid = self._ids.next() if event_id is None else as_uuid(event_id)
        item: dict[str, Any] = {
            "event_id": str(eid),
            "rule": rule,
            "rule_version": version,
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "duration_seconds": float(duration_seconds),
            "status": status,
            "mode": mode,
        }
        if event_id is not None and started_at is None:
            # A caller's id without a start time: let the store give every receipt of this id the
            # start time of its first one (docs/storage.md), so the caller's own retries stay one row.
            del item["started_at"]
        if outcome is not None:
            item["outcome"] = outcome
        if signal is not None:
            item["signal"] = float(signal)
        if confidence is not None:
            item["confidence"] = float(confidence)
        if error_type is not None:
            item["error_type"] = error_type
        if backtest_run_id is not None:
            item["backtest_run_id"] = str(as_uuid(backtest_run_id, "backtest_run_id"))
        self._put(item)
        return eid

    # --- lifecycle ----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> FlushResult:
        """Return when everything recorded so far was acknowledged (202) by the exporter, or is in
        the spool while the exporter is down, or ``timeout`` passed; see :class:`FlushResult`."""
        return self._loop.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> FlushResult:
        """Flush, spool what is left (with a spool), stop the thread, close the connections."""
        if self._closed:
            return self._loop.result()
        self._closed = True
        result = self._loop.close(timeout)
        self._http.close()
        return result

    def __enter__(self) -> ExporterClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


#: The same class under the name the SDK's database flavour suggests.
HttpRecorder = ExporterClient
