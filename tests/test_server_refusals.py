"""Every refusal of every router: one structured body, counted once by reason, logged once.

Drives a refusal through each router of the exporter (rule versions, executions, backtests and
failed backtests, walk-forward, resolutions, audit reads and lifecycle writes, query parameters,
the bearer token, the body-size limit, unknown paths) and checks, for each one:

- the status and the body: ``{"error": <code>, "detail": …}`` valid against the documented
  ``ErrorOut`` (``ConflictOut`` for a 409);
- ``heurmetrics_rejected_requests_total`` moved by exactly one, under the expected reason, and no
  other reason moved;
- exactly one ``request_rejected`` log record.

Also: the refusal table only uses reasons defined in ``metrics/definitions.py``; a conflict carries
the stored content hash, which ``ExporterClient`` reads from the body (no text parsing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from heurmetrics.audit.errors import AuditError, LifecycleError, PolicyViolation
from heurmetrics.config import Settings
from heurmetrics.errors import (
    CardinalityBudgetExceeded,
    InvalidEvent,
    StoreUnavailable,
    UnknownRule,
    UnknownRuleVersion,
    VersionConflict,
)
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk.http_client import ExporterClient
from heurmetrics.server import errors
from heurmetrics.server.app import create_app
from heurmetrics.server.models import ConflictOut, ErrorOut
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.e2e_helpers import execution, ingested, samples

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EQUITY = {"timestamps": ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"], "values": [100.0, 101.0]}


def _fold(index: int, start_day: int) -> dict[str, Any]:
    day = f"2025-01-{start_day:02d}T00:00:00Z"
    later = f"2025-01-{start_day + 1:02d}T00:00:00Z"
    return {
        "fold_index": index,
        "in_sample_start": day,
        "in_sample_end": day,
        "out_of_sample_start": later,
        "out_of_sample_end": later,
        "out_of_sample_metrics": {"total_return": 0.01},
    }


def _walk_forward(**change: Any) -> dict[str, Any]:
    body = {"rule": "r", "rule_version": "1.0.0", "dataset": "d", "periods_per_year": 365, "equity": EQUITY}
    return {**body, "folds": [_fold(0, 1)], **change}


@dataclass
class Case:
    """One refused request and how it must be answered."""

    method: str
    path: str
    status: int
    code: str
    reason: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=lambda: dict(AUTH))
    content: bytes | None = None


CASES: dict[str, Case] = {
    # rule versions
    "rule-versions: invalid body": Case(
        "POST", "/v1/rule-versions", 422, "invalid", "invalid", {"rule": "r", "version": 1}
    ),
    "rule-versions: conflict": Case(
        "POST",
        "/v1/rule-versions",
        409,
        "version_conflict",
        "conflict",
        {"rule": "r", "version": "1.0.0", "source": "x"},
    ),
    # executions
    "executions: unknown rule version": Case(
        "POST", "/v1/executions", 404, "not_found", "invalid", {"executions": [execution("r", "9.9.9")]}
    ),
    "executions: invalid item": Case(
        "POST", "/v1/executions", 422, "invalid", "invalid", {"executions": [execution("r", "1.0.0", confidence=2)]}
    ),
    "executions: bad Idempotency-Key": Case(
        "POST",
        "/v1/executions",
        422,
        "invalid",
        "invalid",
        {"executions": [execution("r", "1.0.0")]},
        headers={**AUTH, "Idempotency-Key": "x" * 300},
    ),
    "executions: batch over its item limit": Case(
        "POST", "/v1/executions", 413, "too_large", "too_large", {"executions": [execution("r", "1.0.0")] * 3}
    ),
    "executions: not JSON": Case("POST", "/v1/executions", 422, "invalid", "invalid", content=b"{not json"),
    # backtests
    "backtests: unknown rule version": Case(
        "POST",
        "/v1/backtests",
        404,
        "not_found",
        "invalid",
        {"rule": "r", "rule_version": "9.9.9", "dataset": "d", "periods_per_year": 365, "equity": EQUITY},
    ),
    "backtests: values do not match timestamps": Case(
        "POST",
        "/v1/backtests",
        422,
        "invalid",
        "invalid",
        {
            "rule": "r",
            "rule_version": "1.0.0",
            "dataset": "d",
            "periods_per_year": 365,
            "equity": {**EQUITY, "values": [100.0]},
        },
    ),
    "backtests/failed: unknown rule version": Case(
        "POST",
        "/v1/backtests/failed",
        404,
        "not_found",
        "invalid",
        {"rule": "r", "rule_version": "9.9.9", "dataset": "d", "periods_per_year": 365, "error_message": "boom"},
    ),
    "backtests/failed: blank error message": Case(
        "POST",
        "/v1/backtests/failed",
        422,
        "invalid",
        "invalid",
        {"rule": "r", "rule_version": "1.0.0", "dataset": "d", "periods_per_year": 365, "error_message": " "},
    ),
    # walk-forward and resolutions
    "walk-forward: unknown rule version": Case(
        "POST", "/v1/walk-forward", 404, "not_found", "invalid", _walk_forward(rule_version="9.9.9")
    ),
    "walk-forward: folds out of order": Case(
        "POST", "/v1/walk-forward", 422, "invalid", "invalid", _walk_forward(folds=[_fold(0, 5), _fold(1, 1)])
    ),
    "resolutions: invalid item": Case(
        "POST", "/v1/resolutions", 422, "invalid", "invalid", {"resolutions": [{"horizon": "1h", "correct": True}]}
    ),
    "resolutions: batch over its item limit": Case(
        "POST",
        "/v1/resolutions",
        413,
        "too_large",
        "too_large",
        {"resolutions": [{"event_id": "6a1d1f3e-5b7a-4c1e-9d2f-3b4c5d6e7f80", "correct": True}] * 3},
    ),
    # audit reads and lifecycle writes
    "audit: unknown rule": Case("GET", "/v1/rules/nope/versions", 404, "not_found", "invalid"),
    "audit: unknown rule (history)": Case("GET", "/v1/rules/nope/history", 404, "not_found", "invalid"),
    "audit: unknown version": Case("GET", "/v1/rule-versions/r/9.9.9", 404, "not_found", "invalid"),
    "audit: self-approval": Case(
        "POST",
        "/v1/rule-versions/r/1.0.0/approve",
        409,
        "policy_violation",
        "conflict",
        {"actor": "alice", "reason": "x"},
    ),
    "audit: rollback of a version not active": Case(
        "POST",
        "/v1/rule-versions/r/1.0.0/rollback",
        409,
        "lifecycle_conflict",
        "conflict",
        {"actor": "bob", "reason": "x", "env": "live"},
    ),
    "audit: propose a conflicting version": Case(
        "POST",
        "/v1/rule-versions/r/1.0.0/propose",
        409,
        "version_conflict",
        "conflict",
        {"created_by": "alice", "source": "other"},
    ),
    "audit: invalid transition body": Case(
        "POST", "/v1/rule-versions/r/1.0.0/approve", 422, "invalid", "invalid", {"actor": "bob"}
    ),
    "audit: bad time in a read": Case(
        "GET", "/v1/rule-versions/r/1.0.0/executions?from=yesterday", 422, "invalid", "invalid"
    ),
    # the app around the routes
    "query: unknown parameter": Case("GET", "/v1/active?enviroment=live", 422, "invalid", "invalid"),
    "query: repeated parameter": Case("GET", "/v1/active?env=a&env=b", 422, "invalid", "invalid"),
    "token: missing": Case("POST", "/v1/rule-versions", 401, "unauthorized", "unauthorized", {}, headers={}),
    "token: wrong (audit read)": Case(
        "GET", "/v1/rules", 401, "unauthorized", "unauthorized", headers={"Authorization": "Bearer nope"}
    ),
    # The token is checked before the body or the query is read: anonymous and malformed is 401.
    "token: missing, malformed body": Case(
        "POST", "/v1/backtests", 401, "unauthorized", "unauthorized", content=b"{bad", headers={}
    ),
    "token: missing, unknown query parameter": Case(
        "GET", "/v1/active?enviroment=live", 401, "unauthorized", "unauthorized", headers={}
    ),
    "body over the size limit": Case("POST", "/v1/executions", 413, "too_large", "too_large", content=b" " * 5000),
    "unknown path": Case("GET", "/v1/nowhere", 404, "not_found", "invalid"),
    "method not allowed": Case("DELETE", "/v1/rule-versions", 405, "method_not_allowed", "invalid"),
}


def _migrated(url: str) -> str:
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def client(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """An exporter with a token, a small body limit and small batch limits, holding r@1.0.0 (by alice)."""
    from heurmetrics.server.routes import executions, resolutions

    monkeypatch.setattr(executions, "MAX_EXECUTIONS_PER_REQUEST", 2)
    monkeypatch.setattr(resolutions, "MAX_RESOLUTIONS_PER_REQUEST", 2)
    settings = Settings(database_url=_migrated(sqlite_url), api_token=TOKEN, max_body_bytes=4096)  # type: ignore[arg-type]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        body = {"rule": "r", "version": "1.0.0", "created_by": "alice"}
        assert client.post("/v1/rule-versions", json=body, headers=AUTH).status_code == 201
        yield client


def rejected(client: TestClient) -> dict[str, float]:
    page = client.get("/metrics").text
    counts = {reason: 0.0 for reason in d.REJECT_REASONS}
    for sample in samples(page, d.REJECTED_REQUESTS):
        counts[sample.labels[d.REASON]] += sample.value
    return counts


@pytest.mark.parametrize("name", list(CASES))
def test_every_refusal_is_structured_counted_once_and_logged_once(
    client: TestClient, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    case = CASES[name]
    before = rejected(client)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="heurmetrics.server"):
        response = client.request(case.method, case.path, json=case.json, content=case.content, headers=case.headers)
    assert response.status_code == case.status, response.text
    body = response.json()
    assert body["error"] == case.code, body
    assert body["detail"], body
    (ConflictOut if case.status == 409 else ErrorOut).model_validate(body)
    after = rejected(client)
    moved = {reason: after[reason] - before[reason] for reason in d.REJECT_REASONS}
    assert moved == {reason: float(reason == case.reason) for reason in d.REJECT_REASONS}, moved
    logged = [r for r in caplog.records if getattr(r, "event", None) == "request_rejected"]
    assert [(r.status, r.reason) for r in logged] == [(case.status, case.reason)]  # type: ignore[attr-defined]
    if case.status in (429, 503):
        assert response.headers["retry-after"].isdigit()


def test_a_conflict_names_the_stored_content_hash(client: TestClient) -> None:
    stored = client.post(
        "/v1/rule-versions", json={"rule": "r", "version": "1.0.0", "created_by": "alice"}, headers=AUTH
    )
    assert stored.status_code == 200
    conflict = client.post("/v1/rule-versions", json={"rule": "r", "version": "1.0.0", "source": "x"}, headers=AUTH)
    assert conflict.status_code == 409
    body = conflict.json()
    assert body["error"] == "version_conflict"
    assert body["existing_content_hash"] == stored.json()["content_hash"]
    assert "already exists" in body["detail"]


def test_exporter_client_reads_the_existing_hash_from_the_body(client: TestClient) -> None:
    stored = client.post(
        "/v1/rule-versions", json={"rule": "r", "version": "1.0.0", "created_by": "alice"}, headers=AUTH
    )

    def forward(request: httpx.Request) -> httpx.Response:
        answer = client.request(request.method, request.url.path, content=request.content, headers=request.headers)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    sdk = ExporterClient("http://exporter.test", token=TOKEN, transport=httpx.MockTransport(forward))
    with sdk, pytest.raises(VersionConflict) as caught:
        sdk.register_rule_version("r", "1.0.0", source="other")
    assert caught.value.existing_hash == stored.json()["content_hash"]
    assert caught.value.new_hash != caught.value.existing_hash


def test_exporter_client_does_not_parse_the_message_of_a_conflict() -> None:
    """A 409 whose body has no ``existing_content_hash`` is a conflict with an unknown hash, even
    when its text happens to contain one (the old client read it with a regex)."""
    text = "rule version r@1 already exists with content hash " + "a" * 64

    def conflict(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": "version_conflict", "detail": text})

    sdk = ExporterClient("http://exporter.test", transport=httpx.MockTransport(conflict))
    with sdk, pytest.raises(VersionConflict) as caught:
        sdk.register_rule_version("r", "1")
    assert caught.value.existing_hash == "unknown"


def test_the_refusal_table_is_closed_and_uses_the_defined_reasons() -> None:
    assert set(errors.ANSWERS) == set(errors.ERROR_CODES)
    assert {answer.reason for answer in errors.ANSWERS.values()} <= set(d.REJECT_REASONS)
    assert set(errors.CODE_BY_TYPE.values()) <= set(errors.ERROR_CODES)
    # Kinds by type, most specific first: a PolicyViolation is a LifecycleError, answered apart.
    expected = {
        InvalidEvent("f", "m"): ("invalid", 422),
        UnknownRuleVersion("r", "1"): ("not_found", 404),
        UnknownRule("r"): ("not_found", 404),
        VersionConflict("r", "1", "a", "b"): ("version_conflict", 409),
        PolicyViolation("no"): ("policy_violation", 409),
        LifecycleError("no"): ("lifecycle_conflict", 409),
        AuditError("no"): ("invalid", 422),
        CardinalityBudgetExceeded("r", "1", 1): ("over_budget", 429),
        StoreUnavailable("down"): ("unavailable", 503),
    }
    for exc, (code, status) in expected.items():
        refusal = errors.refusal_of(exc)
        assert (refusal.code, errors.ANSWERS[refusal.code].status) == (code, status), exc
    with pytest.raises(TypeError):
        errors.refusal_of(RuntimeError("a bug is not a refusal"))


def test_the_schema_documents_the_error_bodies(sqlite_url: str) -> None:
    doc = create_app(Settings(database_url=_migrated(sqlite_url), api_token=TOKEN)).openapi()  # type: ignore[arg-type]
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorOut"]["properties"]["error"]["enum"] == list(errors.ERROR_CODES)
    assert set(schemas["ErrorOut"]["required"]) == {"error", "detail"}
    assert "existing_content_hash" in schemas["ConflictOut"]["properties"]

    def ref(path: str, method: str, status: str) -> str:
        content = doc["paths"][path][method]["responses"][status]["content"]
        return str(content["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]

    assert ref("/v1/rule-versions", "post", "409") == "ConflictOut"
    assert ref("/v1/rule-versions/{rule}/{version}/approve", "post", "409") == "ConflictOut"
    for path, method in (("/v1/executions", "post"), ("/v1/backtests", "post"), ("/v1/rules/{rule}/versions", "get")):
        for status in ("404", "422", "503"):
            assert ref(path, method, status) == "ErrorOut", (path, status)


@pytest.mark.parametrize(
    ("path", "content", "kind"),
    [
        ("/v1/executions", b"{not json", "execution"),
        (
            "/v1/rule-versions",
            b'{"rule": "r", "version": "2", "params": {"a": ' + b"[" * 1900 + b"]" * 1900 + b"}}",  # too deep
            "rule_version",
        ),
        ("/v1/backtests?dry_run=1", b"{}", "backtest"),
    ],
)
def test_a_malformed_request_to_an_ingest_route_counts_its_event_as_rejected(
    client: TestClient, path: str, content: bytes, kind: str
) -> None:
    before = ingested(client.get("/metrics").text, kind, "rejected")
    response = client.post(path, content=content, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "invalid", response.text
    assert ingested(client.get("/metrics").text, kind, "rejected") == before + 1
    if kind == "rule_version":  # FastAPI's own 400 for a body its JSON parser gives up on, answered as 422
        assert response.json()["detail"] == [{"field": "body", "message": "invalid JSON: nested too deeply"}]


def test_an_anonymous_malformed_request_counts_no_rejected_event(client: TestClient) -> None:
    """Refused at the token gate, before its body is parsed: it never was an event."""

    def rejected_backtests() -> float:
        return ingested(client.get("/metrics").text, "backtest", "rejected")

    before = rejected_backtests()
    assert client.post("/v1/backtests", content=b"{bad").status_code == 401
    assert client.post("/v1/backtests", content=b"{bad", headers=AUTH).status_code == 422  # with the token: counted
    assert rejected_backtests() == before + 1
