"""Server-side hardening: body limit, cardinality budget, store outage, rejection metrics, JSON logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from heurmetrics.config import Settings
from heurmetrics.metrics import definitions as d
from heurmetrics.server.app import create_app
from heurmetrics.server.logs import JsonLinesFormatter
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.conftest import POSTGRES_URL, _libpq
from tests.e2e_helpers import execution, samples, table_counts


def _client(url: str, **settings: object) -> TestClient:
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return TestClient(create_app(Settings(database_url=url, **settings)), raise_server_exceptions=False)  # type: ignore[arg-type]


def rejected(client: TestClient, reason: str) -> float:
    page = client.get("/metrics").text
    return sum(s.value for s in samples(page, d.REJECTED_REQUESTS) if s.labels.get(d.REASON) == reason)


def test_body_over_the_limit_is_413_before_parsing(sqlite_url: str) -> None:
    client = _client(sqlite_url, max_body_bytes=4096)
    assert client.post("/v1/rule-versions", json={"rule": "r", "version": "1"}).status_code == 201
    big = {"executions": [execution("r", "1") for _ in range(40)]}  # ~8 KB of valid JSON
    response = client.post("/v1/executions", json=big)
    assert response.status_code == 413 and "4096 bytes" in response.json()["detail"]
    assert response.json()["error"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while received
        body = json.dumps(big).encode()
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    chunked = client.post("/v1/executions", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert table_counts(sqlite_url)["heuristic_executions"] == 0
    assert rejected(client, "too_large") == 2


def test_cardinality_budget_answers_429_and_writes_nothing(sqlite_url: str) -> None:
    client = _client(sqlite_url, max_rule_versions=2)
    for version in ("1", "2", "3"):  # registering stays possible: a version is an audit fact
        assert client.post("/v1/rule-versions", json={"rule": "r", "version": version}).status_code == 201
    ok = client.post("/v1/executions", json={"executions": [execution("r", "1"), execution("r", "2")]})
    assert ok.status_code == 202
    over = client.post("/v1/executions", json={"executions": [execution("r", "3")]})
    assert over.status_code == 429 and "HEURMETRICS_MAX_RULE_VERSIONS" in over.json()["detail"]
    assert "r@3" in over.json()["detail"] and over.headers["retry-after"]
    assert over.json()["error"] == "over_budget"
    assert table_counts(sqlite_url)["heuristic_executions"] == 2
    assert rejected(client, "over_budget") == 1
    page = client.get("/metrics").text
    versions = {s.labels[d.RULE_VERSION] for s in samples(page, d.HEURISTIC_EXECUTIONS)}
    assert versions == {"1", "2"}


def test_rejections_are_counted_by_reason_and_logged_structured(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(sqlite_url, api_token="s3cret")
    with caplog.at_level(logging.INFO, logger="heurmetrics.server"):
        assert client.post("/v1/rule-versions", json={"rule": "r", "version": "1"}).status_code == 401
        bad = client.post(
            "/v1/rule-versions", json={"rule": "r", "version": 1}, headers={"Authorization": "Bearer s3cret"}
        )
        assert bad.status_code == 422
    assert rejected(client, "unauthorized") == 1 and rejected(client, "invalid") == 1
    records = [r for r in caplog.records if getattr(r, "event", None) == "request_rejected"]
    assert [(r.status, r.reason) for r in records] == [(401, "unauthorized"), (422, "invalid")]  # type: ignore[attr-defined]
    line = json.loads(JsonLinesFormatter().format(records[1]))
    assert line["reason"] == "invalid" and line["path"] == "/v1/rule-versions" and line["level"] == "info"
    assert "s3cret" not in caplog.text


def test_store_outage_is_503_with_retry_after_then_recovers(postgres_url: str) -> None:
    client = _client(postgres_url)
    assert client.post("/v1/rule-versions", json={"rule": "r", "version": "1"}).status_code == 201
    name = make_url(postgres_url).database
    admin = psycopg.connect(_libpq(POSTGRES_URL), autocommit=True)
    try:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        down = client.post("/v1/executions", json={"executions": [execution("r", "1")]})
        assert down.status_code == 503 and down.headers["retry-after"].isdigit()
        assert down.json()["error"] == "unavailable" and "re-send" in down.json()["detail"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
    finally:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        admin.close()
    up = client.post("/v1/executions", json={"executions": [execution("r", "1")]})
    assert up.status_code == 202 and up.json()["accepted"] == 1
    assert client.get("/readyz").status_code == 200
    assert rejected(client, "unavailable") == 1


def test_a_refused_batch_gives_no_version_its_series(sqlite_url: str) -> None:
    """Series (and a place in the cardinality budget) only for versions of a batch that is written:
    a batch refused for one bad item admits none of the versions it names, on either decode path."""
    from heurmetrics.store.sql_store import SqlStore

    client = _client(sqlite_url, max_rule_versions=5)
    store = SqlStore.open(sqlite_url)  # registered by another process: this exporter never saw them
    try:
        for version in ("1", "2"):
            store.register_rule_version("r", version, params={}, source="", created_by="t")
    finally:
        store.close()
    bad_value = {**execution("r", "2"), "duration_seconds": -1.0}  # refused by the builder
    bad_field = {**execution("r", "2"), "outcome": "not a label value!"}  # refused by the request model
    for bad in (bad_value, bad_field):
        response = client.post("/v1/executions", json={"executions": [execution("r", "1"), bad]})
        assert response.status_code == 422, response.text
    page = client.get("/metrics").text
    assert not {s.labels[d.RULE_VERSION] for s in samples(page, d.HEURISTIC_EXECUTIONS)}
    assert client.post("/v1/executions", json={"executions": [execution("r", "1")]}).status_code == 202
    page = client.get("/metrics").text
    assert {s.labels[d.RULE_VERSION] for s in samples(page, d.HEURISTIC_EXECUTIONS)} == {"1"}
