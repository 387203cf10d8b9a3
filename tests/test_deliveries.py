"""Exactly-once counting through delivery records, on SQLite and PostgreSQL (fast, in-process).

The lost answer to a COMMIT is injected at the store boundary: the real write commits, then the
caller is told it failed (what a dropped connection does). ``tests/test_faults_proxy.py`` does the
same through a real TCP proxy; these tests add the replica cases (two exporters, one database).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from heurmetrics.config import Settings
from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.errors import StoreUnavailable
from heurmetrics.idempotency import IDEMPOTENCY_HEADER
from heurmetrics.ingest import Ingest
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.server.app import create_app
from heurmetrics.store import deliveries
from heurmetrics.store.sql_store import SqlStore


def events(rv: RuleVersion, n: int) -> list[ExecutionEvent]:
    return [Ingest.make_execution(rv, duration_seconds=0.001, outcome="bullish") for _ in range(n)]


def counted(registry: CollectorRegistry) -> float:
    return sum(
        s.value for f in registry.collect() for s in f.samples if s.name == d.HEURISTIC_EXECUTIONS.sample_name
    )


class Replica:
    """An Ingest with its own registry (one exporter process) on a shared store."""

    def __init__(self, store: SqlStore) -> None:
        self.registry = CollectorRegistry()
        self.ingest = Ingest(store, PipelineMetrics(self.registry))
        self.lose_next_commit_answer = False
        real = store.insert_executions

        def insert(batch: Any, **kwargs: Any) -> Any:
            inserted = real(batch, **kwargs)
            if self.lose_next_commit_answer:  # committed; the answer never arrives
                self.lose_next_commit_answer = False
                raise StoreUnavailable("server closed the connection unexpectedly")
            return inserted

        self.ingest.store = _StoreView(store, insert)
        self.ingest.claims.store = self.ingest.store  # type: ignore[assignment]  # claims see the faults too

    @property
    def counted(self) -> float:
        return counted(self.registry)


class _StoreView:
    """The shared store with this replica's own (fault-injecting) insert."""

    def __init__(self, store: SqlStore, insert: Any) -> None:
        self._store = store
        self.insert_executions = insert

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def rv(store: SqlStore) -> RuleVersion:
    return store.register_rule_version("deliveries", "1", params={}, source="", created_by="t")[0]


def test_records_are_claimed_once_and_a_claim_is_idempotent_for_its_token(store: SqlStore, rv: RuleVersion) -> None:
    batch = events(rv, 10)
    key = uuid.uuid4()
    stamp = deliveries.stamp(key, [e.event_id for e in batch])
    assert len(store.insert_executions(batch, delivery=stamp)) == 10
    token = uuid.uuid4()
    first = store.claim_delivery(key, token)
    assert len(first) == 1 and first[0].event_ids is None and first[0].digest == stamp.digest
    assert store.claim_delivery(key, uuid.uuid4()) == []  # claimed by the first token only
    assert store.claim_delivery(key, token) == first  # the same token gets the same records again
    assert store.insert_executions(batch, delivery=stamp) == set()  # a re-send records nothing new
    assert store.claim_delivery(key, uuid.uuid4()) == []
    # A batch that was partly stored records exactly the ids it inserted.
    more = events(rv, 3)
    partial = batch[:2] + more
    key2 = uuid.uuid4()
    store.insert_executions(partial, delivery=deliveries.stamp(key2, [e.event_id for e in partial]))
    (record,) = store.claim_delivery(key2, uuid.uuid4())
    assert record.event_ids == {e.event_id for e in more}


def test_a_lost_commit_answer_is_counted_by_the_resend_on_any_replica(store: SqlStore, rv: RuleVersion) -> None:
    one, two = Replica(store), Replica(store)
    batch = events(rv, 10)
    key = uuid.uuid4()
    one.lose_next_commit_answer = True
    with pytest.raises(StoreUnavailable):
        one.ingest.write_executions(batch, delivery_id=key)
    assert one.counted == 0  # it could not know the rows were stored
    result = two.ingest.write_executions(batch, delivery_id=key)  # the client re-sends elsewhere
    assert result.accepted == 0 and result.duplicates == 10
    assert two.counted == 10
    one.ingest.write_executions(batch, delivery_id=key)  # and once more: counted by nobody again
    assert one.counted + two.counted == 10 == store.count_executions()


def test_a_resend_after_a_counted_batch_counts_nothing(store: SqlStore, rv: RuleVersion) -> None:
    one, two = Replica(store), Replica(store)
    batch = events(rv, 10)
    key = uuid.uuid4()
    one.ingest.write_executions(batch, delivery_id=key)  # stored and counted; the HTTP answer was lost
    two.ingest.write_executions(batch, delivery_id=key)
    assert (one.counted, two.counted) == (10, 0)


def test_a_lost_claim_answer_is_settled_with_the_same_token(store: SqlStore, rv: RuleVersion) -> None:
    replica = Replica(store)
    real_claim = store.claim_delivery
    lost = {"n": 1}

    def claim(delivery_id: uuid.UUID, token: uuid.UUID) -> Any:
        records = real_claim(delivery_id, token)
        if lost["n"]:  # the claim committed; its answer never arrives
            lost["n"] -= 1
            raise StoreUnavailable("server closed the connection unexpectedly")
        return records

    replica.ingest.store.claim_delivery = claim  # type: ignore[union-attr]
    first, second = events(rv, 10), events(rv, 5)
    replica.ingest.write_executions(first)  # stored; counting deferred (the claim's answer was lost)
    replica.ingest.write_executions(second)  # settles the deferred claim (or the background retry did)
    assert replica.counted == 15 == store.count_executions()


def _claims_failing(replica: Replica, store: SqlStore, error: Exception) -> dict[str, int]:
    """Make the replica's delivery claims raise ``error`` while ``left`` > 0 (each failure counts it down)."""
    real_claim = store.claim_delivery
    failures = {"left": 0}

    def claim(delivery_id: uuid.UUID, token: uuid.UUID) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise error
        return real_claim(delivery_id, token)

    replica.ingest.store.claim_delivery = claim  # type: ignore[union-attr]
    return failures


def test_closing_drains_deferred_claims_and_names_what_stays_uncounted(
    store: SqlStore, rv: RuleVersion, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim deferred by an outage is counted on close when the database answers again; while it
    cannot be, close gives up after its timeout and logs how many stored executions stay uncounted."""
    replica = Replica(store)
    down = _claims_failing(replica, store, StoreUnavailable("database is down"))
    down["left"] = 10**9
    replica.ingest.write_executions(events(rv, 7))  # committed; the count waits for the claim
    assert replica.counted == 0 and len(replica.ingest.claims) == 1
    with caplog.at_level("ERROR", logger="heurmetrics.ingest"):
        replica.ingest.close(timeout=0.2)  # still down: nothing counted, the loss named
    assert replica.counted == 0
    assert "7 executions are stored but this process's counters miss them" in caplog.text
    down["left"] = 0
    replica.ingest.close(timeout=5)  # back: counted before the process stops
    assert replica.counted == 7 == store.count_executions() and len(replica.ingest.claims) == 0


def test_a_claim_deferred_after_the_claimer_stopped_starts_it_again(store: SqlStore, rv: RuleVersion) -> None:
    import time

    replica = Replica(store)
    failures = _claims_failing(replica, store, StoreUnavailable("database is down"))
    claims = replica.ingest.claims
    for n in (3, 4):  # each batch's claim fails once; the background claimer settles it, then stops
        failures["left"] = 1
        replica.ingest.write_executions(events(rv, n))
        deadline = time.monotonic() + 10
        while (len(claims) or claims._claimer is not None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(claims) == 0 and claims._claimer is None
    assert replica.counted == 7 == store.count_executions()


def test_a_claim_failing_with_another_error_is_kept_and_the_claimer_survives(store: SqlStore, rv: RuleVersion) -> None:
    """Not an outage but some other database error (e.g. a read-only standby after a failover):
    the write's answer stands, the claim is kept and retried, and the claimer keeps running."""
    import time

    from heurmetrics.errors import StoreError

    replica = Replica(store)
    failures = _claims_failing(replica, store, StoreError("cannot execute UPDATE in a read-only transaction"))
    failures["left"] = 2
    result = replica.ingest.write_executions(events(rv, 6))
    assert result.accepted == 6 and replica.counted == 0
    deadline = time.monotonic() + 15
    while replica.counted < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replica.counted == 6 == store.count_executions() and len(replica.ingest.claims) == 0


def test_a_deferred_claim_that_keeps_failing_never_fails_the_next_write(store: SqlStore, rv: RuleVersion) -> None:
    """The next write retries the deferred claim first; its error is logged and the claim kept,
    the write itself goes through."""
    from heurmetrics.errors import StoreError

    replica = Replica(store)
    failures = _claims_failing(replica, store, StoreError("canceling statement due to user request"))
    failures["left"] = 2  # the first write's claim, then the second write's retry of it
    replica.ingest.write_executions(events(rv, 3))
    second = replica.ingest.write_executions(events(rv, 4))
    assert second.accepted == 4 and store.count_executions() == 7
    replica.ingest.close(timeout=10)
    assert replica.counted == 7 and len(replica.ingest.claims) == 0


def test_the_idempotency_key_header_is_validated(migrated_url: str) -> None:
    with TestClient(create_app(Settings(database_url=migrated_url, performance_snapshot_seconds=0))) as client:
        client.post("/v1/rule-versions", json={"rule": "keyed", "version": "1"})
        item = {"event_id": str(uuid.uuid4()), "rule": "keyed", "rule_version": "1", "duration_seconds": 0.1}
        bad = client.post("/v1/executions", json={"executions": [item]}, headers={IDEMPOTENCY_HEADER: "k" * 256})
        assert bad.status_code == 422 and IDEMPOTENCY_HEADER in bad.text
        for _ in range(2):  # any printable key up to 255 characters; the re-send counts nothing
            ok = client.post("/v1/executions", json={"executions": [item]}, headers={IDEMPOTENCY_HEADER: "batch-1"})
            assert ok.status_code == 202
        page = client.get("/metrics").text
        assert sum(
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith(d.HEURISTIC_EXECUTIONS.sample_name + "{")
        ) == 1
