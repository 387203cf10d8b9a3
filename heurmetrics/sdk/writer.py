"""The SDK's background writer: moves queued executions into the store in batches.

Producers append to a ``collections.deque`` (thread-safe, lock-free under the GIL) and never
touch the database. One writer thread drains it in order, in batches of up to ``batch_size``,
through :meth:`heurmetrics.ingest.Ingest.write_executions`. A failed batch is kept and retried
with exponential backoff and jitter, so order and exactly-once (by event id) are preserved.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import dataclass

from heurmetrics.domain import ExecutionEvent
from heurmetrics.ingest import Ingest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlushResult:
    """What :meth:`BackgroundWriter.flush` achieved: ``pending`` events are not durable yet."""

    pending: int
    last_error: str | None = None

    @property
    def complete(self) -> bool:
        return self.pending == 0


class BackgroundWriter:
    def __init__(
        self,
        ingest: Ingest,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self._ingest = ingest
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_backoff = max_backoff
        self.queue: collections.deque[ExecutionEvent] = collections.deque()
        self._lock = threading.Lock()
        self._done_cond = threading.Condition(self._lock)
        self._taken = 0  # events popped from the queue by the writer (under _lock)
        self._done = 0  # events durably written (under _lock)
        self._wake = threading.Event()
        self._stopping = False
        self.last_error: str | None = None
        ingest.metrics.writer_queue.set_function(lambda: len(self.queue) + self._taken - self._done)
        self._thread = threading.Thread(target=self._run, name="heurmetrics-writer", daemon=True)
        self._thread.start()

    def put(self, event: ExecutionEvent) -> None:
        self.queue.append(event)

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Block until everything queued before this call is durable, or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._taken + len(self.queue)
        self._wake.set()
        with self._done_cond:
            while self._done < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._done_cond.wait(remaining if remaining is not None else 0.5)
                self._wake.set()
            pending = len(self.queue) + self._taken - self._done
        return FlushResult(pending, self.last_error if pending else None)

    def close(self, timeout: float | None = 30.0) -> FlushResult:
        result = self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=5.0)
        return result

    # --- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stopping:
                    return
                self._wake.wait(self._interval)
                self._wake.clear()
                continue
            self._write_with_retry(batch)

    def _take(self) -> list[ExecutionEvent]:
        with self._lock:
            n = min(len(self.queue), self._batch_size)
            popleft = self.queue.popleft
            batch = [popleft() for _ in range(n)]
            self._taken += n
        return batch

    def _write_with_retry(self, batch: list[ExecutionEvent]) -> None:
        delay = 0.05
        while True:
            try:
                self._ingest.write_executions(batch)
            except Exception as exc:  # keep the batch; the store may come back
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("writing %d executions failed, retrying in %.2fs: %s", len(batch), delay, exc)
                if self._stopping:
                    return
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, self._max_backoff)
                continue
            with self._done_cond:
                self._done += len(batch)
                self._done_cond.notify_all()
            self.last_error = None
            return
