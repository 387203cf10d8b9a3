"""The SDK's background writer: moves queued executions into the store in batches.

Producers append to a bounded ``collections.deque`` (lock-free under the GIL) and never touch the
database. One writer thread drains it in order, in batches of up to ``batch_size``, through
:meth:`heurmetrics.ingest.Ingest.write_executions`. The retry, spool and full-queue behaviour is
the generic delivery loop of :mod:`heurmetrics.sdk.delivery`; this module is the sink that
delivers to the database (:class:`StoreSink`). Its neighbours: :mod:`heurmetrics.sdk.spool_codec`
(the queue's items and their spool format), :mod:`heurmetrics.sdk.store_gate` (opening a store
that may be down), :mod:`heurmetrics.sdk.version_cache` (registered versions while it is down).
"""

from __future__ import annotations

import logging
import uuid

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.errors import StoreRejectedData, UnknownRuleVersion
from heurmetrics.ingest import Ingest
from heurmetrics.sdk import spool_codec
from heurmetrics.sdk.delivery import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SPOOL_AFTER,
    DeliveryLoop,
    DeliveryMetrics,
    FullPolicy,
    derived_delivery_id,
)
from heurmetrics.sdk.spool import Spool
from heurmetrics.sdk.spool_codec import QueuedExecution, split_counted
from heurmetrics.sdk.store_gate import StoreGate

log = logging.getLogger("heurmetrics.sdk")

__all__ = ["SPOOL_BYTES_PER_EVENT", "BackgroundWriter", "StoreSink"]

#: Spool bytes of a typical execution (the construction check: the spool must hold one batch).
SPOOL_BYTES_PER_EVENT = 128


class StoreSink:
    """Delivers executions to the store through :class:`Ingest`; (de)serialises them for the spool."""

    def __init__(self, ingest: Ingest, gate: StoreGate | None = None) -> None:
        self._ingest = ingest
        self._gate = gate

    def deliver(self, batch: list[QueuedExecution], delivery_id: uuid.UUID) -> int:
        if self._gate is not None:
            self._gate.ensure()
        events, uncounted = split_counted(batch)
        refused = 0
        if any(e.rule_version.id < 0 for e in events):  # replayed from the spool: resolve by name
            events, refused = self._resolve(events)
        return refused + self._write(events, uncounted, delivery_id)

    def encode(self, batch: list[QueuedExecution]) -> bytes:
        return spool_codec.encode(batch)

    def decode(self, payload: bytes) -> list[QueuedExecution]:
        return spool_codec.decode(payload)

    def _write(self, batch: list[ExecutionEvent], uncounted: set[uuid.UUID], delivery_id: uuid.UUID) -> int:
        """Write; when the database refuses the data itself, bisect down to the refused events.

        Transient errors propagate (the caller retries or spools the whole batch: idempotent).
        Returns how many events were refused for good (logged, and dropped by the caller).
        """
        if not batch:
            return 0
        try:
            self._ingest.write_executions(batch, delivery_id=delivery_id, uncounted=uncounted)
            return 0
        except Exception as exc:
            if not _refuses_data(exc):
                raise
            if len(batch) == 1:
                log.error("the database refuses execution %s for good: %s", batch[0].event_id, exc)
                return 1
        half = len(batch) // 2  # each half is a delivery of its own, with a stable derived id
        return self._write(batch[:half], uncounted, derived_delivery_id(delivery_id, "a")) + self._write(
            batch[half:], uncounted, derived_delivery_id(delivery_id, "b")
        )

    def _resolve(self, batch: list[ExecutionEvent]) -> tuple[list[ExecutionEvent], int]:
        resolved: dict[tuple[str, str, str], RuleVersion | None] = {}
        keep: list[ExecutionEvent] = []
        for e in batch:
            placeholder = e.rule_version
            if placeholder.id >= 0:
                keep.append(e)
                continue
            key = (placeholder.rule, placeholder.version, placeholder.content_hash)
            if key not in resolved:
                try:
                    rv: RuleVersion | None = self._ingest.rule_version(placeholder.rule, placeholder.version)
                except UnknownRuleVersion:
                    rv = None
                if rv is not None and rv.content_hash != placeholder.content_hash:
                    rv = None
                if rv is None:
                    log.error(
                        "spooled executions of %s@%s (content hash %s) cannot be stored: the database has no such "
                        "version",
                        placeholder.rule,
                        placeholder.version,
                        placeholder.content_hash[:12],
                    )
                resolved[key] = rv
            rv = resolved[key]
            if rv is not None:
                keep.append(e._replace(rule_version=rv))
        return keep, len(batch) - len(keep)


def _refuses_data(exc: BaseException) -> bool:
    """The database rejects the rows themselves (constraint, type, encoding): retrying cannot help."""
    return isinstance(exc, StoreRejectedData | UnicodeError)  # the store translates the driver's errors


class BackgroundWriter(DeliveryLoop[QueuedExecution]):
    """The delivery loop of a :class:`~heurmetrics.sdk.recorder.Recorder` (see :mod:`heurmetrics.sdk.delivery`).

    ``gate`` checks the schema of a store that was opened while the database was down.
    """

    def __init__(
        self,
        ingest: Ingest,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.05,
        max_backoff: float = 5.0,
        max_queue: int = DEFAULT_MAX_QUEUE,
        full_policy: FullPolicy = "block",
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        spool: Spool | None = None,
        spool_after: float = DEFAULT_SPOOL_AFTER,
        gate: StoreGate | None = None,
    ) -> None:
        m = ingest.metrics
        super().__init__(
            StoreSink(ingest, gate),
            DeliveryMetrics(m.writer_queue, m.dropped, m.retries, m.spool_events, m.spool_bytes),
            name="heurmetrics-writer",
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_backoff=max_backoff,
            max_queue=max_queue,
            full_policy=full_policy,
            block_timeout=block_timeout,
            spool=spool,
            spool_after=spool_after,
            event_spool_bytes=SPOOL_BYTES_PER_EVENT,
        )
