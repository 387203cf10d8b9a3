"""End to end: ``heurmetrics serve`` as a real subprocess, fed over HTTP, checked against the database.

The exporter runs once per backend for the whole module (PostgreSQL configured through
HEURMETRICS_* variables with a token, SQLite through command-line options without one).
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.conftest import free_port, require_binary
from tests.e2e_helpers import (
    Exporter,
    clean_env,
    execution,
    execution_rows_by_series,
    execution_series,
    executions_total,
    exporter,
    fresh_postgres_database,
    mixed_executions,
    run_cli,
    table_counts,
)

pytestmark = pytest.mark.slow
TOKEN = "e2e-" + uuid.uuid4().hex
BACKENDS = [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]


def upgrade_in_process(url: str) -> None:
    engine = create_store_engine(url)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def empty_database(backend: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    """A brand-new empty database of ``backend`` (a Postgres database of its own, or a file)."""
    if backend == "postgres":
        server_url = request.getfixturevalue("postgres_server_url")  # skips (or fails in CI) without Postgres
        with fresh_postgres_database(server_url) as url:
            yield url
    else:
        yield f"sqlite:///{directory / 'heurmetrics-e2e.db'}"


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    directory = tmp_path_factory.mktemp(f"serve-{request.param}")
    with empty_database(request.param, request, directory) as url:
        upgrade_in_process(url)
        postgres = request.param == "postgres"
        with exporter(
            url, free_port(), directory / "serve.log", token=TOKEN if postgres else None, via_env=postgres
        ) as running:
            yield running


def unique_rule() -> str:
    return f"e2e.{uuid.uuid4().hex[:8]}"


def flat(text: str) -> str:
    """Output with line wrapping undone (rich wraps long messages)."""
    return " ".join(text.split())


def test_http_ingest_counts_equal_table_rows(served: Exporter) -> None:
    rule = unique_rule()
    before = table_counts(served.database_url)
    first_batch = mixed_executions(rule, "1.0.0", 400)
    second_batch = mixed_executions(rule, "2.0.0", 300, offset=400)
    a, b = execution(rule, "2.0.0"), execution(rule, "2.0.0", status="timeout", outcome=None)

    with served.client() as http:
        for version, expected in (("1.0.0", 201), ("1.0.0", 200), ("2.0.0", 201)):
            response = http.post(
                "/v1/rule-versions", json={"rule": rule, "version": version, "params": {"window": version}}
            )
            assert response.status_code == expected, response.text
        answers = [
            http.post("/v1/executions", json={"executions": first_batch}),
            http.post("/v1/executions", json={"executions": second_batch}),
            http.post("/v1/executions", json={"executions": first_batch}),  # a retry: all duplicates
            http.post("/v1/executions", json={"executions": [a, a, b]}),
        ]
        assert [r.status_code for r in answers] == [202] * 4, [r.text for r in answers]
        assert [r.json() for r in answers] == [
            {"accepted": 400, "duplicates": 0},
            {"accepted": 300, "duplicates": 0},
            {"accepted": 0, "duplicates": 400},
            {"accepted": 2, "duplicates": 1},
        ]
        if served.token:  # without the token nothing gets in
            anonymous = httpx.post(f"{served.base_url}/v1/executions", json={"executions": [execution(rule, "1.0.0")]})
            assert anonymous.status_code == 401

    after = table_counts(served.database_url)
    assert after["heuristic_executions"] - before["heuristic_executions"] == 702
    assert after["rule_versions"] - before["rule_versions"] == 2

    page = served.metrics_text()
    assert execution_series(page) == {k: float(v) for k, v in execution_rows_by_series(served.database_url).items()}
    assert executions_total(page) == after["heuristic_executions"]
    mine = {k: v for k, v in execution_series(page).items() if k[0] == rule}
    assert sum(mine.values()) == 702
    assert sum(v for k, v in mine.items() if k[1] == "2.0.0" and k[3] == "timeout") >= 1


def test_promtool_accepts_the_live_metrics_page(served: Exporter) -> None:
    promtool = require_binary("promtool")
    rule = unique_rule()
    with served.client() as http:
        assert http.post("/v1/rule-versions", json={"rule": rule, "version": "1"}).status_code == 201
        batch = mixed_executions(rule, "1", 60)
        assert http.post("/v1/executions", json={"executions": batch}).json()["accepted"] == 60
        equity = {
            "timestamps": [f"2025-03-{day:02d}T00:00:00Z" for day in range(1, 29)],
            "values": [100 + (day % 5) - day / 10 for day in range(1, 29)],
        }
        backtest = http.post(
            "/v1/backtests",
            json={"rule": rule, "rule_version": "1", "dataset": "d", "periods_per_year": 365, "equity": equity},
        )
        assert backtest.status_code == 201, backtest.text

    page = served.metrics_text()
    assert executions_total(page) == table_counts(served.database_url)["heuristic_executions"]
    check = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"promtool check metrics:\n{check.stdout}{check.stderr}"


def test_serve_refuses_a_public_address_without_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'public.db'}"
    upgrade_in_process(url)
    for host in ("0.0.0.0", "::"):
        result = run_cli("serve", "--host", host, "--port", str(free_port()), "--database-url", url, timeout=30)
        assert result.returncode != 0, f"serve --host {host} without a token did not refuse: {result.stderr}"
        message = flat(result.stderr)
        assert "token" in message.lower() and "HEURMETRICS_API_TOKEN" in message, message


@pytest.mark.parametrize("backend", BACKENDS)
def test_unmigrated_database_is_refused_until_db_upgrade(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    head = migrations.head_revision()
    with empty_database(backend, request, tmp_path) as url:
        secret = None
        if backend == "postgres" and make_url(url).password is None:
            secret = "pw-" + uuid.uuid4().hex  # trust auth ignores it; it must never be printed
            url = make_url(url).set(password=secret).render_as_string(hide_password=False)
        secret = secret or make_url(url).password

        # Every step on SQLite; on Postgres only what differs (connecting, refusing, migrating).
        everything = backend == "sqlite"
        runs = []
        if everything:
            current = run_cli("db", "current", "--database-url", url)  # reading never creates the file
            assert current.returncode == 2, current.stdout + current.stderr
            assert "no such database file" in flat(current.stderr) and "heurmetrics db upgrade" in flat(current.stderr)
            runs.append(current)

        serve = run_cli("serve", "--port", str(free_port()), "--database-url", url, timeout=30)
        assert serve.returncode != 0
        assert "heurmetrics db upgrade" in flat(serve.stderr), serve.stderr

        # The URL from the environment this time: options and HEURMETRICS_* must agree.
        env = clean_env(HEURMETRICS_DATABASE_URL=url)
        upgraded = run_cli("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert f"upgraded from empty to {head}" in flat(upgraded.stdout)
        if everything:
            again = run_cli("db", "upgrade", env=env)
            assert again.returncode == 0 and f"already at head ({head})" in flat(again.stdout)
            runs.append(again)
        current = run_cli("db", "current", "--database-url", url)
        assert current.returncode == 0, current.stdout + current.stderr
        assert f"current: {head}  head: {head}" in current.stdout and "(at head)" in current.stdout
        runs += [serve, upgraded, current]

        outputs = [r.stdout + r.stderr for r in runs]
        if secret:
            assert not any(str(secret) in out for out in outputs), "a database password was printed"
        assert table_counts(url)["rule_versions"] == 0  # the schema exists and is empty
