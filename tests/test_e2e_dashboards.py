"""The generated dashboards and rules, proven against a real Prometheus and a real PostgreSQL.

After the demo workload is stored in Postgres and executions of every rule version arrive over
HTTP, a real Prometheus loads the committed rule files and scrapes the exporter. Then **every**
Prometheus query of every dashboard panel, with its template variables substituted the way
Grafana does, must return data through Prometheus' HTTP API; every SQL panel query must return
rows from Postgres; every rule must be healthy after evaluation.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import text

from heurmetrics.demo.run import run_demo
from heurmetrics.monitoring.dashboards import (
    iter_annotation_queries,
    iter_panel_queries,
    iter_variable_queries,
    multi_value_variables,
    render_query,
)
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.conftest import free_port, require_binary
from tests.e2e_helpers import (
    Exporter,
    PrometheusServer,
    exporter,
    fresh_postgres_database,
    mixed_executions,
    prometheus_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.prometheus, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
JOB = "heurmetrics"
DEMO_DAYS = 150
ROUNDS = 6  # batches per version, a scrape apart, so every rate() has points to work with
PER_ROUND = 40
LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$")


@dataclass
class Stack:
    exporter: Exporter
    prometheus: PrometheusServer
    database_url: str
    versions: list[tuple[str, str]]
    posted: int


@pytest.fixture(scope="module")
def stack(postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus")
    work = tmp_path_factory.mktemp("dashboards-e2e")
    with fresh_postgres_database(postgres_server_url) as url:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        run_demo(url, days=DEMO_DAYS, console=Console(file=io.StringIO(), width=200))
        with engine.connect() as conn:
            versions = [
                (r[0], r[1])
                for r in conn.execute(
                    text("SELECT r.name, v.version FROM rule_versions v JOIN rules r ON r.id = v.rule_id ORDER BY 1, 2")
                )
            ]
        engine.dispose()
        rule_files = sorted((ROOT / "alerts").glob("*.yml"))
        with (
            exporter(url, free_port(), work / "serve.log") as served,
            prometheus_server(binary, work, JOB, served.port, rule_files) as prometheus,
            served.client() as http,
        ):
            posted = 0
            for round_ in range(ROUNDS):
                for rule, version in versions:
                    items = mixed_executions(rule, version, PER_ROUND, offset=round_ * PER_ROUND)
                    answer = http.post("/v1/executions", json={"executions": items})
                    assert answer.status_code == 202, answer.text
                    posted += answer.json()["accepted"]
                    if round_ in (0, ROUNDS // 2):  # backtests arrive over HTTP too (rates need two)
                        run = http.post("/v1/backtests", json=_backtest(rule, version, round_))
                        assert run.status_code == 201, run.text
                time.sleep(1.5)
            prometheus.wait_for("sum(heuristic_executions_total)", posted)
            _wait_for_rule_evaluation(prometheus)
            yield Stack(served, prometheus, url, versions, posted)


def _backtest(rule: str, version: str, seed: int) -> dict[str, Any]:
    timestamps = [f"2026-01-{day:02d}T{hour:02d}:00:00Z" for day in range(1, 4) for hour in range(24)]
    values = [1.0 + 0.001 * ((i * (seed + 3)) % 17 - 8) + 0.0005 * i for i in range(len(timestamps))]
    return {
        "rule": rule,
        "rule_version": version,
        "dataset": "e2e",
        "periods_per_year": 8760,
        "equity": {"timestamps": timestamps, "values": values},
    }


def _wait_for_rule_evaluation(prometheus: PrometheusServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules):
            time.sleep(2)  # one more evaluation after the last scrape
            return
        time.sleep(0.5)
    raise AssertionError("Prometheus did not evaluate every rule in time")


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}


def _values(stack: Stack, dashboard: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "rule": sorted({rule for rule, _ in stack.versions}),
        "rule_version": sorted({version for _, version in stack.versions}),
    }
    for name, kind, query in iter_variable_queries(dashboard):
        variable = name.removeprefix("variable ")
        if kind == "sql" and variable not in values:  # e.g. run_id, a single-value variable
            rows = _sql(stack, render_query(query, "sql", values, multi=multi_value_variables(dashboard)))
            assert rows, f"{name} returns no value"
            # Grafana shows "__text" and uses "__value" (else the first column); prefer a
            # walk-forward run, the one with folds, as a quant would.
            chosen = next((r for r in rows if "walk_forward" in str(r._mapping.get("__text", ""))), rows[0])
            values[variable] = str(chosen._mapping.get("__value", chosen[0]))
    return values


def _sql(stack: Stack, query: str) -> list[Any]:
    engine = create_store_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query.replace(":", r"\:"))))
    finally:
        engine.dispose()


def test_every_panel_query_returns_data(stack: Stack) -> None:
    checked = {"prometheus": 0, "sql": 0}
    empty: list[str] = []
    since = datetime(2000, 1, 1, tzinfo=UTC)
    for file_name, dashboard in _dashboards().items():
        values = _values(stack, dashboard)
        multi = multi_value_variables(dashboard)
        for title, kind, query in iter_panel_queries(dashboard):
            rendered = render_query(query, kind, values, multi=multi, rate_interval="1m", time_from=since)
            has_data = bool(stack.prometheus.query(rendered) if kind == "prometheus" else _sql(stack, rendered))
            checked[kind] += 1
            if not has_data:
                empty.append(f"{file_name} / {title} ({kind}): {rendered}")
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
    assert checked["prometheus"] >= 30 and checked["sql"] >= 8, checked
    print(f"checked {checked['prometheus']} Prometheus and {checked['sql']} SQL panel queries")


def test_variable_and_annotation_queries_run(stack: Stack) -> None:
    for _file_name, dashboard in _dashboards().items():
        values = _values(stack, dashboard)
        multi = multi_value_variables(dashboard)
        for name, kind, query in [*iter_variable_queries(dashboard), *iter_annotation_queries(dashboard)]:
            if kind == "sql":
                _sql(stack, render_query(query, kind, values, multi=multi))  # must execute
                continue
            match = LABEL_VALUES.match(render_query(query, kind, values, multi=multi))
            assert match, f"{name}: unexpected Prometheus variable query {query}"
            selector, label = match.group(1) or "up", match.group(2)
            assert stack.prometheus.query(f"count by ({label}) ({selector})"), f"{name} has no values"


def test_rule_files_are_healthy_and_every_alert_is_loaded(stack: Stack) -> None:
    groups = stack.prometheus.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    alerts = {r["name"] for r in rules if r["type"] == "alerting"}
    recording = [r for r in rules if r["type"] == "recording"]
    committed = "".join(p.read_text() for p in sorted((ROOT / "alerts").glob("*.yml")))
    assert alerts == set(re.findall(r"^\s*- alert: (\w+)", committed, flags=re.M))
    assert recording, "no recording rules loaded"
    # A healthy pipeline fires none of its own self-monitoring alerts.
    firing = {a["labels"]["alertname"] for a in stack.prometheus.api("alerts")["alerts"] if a["state"] == "firing"}
    assert not {a for a in firing if a.startswith("Heurmetrics")}, firing
    print(f"{len(alerts)} alerts and {len(recording)} recording rules healthy")
