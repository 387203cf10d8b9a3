"""The Python SDK: what a rule runner or backtest runner calls.

    with Recorder() as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0", params={...}, source=src)
        with rec.execution(rv, mode="live") as ex:
            ex.set_result(outcome="bullish", signal=1.0, confidence=0.72)

``record_execution`` is the hot path: it validates, updates the Prometheus metrics and appends to
an in-memory queue; a background thread writes batches to the store. ``flush()`` returns when
everything recorded before it is durable.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from heurmetrics.config import Settings, current_user
from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.errors import InvalidEvent, StoreUnavailable
from heurmetrics.execution_builder import TimedExecution, as_uuid, build_execution
from heurmetrics.ids import EventIds
from heurmetrics.ingest import Ingest
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.sdk.delivery import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SPOOL_AFTER,
    FlushResult,
    FullPolicy,
)
from heurmetrics.sdk.recorder_backtests import BacktestCalls
from heurmetrics.sdk.recorder_lifecycle import LifecycleCalls
from heurmetrics.sdk.spool import DEFAULT_MAX_BYTES as DEFAULT_SPOOL_MAX_BYTES
from heurmetrics.sdk.spool import Spool
from heurmetrics.sdk.spool_codec import QueuedExecution, Uncounted
from heurmetrics.sdk.store_gate import database_identity, open_store
from heurmetrics.sdk.store_sink import BackgroundWriter
from heurmetrics.sdk.version_cache import VersionCache

if TYPE_CHECKING:
    pass


class Recorder(LifecycleCalls, BacktestCalls):
    """Records rule versions, executions and backtests of one runner process.

    ``database_url`` defaults to ``HEURMETRICS_DATABASE_URL`` (else ``./heurmetrics.db``). A
    brand-new empty database is initialised; one at an older schema revision is refused (run
    ``heurmetrics db upgrade``). ``registry`` receives the metrics (a fresh one by default); expose
    it with :meth:`start_metrics_server` or your own exporter.

    Delivery (see docs/reliability.md and :mod:`heurmetrics.sdk.delivery`): executions wait in a
    queue of at most ``max_queue`` events; a full queue blocks the caller for at most
    ``block_timeout`` seconds (``full_policy="block"``) or not at all (``"drop"``) before events
    are dropped and counted in ``heurmetrics_dropped_events_total``. ``spool_dir`` (default: none)
    enables a local durable spool of at most ``spool_max_bytes``: batches the database has refused
    for ``spool_after`` seconds are written there and replayed in order when it is back, also by
    the next process that opens the same ``spool_dir`` (one directory per runner process; it is
    bound to this database). Without a spool, a Recorder cannot be created while the database is
    unreachable (:class:`~heurmetrics.errors.StoreUnavailable`); with one, it can, and
    :meth:`register_rule_version` then answers from the spool's cache of versions registered
    before (identical content only). A ``spool_dir`` that cannot be created or written raises
    :class:`~heurmetrics.sdk.spool.SpoolError` naming it; a ``spool_max_bytes`` too small for one
    batch raises :class:`~heurmetrics.sdk.delivery.SpoolTooSmall`.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: CollectorRegistry | None = None,
        created_by: str | None = None,
        batch_size: int = 5000,
        flush_interval: float = 0.05,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        full_policy: FullPolicy = "block",
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        max_queue: int = DEFAULT_MAX_QUEUE,
        spool_after: float = DEFAULT_SPOOL_AFTER,
    ) -> None:
        url = database_url or Settings().database_url
        self.registry = registry if registry is not None else CollectorRegistry()
        self.spool = (
            None if spool_dir is None else Spool(spool_dir, max_bytes=spool_max_bytes, identity=database_identity(url))
        )
        try:
            gate = open_store(url, allow_offline=self.spool is not None)
            self._gate = gate
            self.store = gate.store
            self.metrics = PipelineMetrics(self.registry)
            self.ingest = Ingest(self.store, self.metrics)
            self._versions = None if self.spool is None else VersionCache(self.spool)
            self.created_by = created_by or current_user()
            self._ids = EventIds()
            self._writer = BackgroundWriter(
                self.ingest,
                batch_size=batch_size,
                flush_interval=flush_interval,
                max_queue=max_queue,
                full_policy=full_policy,
                block_timeout=block_timeout,
                spool=self.spool,
                spool_after=spool_after,
                gate=None if gate.verified else gate,
            )
        except BaseException:
            if self.spool is not None:  # release the spool's lock for the next attempt
                self.spool.close()
            raise
        self._put = self._writer.put
        self._put_many = self._writer.put_many
        self._observe = self.metrics.observe_execution
        self._new_id = self._ids.next
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
    ) -> RuleVersion:
        """Register a rule version (synchronously, durable on return) and return it.

        Idempotent for identical content; raises :class:`~heurmetrics.errors.VersionConflict` when
        ``rule@version`` exists with other params or source (nothing is written). When the database
        is unreachable: with a spool, a version registered before through the same spool with
        identical content is returned from its cache; otherwise
        :class:`~heurmetrics.errors.StoreUnavailable` is raised.
        """
        try:
            self._gate.ensure()
            rv, _created = self.ingest.register_rule_version(
                rule,
                version,
                params=params,
                source=source,
                created_by=created_by or self.created_by,
                description=description,
            )
        except StoreUnavailable as exc:  # the store translates driver errors into it
            cached = None if self._versions is None else self._versions.lookup(rule, version, params or {}, source)
            if cached is None:
                raise StoreUnavailable(f"cannot register {rule}@{version}: database unreachable ({exc})") from exc
            self.metrics.prepare_rule_version(cached)
            return cached
        if self._versions is not None:
            self._versions.remember(rv)
        return rv

    # --- executions (hot path) --------------------------------------------------------------
    def record_execution(
        self,
        rule_version: RuleVersion,
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
        """Record one execution and return its event id; never touches the database.

        Pass ``event_id`` to make retries idempotent: an id seen before is stored and counted once.
        ``started_at`` is an aware datetime or Unix seconds (default: now minus the duration).
        Invalid values raise :class:`~heurmetrics.errors.InvalidEvent` and record nothing.
        """
        if self._closed:
            raise RuntimeError("Recorder is closed")
        if rule_version.__class__ is not RuleVersion:
            raise InvalidEvent("rule_version", "must be the RuleVersion returned by register_rule_version")
        event = build_execution(
            rule_version, duration_seconds, status, outcome, signal, confidence, mode, started_at, error_type,
            event_id, backtest_run_id, self._new_id,
        )  # fmt: skip
        # Enqueue first (False: dropped by the full-queue policy, counted there, not here); a fresh
        # id cannot be a duplicate: count it now (a caller's id is counted after its insert).
        if event_id is None:
            if self._put(event):
                self._observe(event)
        else:
            self._put(Uncounted(event))
        return event.event_id

    def record_executions(
        self,
        rule_version: RuleVersion,
        executions: Iterable[Mapping[str, Any]],
        *,
        mode: str = "live",
        backtest_run_id: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        """Record many executions of one version at once; returns their event ids, in order.

        For runners that evaluate many bars at a time (the walk-forward harness records its
        workers' evaluations this way). Each item is a mapping of :meth:`record_execution`'s
        keyword arguments (``duration_seconds`` required; ``mode`` per item overrides ``mode``).
        Every item is validated before any is recorded: an invalid one raises
        :class:`~heurmetrics.errors.InvalidEvent` naming ``executions[i].field``, and nothing of
        the batch is recorded. The version, mode default and run id are checked once per batch.

        Then the batch is queued in one step and counted with one metrics update; delivery is
        the single path's (same queue, same writer): durable after :meth:`flush`, and an
        ``event_id`` seen before is stored and counted once. When the queue is full, the
        full-queue policy applies to the rest of the batch (``heurmetrics_dropped_events_total``);
        the ids of dropped executions are returned too, as :meth:`record_execution` does.
        """
        if self._closed:
            raise RuntimeError("Recorder is closed")
        if rule_version.__class__ is not RuleVersion:
            raise InvalidEvent("rule_version", "must be the RuleVersion returned by register_rule_version")
        if backtest_run_id is not None and backtest_run_id.__class__ is not uuid.UUID:
            backtest_run_id = as_uuid(backtest_run_id, "backtest_run_id")
        events, own = self._batch_events(executions, rule_version, mode, backtest_run_id)
        ids = [e.event_id for e in events]
        if all(own):  # the common case: every id is the SDK's, counted now
            accepted = self._put_many(events)
            self.metrics.observe_executions(events if accepted == len(events) else events[:accepted])
            return ids
        # A caller's id is counted after its insert (it may be a retry): queue it marked uncounted.
        queued: list[QueuedExecution] = [e if sdk_id else Uncounted(e) for e, sdk_id in zip(events, own, strict=True)]
        accepted = self._put_many(queued)
        self.metrics.observe_executions(e for e in queued[:accepted] if e.__class__ is not Uncounted)  # type: ignore[misc]
        return ids

    def _batch_events(
        self, executions: Iterable[Mapping[str, Any]], rv: RuleVersion, mode: str, run_id: uuid.UUID | None
    ) -> tuple[list[ExecutionEvent], list[bool]]:
        """Validate and build every item of :meth:`record_executions` (errors name ``executions[i]``).

        Returns the events and, per event, whether its id is the SDK's (counted at record time).
        """
        fields, new_id, build = _BATCH_FIELDS, self._new_id, build_execution
        events: list[ExecutionEvent] = []
        own: list[bool] = []
        append, own_append = events.append, own.append
        index = 0
        # The events built here hold no reference cycles: pausing the cyclic collector while a
        # batch is built saves the collections its allocations would trigger (~40 % of this
        # loop with a large heap, e.g. pandas loaded); it is restored as it was, also on error.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            for index, item in enumerate(executions):  # noqa: B007 (index names the failing item)
                # Cheap checks first (this is per item): a plain dict skips the ABC isinstance test.
                if item.__class__ is not dict and not isinstance(item, Mapping):
                    kind = type(item).__name__
                    raise InvalidEvent("item", f"must be a mapping of record_execution arguments, got {kind}")
                if not fields.issuperset(item):
                    unknown = sorted(str(k) for k in item if k not in fields)[0]
                    raise InvalidEvent(unknown, f"is not an argument of record_execution ({_BATCH_FIELD_LIST})")
                get = item.get
                if "duration_seconds" not in item:
                    raise InvalidEvent("duration_seconds", "is required")
                event_id = get("event_id")
                append(
                    build(
                        rv, item["duration_seconds"], get("status", "ok"), get("outcome"), get("signal"),
                        get("confidence"), get("mode", mode), get("started_at"), get("error_type"), event_id,
                        run_id, new_id,
                    )
                )  # fmt: skip
                own_append(event_id is None)
        except InvalidEvent as exc:
            raise exc.at(f"executions[{index}]") from None
        finally:
            if paused:
                gc.enable()
        return events, own

    def execution(
        self, rule_version: RuleVersion, *, mode: str = "live", backtest_run_id: uuid.UUID | None = None
    ) -> ExecutionContext:
        """Time a block as one execution: ``with rec.execution(rv) as ex: ex.set_result(...)``.

        An exception leaving the block records status ``error`` (``timeout`` for TimeoutError)
        with its type in ``error_type``, and is re-raised.
        """
        return ExecutionContext(self, rule_version, mode, backtest_run_id)

    # --- lifecycle ----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> FlushResult:
        """Return when everything recorded so far is in the database (or ``timeout`` seconds passed).

        With a spool and the database down, return as soon as it is in the spool instead
        (``result.spooled`` > 0; durable on local disk, replayed later). ``result.complete``: all
        in the database; ``result.durable``: all in the database or the spool; ``result.pending``:
        only in memory; ``result.dropped``: given up since start (see :class:`FlushResult`).
        """
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> FlushResult:
        """Flush, stop the writer and release the database; reports what could not be written.

        With a spool, whatever is still in memory after ``timeout`` is spooled before returning
        (and replayed by the next Recorder opening the same ``spool_dir``).
        """
        if self._closed:
            return FlushResult(0)
        self._closed = True
        result = self._writer.close(timeout)
        self.ingest.close()  # deferred delivery claims: counted now if the database answers
        self.store.close()
        return result

    def start_metrics_server(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve this recorder's metrics on ``http://addr:port/metrics`` (embedded mode)."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr, registry=self.registry)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class ExecutionContext(TimedExecution):
    """Times one execution (:class:`~heurmetrics.execution_builder.TimedExecution`); see :meth:`Recorder.execution`."""

    __slots__ = ("_mode", "_recorder", "_run_id", "_rv", "event_id")

    def __init__(
        self, recorder: Recorder, rule_version: RuleVersion, mode: str, backtest_run_id: uuid.UUID | None
    ) -> None:
        super().__init__()
        self._recorder = recorder
        self._run_id = backtest_run_id
        self._rv = rule_version
        self._mode = mode
        self.event_id: uuid.UUID | None = None

    def _finish(
        self,
        duration: float,
        status: str,
        outcome: str | None,
        signal: float | None,
        confidence: float | None,
        error_type: str | None,
    ) -> None:
        self.event_id = self._recorder.record_execution(
            self._rv,
            duration_seconds=duration,
            status=status,
            outcome=outcome,
            signal=signal,
            confidence=confidence,
            mode=self._mode,
            started_at=self._start,
            error_type=error_type,
            backtest_run_id=self._run_id,
        )


#: Keys an item of :meth:`Recorder.record_executions` may carry.
_BATCH_FIELDS = frozenset(
    {"duration_seconds", "status", "outcome", "signal", "confidence", "mode", "started_at", "error_type", "event_id"}
)
_BATCH_FIELD_LIST = ", ".join(sorted(_BATCH_FIELDS))
