"""The SDK's delivery loop: bounded in-memory queue → batches → target, with retries and a spool.

Shared by the database writer (:mod:`heurmetrics.sdk.store_sink`) and the HTTP client
(:mod:`heurmetrics.sdk.http_client`); only the :class:`Sink` differs.

    producer threads ── put() ──► deque (≤ max_queue) ──► delivery thread ──► sink.deliver(batch)
                                                              │  ▲
                                    target down for spool_after s │  │ replay, oldest first
                                                              ▼  │
                                                        Spool (disk, fsync'd)

Contract
--------
* ``put()`` (the producers' hot path) is ``len(deque) < max_queue`` plus ``deque.append``: no
  lock, no syscall. Only when the queue is full does it take the slow path of the
  ``full_policy``: ``"block"`` waits for room for at most ``block_timeout`` seconds per full
  episode, then drops; ``"drop"`` drops at once. A drop is never silent: it is counted in
  ``heurmetrics_dropped_events_total{reason}`` (``queue_full``, or ``spool_full`` when a spool
  exists and is full), logged, and reported by :meth:`DeliveryLoop.flush` and ``close()``.
* One thread delivers batches of up to ``batch_size`` in queue order. A failed batch is retried
  with exponential backoff and jitter (or after the target's ``Retry-After``). Without a spool
  it is retried until it succeeds or the loop is closed. With a spool, a batch still failing
  ``spool_after`` seconds after its first failure (at once when someone is waiting in
  ``flush()``, or on ``close()``) is appended to the spool, and the loop enters *outage* mode:
  every further batch goes to the spool (so order is kept) and the oldest spool records are
  re-tried with backoff (at most ``max_backoff`` apart). When one succeeds the spool is drained,
  oldest first, before anything newer is delivered directly again.
* Retries are idempotent because every event carries its id and the targets skip known ids.
  Every batch also gets a *delivery id* (a UUID) when it is taken from the queue; it stays with
  the batch through retries, the spool and replay (the spool record carries it), so the target
  can tell a re-sent batch from a new one and count what an earlier attempt stored but did not
  count (see :mod:`heurmetrics.ingest`).
* When the spool refuses a batch (full, a short write, a read-only disk), the batch is held in
  memory and the loop keeps trying the *target* with backoff (it does not wait for a spool that
  has nothing to replay); producers meanwhile meet the full-queue policy (reason
  ``spool_full``). A batch whose record could never fit in the spool is split in halves
  (each with a derived delivery id), unless it was sent to the target before: then it is held
  like a refused one, because only a re-send of the whole batch under its own delivery id lets
  the target count what an earlier attempt may have stored.
  A spool limit smaller than one batch of typical events is refused at construction.
* A batch the target refuses for good (the sink raises :class:`Rejected`, e.g. an unknown rule
  version) is dropped with reason ``rejected`` and logged as an error, so that one poison batch
  cannot stall everything behind it.

Why one module of ~600 lines: the loop is one state machine (queue, outage mode, spool
replay, settling) whose invariants above are checked together; its parts (ids, metrics, sink
protocol) are small and only meaningful to it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

from prometheus_client import CollectorRegistry
from tenacity import RetryCallState

from heurmetrics.errors import HeurmetricsError
from heurmetrics.ids import new_id
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk.retry import RetryLater as RetryLater  # raised by sinks; kept importable from here
from heurmetrics.sdk.retry import RetryPolicy
from heurmetrics.sdk.spool import Spool, SpoolError, SpoolFull

log = logging.getLogger("heurmetrics.sdk")

T = TypeVar("T")
FullPolicy = Literal["block", "drop"]
FULL_POLICIES: Final = ("block", "drop")
#: Default bound of the in-memory queue (an ExecutionEvent takes about 0.3 KB: ~150 MB).
DEFAULT_MAX_QUEUE: Final = 500_000
#: Default longest stall of a producer per full-queue episode under the ``block`` policy.
DEFAULT_BLOCK_TIMEOUT: Final = 5.0
#: Default time a batch keeps failing before it goes to the spool.
DEFAULT_SPOOL_AFTER: Final = 2.0
#: How long a command that flushes before reading back (CLI, demo, resolve_from_prices) waits at most:
#: without a spool and with the database down a flush would otherwise wait for ever.
DEFAULT_FLUSH_TIMEOUT: Final = 120.0
#: Drop reasons (label ``reason`` of ``heurmetrics_dropped_events_total``).
REASON_QUEUE_FULL: Final = "queue_full"
REASON_SPOOL_FULL: Final = "spool_full"
REASON_REJECTED: Final = "rejected"
#: Spool records written by this version start with this tag and the batch's 16-byte delivery id.
_DELIVERY_TAG: Final = b"HMD1"
#: Namespace of delivery ids derived from other ids (split batches, untagged old spool records).
_DERIVED: Final = uuid.UUID("5d1c7a9e-4a35-4f4e-9a52-2f0f6f3c2b11")


class SpoolTooSmall(HeurmetricsError, ValueError):
    """The spool limit cannot hold one batch: a configuration error, raised at construction."""


def derived_delivery_id(parent: uuid.UUID, part: str) -> uuid.UUID:
    """A stable delivery id for a part of a batch (the same part of the same batch: the same id)."""
    return uuid.uuid5(_DERIVED, f"{parent}/{part}")


def wrap_record(delivery_id: uuid.UUID, payload: bytes) -> bytes:
    """A spool record payload: tag, delivery id, then the sink's encoding of the batch."""
    return _DELIVERY_TAG + delivery_id.bytes + payload


def unwrap_record(data: bytes) -> tuple[uuid.UUID, bytes]:
    """Inverse of :func:`wrap_record`; records of older versions get an id derived from their bytes."""
    if data.startswith(_DELIVERY_TAG) and len(data) >= len(_DELIVERY_TAG) + 16:
        start = len(_DELIVERY_TAG)
        return uuid.UUID(bytes=data[start : start + 16]), data[start + 16 :]
    return uuid.uuid5(_DERIVED, data.hex()[:4096] + str(len(data))), data


@dataclass(frozen=True)
class FlushResult:
    """What ``flush()``/``close()`` achieved.

    ``pending``: events accepted but only in memory (neither in the target nor in the spool): they
    are lost if the process dies now. ``spooled``: events in the local spool, durable on disk but
    not yet in the target (they are replayed later, also by the next process opening the spool).
    ``dropped``: events given up since the recorder started (full queue or spool, or refused by
    the target for good), as counted in ``heurmetrics_dropped_events_total``. ``last_error``: the
    latest delivery error when anything is still pending or spooled.
    """

    pending: int
    last_error: str | None = None
    spooled: int = 0
    dropped: int = 0

    @property
    def complete(self) -> bool:
        """Everything accepted so far is in the target (database or exporter)."""
        return self.pending == 0 and self.spooled == 0

    @property
    def durable(self) -> bool:
        """Everything accepted so far is in the target or in the local spool (survives a crash)."""
        return self.pending == 0


class Rejected(Exception):
    """Raised by a sink: the target refuses this batch for good; retrying cannot help."""


class Sink(Protocol[T]):
    """Where a :class:`DeliveryLoop` delivers, and how its batches are written to the spool."""

    def deliver(self, batch: list[T], delivery_id: uuid.UUID) -> int:
        """Deliver (idempotently) and return how many items were refused for good and dropped.

        ``delivery_id`` is the same on every attempt of this batch (retries, spool, replay), and
        differs between batches: the target keys what it counted on it. Raise :class:`Rejected`
        when the whole batch is refused for good, anything else when the
        failure may be transient (the batch is retried or spooled).
        """
        ...

    def encode(self, batch: list[T]) -> bytes:
        """The batch as a spool record payload."""
        ...

    def decode(self, payload: bytes) -> list[T]:
        """The inverse of :meth:`encode`; must not need the target."""
        ...


@dataclass
class DeliveryMetrics:
    """The self-monitoring metrics a delivery loop updates (prometheus_client objects)."""

    queue: Any
    dropped: Any
    retries: Any
    spool_events: Any
    spool_bytes: Any

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DeliveryMetrics:
        """The five families on a registry of their own (the HTTP client's)."""
        from heurmetrics.metrics.pipeline import build_metric

        metrics = cls(
            queue=build_metric(d.WRITER_QUEUE_EVENTS, registry),
            dropped=build_metric(d.DROPPED_EVENTS, registry),
            retries=build_metric(d.DELIVERY_RETRIES, registry),
            spool_events=build_metric(d.SPOOL_EVENTS, registry),
            spool_bytes=build_metric(d.SPOOL_BYTES, registry),
        )
        for reason in d.DROP_REASONS:
            metrics.dropped.labels(reason=reason)
        return metrics


class Probe:
    """When to try a target that is down again (between cycles, not in a loop): the retry policy's backoff."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return self.policy.backoff(self.failures)


class DeliveryLoop(Generic[T]):
    """A bounded queue drained in batches by one daemon thread into a :class:`Sink` (see module doc).

    ``spool`` (optional) is owned by the loop from now on: :meth:`close` closes it.
    """

    def __init__(
        self,
        sink: Sink[T],
        metrics: DeliveryMetrics,
        *,
        name: str = "heurmetrics-delivery",
        batch_size: int = 5000,
        flush_interval: float = 0.05,
        max_backoff: float = 5.0,
        max_queue: int = DEFAULT_MAX_QUEUE,
        full_policy: FullPolicy = "block",
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        spool: Spool | None = None,
        spool_after: float = DEFAULT_SPOOL_AFTER,
        max_retry_after: float = 60.0,
        event_spool_bytes: int = 0,
    ) -> None:
        if full_policy not in FULL_POLICIES:
            raise ValueError(f"full_policy must be one of {', '.join(FULL_POLICIES)}, got {full_policy!r}")
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        if spool is not None and not spool.can_ever_hold(batch_size * event_spool_bytes + len(_DELIVERY_TAG) + 16):
            # A spool that cannot take one batch turns every outage into lost data: say so now.
            raise SpoolTooSmall(
                f"spool {spool.directory}: max_bytes {spool.max_bytes} cannot hold one batch of {batch_size} "
                f"events (about {event_spool_bytes} bytes each, {batch_size * event_spool_bytes} bytes): raise "
                "spool_max_bytes or lower batch_size"
            )
        self._sink = sink
        self._metrics = metrics
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_backoff = max_backoff
        self._max_queue = max_queue
        self._policy = full_policy
        self._block_timeout = max(0.0, block_timeout)
        self._spool_after = spool_after
        self._retry = RetryPolicy(first=0.05, cap=max_backoff, max_hint=max_retry_after)
        self.spool = spool
        self.queue: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._done_cond = threading.Condition(self._lock)  # progress: flush() waits on it
        self._space_cond = threading.Condition(self._lock)  # room in the queue: blocked producers
        self._wake = threading.Event()
        self._taken = 0  # items moved from the queue to the delivery thread
        self._resolved = 0  # of those: delivered, spooled or dropped
        self._spool_in = spool.events if spool is not None else 0  # events ever appended (+ found at open)
        self._spool_out = 0  # events acknowledged from the spool (delivered or dropped)
        self._dropped = 0
        self._held: list[tuple[list[T], uuid.UUID]] = []  # taken batches that could go nowhere yet
        # Delivery ids of batches sent to the target at least once and not settled yet: such a
        # batch is never split (see _to_spool).
        self._attempted: set[uuid.UUID] = set()
        self._full_since: float | None = None
        self._flush_waiters = 0
        self._failures = 0  # failed delivery attempts (direct or replay), for flush()
        self._down = False  # outage mode: new batches go to the spool
        self._spool_blocked = False  # the last spool append failed (full or I/O error)
        self._probe = Probe(self._retry)
        self._next_probe = 0.0
        self._stopping = False
        self._last_drop_log = 0.0
        self.last_error: str | None = None
        metrics.queue.set_function(lambda: len(self.queue) + self._taken - self._resolved)
        if spool is not None:
            metrics.spool_events.set_function(lambda: spool.events)
            metrics.spool_bytes.set_function(lambda: spool.size_bytes)
            if spool.events:
                log.info("spool %s holds %d events from before: replaying them first", spool.directory, spool.events)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- producers --------------------------------------------------------------------------
    def put(self, item: T) -> bool:
        """Enqueue ``item``; False when it was dropped (full queue, see the policy)."""
        if len(self.queue) < self._max_queue:
            self.queue.append(item)
            return True
        return self._put_full(item)

    def put_many(self, items: Sequence[T]) -> int:
        """Enqueue ``items`` in order, in one step while there is room (the producers' batch APIs).

        Returns how many were accepted: always a prefix of ``items``. Past a full queue, the
        remaining items go through the full-queue policy one by one, as :meth:`put` would; the
        first one dropped ends the batch (the rest are dropped and counted with it), so what was
        accepted stays a prefix and keeps its order.
        """
        room = self._max_queue - len(self.queue)
        if len(items) <= room:
            self.queue.extend(items)
            if len(self.queue) >= self._batch_size:  # a whole batch is waiting: start it now
                self._wake.set()
            return len(items)
        accepted = max(room, 0)
        if accepted:
            self.queue.extend(items[:accepted])
        for item in items[accepted:]:
            if not self._put_full(item, drop=False):
                break
            accepted += 1
        if accepted < len(items):
            self._drop(len(items) - accepted, REASON_SPOOL_FULL if self._spool_blocked else REASON_QUEUE_FULL)
        return accepted

    def _put_full(self, item: T, drop: bool = True) -> bool:
        self._wake.set()
        if self._policy == "block" and not self._stopping:
            with self._lock:
                if self._full_since is None:
                    self._full_since = time.monotonic()
                deadline = self._full_since + self._block_timeout
                while len(self.queue) >= self._max_queue and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._space_cond.wait(remaining)
                if len(self.queue) < self._max_queue:
                    self.queue.append(item)
                    return True
        if drop:
            self._drop(1, REASON_SPOOL_FULL if self._spool_blocked else REASON_QUEUE_FULL)
        return False

    def _drop(self, n: int, reason: str, why: str | None = None) -> None:
        with self._lock:
            self._dropped += n
        self._metrics.dropped.labels(reason=reason).inc(n)
        now = time.monotonic()
        if why is not None or now - self._last_drop_log > 10.0:
            self._last_drop_log = now
            log.error(
                "dropped %d event(s) (%s; %d dropped so far)%s", n, reason, self._dropped, f": {why}" if why else ""
            )

    # --- flush and close ----------------------------------------------------------------------
    def result(self) -> FlushResult:
        """The current state, as :meth:`flush` reports it (without waiting)."""
        with self._lock:
            pending = len(self.queue) + self._taken - self._resolved
        spooled = self.spool.events if self.spool is not None else 0
        error = self.last_error if pending or spooled else None
        return FlushResult(pending, error, spooled, self._dropped)

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Block until every item put before this call is in the target, or ``timeout`` passes.

        When the target is down and a spool exists, return as soon as those items are in the
        spool instead (``spooled`` > 0): they are durable and will be replayed. See
        :class:`FlushResult` for what the fields mean.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._taken + len(self.queue)
            failures = self._failures
            self._flush_waiters += 1
        self._next_probe = 0.0  # try the spool's target now rather than after the backoff
        self._wake.set()
        try:
            with self._done_cond:
                while self._resolved < target and self._wait(deadline):
                    pass
                if self.spool is not None and self._resolved >= target:
                    # Wait for the replay of what was spooled so far, unless an attempt made since
                    # this call failed: then the target is down and the spool is as far as it goes.
                    spooled_before = self._spool_in
                    while self._spool_out < spooled_before and self._failures == failures and self._wait(deadline):
                        pass
        finally:
            with self._lock:
                self._flush_waiters -= 1
        return self.result()

    def _wait(self, deadline: float | None) -> bool:
        """Wait (lock held) for progress; False once ``deadline`` has passed."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        self._done_cond.wait(0.5 if remaining is None else min(remaining, 0.5))
        self._wake.set()
        return True

    def close(self, timeout: float | None = 30.0) -> FlushResult:
        """Flush (up to ``timeout``), then stop the thread; with a spool, whatever is still in memory
        is spooled before the thread exits. Returns what is pending (lost), spooled and dropped."""
        self.flush(timeout)
        self._stopping = True
        with self._lock:
            self._space_cond.notify_all()
        self._wake.set()
        self._thread.join(timeout=10.0)
        result = self.result()
        if self.spool is not None and not self._thread.is_alive():
            self.spool.close()
        if not result.complete:
            log.warning(
                "closed with %d events pending (lost), %d spooled, %d dropped: %s",
                result.pending,
                result.spooled,
                result.dropped,
                result.last_error,
            )
        return result

    # --- the delivery thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                progressed = self._cycle()
            except Exception as exc:  # a bug here must not kill the thread silently
                self._note_failure(exc, count=False)
                log.exception("delivery loop error (continuing)")
                progressed = False
                time.sleep(0.1)
            if self._stopping and not progressed:
                return
            if not progressed:
                self._idle()

    def _idle(self) -> None:
        timeout = self._interval
        if self._spool_blocked and self._held:  # nothing to do before the next probe
            timeout = max(timeout, self._next_probe - time.monotonic())
        elif self.spool is not None and self.spool.events:
            timeout = min(timeout, max(0.0, self._next_probe - time.monotonic()))
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def _cycle(self) -> bool:
        """One step: replay the spool when due, then take and place one batch. True if anything moved."""
        replayed = self._replay()
        held = self._held.pop(0) if self._held else self._take()
        if held is None:
            return replayed
        batch, delivery_id = held
        if self.spool is not None and (self._down or self.spool.events or self._stopping):
            if self._spool_blocked:
                # The spool refused the last batch: keep probing the target itself (with backoff),
                # or an outage that began with a full spool would never end.
                return self._try_target(batch, delivery_id) or replayed
            return self._to_spool(batch, delivery_id) or replayed
        return self._deliver(batch, delivery_id) or replayed

    def _refused_for_good(self, batch: list[T], exc: Rejected) -> bool:
        self._drop(len(batch), REASON_REJECTED, f"batch refused for good: {exc}")
        self._settle(resolved=len(batch))
        return True

    def _try_target(self, batch: list[T], delivery_id: uuid.UUID) -> bool:
        """The spool is blocked: try the target once when due, else the spool again; hold otherwise."""
        if time.monotonic() < self._next_probe and not self._stopping:
            self._held.insert(0, (batch, delivery_id))
            return False
        self._attempted.add(delivery_id)
        try:
            refused = self._sink.deliver(batch, delivery_id)
        except Rejected as exc:
            self._attempted.discard(delivery_id)
            return self._refused_for_good(batch, exc)
        except Exception as exc:
            self._note_failure(exc)
            self._next_probe = time.monotonic() + self._probe.next()
            return self._to_spool(batch, delivery_id)  # perhaps there is room again
        if refused:
            self._drop(refused, REASON_REJECTED, "refused by the target")
        self._attempted.discard(delivery_id)
        log.info("target reachable again while the spool was refusing batches")
        self._spool_blocked = False
        self._down = False
        self._probe.reset()
        self._next_probe = 0.0
        if self.spool is not None and not self.spool.events:
            self.last_error = None
        self._settle(resolved=len(batch))
        return True

    def _take(self) -> tuple[list[T], uuid.UUID] | None:
        with self._lock:
            n = min(len(self.queue), self._batch_size)
            if not n:
                return None
            popleft = self.queue.popleft
            batch = [popleft() for _ in range(n)]
            self._taken += n
            if self._full_since is not None:
                self._full_since = None
                self._space_cond.notify_all()
        return batch, new_id()  # time-ordered (UUIDv7), like the event ids

    def _settle(self, resolved: int = 0, spooled_in: int = 0, spooled_out: int = 0) -> None:
        with self._done_cond:
            self._resolved += resolved
            self._spool_in += spooled_in
            self._spool_out += spooled_out
            self._done_cond.notify_all()

    def _note_failure(self, exc: BaseException, *, count: bool = True) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:1000]
        with self._done_cond:
            self._failures += 1
            self._done_cond.notify_all()  # a flush() waiting on the spool's target learns it is down
        if count:
            self._metrics.retries.inc()

    def _replay(self) -> bool:
        spool = self.spool
        if spool is None or not spool.events or self._stopping or time.monotonic() < self._next_probe:
            return False
        records = spool.peek(self._batch_size)
        if not records:  # counted events without a readable record: never spin on it
            self._next_probe = time.monotonic() + 1.0
            return False
        # One delivery per record: a record is one batch with its own delivery id, so a replay
        # after a crash re-sends exactly what the earlier attempt sent.
        for record in records:
            n = record.count
            try:
                delivery_id, payload = unwrap_record(record.payload)
                refused = self._sink.deliver(self._sink.decode(payload), delivery_id)
            except Rejected as exc:
                self._drop(n, REASON_REJECTED, f"spooled batch refused for good: {exc}")
            except Exception as exc:
                self._note_failure(exc)
                self._down = True
                delay = self._probe.next()
                self._next_probe = time.monotonic() + delay
                log.warning("replaying %d spooled events failed, next try in %.1fs: %s", n, delay, exc)
                return record is not records[0]
            else:
                if refused:
                    self._drop(refused, REASON_REJECTED, "refused by the target while replaying the spool")
            spool.ack([record])
            self._settle(spooled_out=n)
        if self._down:
            log.info("target reachable again: replaying the spool (%d events left)", spool.events)
        self._down = False
        if not spool.events:
            self.last_error = None
        self._spool_blocked = False
        self._probe.reset()
        self._next_probe = 0.0
        return True

    def _deliver(self, batch: list[T], delivery_id: uuid.UUID) -> bool:
        """Deliver with the retry policy until it succeeds, is refused for good, or is given up:
        then (with a spool) it goes to the spool, or (closing, no spool) it stays pending."""
        first_failure: list[float] = []

        def give_up(state: RetryCallState) -> bool:
            now = time.monotonic()
            if not first_failure:
                first_failure.append(now)
            if self.spool is not None:
                return now - first_failure[0] >= self._spool_after or bool(self._flush_waiters) or self._stopping
            return self._stopping

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning("delivering %d events failed, retrying in %.2fs: %s", len(batch), state.upcoming_sleep, exc)

        def failed(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if exc is not None:
                self._note_failure(exc)

        retrying = self._retry.retrying(
            stop=give_up,
            retry_on=lambda exc: not isinstance(exc, Rejected),
            sleep=self._pause,
            before_sleep=before_sleep,
            after=failed,
        )
        self._attempted.add(delivery_id)
        try:
            refused = retrying(self._sink.deliver, batch, delivery_id)
        except Rejected as exc:
            self._attempted.discard(delivery_id)
            return self._refused_for_good(batch, exc)
        except Exception as exc:  # given up: see give_up()
            if self.spool is None:  # closing: the batch stays pending and is reported by close()
                self._held.insert(0, (batch, delivery_id))
                return False
            log.warning("delivering %d events keeps failing (%s): spooling from now on", len(batch), exc)
            self._down = True
            self._probe.reset()
            self._next_probe = time.monotonic() + self._probe.next()
            return self._to_spool(batch, delivery_id)
        self._attempted.discard(delivery_id)
        if refused:
            self._drop(refused, REASON_REJECTED, "refused by the target")
        self._down = False
        self.last_error = None
        self._settle(resolved=len(batch))
        return True

    def _pause(self, delay: float) -> None:
        """Sleep before a retry; cut short by close(), or by flush() when a spool can take the batch."""
        end = time.monotonic() + delay
        while not self._stopping and not (self.spool is not None and self._flush_waiters):
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _to_spool(self, batch: list[T], delivery_id: uuid.UUID) -> bool:
        spool = self.spool
        assert spool is not None
        payload = wrap_record(delivery_id, self._sink.encode(batch))
        if not spool.can_ever_hold(len(payload)) and len(batch) > 1 and delivery_id not in self._attempted:
            # Larger than the whole spool (unusually long events): spool it in halves, each a batch
            # of its own (derived delivery ids), so the limit never holds a batch back for good.
            # Not a batch sent before: an attempt may have committed with its answer lost, and the
            # target counts that attempt's rows only when the same delivery id is sent again with
            # the same events; halves would insert nothing new and leave those rows uncounted. Such
            # a batch meets the spool's refusal below instead: held in memory, the target probed.
            half = len(batch) // 2
            parts = [
                (batch[:half], derived_delivery_id(delivery_id, "a")),
                (batch[half:], derived_delivery_id(delivery_id, "b")),
            ]
            self._held[0:0] = parts
            return True
        try:
            spool.append(payload, len(batch))
        except (SpoolFull, SpoolError, OSError) as exc:
            if not self._spool_blocked:
                log.error(
                    "cannot spool %d events (%s): holding them in memory and retrying the target", len(batch), exc
                )
                self._probe.reset()
                self._next_probe = time.monotonic() + self._probe.next()
            self._spool_blocked = True
            self.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            self._held.insert(0, (batch, delivery_id))
            return False
        self._spool_blocked = False
        self._attempted.discard(delivery_id)  # replayed whole, under its delivery id
        self._settle(resolved=len(batch), spooled_in=len(batch))
        return True
