"""The HTTP API in-process (FastAPI TestClient), on SQLite and PostgreSQL.

Every write is checked against the database itself (row counts, content) and against the
Prometheus page: counts equal rows exactly, and a rejected request writes and counts nothing.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from sqlalchemy import text

from heurmetrics.config import Settings
from heurmetrics.errors import SchemaNotAtHead
from heurmetrics.metrics import definitions as d
from heurmetrics.server.app import create_app
from heurmetrics.server.models import MAX_EXECUTIONS_PER_REQUEST
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.e2e_helpers import (
    execution,
    execution_rows_by_series,
    execution_series,
    executions_total,
    mixed_executions,
    rule_version_rows,
    samples,
    table_counts,
)

RULE, VERSION = "sma.cross", "1.0.0"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
JSON = {"content-type": "application/json"}


def settings(url: str, token: str | None = None) -> Settings:
    # Explicit api_token: a HEURMETRICS_API_TOKEN in the environment must not leak into the test.
    return Settings(database_url=url, api_token=token, metrics_cache_seconds=0)


@dataclass
class Api:
    client: TestClient
    url: str

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        """POST a JSON body, or a raw string sent verbatim as JSON (NaN, malformed...)."""
        if isinstance(body, str):
            return self.client.post(path, content=body, headers={**JSON, **(headers or {})})
        return self.client.post(path, json=body, headers=headers)

    def metrics(self) -> str:
        response = self.client.get("/metrics")
        assert response.status_code == 200
        return response.text

    def register(self, rule: str = RULE, version: str = VERSION, **fields: Any) -> Any:
        response = self.post("/v1/rule-versions", {"rule": rule, "version": version, **fields})
        assert response.status_code in (200, 201), response.text
        return response

    def state(self) -> tuple[dict[str, int], dict[Any, float]]:
        """What a rejected request must leave unchanged: table counts and the execution counter."""
        return table_counts(self.url), execution_series(self.metrics())


@pytest.fixture
def api(migrated_url: str) -> Iterator[Api]:
    with TestClient(create_app(settings(migrated_url))) as client:
        yield Api(client, migrated_url)


def assert_counter_equals_rows(api: Api) -> None:
    page = api.metrics()
    rows = execution_rows_by_series(api.url)
    assert execution_series(page) == {k: float(v) for k, v in rows.items()}
    assert executions_total(page) == table_counts(api.url)["heuristic_executions"]


def fields_of(response: Any) -> list[str]:
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, f"expected a list of field errors, got {detail!r}"
    return [e["field"] for e in detail]


def assert_names_field(response: Any, field: str) -> None:
    """The error names ``field`` (a union type may add its branch: ``duration_seconds.float``)."""
    fields = fields_of(response)
    assert any(f == field or f.startswith(field + ".") for f in fields), (field, response.json())


def backtest_body(n: int = 60, **fields: Any) -> dict[str, Any]:
    values, level = [], 100.0
    for i in range(n):
        level *= 1 + 0.01 * math.sin(i * 1.7) + 0.002
        values.append(round(level, 6))
    body = {
        "rule": RULE,
        "rule_version": VERSION,
        "dataset": "BTCUSDT-1d",
        "periods_per_year": 365,
        "equity": {
            "timestamps": [f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}T00:00:00Z" for i in range(n)],
            "values": values,
        },
    }
    body.update(fields)
    return body


# --- rule versions --------------------------------------------------------------------------------
def test_rule_version_created_identical_conflict(api: Api) -> None:
    body = {
        "rule": RULE,
        "version": VERSION,
        "params": {"fast": 10, "slow": 30},
        "source": "fast > slow",
        "description": "first",
    }
    first = api.post("/v1/rule-versions", body)
    assert first.status_code == 201, first.text
    assert first.json()["rule"] == RULE and first.json()["version"] == VERSION
    content_hash = first.json()["content_hash"]
    assert len(content_hash) == 64

    again = api.post("/v1/rule-versions", {**body, "params": {"slow": 30, "fast": 10}})  # key order is irrelevant
    assert again.status_code == 200, again.text
    assert again.json()["content_hash"] == content_hash

    stored = rule_version_rows(api.url)
    assert stored == [(RULE, VERSION, content_hash, {"fast": 10, "slow": 30}, "fast > slow", "api")]
    for changed in ({"params": {"fast": 12, "slow": 30}}, {"source": "fast >= slow"}):
        conflict = api.post("/v1/rule-versions", {**body, **changed})
        assert conflict.status_code == 409, conflict.text
        message = conflict.json()["detail"]
        assert f"{RULE}@{VERSION}" in message and content_hash in message
        assert rule_version_rows(api.url) == stored  # nothing written on conflict
    assert table_counts(api.url)["rule_versions"] == 1

    other = api.post("/v1/rule-versions", {**body, "version": "1.1.0", "params": {"fast": 12, "slow": 30}})
    assert other.status_code == 201
    assert table_counts(api.url)["rule_versions"] == 2
    assert table_counts(api.url)["rules"] == 1


# --- executions -----------------------------------------------------------------------------------
def test_executions_accepted_and_resent_batch_counted_once(api: Api) -> None:
    api.register()
    api.register(version="2.0.0")
    batch = mixed_executions(RULE, VERSION, 40) + mixed_executions(RULE, "2.0.0", 30, offset=40)

    first = api.post("/v1/executions", {"executions": batch})
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 70, "duplicates": 0}
    assert table_counts(api.url)["heuristic_executions"] == 70
    assert_counter_equals_rows(api)

    for _ in range(2):  # a runner retrying after a lost response
        resent = api.post("/v1/executions", {"executions": batch})
        assert resent.status_code == 202, resent.text
        assert resent.json() == {"accepted": 0, "duplicates": 70}
    assert table_counts(api.url)["heuristic_executions"] == 70
    assert_counter_equals_rows(api)
    assert executions_total(api.metrics()) == 70

    # Half old, half new: only the new half is stored and counted.
    more = mixed_executions(RULE, VERSION, 10, offset=100)
    partial = api.post("/v1/executions", {"executions": batch[:10] + more})
    assert partial.json() == {"accepted": 10, "duplicates": 10}
    assert_counter_equals_rows(api)
    assert executions_total(api.metrics()) == 80

    page = api.metrics()
    durations = samples(page, d.HEURISTIC_EXECUTION_DURATION, f"{d.HEURISTIC_EXECUTION_DURATION.name}_count")
    # The duration histogram observes live and paper executions only (the series budget).
    observed = sum(1 for item in batch + more if item["mode"] in d.LATENCY_MODES)
    assert 0 < observed < 80 and sum(s.value for s in durations) == observed
    assert_ingested(page, accepted=80, duplicates=150)


def assert_ingested(page: str, *, accepted: int, duplicates: int) -> None:
    executions = [s for s in samples(page, d.INGESTED_EVENTS) if s.labels[d.KIND] == "execution"]
    by_result = {s.labels[d.RESULT]: s.value for s in executions}
    assert by_result["accepted"] == accepted
    assert by_result["duplicate"] == duplicates


def test_stored_row_matches_the_posted_execution(api: Api) -> None:
    api.register()
    item = execution(
        RULE,
        VERSION,
        started_at="2026-01-02T03:04:05.250+01:00",
        duration_seconds=0.125,
        status="ok",
        outcome="bearish",
        signal=-0.75,
        confidence=0.6,
        mode="paper",
    )
    response = api.post("/v1/executions", {"executions": [item]})
    assert response.status_code == 202, response.text
    engine = create_store_engine(api.url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT duration_seconds, s.name, outcome, signal, confidence, m.name, started_at "
                    "FROM heuristic_executions e JOIN execution_statuses s ON s.code = e.status "
                    "JOIN execution_modes m ON m.code = e.mode"
                )
            ).one()
    finally:
        engine.dispose()
    assert tuple(row[:6]) == (0.125, "ok", "bearish", -0.75, 0.6, "paper")
    started = row[6]  # SQLite: naive UTC text; Postgres: timestamptz in the session's zone
    started = datetime.fromisoformat(started) if isinstance(started, str) else started
    started = started.replace(tzinfo=UTC) if started.tzinfo is None else started.astimezone(UTC)
    assert started == datetime(2026, 1, 2, 2, 4, 5, 250_000, tzinfo=UTC)


def test_duplicate_event_ids_inside_one_batch(api: Api) -> None:
    api.register()
    a, b = execution(RULE, VERSION), execution(RULE, VERSION, outcome="bearish")
    response = api.post("/v1/executions", {"executions": [a, a, b, a]})
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "duplicates": 2}
    assert table_counts(api.url)["heuristic_executions"] == 2
    assert_counter_equals_rows(api)
    assert executions_total(api.metrics()) == 2


def test_empty_batch_is_accepted_and_writes_nothing(api: Api) -> None:
    api.register()
    response = api.post("/v1/executions", {"executions": []})
    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "duplicates": 0}
    assert table_counts(api.url)["heuristic_executions"] == 0


def test_unknown_rule_version_is_rejected_naming_it(api: Api) -> None:
    api.register()
    before = api.state()
    batch = [execution(RULE, VERSION), execution(RULE, "9.9.9")]
    response = api.post("/v1/executions", {"executions": batch})
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert detail[0]["field"] == "executions[1].rule_version"
    assert f"{RULE}@9.9.9" in detail[0]["message"]
    assert api.state() == before  # the valid first item was not written either
    assert before[0]["heuristic_executions"] == 0


# --- bad input: 4xx naming the field, nothing written, nothing counted ---------------------------------
def _batch(**fields: Any) -> dict[str, Any]:
    return {"executions": [execution(RULE, VERSION), execution(RULE, VERSION, **fields)]}


def _raw_batch(fragment: str) -> str:
    """A batch whose second item ends with ``fragment`` as raw JSON text (NaN, Infinity...)."""
    good = json.dumps(execution(RULE, VERSION))
    item = json.dumps(execution(RULE, VERSION, duration_seconds=0.1, signal=0.1))
    return '{"executions": [%s, %s, %s]}' % (good, item[:-1], fragment)  # noqa: UP031


BAD_EXECUTIONS: list[tuple[str, Any, str]] = [
    ("malformed-json", '{"executions": [{"rule": ', "body"),
    ("duration-string", _batch(duration_seconds="fast"), "executions[1].duration_seconds"),
    ("duration-numeric-string", _batch(duration_seconds="1.5"), "executions[1].duration_seconds"),
    ("duration-bool", _batch(duration_seconds=True), "executions[1].duration_seconds"),
    ("confidence-string", _batch(confidence="0.5"), "executions[1].confidence"),
    ("duration-NaN", _raw_batch('"duration_seconds": NaN}'), "executions[1].duration_seconds"),
    ("duration-inf", _raw_batch('"duration_seconds": Infinity}'), "executions[1].duration_seconds"),
    ("signal-inf", _raw_batch('"signal": -Infinity}'), "executions[1].signal"),
    ("confidence-NaN", _raw_batch('"confidence": NaN}'), "executions[1].confidence"),
    ("confidence-1.5", _batch(confidence=1.5), "executions[1].confidence"),
    ("confidence-negative", _batch(confidence=-0.1), "executions[1].confidence"),
    ("duration-negative", _batch(duration_seconds=-0.001), "executions[1].duration_seconds"),
    ("status-weird", _batch(status="weird"), "executions[1].status"),
    ("mode-prod", _batch(mode="prod"), "executions[1].mode"),
    ("outcome-label-injection", _batch(outcome='bad"x}\n'), "executions[1].outcome"),
    ("started-naive", _batch(started_at="2026-01-01T00:00:00"), "executions[1].started_at"),
    ("started-future", _batch(started_at="2099-01-01T00:00:00Z"), "executions[1].started_at"),
    ("started-before-2000", _batch(started_at="1999-12-31T00:00:00Z"), "executions[1].started_at"),
    ("event-id-not-uuid", _batch(event_id="not-a-uuid"), "executions[1].event_id"),
    ("error-type-too-long", _batch(error_type="E" * 129), "executions[1].error_type"),
    ("unknown-extra-field", _batch(priority=1), "executions[1].priority"),
    ("unknown-top-field", {"executions": [execution(RULE, VERSION)], "source": "x"}, "source"),
    ("missing-duration", {"executions": [{"rule": RULE, "rule_version": VERSION}]}, "executions[0].duration_seconds"),
    ("executions-not-a-list", {"executions": {"rule": RULE}}, "executions"),
    ("body-not-an-object", [execution(RULE, VERSION)], "body"),
]


def rejection_problems(api: Api, path: str, cases: list[tuple[str, Any, str]]) -> list[str]:
    """POST every bad body; list each case that was not a 4xx naming its field with nothing written.

    One app and database per backend for all cases (fast); each case is still checked on its own.
    """
    problems = []
    for case, body, field in cases:
        before = api.state()
        response = api.post(path, body)
        if not 400 <= response.status_code < 500:
            problems.append(f"{case}: HTTP {response.status_code} {response.text[:200]}")
            continue
        detail = response.json().get("detail")
        fields = [e.get("field") for e in detail] if isinstance(detail, list) else []
        if field == "body" and isinstance(body, str):
            if "JSON" not in json.dumps(detail):  # malformed JSON: no field to name
                problems.append(f"{case}: detail does not mention JSON: {detail!r}")
        elif not any(f == field or f.startswith(field + ".") for f in fields):
            problems.append(f"{case}: expected field {field!r}, got {detail!r}")
        if api.state() != before:
            problems.append(f"{case}: rows or counters changed")
    return problems


def test_bad_execution_batches_rejected_and_nothing_written(api: Api) -> None:
    api.register()
    seeded = api.post("/v1/executions", {"executions": mixed_executions(RULE, VERSION, 5)})
    assert seeded.json()["accepted"] == 5
    assert rejection_problems(api, "/v1/executions", BAD_EXECUTIONS) == []
    assert table_counts(api.url)["heuristic_executions"] == 5
    assert executions_total(api.metrics()) == 5


def test_one_bad_item_among_good_ones_rejects_the_whole_batch(api: Api) -> None:
    api.register()
    batch = mixed_executions(RULE, VERSION, 50)
    batch[37] = {**batch[37], "confidence": 1.01}
    response = api.post("/v1/executions", {"executions": batch})
    assert response.status_code == 422
    assert fields_of(response) == ["executions[37].confidence"]
    assert table_counts(api.url)["heuristic_executions"] == 0
    assert executions_total(api.metrics()) == 0

    batch[37] = {**batch[37], "confidence": 1.0}  # fixed: the whole batch goes through
    assert api.post("/v1/executions", {"executions": batch}).json() == {"accepted": 50, "duplicates": 0}
    assert_counter_equals_rows(api)


def test_oversized_batch_is_413_and_the_limit_itself_is_accepted(api: Api) -> None:
    api.register()
    item = execution(RULE, VERSION)
    del item["event_id"]
    response = api.post("/v1/executions", {"executions": [item] * (MAX_EXECUTIONS_PER_REQUEST + 1)})
    assert response.status_code == 413, response.text[:300]
    assert "10000" in response.json()["detail"]
    assert table_counts(api.url)["heuristic_executions"] == 0
    assert executions_total(api.metrics()) == 0

    at_limit = [execution(RULE, VERSION) for _ in range(MAX_EXECUTIONS_PER_REQUEST)]
    response = api.post("/v1/executions", {"executions": at_limit})
    assert response.status_code == 202
    assert response.json() == {"accepted": MAX_EXECUTIONS_PER_REQUEST, "duplicates": 0}
    assert_counter_equals_rows(api)


BAD_RULE_VERSIONS: list[tuple[str, Any, str]] = [
    ("rule-label-injection", {"rule": 'bad"name}\n', "version": "1.0.0"}, "rule"),
    ("version-label-injection", {"rule": RULE, "version": '1"} 1\n'}, "version"),
    ("rule-too-long", {"rule": "x" * 65, "version": "1"}, "rule"),
    ("rule-empty", {"rule": "", "version": "1"}, "rule"),
    ("version-not-a-string", {"rule": RULE, "version": 1}, "version"),
    ("params-NaN", '{"rule": "r", "version": "1", "params": {"x": NaN}}', "params"),
    ("params-not-object", {"rule": RULE, "version": "1", "params": [1, 2]}, "params"),
    ("unknown-field", {"rule": RULE, "version": "1", "owner": "me"}, "owner"),
    ("created-by-too-long", {"rule": RULE, "version": "1", "created_by": "u" * 129}, "created_by"),
]


def test_bad_rule_versions_rejected_and_nothing_written(api: Api) -> None:
    assert rejection_problems(api, "/v1/rule-versions", BAD_RULE_VERSIONS) == []
    counts = table_counts(api.url)
    assert (counts["rules"], counts["rule_versions"]) == (0, 0)
    assert samples(api.metrics(), d.RULE_VERSION_INFO) == []


# --- backtests ------------------------------------------------------------------------------------
def test_backtest_created_then_resent(api: Api) -> None:
    api.register()
    run_id = str(uuid.uuid4())
    body = backtest_body(run_id=run_id)
    created = api.post("/v1/backtests", body)
    assert created.status_code == 201, created.text
    out = created.json()
    assert out["run_id"] == run_id and out["created"] is True
    assert (out["rule"], out["rule_version"]) == (RULE, VERSION)
    for key in ("sharpe", "max_drawdown", "total_return", "cagr", "volatility"):
        assert isinstance(out["metrics"][key], float) and math.isfinite(out["metrics"][key]), key
    values = body["equity"]["values"]
    assert out["metrics"]["total_return"] == pytest.approx(values[-1] / values[0] - 1)
    assert out["metrics"]["max_drawdown"] <= 0
    counts = table_counts(api.url)
    assert counts["backtest_runs"] == 1
    assert counts["equity_points"] == len(values)

    resent = api.post("/v1/backtests", body)
    assert resent.status_code == 200, resent.text
    assert resent.json()["run_id"] == run_id and resent.json()["created"] is False
    assert table_counts(api.url) == counts

    page = api.metrics()
    runs = {s.labels[d.STATUS]: s.value for s in samples(page, d.BACKTEST_RUNS)}
    assert runs == {"completed": 1.0, "failed": 0.0}
    sharpe = samples(page, d.BACKTEST_RESULT_SHARPE)
    assert [(s.labels[d.RULE], s.labels[d.RULE_VERSION]) for s in sharpe] == [(RULE, VERSION)]
    assert sharpe[0].value == pytest.approx(out["metrics"]["sharpe"])

    generated = api.post("/v1/backtests", backtest_body())  # no run_id: a new run with a new id
    assert generated.status_code == 201
    assert generated.json()["run_id"] != run_id
    assert table_counts(api.url)["backtest_runs"] == 2


DAYS = ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"]
BAD_BACKTESTS: list[tuple[str, Any, str]] = [
    ("unknown-version", backtest_body(rule_version="0.0.1"), "rule_version"),
    (
        "naive-timestamps",
        backtest_body(equity={"timestamps": ["2025-01-01T00:00:00", "2025-01-02T00:00:00"], "values": [1, 2]}),
        "equity.timestamps[0]",
    ),
    (
        "length-mismatch",
        backtest_body(equity={"timestamps": ["2025-01-01T00:00:00Z"], "values": [1, 2]}),
        "equity.values",
    ),
    ("empty-equity", backtest_body(equity={"timestamps": [], "values": []}), "equity"),
    (
        "unsorted-equity",
        backtest_body(equity={"timestamps": ["2025-01-02T00:00:00Z", "2025-01-01T00:00:00Z"], "values": [1, 2]}),
        "equity",
    ),
    (
        "equity-NaN",
        json.dumps(backtest_body(equity={"timestamps": ["2025-01-01T00:00:00Z"], "values": [float("inf")]})),
        "equity",
    ),
    # Equity is wealth: <= 0 or not finite is refused, naming the index (issue 13).
    ("equity-negative", backtest_body(equity={"timestamps": DAYS[:3], "values": [1, -1, 2]}), "equity.values[1]"),
    ("equity-zero", backtest_body(equity={"timestamps": DAYS[:2], "values": [0, 0]}), "equity.values[0]"),
    (
        "equity-NaN-literal",
        json.dumps(backtest_body(equity={"timestamps": DAYS[:2], "values": [1, float("nan")]})),
        "equity.values[1]",
    ),
    ("periods-per-year-zero", backtest_body(periods_per_year=0), "periods_per_year"),
    ("periods-per-year-string", backtest_body(periods_per_year="365"), "periods_per_year"),
    ("naive-started", backtest_body(started_at="2025-01-01T00:00:00"), "started_at"),
    ("run-id-not-uuid", backtest_body(run_id="42"), "run_id"),
    ("unknown-field", backtest_body(extra=1), "extra"),
]


def test_bad_backtests_rejected_and_nothing_written(api: Api) -> None:
    api.register()
    assert rejection_problems(api, "/v1/backtests", BAD_BACKTESTS) == []
    counts = table_counts(api.url)
    assert (counts["backtest_runs"], counts["equity_points"]) == (0, 0)


# --- health, readiness, schema ------------------------------------------------------------------------
def test_healthz_and_readyz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}

    engine = create_store_engine(api.url)  # the schema goes away under the running exporter
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()
    not_ready = api.client.get("/readyz")
    assert not_ready.status_code == 503
    assert "SchemaNotAtHead" in not_ready.json()["detail"]
    assert api.client.get("/healthz").status_code == 200  # liveness does not depend on the store


def test_create_app_refuses_an_unmigrated_database(database_url: str) -> None:
    with pytest.raises(SchemaNotAtHead) as excinfo:
        create_app(settings(database_url))
    message = str(excinfo.value)
    assert "heurmetrics db upgrade" in message
    assert "empty database" in message


# --- token ------------------------------------------------------------------------------------------
def test_bearer_token_guards_every_post_but_not_reads(migrated_url: str) -> None:
    with TestClient(create_app(settings(migrated_url, token="s3cret"))) as client:
        api = Api(client, migrated_url)
        posts = [
            ("/v1/rule-versions", {"rule": RULE, "version": VERSION}, 201),
            ("/v1/executions", {"executions": [execution(RULE, VERSION)]}, 202),
            ("/v1/backtests", backtest_body(), 201),
        ]
        for path, body, _ in posts:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "Bearer s3cret2"},
                {"Authorization": "Basic s3cret"},
                {"Authorization": "s3cret"},
                {"Authorization": "Bearer "},
            ):
                response = api.post(path, body, headers=headers)
                assert response.status_code == 401, (path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
            invalid = api.post(path, {"unexpected": [1]})  # no validation oracle without the token
            assert invalid.status_code == 401, invalid.text
        assert table_counts(migrated_url) == dict.fromkeys(table_counts(migrated_url), 0)

        for path, body, expected in posts:
            response = api.post(path, body, headers={"Authorization": "Bearer s3cret"})
            assert response.status_code == expected, (path, response.text)
        counts = table_counts(migrated_url)
        assert (counts["rule_versions"], counts["heuristic_executions"], counts["backtest_runs"]) == (1, 1, 1)

        for path in ("/metrics", "/healthz", "/readyz"):
            assert client.get(path).status_code == 200, path
        assert executions_total(client.get("/metrics").text) == 1


# --- exposition -------------------------------------------------------------------------------------
def test_openmetrics_exposition_carries_event_id_exemplars(api: Api) -> None:
    api.register()
    batch = [execution(RULE, VERSION, outcome="neutral", mode="paper") for _ in range(3)]
    assert api.post("/v1/executions", {"executions": batch}).json()["accepted"] == 3

    response = api.client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(response.text)}
    counter = families[d.HEURISTIC_EXECUTIONS.name]
    series = [
        s
        for s in counter.samples
        if s.name == d.HEURISTIC_EXECUTIONS.sample_name
        and s.labels[d.OUTCOME] == "neutral"
        and s.labels[d.MODE] == "paper"
    ]
    assert len(series) == 1 and series[0].value == 3
    exemplar = series[0].exemplar
    assert exemplar is not None, "the executions counter carries no exemplar"
    assert exemplar.labels == {"event_id": batch[-1]["event_id"]}  # the last execution counted

    plain = api.client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "# {" not in plain.text  # exemplars exist only in OpenMetrics


# --- inputs that once ended in a 500 (found by these tests): now a 4xx naming the field, on both databases ---
FORMERLY_500 = [
    pytest.param(
        "/v1/executions",
        _batch(duration_seconds=1e300),
        "executions[1].duration_seconds",
        id="duration-1e300-overflows-default-started_at",
    ),
    pytest.param("/v1/executions", _batch(signal=10**400), "executions[1].signal", id="signal-int-overflow"),
    # Valid ISO 8601 with two offsets: accepted, converted to UTC.
    pytest.param(
        "/v1/backtests",
        backtest_body(equity={"timestamps": ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00+02:00"], "values": [1, 2]}),
        None,
        id="equity-mixed-utc-offsets",
    ),
    pytest.param("/v1/rule-versions", {"rule": RULE, "version": "2", "source": "a\x00b"}, "source", id="nul-in-source"),
    pytest.param(
        "/v1/rule-versions",
        {"rule": RULE, "version": "2", "description": "\x00"},
        "description",
        id="nul-in-description",
    ),
    pytest.param(
        "/v1/rule-versions", {"rule": RULE, "version": "2", "params": {"k": "\x00"}}, "params", id="nul-in-params"
    ),
    pytest.param("/v1/backtests", backtest_body(dataset_hash="h" * 65), "dataset_hash", id="dataset-hash-65-chars"),
    pytest.param("/v1/backtests", json.dumps(backtest_body(config={"x": float("nan")})), "config", id="config-NaN"),
]


@pytest.mark.parametrize(("path", "body", "field"), FORMERLY_500)
def test_formerly_crashing_inputs_are_rejected_cleanly(
    database_url: str, path: str, body: Any, field: str | None
) -> None:
    engine = create_store_engine(database_url)
    migrations.upgrade(engine)
    engine.dispose()
    app = create_app(settings(database_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client, database_url)
        api.register()
        before = table_counts(database_url)
        response = api.post(path, body)
        if field is None:
            assert response.status_code < 500, response.text
            return
        assert response.status_code == 422, response.text
        assert_names_field(response, field)
        assert table_counts(database_url) == before
