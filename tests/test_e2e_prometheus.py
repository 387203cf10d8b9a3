"""End to end with a real Prometheus: it scrapes ``heurmetrics serve`` and sees every execution.

Prometheus negotiates OpenMetrics on its own and stores exemplars with ``exemplar-storage``, so
an execution can be followed from a PromQL sample back to its row (``event_id``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from heurmetrics.metrics import definitions as d
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.conftest import free_port, require_binary
from tests.e2e_helpers import Exporter, PrometheusServer, exporter, mixed_executions, prometheus_server, table_counts

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]
JOB = "heurmetrics-e2e"
RULE = "e2e.prom"
#: Executions posted per rule version; 1234 in all.
PER_VERSION = {"1.0.0": 700, "2.0.0": 534}
N = sum(PER_VERSION.values())
WAIT_SECONDS = 60
EXECUTIONS = d.HEURISTIC_EXECUTIONS.sample_name


Prometheus = PrometheusServer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    directory = tmp_path_factory.mktemp("prom-exporter")
    url = f"sqlite:///{directory / 'heurmetrics.db'}"
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    with exporter(url, free_port(), directory / "serve.log") as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(served: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = require_binary("prometheus")
    with prometheus_server(binary, tmp_path_factory.mktemp("prometheus"), JOB, served.port) as running:
        yield running


@pytest.fixture(scope="module")
def posted(served: Exporter, prometheus: Prometheus) -> set[str]:
    """Post N executions over two rule versions (plus a retried batch); returns their event ids."""
    ids: set[str] = set()
    with served.client() as http:
        offset = 0
        for version, n in PER_VERSION.items():
            registered = http.post("/v1/rule-versions", json={"rule": RULE, "version": version})
            assert registered.status_code == 201, f"{registered.text}\n{served.log_tail()}"
            items = mixed_executions(RULE, version, n, offset=offset)
            offset += n
            ids.update(item["event_id"] for item in items)
            for start in range(0, n, 500):
                batch = items[start : start + 500]
                answer = http.post("/v1/executions", json={"executions": batch})
                assert answer.json() == {"accepted": len(batch), "duplicates": 0}, answer.text
            retry = http.post("/v1/executions", json={"executions": items[:100]})
            assert retry.json() == {"accepted": 0, "duplicates": 100}
    assert table_counts(served.database_url)["heuristic_executions"] == N
    return ids


def test_prometheus_counts_every_execution_exactly(prometheus: Prometheus, posted: set[str]) -> None:
    assert len(posted) == N
    prometheus.wait_for(f"sum({EXECUTIONS})", N)
    by_version = {
        r["metric"][d.RULE_VERSION]: float(r["value"][1])
        for r in prometheus.query(f'sum by ({d.RULE_VERSION}) ({EXECUTIONS}{{{d.RULE}="{RULE}"}})')
    }
    assert by_version == {v: float(n) for v, n in PER_VERSION.items()}
    retried = f'{d.INGESTED_EVENTS.sample_name}{{{d.KIND}="execution",{d.RESULT}="duplicate"}}'
    assert prometheus.scalar(f"sum({retried})") == 200.0
    assert prometheus.scalar(f'up{{job="{JOB}"}}') == 1.0


def test_prometheus_stores_event_id_exemplars(prometheus: Prometheus, posted: set[str]) -> None:
    prometheus.wait_for(f"sum({EXECUTIONS})", N)  # scraped after every write: exemplars are in
    deadline = time.monotonic() + WAIT_SECONDS
    found: list[str] = []
    answer: Any = None
    while time.monotonic() < deadline and not found:
        now = time.time()
        response = httpx.get(
            f"{prometheus.base_url}/api/v1/query_exemplars",
            params={"query": EXECUTIONS, "start": now - 600, "end": now + 60},
            timeout=10,
        )
        answer = response.json()
        assert answer["status"] == "success", answer
        found = [
            e["labels"]["event_id"]
            for series in answer["data"]
            if series["seriesLabels"]["__name__"] == EXECUTIONS
            for e in series["exemplars"]
            if "event_id" in e["labels"]
        ]
        if not found:
            time.sleep(0.5)
    assert found, f"no exemplar with an event_id on {EXECUTIONS}: {answer}"
    assert set(found) <= posted  # every exemplar names an execution that was really posted
