"""Hostile input over HTTP on both databases (issue 13): NUL in every text field, huge names,
deep nesting, nonsense equity, cut-off chunked bodies; and a schema that states every answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from heurmetrics.config import Settings
from heurmetrics.server.app import create_app
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.schema import BacktestRunRow
from tests.e2e_helpers import execution, table_counts

RULE, VERSION = "r", "1.0.0"
DAYS = ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"]
LIFECYCLE = {"actor": "bob", "reason": "ok", "env": "live"}


def _app(url: str, **settings: Any) -> Any:
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return create_app(Settings(database_url=url, performance_snapshot_seconds=0, **settings))


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    app = _app(database_url)
    c = TestClient(app, raise_server_exceptions=False)
    assert c.post("/v1/rule-versions", json={"rule": RULE, "version": VERSION}).status_code == 201
    yield c
    app.state.ingest.store.close()


def _backtest(**overrides: Any) -> dict[str, Any]:
    return {
        "rule": RULE,
        "rule_version": VERSION,
        "dataset": "d",
        "periods_per_year": 365,
        "equity": {"timestamps": DAYS, "values": [1.0, 1.1, 1.2]},
        **overrides,
    }


NUL = "a\x00b"
#: (method, path, body) with a NUL somewhere; PostgreSQL text cannot hold it (a 500 before).
NUL_CASES: list[tuple[str, str, Any]] = [
    ("post", f"/v1/rule-versions/{RULE}/{VERSION}/approve", {**LIFECYCLE, "reason": NUL}),
    ("post", f"/v1/rule-versions/{RULE}/{VERSION}/approve", {**LIFECYCLE, "actor": NUL}),
    ("post", f"/v1/rule-versions/{RULE}/{VERSION}/retire", {"actor": "bob", "reason": NUL}),
    ("post", f"/v1/rule-versions/{RULE}/{VERSION}/activate", {**LIFECYCLE, "reason": NUL}),
    ("post", f"/v1/rule-versions/{RULE}/{VERSION}/rollback", {**LIFECYCLE, "actor": NUL}),
    ("post", "/v1/executions", {"executions": [execution(NUL, VERSION)]}),
    ("post", "/v1/executions", {"executions": [execution(RULE, NUL)]}),
    ("post", "/v1/backtests", _backtest(rule=NUL)),
    ("post", "/v1/backtests", _backtest(rule_version=NUL)),
    ("post", "/v1/backtests", _backtest(dataset=NUL)),
    ("post", "/v1/rule-versions/r/2.0.0/propose", {"created_by": "al", "source": NUL}),
    ("post", "/v1/rule-versions/r/2.0.0/propose", {"created_by": NUL}),
    ("post", "/v1/rule-versions/r/2.0.0/propose", {"created_by": "al", "description": NUL}),
    ("get", "/v1/rules/a%00b/versions", None),
    ("get", "/v1/diff?old=r@1.0.0&new=r@1.0.0%00", None),
    ("get", "/v1/active?env=a%00b", None),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_CASES)
def test_nul_anywhere_is_a_422_naming_the_field(
    client: TestClient, method: str, path: str, body: Any, database_url: str
) -> None:
    before = table_counts(database_url)
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list) and response.json()["detail"][0]["field"]
    assert table_counts(database_url) == before


def test_a_huge_name_is_refused_first_and_not_echoed(client: TestClient) -> None:
    huge = "x" * 100_000
    response = client.post("/v1/executions", json={"executions": [execution(huge, VERSION)]})
    assert response.status_code == 422
    assert len(response.content) < 1000
    assert response.json()["detail"][0]["field"] == "executions[0].rule"


def test_unknown_rule_version_is_404_on_every_route(client: TestClient) -> None:
    answers = [
        client.post("/v1/executions", json={"executions": [execution(RULE, "9.9.9")]}),
        client.post("/v1/backtests", json=_backtest(rule_version="9.9.9")),
        client.post(f"/v1/rule-versions/{RULE}/9.9.9/approve", json={"actor": "bob", "reason": "ok"}),
        client.get(f"/v1/rule-versions/{RULE}/9.9.9"),
        client.get(f"/v1/diff?old={RULE}@9.9.9&new={RULE}@{VERSION}"),
        client.post("/v1/rule-versions/r/2.0.0/propose", json={"created_by": "al", "parent": "8.8.8"}),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers), [a.text for a in answers]


@pytest.mark.parametrize(
    ("values", "field"),
    [([1, -1, 2], "equity.values[1]"), ([0, 0, 1], "equity.values[0]"), ([1, float("nan"), 2], "equity.values[1]")],
)
def test_nonsense_equity_is_refused_naming_the_index(
    client: TestClient, values: list[float], field: str, database_url: str
) -> None:
    body = json.dumps(_backtest(equity={"timestamps": DAYS, "values": values}))  # NaN as a JSON literal
    response = client.post("/v1/backtests", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == field, response.text
    assert table_counts(database_url)["backtest_runs"] == 0


def test_activate_needs_an_environment(client: TestClient) -> None:
    response = client.post(f"/v1/rule-versions/{RULE}/{VERSION}/activate", json={"actor": "bob", "reason": "go"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "env"


def test_deeply_nested_params_answer_the_documented_shape(client: TestClient) -> None:
    deep = '{"rule": "r", "version": "2", "params": ' + '{"a": ' * 5000 + "1" + "}" * 5001
    response = client.post("/v1/rule-versions", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid",
        "detail": [{"field": "body", "message": "invalid JSON: nested too deeply"}],
    }


def test_a_failed_backtest_can_be_recorded_over_http(client: TestClient, database_url: str) -> None:
    body = {"rule": RULE, "rule_version": VERSION, "dataset": "d", "periods_per_year": 365, "error_message": "boom"}
    first = client.post("/v1/backtests/failed", json=body)
    assert first.status_code == 201 and first.json()["created"] is True
    again = client.post("/v1/backtests/failed", json={**body, "run_id": first.json()["run_id"]})
    assert again.status_code == 200 and again.json()["created"] is False
    with create_store_engine(database_url).connect() as conn:
        rows = conn.execute(select(BacktestRunRow.status, BacktestRunRow.error_message)).all()
    assert [tuple(r) for r in rows] == [("failed", "boom")]
    page = client.get("/metrics").text
    assert 'backtest_runs_total{rule="r",rule_version="1.0.0",status="failed"' in page.replace(", ", ",")


def test_a_cut_off_chunked_body_is_logged_once_without_a_traceback(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(_app(sqlite_url, max_body_bytes=4096))  # an app exception would raise here

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 1000

    caplog.clear()  # only what this request logs (migrations logged before)
    with caplog.at_level(logging.DEBUG):
        response = client.post("/v1/executions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    records = [r for r in caplog.records if r.levelno >= logging.INFO and not r.name.startswith("httpx")]
    assert [r.getMessage() for r in records] == ["rejected POST /v1/executions: 413 too_large"]
    assert not any(r.exc_info for r in caplog.records)


def test_the_schema_documents_every_answer_and_no_token_means_no_security(sqlite_url: str) -> None:
    open_doc = _app(sqlite_url).openapi()
    token_doc = _app(sqlite_url, api_token="t").openapi()
    for doc, token in ((open_doc, False), (token_doc, True)):
        for path, item in doc["paths"].items():
            for method, op in item.items():
                statuses = set(op["responses"])
                if method == "post":
                    assert {"413", "503", "422"} <= statuses, (path, statuses)
                    assert path == "/v1/resolutions" or "429" in statuses, (path, statuses)
                assert ("401" in statuses) == (token and path not in ("/healthz", "/readyz")), (path, token)
                assert ("security" in op) == ("401" in statuses)
    execution_schema = open_doc["components"]["schemas"]["ExecutionIn"]["properties"]
    assert execution_schema["rule"]["pattern"] and execution_schema["rule"]["maxLength"] == 64


@pytest.mark.parametrize(
    ("values", "field"), [([1.0, -1.0, 2.0], "equity[1]"), ([1.0, 2.0, float("inf")], "equity[2]")]
)
def test_sdk_record_backtest_refuses_nonsense_equity_naming_the_index(
    sqlite_url: str, values: list[float], field: str
) -> None:
    from heurmetrics import InvalidEvent, Recorder

    equity = pd.Series(values, index=pd.date_range("2025-01-01", periods=3, freq="D", tz="UTC"))
    with Recorder(sqlite_url) as rec:
        rv = rec.register_rule_version(RULE, VERSION)
        with pytest.raises(InvalidEvent) as caught:
            rec.record_backtest(rv, equity, dataset="d", periods_per_year=365)
        assert caught.value.field == field
        assert rec.store.table_counts()["backtest_runs"] == 0


def test_unknown_or_repeated_query_parameters_are_refused(client: TestClient) -> None:
    typo = client.get("/v1/active?enviroment=live")
    assert typo.status_code == 422 and typo.json()["detail"][0]["field"] == "query.enviroment"
    twice = client.get("/v1/active?env=live&env=paper")
    assert twice.status_code == 422 and twice.json()["detail"][0]["field"] == "query.env"
    number = client.get("/v1/active?at=1700000000")  # a number is not an RFC 3339 time
    assert number.status_code == 422
