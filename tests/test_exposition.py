"""``GET /metrics`` of the exporter: the series budget, store families rendered once per refresh,
no database query per scrape within the cache interval, both exposition formats well formed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from heurmetrics.config import Settings
from heurmetrics.live.snapshot import take_snapshot
from heurmetrics.metrics import definitions as d
from heurmetrics.server.app import create_app

VERSIONS_PER_RULE = 4
RULES = 3
#: docs/metrics.md, "Series budget": 57 lines per rule version plus 12 per rule.
PER_VERSION, PER_RULE = 57, 12


def populate(app: Any, rules: int, per_rule: int) -> None:
    """Every version: executions in every mode with every status, one backtest (through ingest)."""
    ingest = app.state.ingest
    equity = pd.Series(
        [1.0, 1.02, 0.99], index=pd.date_range(datetime.now(UTC) - timedelta(hours=3), periods=3, freq="h")
    )
    for i in range(rules * per_rule):
        rv, _ = ingest.register_rule_version(f"rule_{i // per_rule}", f"{i % per_rule}.0.0")
        events = [
            ingest.make_execution(
                rv,
                duration_seconds=0.004,
                status=status,
                outcome="bullish" if status == "ok" else None,
                confidence=0.7 if status == "ok" else None,
                mode=mode,
                started_at=time.time() - 60,
                event_id=uuid.uuid4(),
            )
            for mode in d.EXECUTION_MODES
            for status in d.EXECUTION_STATUSES
        ]
        ingest.write_executions(events)
        ingest.record_backtest(rv, equity, dataset="t", periods_per_year=8760)
    take_snapshot(ingest.store)


@pytest.fixture
def served(migrated_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=migrated_url, metrics_cache_seconds=3600, performance_snapshot_seconds=0))
    populate(app, RULES, VERSIONS_PER_RULE)
    with TestClient(app) as client:
        yield client


def series_lines(page: str) -> list[str]:
    return [line for line in page.splitlines() if line and not line.startswith("#")]


def test_a_scrape_fits_the_series_budget(served: TestClient) -> None:
    page = served.get("/metrics").text
    versions = RULES * VERSIONS_PER_RULE
    per_version = [
        line for line in series_lines(page) if 'rule_version="' in line or line.startswith(d.BACKTEST_DURATION.name)
    ]
    assert len(per_version) <= versions * PER_VERSION + RULES * PER_RULE
    assert len(per_version) / versions <= 60  # the budget, at four versions per rule
    assert "_created" not in page
    # The store-only performance windows and the per-mode duration histogram are gone.
    windows = {
        s.labels[d.WINDOW] for f in text_string_to_metric_families(page) for s in f.samples if d.WINDOW in s.labels
    }
    assert windows == set(d.EXPORTED_PERFORMANCE_WINDOWS)
    duration = [
        s
        for f in text_string_to_metric_families(page)
        for s in f.samples
        if s.name.startswith(d.HEURISTIC_EXECUTION_DURATION.name)
    ]
    assert duration and all(set(s.labels) - {"le"} == set(d.HEURISTIC_EXECUTION_DURATION.labels) for s in duration)


def test_no_database_query_and_no_re_rendering_within_the_cache_interval(served: TestClient) -> None:
    app: Any = served.app
    statements: list[str] = []
    engine = app.state.ingest.store.engine

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    first = served.get("/metrics").text
    rendered = app.state.store_families.render(False)
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            assert served.get("/metrics").status_code == 200
            served.get("/metrics", headers={"Accept": OPENMETRICS})
        assert statements == []
        assert app.state.store_families.render(False) is rendered  # the same bytes: not rendered again
        # A new version is a write that invalidates the cache: the next scrape reads the store.
        assert served.post("/v1/rule-versions", json={"rule": "late", "version": "1"}).status_code == 201
        statements.clear()
        after = served.get("/metrics").text
        assert statements, "the scrape after an invalidating write must read the store"
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert 'rule="late"' not in first and 'rule="late"' in after


def test_both_formats_are_well_formed_and_carry_the_same_series(served: TestClient) -> None:
    text_page = served.get("/metrics")
    assert text_page.headers["content-type"].startswith("text/plain")
    om_page = served.get("/metrics", headers={"Accept": OPENMETRICS})
    assert om_page.headers["content-type"].startswith("application/openmetrics-text")
    assert om_page.text.endswith("# EOF\n") and om_page.text.count("# EOF") == 1
    om = {(s.name, tuple(sorted(s.labels.items()))) for f in parse_openmetrics(om_page.text) for s in f.samples}
    text = {
        (s.name, tuple(sorted(s.labels.items())))
        for f in text_string_to_metric_families(text_page.text)
        for s in f.samples
    }
    store_series = {x for x in text if x[0].startswith(("backtest_result_", "rule_version"))}
    assert store_series and store_series <= om
    names = [f.name for f in parse_openmetrics(om_page.text)]
    assert len(names) == len(set(names)), "a family appears twice"
