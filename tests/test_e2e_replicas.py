"""Two ``heurmetrics serve`` replicas on one PostgreSQL database, scraped by a real Prometheus
with the committed rule files, fed by one ``ExporterClient`` that knows both URLs.

1. Both up: the client spreads the batches over both; once flushed and scraped, the count summed
   over the instances equals the stored rows exactly, and the committed recording rules give one
   series per rule (not per instance).
2. Replica B is SIGKILLed while the client is sending, then restarted on the same port: every
   execution is stored exactly once (rows == sent, the very ids that were sent), and what
   Prometheus misses is at most what B counted after its last scrape — the limit of a pull model
   (``docs/scaling.md``). Prometheus never counts more than the rows.

Not flaky by construction: nothing waits a fixed time. Each replica's own ``/metrics`` gives its
final counts; B's first life is read from Prometheus' raw samples scraped before the restart.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import alerts
from heurmetrics.monitoring.config import MonitoringConfig
from heurmetrics.sdk.http_client import ExporterClient
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.conftest import free_port, require_binary
from tests.e2e_helpers import PrometheusServer, executions_total, exporter, fresh_postgres_database
from tests.e2e_helpers import prometheus_server as start_prometheus

pytestmark = [pytest.mark.slow, pytest.mark.prometheus, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
JOB = "heurmetrics"
RULE, VERSION = "replicas.e2e", "1.0.0"
BATCH = 50
BEFORE_KILL, DURING_KILL, AFTER_RESTART = 1500, 3000, 1000
EXECUTIONS = d.HEURISTIC_EXECUTIONS.sample_name
WAIT = 60.0


def record(client: ExporterClient, n: int, *, pause_every: int = 0) -> list[str]:
    """Record ``n`` executions of mixed status, outcome and mode; returns their event ids."""
    ids = []
    outcomes, modes = ("bullish", "bearish", "neutral"), ("live", "paper", "backtest")
    for i in range(n):
        failed = i % 13 == 0
        eid = client.record_execution(
            RULE,
            VERSION,
            duration_seconds=(i % 40) / 1000,
            status="error" if failed else "ok",
            outcome=None if failed else outcomes[i % 3],
            confidence=None if failed else (i % 10) / 10,
            mode=modes[i % 3],
        )
        ids.append(str(eid))
        if pause_every and i % pause_every == 0:
            time.sleep(0.005)  # spread the run over a few seconds, so the kill lands mid-run
    return ids


def stored_ids(url: str) -> list[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(text("SELECT event_id FROM heuristic_executions"))]
    finally:
        engine.dispose()


def poll(what: str, probe: Any, timeout: float = WAIT) -> Any:
    """Call ``probe`` until it returns something truthy (bounded); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: still {last!r} after {timeout} s")


def last_values_before(prometheus: PrometheusServer, instance: str, before: float) -> float:
    """Sum over the series of ``instance`` of the last raw sample scraped before ``before``."""
    total = 0.0
    for series in prometheus.query(f'{EXECUTIONS}{{instance="{instance}"}}[10m]'):
        values = [float(v) for ts, v in series["values"] if float(ts) < before]
        total += values[-1] if values else 0.0
    return total


def test_two_replicas_count_exactly_and_a_killed_one_loses_nothing(postgres_server_url: str, tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    cfg = MonitoringConfig()
    rate_record = alerts.executions_rate_record("5m")
    assert rate_record in alerts.recording_rule_names(cfg)
    rule_files = [ROOT / "alerts" / alerts.RECORDING_FILE, ROOT / "alerts" / alerts.ALERTS_FILE]
    port_a, port_b = free_port(), free_port()
    instance_b = f"127.0.0.1:{port_b}"
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_postgres_database(postgres_server_url))
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        a = stack.enter_context(exporter(url, port_a, tmp_path / "a.log"))
        b = stack.enter_context(exporter(url, port_b, tmp_path / "b1.log"))
        (tmp_path / "prometheus").mkdir()
        prometheus = stack.enter_context(
            start_prometheus(binary, tmp_path / "prometheus", JOB, [port_a, port_b], rule_files)
        )
        client = stack.enter_context(
            ExporterClient([a.base_url, b.base_url], batch_size=BATCH, flush_interval=0.01, max_backoff=0.2)
        )
        client.register_rule_version(RULE, VERSION)

        # --- 1. both up: summed over instances == rows, exactly -------------------------------
        sent = record(client, BEFORE_KILL)
        assert client.flush(timeout=WAIT).complete
        assert len(stored_ids(url)) == BEFORE_KILL
        b_before_kill = executions_total(b.metrics_text())
        assert 0 < b_before_kill < BEFORE_KILL  # the client spread the batches over both
        prometheus.wait_for(f"sum({EXECUTIONS})", BEFORE_KILL, timeout=WAIT)
        per_instance = {
            r["metric"]["instance"]: float(r["value"][1]) for r in prometheus.query(f"sum by (instance) ({EXECUTIONS})")
        }
        assert per_instance[instance_b] == b_before_kill
        # The committed recording rule aggregates over the instances: one series per rule.
        recorded = poll(rate_record, lambda: prometheus.query(f'{rate_record}{{{d.RULE}="{RULE}"}}'))
        assert [r["metric"] for r in recorded] == [{"__name__": rate_record, d.RULE: RULE}]

        # --- 2. B is SIGKILLed mid-run, then restarted on its port ----------------------------
        during: list[str] = []
        sender = threading.Thread(target=lambda: during.extend(record(client, DURING_KILL, pause_every=BATCH)))
        sender.start()
        poll("replica B ingesting the second run", lambda: executions_total(b.metrics_text()) > b_before_kill)
        b.proc.kill()  # SIGKILL: no shutdown, no last scrape
        b.proc.wait(timeout=10)
        sender.join(timeout=WAIT)
        assert not sender.is_alive()
        assert client.flush(timeout=WAIT).complete  # everything went to A meanwhile
        restarted_at = time.time()
        b = stack.enter_context(exporter(url, port_b, tmp_path / "b2.log"))
        sent += during + record(client, AFTER_RESTART)
        assert client.flush(timeout=WAIT).complete

        # --- the store: every execution once, the very ids sent ----------------------------------
        rows = stored_ids(url)
        assert len(rows) == len(sent) == BEFORE_KILL + DURING_KILL + AFTER_RESTART
        assert sorted(rows) == sorted(sent)

        # --- Prometheus: exact for the live processes, short by at most B's unscraped tail ------
        a_final = executions_total(a.metrics_text())
        b2_final = executions_total(b.metrics_text())
        prometheus.wait_for(f"sum({EXECUTIONS})", a_final + b2_final, timeout=WAIT)
        b_counted = len(rows) - a_final - b2_final  # what B's first life counted (each row once)
        b_scraped = last_values_before(prometheus, instance_b, restarted_at)
        missed = len(rows) - (a_final + b2_final + b_scraped)
        figures = f"rows={len(rows)} A={a_final} B1 counted={b_counted} scraped={b_scraped} B2={b2_final}"
        assert b_before_kill <= b_scraped <= b_counted, figures  # never more than the rows, nor less than seen
        assert 0 <= missed <= b_counted - b_before_kill, figures  # at most what B counted after its last scrape
