"""Docs and exporter agree with the one metric definition module."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from heurmetrics.config import Settings
from heurmetrics.metrics import definitions as d
from heurmetrics.metrics.reference import render
from heurmetrics.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_reference_in_docs_is_current() -> None:
    docs = (ROOT / "docs" / "metrics.md").read_text()
    assert render() in docs, "docs/metrics.md is stale: paste the output of `python -m heurmetrics.metrics.reference`"


def test_every_defined_metric_is_exposed_with_its_labels(sqlite_url: str) -> None:
    from heurmetrics.store import migrations
    from heurmetrics.store.engine import create_store_engine

    migrations.upgrade(create_store_engine(sqlite_url))
    client = TestClient(create_app(Settings(database_url=sqlite_url)))
    assert client.post("/v1/rule-versions", json={"rule": "r", "version": "1"}).status_code == 201
    batch = {
        "executions": [
            {
                "event_id": str(uuid.uuid4()),
                "rule": "r",
                "rule_version": "1",
                "duration_seconds": 0.01,
                "outcome": "bullish",
                "confidence": 0.5,
            }
        ]
    }
    assert client.post("/v1/executions", json=batch).status_code == 202
    equity = {
        "timestamps": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"],
        "values": [1.0, 0.9, 1.1],
    }
    backtest = {"rule": "r", "rule_version": "1", "dataset": "d", "periods_per_year": 8760, "equity": equity}
    assert client.post("/v1/backtests", json=backtest).status_code == 201
    page = client.get("/metrics").text
    exposed = {s.name: set(s.labels) - {"le"} for f in text_string_to_metric_families(page) for s in f.samples}
    for spec in d.ALL_METRICS:
        for series in spec.series_names():
            if series.endswith("_created"):
                continue
            assert series in exposed, f"{series} ({spec.name}) is defined but not exposed"
            expected = set(spec.labels)
            assert exposed[series] == expected, f"{series}: labels {exposed[series]} != defined {expected}"
