"""The SDK's background writer: moves queued executions into the store in batches.

Producers append to a bounded ``collections.deque`` (lock-free under the GIL) and never touch the
database. One writer thread drains it in order, in batches of up to ``batch_size``, through
:meth:`heurmetrics.ingest.Ingest.write_executions`. The retry, spool and full-queue behaviour is
the generic delivery loop of :mod:`heurmetrics.sdk.delivery`; this module adds what is specific
to the database: the sink (:class:`StoreSink`), how executions are written to the spool, opening
a store that may be down (:func:`open_store`), and the local cache of registered rule versions
that lets a runner start while the database is down (:class:`VersionCache`).

Spool payload of one batch (compact JSON, UTF-8, ASCII-escaped)::

    {"v": 1,
     "rv": [[rule, version, content_hash], ...],
     "e":  [[rv_index, event_id_hex, started_at, duration_seconds, status, outcome, signal,
             confidence, mode, error_type, backtest_run_id_hex, counted], ...]}

Floats are written with ``repr`` precision, so a replayed event is bit-identical. ``counted``
(0/1) says whether the process that recorded the event already counted it in Prometheus (an
event counted before is not counted again when replayed: see docs/reliability.md).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from heurmetrics.canonical import content_hash
from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.errors import StoreRejectedData, StoreUnavailable, UnknownRuleVersion
from heurmetrics.ingest import Ingest
from heurmetrics.sdk.delivery import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SPOOL_AFTER,
    DeliveryLoop,
    DeliveryMetrics,
    FlushResult,
    FullPolicy,
    derived_delivery_id,
)
from heurmetrics.sdk.spool import Spool
from heurmetrics.store.sql_store import SqlStore
from heurmetrics.store.urls import database_identity as database_identity  # re-exported

log = logging.getLogger("heurmetrics.sdk")

__all__ = ["BackgroundWriter", "FlushResult", "StoreGate", "StoreSink", "VersionCache", "open_store"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PAYLOAD_VERSION = 1
#: Spool bytes of a typical execution (the construction check: the spool must hold one batch).
SPOOL_BYTES_PER_EVENT = 128


class StoreGate:
    """Schema check of a store opened while the database was down; runs once it is reachable.

    :meth:`ensure` is thread-safe and cheap after the first success. It raises what
    :meth:`SqlStore.open` would: :class:`StoreUnavailable` while unreachable,
    :class:`~heurmetrics.errors.SchemaNotAtHead` when the schema is behind.
    """

    def __init__(self, store: SqlStore, *, verified: bool, initialize_empty: bool = True) -> None:
        self.store = store
        self.verified = verified
        self._initialize_empty = initialize_empty
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self.verified:
            return
        with self._lock:
            if self.verified:
                return
            self.store.check_schema(initialize_empty=self._initialize_empty)  # StoreUnavailable while down
            self.verified = True
            log.info("database reachable and at head")


def open_store(url: str, *, allow_offline: bool) -> StoreGate:
    """Open the store at ``url`` (initialising a brand-new empty database).

    When the database cannot be reached: raise :class:`StoreUnavailable`, unless
    ``allow_offline`` — then return an unverified store whose schema is checked on first use.
    """
    try:
        store = SqlStore.open(url, initialize_empty=True)
    except StoreUnavailable as exc:
        if not allow_offline:
            raise
        log.warning("database unreachable at start (%s): recording to the spool until it is back", exc)
        return StoreGate(SqlStore.connect(url), verified=False)
    store.prepare_partitions()  # this month's and the next ones (PostgreSQL)
    return StoreGate(store, verified=True)


class VersionCache:
    """Rule versions registered through one spool, so a runner can start while the database is down.

    Kept in the spool directory (state document ``versions``, rewritten atomically). A cached
    version is only returned for identical content (same content hash of params and source),
    never as a guess.
    """

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._lock = threading.Lock()
        stored = spool.load_state("versions")
        self._items: dict[str, dict[str, Any]] = stored if isinstance(stored, dict) else {}

    def remember(self, rv: RuleVersion) -> None:
        entry = {
            "id": rv.id,
            "content_hash": rv.content_hash,
            "created_at": rv.created_at.isoformat(),
            "created_by": rv.created_by,
            "description": rv.description,
        }
        key = f"{rv.rule}@{rv.version}"
        with self._lock:
            if self._items.get(key) == entry:
                return
            self._items[key] = entry
            try:
                self._spool.save_state("versions", self._items)
            except OSError as exc:  # the cache is a convenience: never fail a registration for it
                log.warning("cannot save the rule-version cache in %s: %s", self._spool.directory, exc)

    def lookup(self, rule: str, version: str, params: dict[str, Any], source: str) -> RuleVersion | None:
        """The cached version ``rule@version`` if its content hash matches params and source."""
        entry = self._items.get(f"{rule}@{version}")
        if entry is None:
            return None
        try:
            if entry["content_hash"] != content_hash(params, source):
                return None
            created_at = datetime.fromisoformat(entry["created_at"])
            return RuleVersion(
                id=int(entry["id"]),
                rule=rule,
                version=version,
                content_hash=entry["content_hash"],
                params=params,
                source=source,
                created_at=created_at,
                created_by=str(entry.get("created_by") or ""),
                description=entry.get("description"),
            )
        except (KeyError, TypeError, ValueError):
            return None


class StoreSink:
    """Delivers executions to the store through :class:`Ingest`; (de)serialises them for the spool."""

    def __init__(self, ingest: Ingest, gate: StoreGate | None = None) -> None:
        self._ingest = ingest
        self._gate = gate

    def deliver(self, batch: list[ExecutionEvent], delivery_id: uuid.UUID) -> int:
        if self._gate is not None:
            self._gate.ensure()
        refused = 0
        if any(e.rule_version.id < 0 for e in batch):  # replayed from the spool: resolve by name
            batch, refused = self._resolve(batch)
        return refused + self._write(batch, delivery_id)

    def _write(self, batch: list[ExecutionEvent], delivery_id: uuid.UUID) -> int:
        """Write; when the database refuses the data itself, bisect down to the refused events.

        Transient errors propagate (the caller retries or spools the whole batch: idempotent).
        Returns how many events were refused for good (logged, and dropped by the caller).
        """
        if not batch:
            return 0
        try:
            self._ingest.write_executions(batch, delivery_id=delivery_id)
            return 0
        except Exception as exc:
            if not _refuses_data(exc):
                raise
            if len(batch) == 1:
                log.error("the database refuses execution %s for good: %s", batch[0].event_id, exc)
                return 1
        half = len(batch) // 2  # each half is a delivery of its own, with a stable derived id
        return self._write(batch[:half], derived_delivery_id(delivery_id, "a")) + self._write(
            batch[half:], derived_delivery_id(delivery_id, "b")
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
                        "version", placeholder.rule, placeholder.version, placeholder.content_hash[:12],
                    )
                resolved[key] = rv
            rv = resolved[key]
            if rv is not None:
                e.rule_version = rv
                keep.append(e)
        return keep, len(batch) - len(keep)

    def encode(self, batch: list[ExecutionEvent]) -> bytes:
        index: dict[int, int] = {}
        versions: list[list[str]] = []
        rows: list[list[Any]] = []
        for e in batch:
            rv = e.rule_version
            i = index.get(id(rv))
            if i is None:
                i = index[id(rv)] = len(versions)
                versions.append([rv.rule, rv.version, rv.content_hash])
            rows.append(
                [
                    i,
                    e.event_id.hex,
                    e.started_at,
                    e.duration_seconds,
                    e.status,
                    e.outcome,
                    e.signal,
                    e.confidence,
                    e.mode,
                    e.error_type,
                    None if e.backtest_run_id is None else e.backtest_run_id.hex,
                    1 if e.counted else 0,
                ]
            )
        document = {"v": _PAYLOAD_VERSION, "rv": versions, "e": rows}
        return json.dumps(document, separators=(",", ":")).encode()

    def decode(self, payload: bytes) -> list[ExecutionEvent]:
        document = json.loads(payload)
        if document.get("v") != _PAYLOAD_VERSION:
            raise ValueError(f"unknown spool payload version {document.get('v')!r}")
        versions = [RuleVersion(-1, r, v, h, {}, "", _EPOCH, "") for r, v, h in document["rv"]]
        return [
            ExecutionEvent(
                uuid.UUID(hex=row[1]),
                versions[row[0]],
                float(row[2]),
                float(row[3]),
                row[4],
                row[5],
                row[6],
                row[7],
                row[8],
                row[9],
                None if row[10] is None else uuid.UUID(hex=row[10]),
                bool(row[11]),
            )
            for row in document["e"]
        ]


def _refuses_data(exc: BaseException) -> bool:
    """The database rejects the rows themselves (constraint, type, encoding): retrying cannot help."""
    return isinstance(exc, StoreRejectedData | UnicodeError)  # the store translates the driver's errors


class BackgroundWriter(DeliveryLoop[ExecutionEvent]):
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

