"""Helpers shared by the API and end-to-end tests: request bodies, /metrics parsing, table
counts, and real subprocesses (``heurmetrics serve``, Prometheus) that are always stopped.

Metric names come from :mod:`heurmetrics.metrics.definitions`, never from string literals.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import make_url

from heurmetrics.metrics import definitions as d
from heurmetrics.store.engine import create_store_engine

TABLES = ("rules", "rule_versions", "heuristic_executions", "backtest_runs", "backtest_folds", "equity_points")
#: Labels of one ``heuristic_executions_total`` series, in definition order.
ExecKey = tuple[str, ...]


# --- request bodies ------------------------------------------------------------------------
def execution(rule: str, version: str, **fields: Any) -> dict[str, Any]:
    """One valid execution item of ``POST /v1/executions`` (override any field)."""
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "rule": rule,
        "rule_version": version,
        "duration_seconds": 0.012,
        "status": "ok",
        "outcome": "bullish",
        "signal": 0.5,
        "confidence": 0.8,
        "mode": "live",
    }
    body.update(fields)
    return body


def mixed_executions(rule: str, version: str, n: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """``n`` valid executions over several statuses, outcomes and modes (deterministic mix)."""
    outcomes = ("bullish", "bearish", "neutral", "no_signal")
    modes = ("live", "paper", "backtest")
    items = []
    for i in range(offset, offset + n):
        if i % 17 == 0:
            item = execution(
                rule,
                version,
                status="error",
                outcome=None,
                signal=None,
                confidence=None,
                error_type="ValueError",
                mode=modes[i % 3],
            )
        elif i % 23 == 0:
            item = execution(
                rule, version, status="timeout", outcome=None, signal=None, confidence=None, mode=modes[i % 3]
            )
        else:
            item = execution(
                rule,
                version,
                outcome=outcomes[i % 4],
                mode=modes[i % 3],
                duration_seconds=(i % 50) / 1000,
                confidence=(i % 11) / 10,
            )
        items.append(item)
    return items


# --- /metrics --------------------------------------------------------------------------------
def samples(metrics_text: str, spec: d.MetricSpec, series: str | None = None) -> list[Any]:
    """Samples of the family ``spec`` named ``series`` (default: its PromQL sample name)."""
    wanted = series or spec.sample_name
    return [
        s
        for family in text_string_to_metric_families(metrics_text)
        if family.name in (spec.name, wanted)
        for s in family.samples
        if s.name == wanted
    ]


def execution_series(metrics_text: str) -> dict[ExecKey, float]:
    """Non-zero ``heuristic_executions_total`` series keyed by (rule, version, mode, status, outcome)."""
    out: dict[ExecKey, float] = {}
    for s in samples(metrics_text, d.HEURISTIC_EXECUTIONS):
        if s.value:
            out[tuple(s.labels[label] for label in d.HEURISTIC_EXECUTIONS.labels)] = s.value
    return out


def executions_total(metrics_text: str) -> float:
    return sum(s.value for s in samples(metrics_text, d.HEURISTIC_EXECUTIONS))


def ingested(metrics_text: str, kind: str, result: str) -> float:
    found = [
        s.value
        for s in samples(metrics_text, d.INGESTED_EVENTS)
        if s.labels[d.KIND] == kind and s.labels[d.RESULT] == result
    ]
    assert len(found) == 1, f"expected one {d.INGESTED_EVENTS.sample_name}{{{kind},{result}}} series, got {found}"
    return found[0]


# --- the database, read directly --------------------------------------------------------------
def table_counts(url: str) -> dict[str, int]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}
    finally:
        engine.dispose()


def execution_rows_by_series(url: str) -> dict[ExecKey, int]:
    """Stored executions grouped like the counter's labels (no outcome → ``none``)."""
    engine = create_store_engine(url)
    query = text(
        "SELECT r.name, v.version, m.name, s.name, e.outcome, count(*) FROM heuristic_executions e "
        "JOIN rule_versions v ON v.id = e.rule_version_id JOIN rules r ON r.id = v.rule_id "
        "JOIN execution_modes m ON m.code = e.mode JOIN execution_statuses s ON s.code = e.status "
        "GROUP BY r.name, v.version, m.name, s.name, e.outcome"
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    finally:
        engine.dispose()
    return {(r[0], r[1], r[2], r[3], r[4] or d.NO_OUTCOME): int(r[5]) for r in rows}


def rule_version_rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_store_engine(url)
    query = text(
        "SELECT r.name, v.version, v.content_hash, v.params, v.source, v.created_by FROM rule_versions v "
        "JOIN rules r ON r.id = v.rule_id ORDER BY v.id"
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    finally:
        engine.dispose()
    # A raw query returns SQLite's JSON column as text (Postgres JSONB as a dict): decode it.
    return [(r[0], r[1], r[2], json.loads(r[3]) if isinstance(r[3], str) else r[3], *r[4:]) for r in rows]


@contextlib.contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (its own name), dropped on exit."""
    admin_dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)
    name = f"heurmetrics_e2e_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- subprocesses ------------------------------------------------------------------------------
def heurmetrics_executable() -> str:
    """The ``heurmetrics`` console script of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "heurmetrics"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("heurmetrics")
    assert found, "the heurmetrics console script is not installed (pip install -e .)"
    return found


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without any HEURMETRICS_* setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEURMETRICS_")}
    env.update(overrides)
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``heurmetrics ARGS`` to completion (killed by subprocess.run on timeout)."""
    return subprocess.run(
        [heurmetrics_executable(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else clean_env(),
    )


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate one child we started (by its own handle), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_http_ok(url: str, proc: subprocess.Popen[Any], log: Path, *, timeout: float = 45) -> None:
    """Poll ``url`` until it answers 200; fail early (with the log) if the process exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} was up:\n{_tail(log)}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout} s (last: {last}):\n{_tail(log)}")


class Exporter:
    """A running ``heurmetrics serve`` subprocess."""

    def __init__(self, proc: subprocess.Popen[Any], port: int, database_url: str, log: Path, token: str | None) -> None:
        self.proc = proc
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.database_url = database_url
        self.log = log
        self.token = token

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def metrics_text(self) -> str:
        response = httpx.get(f"{self.base_url}/metrics", timeout=30)
        assert response.status_code == 200, response.text
        return response.text

    def log_tail(self) -> str:
        return _tail(self.log)


@contextlib.contextmanager
def exporter(
    database_url: str,
    port: int,
    log: Path,
    *,
    token: str | None = None,
    via_env: bool = False,
    extra_args: Sequence[str] = (),
) -> Iterator[Exporter]:
    """Start ``heurmetrics serve`` on 127.0.0.1:``port``; always stopped on exit.

    ``via_env`` passes the database URL and token as HEURMETRICS_* variables instead of options.
    """
    args = [
        heurmetrics_executable(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra_args,
    ]
    env = clean_env()
    if via_env:
        env["HEURMETRICS_DATABASE_URL"] = database_url
        if token:
            env["HEURMETRICS_API_TOKEN"] = token
    else:
        args += ["--database-url", database_url]
        if token:
            args += ["--api-token", token]
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield Exporter(proc, port, database_url, log, token)
    finally:
        stop(proc)


# --- Prometheus ---------------------------------------------------------------------------------
class PrometheusServer:
    """A running Prometheus, queried through its HTTP API."""

    def __init__(self, base_url: str, log: Path) -> None:
        self.base_url = base_url
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.base_url}/api/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=promql)["result"])

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return None if not result else float(result[0]["value"][1])

    def wait_for(self, promql: str, expected: float, timeout: float = 60) -> None:
        """Poll until ``promql`` reads exactly ``expected`` (bounded); fail with the last answer."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.scalar(promql)
            if last == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{promql} = {last} after {timeout} s, expected {expected}")


@contextlib.contextmanager
def prometheus_server(
    binary: str, directory: Path, job: str, target_port: int | Sequence[int], rule_files: Sequence[Path] = ()
) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``127.0.0.1:target_port`` (one port, or several: exporter
    replicas of one job) every second (rules evaluated every second too), with exemplar storage;
    always stopped on exit."""
    ports = [target_port] if isinstance(target_port, int) else list(target_port)
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
    config = directory / "prometheus.yml"
    rules = "".join(f"  - {path}\n" for path in rule_files)
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        + (f"rule_files:\n{rules}" if rule_files else "")
        + "scrape_configs:\n"
        f"  - job_name: {job}\n"
        "    static_configs:\n"
        f"      - targets: [{targets}]\n"
    )
    port = _free_port()
    log = directory / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/-/ready", proc, log, timeout=60)
        yield PrometheusServer(f"http://127.0.0.1:{port}", log)
    finally:
        stop(proc)


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()
