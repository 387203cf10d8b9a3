"""The SDK's local spool, delivery loop and HTTP client, without a real outage (fast; see test_faults.py).

The spool file format, torn-record handling, bounds and locking; the delivery loop's retry,
spool-and-replay, full-queue policies and FlushResult against a scripted sink; a Recorder on
SQLite whose store writes are made to fail for a while.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from heurmetrics import InvalidEvent, Recorder, StoreUnavailable, VersionConflict
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk import spool as spool_mod
from heurmetrics.sdk.delivery import DeliveryLoop, DeliveryMetrics, Rejected, RetryLater
from heurmetrics.sdk.http_client import ExporterClient, retry_after_seconds
from heurmetrics.sdk.spool import Spool, SpoolFull, SpoolLocked, SpoolMismatch
from heurmetrics.sdk.writer import VersionCache


def payload(i: int) -> bytes:
    return json.dumps({"i": i}).encode()


def drain(sp: Spool, max_events: int | None = None) -> list[int]:
    out = []
    while True:
        records = sp.peek(max_events)
        if not records:
            return out
        out.extend(json.loads(r.payload)["i"] for r in records)
        sp.ack(records)


# --- the spool ---------------------------------------------------------------------------------
def test_records_come_back_in_order_across_segments_and_files_go_away(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=10_000_000, segment_bytes=200) as sp:
        for i in range(50):
            sp.append(payload(i), 2)
        assert sp.events == 100
        assert len(list(tmp_path.glob("seg-*.hms"))) > 5  # rotated
        assert spool_mod.scan(tmp_path) == (50, 100, 0)
        assert drain(sp, max_events=7) == list(range(50))
        assert sp.events == 0 and sp.size_bytes == 0
        assert not list(tmp_path.glob("seg-*.hms"))
        sp.append(payload(99), 1)  # usable again after draining
        assert drain(sp) == [99]


def test_a_new_owner_replays_what_the_previous_one_left(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=300) as sp:
        for i in range(20):
            sp.append(payload(i), 1)
        sp.ack(sp.peek(5))  # 5 records delivered before the "crash"
    with Spool(tmp_path) as sp:  # same process, new owner: the unacknowledged tail of the segment is replayed
        got = drain(sp)
    assert got[-15:] == list(range(5, 20))
    assert set(got) <= set(range(20))  # records before the ack point of a live segment may come again


@pytest.mark.parametrize("cut", [1, 5, 11, 13])
def test_a_torn_last_record_is_detected_and_skipped(tmp_path: Path, cut: int) -> None:
    with Spool(tmp_path) as sp:
        for i in range(3):
            sp.append(payload(i), 1)
    [segment] = tmp_path.glob("seg-*.hms")
    data = segment.read_bytes()
    segment.write_bytes(data[:-cut])  # a crash in the middle of the last write
    assert spool_mod.scan(tmp_path) == (2, 2, 1)
    with Spool(tmp_path) as sp:
        assert sp.torn_segments == 1 and sp.events == 2
        sp.append(payload(3), 1)  # appends go to a fresh segment, never after the torn tail
        assert drain(sp) == [0, 1, 3]


def test_corruption_and_zero_fill_stop_the_segment_not_the_spool(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=50) as sp:  # two records per segment
        for i in range(6):
            sp.append(payload(i), 1)
    segments = sorted(tmp_path.glob("seg-*.hms"))
    assert len(segments) >= 3
    first = bytearray(segments[0].read_bytes())
    first[-2] ^= 0xFF  # bit rot in the last record of the first segment
    segments[0].write_bytes(bytes(first))
    segments[-1].write_bytes(segments[-1].read_bytes() + b"\0" * 64)  # zero-filled tail after power loss
    with Spool(tmp_path) as sp:
        got = drain(sp)
    assert got == sorted(got) and 0 in got and 5 in got
    assert len(got) == 5  # exactly the corrupt record is lost, loudly


def test_full_spool_refuses_and_keeps_nothing_of_the_refused_record(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=200) as sp:
        sp.append(b"x" * 100, 1)
        with pytest.raises(SpoolFull):
            sp.append(b"y" * 100, 1)
        assert sp.events == 1 and sp.size_bytes <= 200
        drain_records = sp.peek()
        assert [r.payload for r in drain_records] == [b"x" * 100]


def test_one_owner_at_a_time_and_bound_to_one_identity(tmp_path: Path) -> None:
    with Spool(tmp_path, identity="db-a"), pytest.raises(SpoolLocked):
        Spool(tmp_path, identity="db-a")
    with pytest.raises(SpoolMismatch):
        Spool(tmp_path, identity="db-b")
    Spool(tmp_path, identity="db-a").close()


def test_state_documents_are_replaced_atomically(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        assert sp.load_state("versions") is None
        sp.save_state("versions", {"a": 1})
        sp.save_state("versions", {"a": 2})
        assert sp.load_state("versions") == {"a": 2}
        assert not list(tmp_path.glob("*.tmp"))


# --- the delivery loop against a scripted sink --------------------------------------------------
class FlakySink:
    """Fails while ``down``; records what it received (like a store keyed by id)."""

    def __init__(self) -> None:
        self.down = False
        self.got: list[int] = []
        self.seen: set[int] = set()
        self.attempts = 0
        self.times: list[float] = []
        self.retry_after: float | None = None
        self.deliveries: list[uuid.UUID] = []

    def deliver(self, batch: list[int], delivery_id: uuid.UUID) -> int:
        self.attempts += 1
        self.deliveries.append(delivery_id)
        self.times.append(time.monotonic())
        if self.retry_after is not None:
            delay, self.retry_after = self.retry_after, None
            raise RetryLater("slow down", delay)
        if self.down:
            raise ConnectionError("target down")
        refused = [i for i in batch if i < 0]
        if refused and len(refused) == len(batch):
            raise Rejected("all negative")
        for i in batch:
            if i >= 0 and i not in self.seen:
                self.seen.add(i)
                self.got.append(i)
        return len(refused)

    def encode(self, batch: list[int]) -> bytes:
        return json.dumps(batch).encode()

    def decode(self, data: bytes) -> list[int]:
        return list(json.loads(data))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def loop_for(sink: FlakySink, registry: CollectorRegistry, **kwargs: Any) -> DeliveryLoop[int]:
    options: dict[str, Any] = {"batch_size": 100, "max_backoff": 0.2, "spool_after": 0.2, **kwargs}
    return DeliveryLoop(sink, DeliveryMetrics.create(registry), **options)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_outage_goes_to_the_spool_and_is_replayed_in_order(tmp_path: Path, registry: CollectorRegistry) -> None:
    sink = FlakySink()
    loop = loop_for(sink, registry, spool=Spool(tmp_path))
    try:
        for i in range(500):
            loop.put(i)
        assert loop.flush(10).complete
        sink.down = True
        for i in range(500, 2000):
            loop.put(i)
        during = loop.flush(10)
        assert during.durable and not during.complete and during.spooled == 1500
        assert "target down" in (during.last_error or "")
        assert value(registry, d.SPOOL_EVENTS.name) == 1500
        assert value(registry, d.SPOOL_BYTES.name) > 0
        assert value(registry, d.DELIVERY_RETRIES.sample_name) >= 1
        sink.down = False
        for i in range(2000, 2500):
            loop.put(i)
        after = loop.flush(20)
        assert after.complete, after
        assert sink.got == list(range(2500))
        assert value(registry, d.SPOOL_EVENTS.name) == 0
    finally:
        loop.close(5)


def test_close_spools_what_is_in_memory_and_the_next_owner_replays_it(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    sink = FlakySink()
    sink.down = True
    loop = loop_for(sink, registry, spool=Spool(tmp_path), spool_after=30.0)
    for i in range(300):
        loop.put(i)
    closed = loop.close(timeout=0.3)
    assert closed.pending == 0 and closed.spooled == 300
    sink2 = FlakySink()
    loop2 = loop_for(sink2, CollectorRegistry(), spool=Spool(tmp_path))
    try:
        assert loop2.flush(10).complete
        assert sink2.got == list(range(300))
    finally:
        loop2.close(5)


def test_without_a_spool_close_reports_what_is_lost(registry: CollectorRegistry) -> None:
    sink = FlakySink()
    sink.down = True
    loop = loop_for(sink, registry)
    for i in range(10):
        loop.put(i)
    result = loop.flush(0.3)
    assert result.pending == 10 and not result.durable and "target down" in (result.last_error or "")
    closed = loop.close(0.1)
    assert closed.pending == 10


def test_retry_after_is_honoured_and_the_batch_kept(registry: CollectorRegistry) -> None:
    sink = FlakySink()
    sink.retry_after = 0.3
    loop = loop_for(sink, registry)
    try:
        for i in range(5):
            loop.put(i)
        assert loop.flush(10).complete  # a waiting flush() does not cut the Retry-After short
        assert sink.attempts == 2 and sink.got == list(range(5))
        assert sink.times[1] - sink.times[0] >= 0.3
    finally:
        loop.close(5)


def test_refused_batches_are_dropped_loudly_not_retried_forever(registry: CollectorRegistry) -> None:
    sink = FlakySink()
    loop = loop_for(sink, registry, batch_size=3)
    try:
        for i in (-1, -2, -3, 4, -5, 6):
            loop.put(i)
        result = loop.flush(10)
        assert result.complete and result.dropped == 4
        assert sink.got == [4, 6]
        assert value(registry, d.DROPPED_EVENTS.sample_name, reason="rejected") == 4
    finally:
        loop.close(5)


def test_drop_policy_counts_every_dropped_event(registry: CollectorRegistry) -> None:
    sink = FlakySink()
    sink.down = True
    loop = loop_for(sink, registry, max_queue=50, full_policy="drop", batch_size=10)
    try:
        accepted = sum(loop.put(i) for i in range(1000))
        result = loop.result()
        assert accepted + result.dropped == 1000 and result.dropped > 0
        assert value(registry, d.DROPPED_EVENTS.sample_name, reason="queue_full") == result.dropped
    finally:
        loop.close(0.1)


def test_block_policy_waits_for_room_then_drops_for_at_most_the_timeout(registry: CollectorRegistry) -> None:
    sink = FlakySink()
    sink.down = True
    loop = loop_for(sink, registry, max_queue=5, batch_size=5, block_timeout=0.3)
    try:
        for i in range(5):
            assert loop.put(i)
        time.sleep(0.1)  # the writer took the first batch and keeps retrying it
        for i in range(5, 10):
            assert loop.put(i)
        started = time.monotonic()
        assert not loop.put(10)  # full: blocks for the timeout, then drops
        assert not loop.put(11)  # still the same full episode: drops at once
        assert time.monotonic() - started >= 0.3  # (a lower bound only: sleeps never end early)
        sink.down = False
        result = loop.flush(10)
        assert result.complete and result.dropped == 2
        assert sink.got == list(range(10))
        assert value(registry, d.DROPPED_EVENTS.sample_name, reason="queue_full") == 2
    finally:
        loop.close(5)


def test_a_full_spool_holds_the_batch_and_drops_with_reason_spool_full(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    sink = FlakySink()
    sink.down = True
    loop = loop_for(sink, registry, spool=Spool(tmp_path, max_bytes=400), max_queue=20, batch_size=10,
                    full_policy="drop", spool_after=0.05)
    try:
        for i in range(2000):
            loop.put(i)
            if i % 20 == 0:
                time.sleep(0.005)
        result = loop.flush(1)
        assert result.dropped > 0 and result.spooled > 0
        assert value(registry, d.DROPPED_EVENTS.sample_name, reason="spool_full") > 0
        sink.down = False
        final = loop.flush(20)
        assert final.complete
        assert len(sink.got) == 2000 - final.dropped
        assert sink.got == sorted(sink.got)  # order kept through memory, spool and replay
    finally:
        loop.close(5)


# --- the Recorder with a store that fails for a while (SQLite) ------------------------------------
@pytest.fixture
def failing_recorder(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Recorder, dict[str, bool]]]:
    rec = Recorder(sqlite_url, spool_dir=tmp_path / "spool", spool_after=0.1)
    state = {"down": False}
    real = rec.ingest.write_executions

    def write(events: Any, **kwargs: Any) -> Any:
        if state["down"]:
            raise StoreUnavailable("simulated outage")
        return real(events, **kwargs)

    rec.ingest.write_executions = write  # type: ignore[method-assign]
    yield rec, state
    rec.close(5)


def test_recorder_spools_during_an_outage_and_counts_equal_rows_after(
    failing_recorder: tuple[Recorder, dict[str, bool]],
) -> None:
    rec, state = failing_recorder
    rv = rec.register_rule_version("spooled", "1.0.0")
    ids = [rec.record_execution(rv, duration_seconds=0.001, outcome="bullish") for _ in range(1000)]
    assert rec.flush(10).complete
    state["down"] = True
    ids += [rec.record_execution(rv, duration_seconds=0.001, outcome="bearish") for _ in range(2000)]
    mine = uuid.uuid4()
    ids += [rec.record_execution(rv, duration_seconds=0.001, event_id=mine) for _ in range(3)]  # retried by hand
    during = rec.flush(10)
    assert during.durable and during.spooled == 2003 and not during.complete
    state["down"] = False
    after = rec.flush(30)
    assert after.complete, after
    assert rec.store.count_executions() == 3001
    counted = sum(
        s.value for f in rec.registry.collect() for s in f.samples if s.name == d.HEURISTIC_EXECUTIONS.sample_name
    )
    assert counted == 3001


def test_recorder_without_database_starts_from_its_spool_cache(sqlite_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    with Recorder(sqlite_url, spool_dir=spool_dir) as rec:
        rv = rec.register_rule_version("cached", "1.0.0", params={"w": 1}, source="s")
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    with pytest.raises(StoreUnavailable):
        Recorder(unreachable)  # no spool: fail fast
    other = tmp_path / "other-spool"
    with Recorder(unreachable, spool_dir=other) as offline:
        with pytest.raises(StoreUnavailable):
            offline.register_rule_version("cached", "1.0.0", params={"w": 1}, source="s")  # never registered here
        offline.record_execution(  # a RuleVersion object from elsewhere is still recorded (spooled)
            rv, duration_seconds=0.01
        )
        result = offline.close(timeout=3)
    assert result.durable and result.spooled == 1
    # The spool of the SQLite recorder cached its version (what a restart during an outage answers from).
    with Spool(spool_dir) as sp:
        cache = VersionCache(sp)
        cached = cache.lookup("cached", "1.0.0", {"w": 1}, "s")
        assert cached is not None and cached.id == rv.id and cached.content_hash == rv.content_hash
        assert cache.lookup("cached", "1.0.0", {"w": 2}, "s") is None  # other content: never a guess


# --- the HTTP client against a scripted exporter (httpx.MockTransport) -------------------------------
class ScriptedExporter:
    """Answers POST /v1/executions from a script of statuses; stores accepted items by event id."""

    def __init__(self, *script: int) -> None:
        self.script = list(script)
        self.stored: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests += 1
        if request.url.path == "/v1/rule-versions":
            body = json.loads(request.content)
            if body.get("params") == {"conflict": True}:
                detail = f"rule version r@1 already exists with content hash {'a' * 64}"
                body = {"error": "version_conflict", "detail": detail, "existing_content_hash": "a" * 64}
                return httpx.Response(409, json=body)
            answer = {"rule": body["rule"], "version": body["version"], "content_hash": "b" * 64}
            return httpx.Response(201, json=answer)
        status = self.script.pop(0) if self.script else 202
        items = json.loads(request.content)["executions"]
        if status == 503:
            return httpx.Response(503, headers={"Retry-After": "0.2"}, json={"detail": "unavailable"})
        if status in (404, 422):  # the exporter answers an unknown rule version with 404
            detail = [{"field": "executions[1].rule_version", "message": "unknown"}]
            return httpx.Response(status, json={"detail": detail})
        for item in items:
            self.stored.setdefault(item["event_id"], item)
        return httpx.Response(202, json={"accepted": len(items), "duplicates": 0})


def http_client(exporter: ScriptedExporter, **kwargs: Any) -> ExporterClient:
    return ExporterClient("http://exporter.test", transport=httpx.MockTransport(exporter), max_backoff=0.2, **kwargs)


@pytest.mark.parametrize("refusal", [422, 404])
def test_http_client_honours_503_and_drops_only_the_item_a_422_names(refusal: int) -> None:
    exporter = ScriptedExporter(503, refusal)
    client = http_client(exporter)
    try:
        ids = [client.record_execution("r", "1", duration_seconds=0.01, outcome="bullish") for _ in range(3)]
        result = client.flush(timeout=10)
        assert result.complete and result.dropped == 1
        assert set(exporter.stored) == {str(ids[0]), str(ids[2])}  # item 1 refused, the others re-sent
        assert exporter.requests == 3
        assert client.registry.get_sample_value(d.DELIVERY_RETRIES.sample_name) == 1
        assert client.registry.get_sample_value(d.DROPPED_EVENTS.sample_name, {"reason": "rejected"}) == 1
        item = exporter.stored[str(ids[0])]
        assert item["started_at"].endswith("+00:00") and item["outcome"] == "bullish"
    finally:
        client.close(timeout=5)


def test_http_client_spools_while_the_exporter_is_unreachable(tmp_path: Path) -> None:
    exporter = ScriptedExporter()
    exporter.down = True
    client = http_client(exporter, spool_dir=tmp_path, spool_after=0.1, batch_size=50)
    try:
        ids = [client.record_execution("r", "1", duration_seconds=0.01) for _ in range(500)]
        during = client.flush(timeout=10)
        assert during.durable and during.spooled == 500
        exporter.down = False
        assert client.flush(timeout=10).complete
        assert list(exporter.stored) == [str(i) for i in ids]  # all, in order, once
    finally:
        client.close(timeout=5)


def test_http_client_registers_versions_and_reports_conflicts() -> None:
    client = http_client(ScriptedExporter())
    try:
        rv = client.register_rule_version("r", "1", params={"w": 1})
        assert rv.created and rv.key == "r@1"
        with pytest.raises(VersionConflict) as conflict:
            client.register_rule_version("r", "1", params={"conflict": True})
        assert conflict.value.existing_hash == "a" * 64
        with pytest.raises(InvalidEvent):
            client.record_execution("not a label!", "1", duration_seconds=0.1)
    finally:
        client.close(timeout=5)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "7"})) == 7
    later = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    assert (retry_after_seconds(later) or 0) > 1e6
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(503)) is None


def test_a_refusing_spool_does_not_stop_the_loop_from_trying_the_target(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    sink = FlakySink()
    sink.down = True
    spool = Spool(tmp_path)

    def refuse(payload: bytes, count: int) -> None:
        raise OSError(5, "short write")

    spool.append = refuse  # type: ignore[method-assign]  # the disk is full when the outage starts
    loop = loop_for(sink, registry, spool=spool, spool_after=0.05)
    try:
        for i in range(500):
            loop.put(i)
        during = loop.flush(0.5)
        assert during.pending == 500 and during.spooled == 0 and "short write" in (during.last_error or "")
        sink.down = False  # the target is back, the disk is still full
        after = loop.flush(10)
        assert after.complete, after
        assert sink.got == list(range(500))
        assert len(set(sink.deliveries)) == 5  # five batches, each with its own delivery id on every attempt
    finally:
        loop.close(5)


def test_a_batch_larger_than_the_whole_spool_and_never_sent_is_split_and_replayed(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    sink = FlakySink()
    sink.down = True
    loop = loop_for(sink, registry, spool=Spool(tmp_path, max_bytes=4096), batch_size=1000, spool_after=0.05)
    try:
        for i in range(10):  # tried, then spooled whole: the loop is in outage mode from now on
            loop.put(i)
        assert loop.flush(2).spooled == 10
        for i in range(10, 1010):  # ~5 KB as one record: more than the whole spool; never tried
            loop.put(i)
        during = loop.flush(2)
        assert during.spooled > 10  # a half of it went to the spool (the other half waits for room)
        sink.down = False
        assert loop.flush(10).complete
        assert sorted(sink.got) == list(range(1010))
    finally:
        loop.close(5)


def test_a_batch_sent_once_is_never_split_for_the_spool_so_its_rows_are_counted(
    migrated_url: str, tmp_path: Path
) -> None:
    """A batch whose first attempt committed but whose answer was lost, then too large for the
    spool, must reach the database whole under its delivery id: halves under derived ids insert
    nothing new, record nothing, and the first attempt's rows would never be counted."""
    with Recorder(
        migrated_url, spool_dir=tmp_path / "spool", spool_after=0.05, batch_size=4, spool_max_bytes=700
    ) as rec:
        rv = rec.register_rule_version("split", "1.0.0")
        store = rec.ingest.store
        real = store.insert_executions
        state = {"lose_answer": True, "down": False}

        def insert(batch: Any, **kwargs: Any) -> Any:
            if state["down"]:
                raise StoreUnavailable("simulated outage")
            inserted = real(batch, **kwargs)
            if state["lose_answer"]:  # committed; the answer never arrives, and the database goes away
                state["lose_answer"], state["down"] = False, True
                raise StoreUnavailable("server closed the connection unexpectedly")
            return inserted

        rec.ingest.store = _StoreView(store, insert)  # type: ignore[assignment]
        items = [
            {"duration_seconds": 0.001, "status": "error", "error_type": "E" * 120, "event_id": uuid.uuid4()}
            for _ in range(4)
        ]  # the callers' ids: counted once stored; 4 of them do not fit in a 700-byte spool
        rec.record_executions(rv, items)
        deadline = time.monotonic() + 10
        while state["lose_answer"] and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # past spool_after: the batch has given up on the target
        state["down"] = False
        assert rec.flush(30).complete
        assert store.count_executions() == 4
        counted = sum(
            s.value for f in rec.registry.collect() for s in f.samples if s.name == d.HEURISTIC_EXECUTIONS.sample_name
        )
        assert counted == 4


class _StoreView:
    """A store with its own (fault-injecting) insert; everything else is the real store's."""

    def __init__(self, store: Any, insert: Any) -> None:
        self._store = store
        self.insert_executions = insert

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
