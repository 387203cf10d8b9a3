"""Scrape cost: ``GET /metrics`` of the exporter vs ``prometheus_client.generate_latest``.

    .venv/bin/python benchmarks/bench_scrape.py [--versions 100 1000] [--versions-per-rule 4] [--repeat 5]

For each version count, builds an exporter (``create_app``, in-process) on a scratch SQLite file
holding that many rule versions (``--versions-per-rule`` per rule), each with executions in every
status in every mode, one completed backtest, and a performance snapshot; then measures:

- ``/metrics`` (Prometheus text, and OpenMetrics as Prometheus asks for it) through the ASGI app
  (Starlette's TestClient: routing and response included, no socket), median of ``--repeat``
  scrapes within the cache interval (no database query), CPU time (``time.process_time``);
- ``generate_latest`` of the very same families (a registry holding exactly the families the
  exporter exposes, re-collected on every call, the way prometheus_client serves any registry);
- series lines per rule version (sample lines of ``/metrics`` divided by the version count).

Targets (issue 11): ``/metrics`` <= 1.0x generate_latest, <= 60 series lines per version.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
from _common import print_environment, print_table
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from heurmetrics.config import Settings
from heurmetrics.live.snapshot import take_snapshot
from heurmetrics.metrics import definitions as d
from heurmetrics.server.app import create_app
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.sql_store import SqlStore

TARGET_RATIO = 1.0
TARGET_LINES_PER_VERSION = 60


def populate(app: object, n_versions: int, per_rule: int) -> None:
    """Versions with executions in every status and mode, one backtest each (through ingest)."""
    ingest = app.state.ingest  # type: ignore[attr-defined]
    now = time.time()
    equity = pd.Series(
        [1.0, 1.01, 0.99, 1.02, 1.03],
        index=pd.date_range(datetime.now(UTC) - timedelta(hours=5), periods=5, freq="h"),
    )
    for i in range(n_versions):
        rv, _created = ingest.register_rule_version(f"rule_{i // per_rule:04d}", f"{i % per_rule}.0.0")
        events = []
        for mode in d.EXECUTION_MODES:
            for status in d.EXECUTION_STATUSES:
                ok = status == "ok"
                events.append(
                    ingest.make_execution(
                        rv,
                        duration_seconds=0.004,
                        status=status,
                        outcome="bullish" if ok else None,
                        signal=1.0 if ok else None,
                        confidence=0.7 if ok else None,
                        mode=mode,
                        started_at=now - 60,
                        event_id=uuid.uuid4(),
                    )
                )
        ingest.write_executions(events)
        ingest.record_backtest(rv, equity, dataset="bench", periods_per_year=8760)


def timed(fn: object, repeat: int) -> float:
    """Median CPU seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.process_time() - started)
    return statistics.median(times)


def measure(n_versions: int, per_rule: int, repeat: int) -> list[str]:
    directory = Path(tempfile.mkdtemp(prefix="bench_scrape_"))
    url = f"sqlite:///{directory / 'scrape.db'}"
    migrations.upgrade(create_store_engine(url))
    settings = Settings(database_url=url, metrics_cache_seconds=3600, performance_snapshot_seconds=0)
    app = create_app(settings)
    populate(app, n_versions, per_rule)
    store = SqlStore.open(url)
    take_snapshot(store)
    store.close()
    client = TestClient(app)
    client.get("/metrics")  # the first scrape reads the store; the rest are within the cache interval
    text_page = client.get("/metrics").text
    lines = sum(1 for line in text_page.splitlines() if line and not line.startswith("#"))
    scrape = timed(lambda: client.get("/metrics"), repeat)
    scrape_om = timed(lambda: client.get("/metrics", headers={"Accept": OPENMETRICS}), repeat)
    # The same families, served the prometheus_client way: every collector collected per call.
    registry = app.state.registry
    store_families = getattr(app.state, "store_families", None)  # absent before issue 11
    if store_families is not None:
        for collector in store_families.collectors:
            registry.register(collector)
    baseline = timed(lambda: generate_latest(registry), repeat)
    baseline_om = timed(lambda: generate_openmetrics(registry), repeat)
    return [
        f"{n_versions:,}",
        f"{lines:,}",
        f"{lines / n_versions:.1f}",
        f"{len(text_page.encode()) / 1e6:.1f} MB",
        f"{scrape * 1000:.0f} ms",
        f"{baseline * 1000:.0f} ms",
        f"{scrape / baseline:.2f}x",
        f"{scrape_om * 1000:.0f} ms",
        f"{baseline_om * 1000:.0f} ms",
        f"{scrape_om / baseline_om:.2f}x",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, nargs="+", default=[100, 1000], help="rule version counts")
    parser.add_argument("--versions-per-rule", type=int, default=4, help="versions per rule (default 4)")
    parser.add_argument("--repeat", type=int, default=5, help="scrapes per measurement (median; default 5)")
    args = parser.parse_args()
    print_environment(
        "bench_scrape: GET /metrics vs generate_latest", {"versions per rule": str(args.versions_per_rule)}
    )
    rows = [measure(n, args.versions_per_rule, args.repeat) for n in args.versions]
    print_table(
        [
            "versions",
            "series lines",
            "lines/version",
            "text size",
            "/metrics text (CPU)",
            "generate_latest",
            "ratio",
            "/metrics OpenMetrics",
            "generate_latest OM",
            "ratio OM",
        ],
        rows,
        title=f"Scrape cost (targets: ratio <= {TARGET_RATIO}x, <= {TARGET_LINES_PER_VERSION} lines/version)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
