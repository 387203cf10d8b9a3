"""Audit reads and lifecycle writes over HTTP (FastAPI TestClient), token rule, and /metrics statuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from heurmetrics.audit import chain
from heurmetrics.config import Settings
from heurmetrics.metrics import definitions as d
from heurmetrics.server.app import create_app
from tests.audit_support import History, build_history

EQUITY = {
    "timestamps": [f"2026-01-01T{h:02d}:00:00Z" for h in range(6)],
    "values": [1.0, 1.01, 0.99, 1.02, 1.03, 1.05],
}


def client_for(url: str, token: str | None = None) -> TestClient:
    return TestClient(create_app(Settings(database_url=url, api_token=token, metrics_cache_seconds=0)))


@pytest.fixture
def history(migrated_url: str) -> History:
    return build_history(migrated_url)


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with client_for(migrated_url) as c:
        yield c


def read_routes(h: History) -> list[str]:
    t2 = chain.format_time(h.events["sma2_live"].occurred_at).replace("+", "%2B")
    return [
        "/v1/rules", "/v1/rules/sma_cross/versions", "/v1/rules/sma_cross/history",
        "/v1/rule-versions/sma_cross/1.1.0", "/v1/rule-versions/sma_cross/1.1.0/history",
        "/v1/rule-versions/sma_cross/1.0.0/executions?rows=10", "/v1/diff?old=sma_cross@1.0.0&new=sma_cross@1.1.0",
        f"/v1/active?at={t2}&env=live", "/v1/audit/head", "/v1/audit/verify",
    ]


def test_reads_return_the_cli_json(history: History) -> None:
    with client_for(history.url) as c:
        answers = {route: c.get(route) for route in read_routes(history)}
    assert {r: a.status_code for r, a in answers.items()} == dict.fromkeys(answers, 200)
    body = {r.split("?")[0]: a.json() for r, a in answers.items()}
    assert {r["rule"]: r["active"] for r in body["/v1/rules"]}["sma_cross"] == {"live": "1.0.0", "paper": "1.0.0"}
    assert body["/v1/rule-versions/sma_cross/1.1.0"]["summary"]["approved_by"] == ["Bob"]
    assert body["/v1/rule-versions/sma_cross/1.0.0/executions"]["flagged_live"] == 2
    assert [a["version"] for a in body["/v1/active"]["active"]] == ["1.1.0"]
    assert body["/v1/diff"]["params"][0] == {"path": "fast", "change": "changed", "old": 50, "new": 20}
    assert body["/v1/audit/verify"]["ok"] is True and body["/v1/audit/head"]["position"] == 20
    assert [e["event"] for e in body["/v1/rule-versions/sma_cross/1.1.0/history"]][-1] == "rolled_back"


def test_read_errors(history: History) -> None:
    with client_for(history.url) as c:
        assert c.get("/v1/rule-versions/sma_cross/9.9.9").status_code == 404
        assert c.get("/v1/rules/nope/versions").status_code == 404
        bad_time = c.get("/v1/active?at=2026-01-01T00:00:00")
        assert bad_time.status_code == 422 and "with a zone" in bad_time.json()["detail"][0]["message"]
        assert c.get("/v1/diff?old=sma_cross&new=sma_cross@1.0.0").status_code == 422


def test_every_audit_route_needs_the_token_when_one_is_set(history: History) -> None:
    with client_for(history.url, token="s3cret") as c:
        for route in read_routes(history):
            assert c.get(route).status_code == 401, route
            assert c.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401, route
            assert c.get(route, headers={"Authorization": "Bearer s3cret"}).status_code == 200, route
        body = {"actor": "bob", "reason": "x"}
        assert c.post("/v1/rule-versions/sma_cross/1.1.0/approve", json=body).status_code == 401


def info_series(c: TestClient) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(rule, version) → {(status, env)} of rule_version_info."""
    out: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for family in text_string_to_metric_families(c.get("/metrics").text):
        for s in family.samples:
            if s.name == d.RULE_VERSION_INFO.sample_name:
                assert set(s.labels) == set(d.RULE_VERSION_INFO.labels)
                out.setdefault((s.labels[d.RULE], s.labels[d.RULE_VERSION]), set()).add(
                    (s.labels[d.STATUS], s.labels[d.ENV]))
    return out


def test_lifecycle_over_http_and_status_labels_on_metrics(client: TestClient) -> None:
    post = client.post
    base = "/v1/rule-versions/r"
    first = post(f"{base}/1.0.0/propose", json={"params": {"a": 1}, "source": "x", "created_by": "alice",
                                                  "description": "first"})
    assert first.status_code == 201 and first.json()["created"] is True
    same = {"params": {"a": 1}, "source": "x", "created_by": "bob"}
    assert post(f"{base}/1.0.0/propose", json=same).status_code == 200
    conflict = post(f"{base}/1.0.0/propose", json={"params": {"a": 2}, "source": "x", "created_by": "alice"})
    assert conflict.status_code == 409 and "r@1.0.0 already exists" in conflict.json()["detail"]
    assert post(f"{base}/1.1.0/propose", json={"params": {"a": 2}, "source": "y", "created_by": "alice",
                                                "parent": "1.0.0", "code_ref": "git:abc"}).status_code == 201
    assert info_series(client) == {("r", "1.0.0"): {("proposed", "")}, ("r", "1.1.0"): {("proposed", "")}}

    self_approval = post(f"{base}/1.0.0/approve", json={"actor": "alice", "reason": "mine"})
    assert self_approval.status_code == 409 and "they are its author" in self_approval.json()["detail"]
    assert post(f"{base}/1.0.0/approve", json={"actor": "bob", "reason": "ok"}).status_code == 201
    no_env = post(f"{base}/1.0.0/activate", json={"actor": "carol", "reason": "go"})
    assert no_env.status_code == 422 and no_env.json()["detail"][0]["field"] == "env"  # never a silent "live"
    no_backtest = post(f"{base}/1.0.0/activate", json={"actor": "carol", "reason": "go", "env": "live"})
    assert no_backtest.status_code == 409 and "no completed backtest" in no_backtest.json()["detail"]
    for version in ("1.0.0", "1.1.0"):
        backtest = {"rule": "r", "rule_version": version, "dataset": "d", "periods_per_year": 8760, "equity": EQUITY}
        assert post("/v1/backtests", json=backtest).status_code == 201
    activated = post(f"{base}/1.0.0/activate", json={"actor": "carol", "reason": "go", "env": "live"})
    assert activated.status_code == 201 and activated.json()["env"] == "live"
    paper = {"actor": "carol", "reason": "also paper", "env": "paper"}
    assert post(f"{base}/1.0.0/activate", json=paper).status_code == 201
    assert info_series(client)[("r", "1.0.0")] == {("active", "live"), ("active", "paper")}
    assert info_series(client)[("r", "1.1.0")] == {("proposed", "")}

    assert post(f"{base}/1.1.0/approve", json={"actor": "bob", "reason": "ok"}).status_code == 201
    assert info_series(client)[("r", "1.1.0")] == {("approved", "")}
    promote = {"actor": "carol", "reason": "promote", "env": "live"}
    assert post(f"{base}/1.1.0/activate", json=promote).status_code == 201
    assert info_series(client) == {("r", "1.0.0"): {("active", "paper")}, ("r", "1.1.0"): {("active", "live")}}
    rolled = post(f"{base}/1.1.0/rollback", json={"actor": "carol", "reason": "bad", "env": "live"})
    assert rolled.status_code == 201 and [e["event"] for e in rolled.json()] == ["rolled_back", "activated"]
    assert info_series(client)[("r", "1.0.0")] == {("active", "live"), ("active", "paper")}
    assert post(f"{base}/1.1.0/retire", json={"actor": "dave", "reason": "superseded"}).status_code == 201
    assert ("r", "1.1.0") not in info_series(client)  # retired versions disappear from /metrics

    assert post(f"{base}/9.9.9/approve", json={"actor": "bob", "reason": "?"}).status_code == 404
    invalid = post(f"{base}/1.0.0/retire", json={"actor": "dave", "reason": "  "})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["field"] == "reason"
    assert post(f"{base}/1.0.0/retire", json={"actor": "dave"}).status_code == 422
    retired_again = post(f"{base}/1.1.0/activate", json={"actor": "carol", "reason": "again", "env": "live"})
    assert retired_again.status_code == 409 and "retired by dave" in retired_again.json()["detail"]
    verify = client.get("/v1/audit/verify").json()
    assert verify["ok"] and verify["records"] == 2 + 10  # versions + events
