"""Counting committed execution batches once: delivery claims, and their retry when the claim failed.

The write that inserts executions nobody counted yet records which ones it inserted under the
batch's delivery id, in the same transaction (:mod:`heurmetrics.store.deliveries`). After an
acknowledged commit the ingest claims every unclaimed record of that delivery id and counts what
they list. A commit whose answer was lost is therefore counted by the re-send of the same batch
(same delivery id, on any process), and a claimed record is never counted again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

from heurmetrics.domain import ExecutionEvent
from heurmetrics.errors import StoreUnavailable
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.store.sql_store import SqlStore

log = logging.getLogger("heurmetrics.ingest")
#: Claims kept for a later retry when the database could not be asked right after a commit.
MAX_PENDING_CLAIMS = 10_000


@dataclasses.dataclass
class Claim:
    """A claim to make (or whose answer was lost): the batch's uncounted events, by id."""

    delivery_id: uuid.UUID
    token: uuid.UUID
    events: list[ExecutionEvent]
    digest: bytes


class Claims:
    """Settles claims: counts what a delivery stored; keeps (and retries) those that failed."""

    def __init__(self, store: SqlStore, metrics: PipelineMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self._lock = threading.Lock()
        self._pending: list[Claim] = []  # committed batches not counted yet (the claim failed)
        self._claimer: threading.Thread | None = None
        self._in_flight = 0  # claims taken by retry() and not settled yet

    def __len__(self) -> int:
        return len(self._pending) + self._in_flight

    def settle(self, claim: Claim) -> bool:
        """Claim and count; on failure keep the claim for :meth:`retry`. True when settled."""
        try:
            if self._claim(claim):
                return True
        except Exception as exc:  # the batch is committed: its answer stands; the count is retried
            log.error("counting delivery %s deferred: %s", claim.delivery_id, exc)
        self._defer(claim)
        return False

    def _claim(self, claim: Claim) -> bool:
        """Claim the delivery's records and count what they list; False while the database is unreachable."""
        try:
            records = self.store.claim_delivery(claim.delivery_id, claim.token)
        except StoreUnavailable as exc:
            log.warning("counting delivery %s deferred (claim failed: %s)", claim.delivery_id, exc)
            return False
        counted = 0
        for rec in records:
            if rec.event_ids is not None:
                chosen = [e for e in claim.events if e.event_id in rec.event_ids]
            elif rec.digest == claim.digest:
                chosen = claim.events
            else:
                log.error(
                    "delivery %s was re-sent with other events than its stored attempt: the earlier attempt's "
                    "rows cannot be counted", claim.delivery_id,
                )  # fmt: skip
                continue
            self.metrics.observe_executions(chosen)  # one call per batch (issue 11)
            counted += len(chosen)
        self.metrics.ingested.labels(d.KIND_EXECUTION, "accepted").inc(counted)
        return True

    def _defer(self, claim: Claim, *, front: bool = False) -> None:
        with self._lock:
            if front:
                self._pending.insert(0, claim)
            else:
                self._pending.append(claim)
            if len(self._pending) > MAX_PENDING_CLAIMS:
                lost = self._pending.pop(0)
                log.error("too many unsettled delivery claims: %d events stay uncounted", len(lost.events))
        self._start_claimer()

    def _start_claimer(self) -> None:
        """Retry deferred claims in the background too, so the last batch before a quiet period
        is counted without waiting for the next write."""
        with self._lock:
            if self._claimer is not None:  # running: it sees the new claim before it stops
                return
            claimer = threading.Thread(target=self._claim_until_settled, name="heurmetrics-claims", daemon=True)
            try:
                claimer.start()
            except RuntimeError:  # interpreter shutdown (Python 3.12+): the next write or drain() retries
                return
            self._claimer = claimer

    def _claim_until_settled(self) -> None:
        delay = 0.5
        try:
            while True:
                time.sleep(delay)
                try:
                    self.retry()
                except Exception as exc:  # kept by retry(); logged here, tried again later
                    log.error("counting deferred deliveries failed: %s", exc)
                # Stop only under the lock claims are deferred under: a claim deferred meanwhile
                # either is seen here or finds no claimer and starts one.
                with self._lock:
                    if not self._pending:
                        self._claimer = None
                        return
                delay = min(delay * 2, 10.0)
        finally:
            with self._lock:  # whatever ended the loop, a later deferral starts a new claimer
                if self._claimer is threading.current_thread():
                    self._claimer = None

    def retry(self) -> None:
        """Settle claims that failed earlier (the database was unreachable right after a commit),
        oldest first, until one still fails; a claim being settled counts as pending meanwhile."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                claim = self._pending.pop(0)
                self._in_flight += 1
            try:
                settled = self._claim(claim)
            except Exception as exc:  # not an outage: kept all the same; never fails the caller's write
                log.error("counting delivery %s deferred: %s", claim.delivery_id, exc)
                settled = False
            if settled:
                with self._lock:
                    self._in_flight -= 1
                continue
            with self._lock:  # still not countable: keep it (first) for later
                self._in_flight -= 1
                self._pending.insert(0, claim)
            self._start_claimer()  # a claimer that saw no pending claim meanwhile may have stopped
            return

    def drain(self, timeout: float = 5.0) -> int:
        """Retry the deferred claims until none is left or ``timeout`` passed (a process that
        stops); returns the executions left uncounted, logged as an error."""
        deadline = time.monotonic() + timeout
        while len(self) and time.monotonic() < deadline:
            try:
                self.retry()
            except Exception as exc:
                log.error("counting deferred deliveries failed: %s", exc)
            if len(self):
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        with self._lock:
            left = sum(len(c.events) for c in self._pending)
            claims = len(self._pending) + self._in_flight
        if claims:
            log.error(
                "stopping with %d unsettled delivery claims: %d executions are stored but this process's counters "
                "miss them (only a re-send of their batches under the same delivery id would count them)",
                claims, left,
            )  # fmt: skip
        return left
