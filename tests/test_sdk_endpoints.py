"""``ExporterClient`` with several exporter replicas: batches spread, a replica that is down is
skipped at once, nothing is lost or sent twice into the store.

The replicas here are scripted exporters behind ``httpx.MockTransport`` (one per host); the
end-to-end test with two real ``serve`` processes on one PostgreSQL database is
``tests/test_e2e_replicas.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from heurmetrics.sdk.endpoints import EndpointPool, endpoint_urls
from heurmetrics.sdk.http_client import ExporterClient
from tests.test_spool import ScriptedExporter

URLS = ("http://replica-a.test", "http://replica-b.test")


def two_replicas() -> tuple[dict[str, ScriptedExporter], httpx.MockTransport]:
    replicas = {"replica-a.test": ScriptedExporter(), "replica-b.test": ScriptedExporter()}
    return replicas, httpx.MockTransport(lambda request: replicas[request.url.host](request))


def test_batches_spread_over_every_replica_and_each_event_is_stored_once() -> None:
    replicas, transport = two_replicas()
    with ExporterClient(list(URLS), transport=transport, batch_size=10, flush_interval=3600) as client:
        ids = set()
        for _ in range(10):
            ids |= {str(client.record_execution("r", "1", duration_seconds=0.01)) for _ in range(10)}
            assert client.flush(timeout=10).complete
    a, b = replicas.values()
    assert a.requests == 5 and b.requests == 5  # round robin
    assert set(a.stored) | set(b.stored) == ids and not set(a.stored) & set(b.stored)


def test_a_replica_that_is_down_is_skipped_and_nothing_is_lost() -> None:
    replicas, transport = two_replicas()
    a, b = replicas.values()
    a.down = True
    with ExporterClient(list(URLS), transport=transport, batch_size=10, flush_interval=3600) as client:
        ids = set()
        for _ in range(6):
            ids |= {str(client.record_execution("r", "1", duration_seconds=0.01)) for _ in range(10)}
            result = client.flush(timeout=10)
            assert result.complete and result.dropped == 0
        # Failing over is not retrying: no delivery attempt failed, no backoff was waited.
        assert client.registry.get_sample_value("heurmetrics_retries_total") == 0
        a.down = False
        rv = client.register_rule_version("r", "2")  # registration goes through the pool too
        assert rv.created
    assert set(b.stored) == ids and a.stored == {}


def test_a_503_from_one_replica_goes_to_the_next_and_all_down_is_an_ordinary_outage() -> None:
    replicas, transport = two_replicas()
    a, b = replicas.values()
    a.script = [503] * 100
    pool = EndpointPool(URLS, transport=transport, cooldown=0)
    body = {"executions": []}
    try:
        assert {pool.post("/v1/executions", json=body).status_code for _ in range(4)} == {202}
        b.down = True
        assert pool.post("/v1/executions", json=body).status_code == 503  # the last answer there was
        a.down = True
        with pytest.raises(httpx.ConnectError):
            pool.post("/v1/executions", json=body)
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ([], "at least one exporter URL"),
        (["http://a:9464", "ftp://b"], r"base_url\[1\]: 'ftp://b' is not an http\(s\) URL"),
        (["http://a:9464", "http://a:9464/"], r"base_url\[1\]: 'http://a:9464/' is listed twice"),
        ([b"http://a:9464"], r"base_url\[0\]: expected a URL string, got bytes"),
    ],
)
def test_bad_url_lists_are_refused_with_the_entry_named(urls: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        endpoint_urls(urls)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        ExporterClient(urls)  # type: ignore[arg-type]


def test_one_url_keeps_its_identity() -> None:
    assert endpoint_urls("http://a:9464/") == ("http://a:9464",)
    with ExporterClient("http://a:9464/") as client:
        assert client.base_url == "http://a:9464" and client.base_urls == ("http://a:9464",)


def test_a_callers_id_without_a_start_time_is_sent_without_one() -> None:
    """The server then gives every receipt of that id its first start time (docs/storage.md), so
    the caller's own retries of ``record_execution(event_id=…)`` stay one row."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return httpx.Response(202, json={"accepted": len(body["executions"]), "duplicates": 0})

    own = uuid.uuid4()
    with ExporterClient(URLS[0], transport=httpx.MockTransport(handler), flush_interval=3600) as client:
        client.record_execution("r", "1", duration_seconds=0.1, event_id=own)
        client.record_execution("r", "1", duration_seconds=0.1)
        client.record_execution("r", "1", duration_seconds=0.1, event_id=uuid.uuid4(), started_at=1.7e9)
        assert client.flush(timeout=10).complete
    items = [item for body in bodies for item in body["executions"]]
    assert [("started_at" in item) for item in items] == [False, True, True]
    assert items[0]["event_id"] == str(own)


def test_no_replica_is_tried_past_the_callers_deadline() -> None:
    tried: list[str] = []
    timeouts: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        timeouts.append(request.extensions["timeout"]["read"])
        raise httpx.ConnectError("refused", request=request)

    pool = EndpointPool(URLS, transport=httpx.MockTransport(refuse), timeout=30.0, cooldown=0)
    with pytest.raises(httpx.ConnectError):
        pool.post("/v1/rule-versions", json={}, deadline=time.monotonic() - 1)
    assert len(tried) == 1 and timeouts == [0.1]  # one attempt, bounded by the (past) deadline
    with pytest.raises(httpx.ConnectError):
        pool.post("/v1/rule-versions", json={}, deadline=time.monotonic() + 5)
    assert len(tried) == 3 and all(t <= 5 for t in timeouts[1:])  # both replicas, each within 5 s
