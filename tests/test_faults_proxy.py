"""The faults that used to lose data or hang, reproduced through a TCP fault proxy (real PostgreSQL).

Each test is one case of issue 14: the spool refusing the first batch of an outage (Recorder and
ExporterClient), a COMMIT whose answer is lost (exporter and Recorder), a silent database
connection, a transaction orphaned right after its COPY, and pool exhaustion. The proxy
(:mod:`tests.fault_proxy`) sits between the code under test and PostgreSQL (or the exporter).
Every PostgreSQL bound is shortened through the ``HEURMETRICS_DB_*`` settings so each test takes
seconds; no assertion depends on timing (bounded waits only decide when to stop waiting).
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from heurmetrics import Recorder
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk.delivery import SpoolTooSmall
from heurmetrics.sdk.http_client import ExporterClient
from heurmetrics.sdk.spool import Spool, SpoolError
from tests.conftest import free_port
from tests.e2e_helpers import clean_env, executions_total, heurmetrics_executable, stop, wait_http_ok
from tests.fault_proxy import FaultProxy, fault_proxy
from tests.test_faults import counter_total, migrated_database, stored_ids

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: Short bounds for the tests (production defaults: docs/reliability.md).
SHORT_TIMEOUTS = {
    "HEURMETRICS_DB_CONNECT_TIMEOUT": "1",
    "HEURMETRICS_DB_STATEMENT_TIMEOUT": "5",
    "HEURMETRICS_DB_LOCK_TIMEOUT": "1",
    "HEURMETRICS_DB_IDLE_IN_TRANSACTION_TIMEOUT": "2",
    "HEURMETRICS_DB_CHECKOUT_TIMEOUT": "2",
    "HEURMETRICS_DB_POOL_TIMEOUT": "1",
    "HEURMETRICS_PERFORMANCE_SNAPSHOT_SECONDS": "0",
}


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in SHORT_TIMEOUTS.items():
        monkeypatch.setenv(key, value)
    return SHORT_TIMEOUTS


@contextlib.contextmanager
def proxied_database(server_url: str) -> Iterator[tuple[str, str, FaultProxy]]:
    """A fresh migrated database: (direct URL, URL through the fault proxy, the proxy)."""
    with migrated_database(server_url) as (url, _outage):
        parsed = make_url(url)
        with fault_proxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            through = parsed.set(host="127.0.0.1", port=proxy.port, query={"sslmode": "disable"})
            yield url, through.render_as_string(hide_password=False), proxy


class Exporter:
    """``heurmetrics serve`` with the short bounds; always stopped."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [heurmetrics_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--database-url", database_url]
        with log.open("a") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=clean_env(**SHORT_TIMEOUTS))
        wait_http_ok(f"{self.base}/healthz", self.proc, log)

    def executions_counted(self) -> float:
        return executions_total(httpx.get(f"{self.base}/metrics", timeout=10).text)

    def stop(self) -> None:
        stop(self.proc)


@contextlib.contextmanager
def exporter(database_url: str, log: Path) -> Iterator[Exporter]:
    server = Exporter(database_url, log)
    try:
        yield server
    finally:
        server.stop()


def failing_disk(spool: Spool | None) -> dict[str, bool]:
    """Make ``spool``'s appends fail like a full disk while the returned switch is on."""
    assert spool is not None
    state = {"full": False}
    real = spool.append

    def append(payload: bytes, count: int) -> None:
        if state["full"]:
            raise OSError(errno.EIO, f"short write to {spool.directory}")
        real(payload, count)

    spool.append = append  # type: ignore[method-assign]
    return state


def executions_counter(rec: Recorder) -> float:
    return counter_total(rec, d.HEURISTIC_EXECUTIONS.sample_name)


def assert_stored_and_counted(url: str, ids: list[uuid.UUID], n: int, counted: float) -> None:
    """Rows == the ids sent (each once) == the Prometheus count."""
    rows, stored = stored_ids(url)
    assert rows == n and stored == set(ids)
    assert counted == rows


# --- 1. the spool refuses the first batch of an outage ---------------------------------------------
def test_recorder_delivers_after_an_outage_that_began_with_a_refusing_spool(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with proxied_database(postgres_server_url) as (url, through, proxy):
        rec = Recorder(through, spool_dir=tmp_path / "spool", spool_after=0.2, batch_size=500)
        try:
            disk = failing_disk(rec.spool)
            rv = rec.register_rule_version("spool_refuses", "1.0.0")
            ids = [rec.record_execution(rv, duration_seconds=0.001) for _ in range(1000)]
            assert rec.flush(30).complete
            disk["full"] = True  # the disk is full when the outage starts ...
            proxy.refuse()
            ids += [rec.record_execution(rv, duration_seconds=0.001, outcome="bearish") for _ in range(3000)]
            during = rec.flush(2)
            assert during.spooled == 0 and during.pending > 0 and during.last_error  # held in memory, reported
            proxy.restore()  # ... and stays full after the database is back
            after = rec.flush(30)
            assert after.complete, after
        finally:
            rec.close(5)
        assert_stored_and_counted(url, ids, 4000, executions_counter(rec))


def test_exporter_client_delivers_after_an_outage_that_began_with_a_refusing_spool(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with migrated_database(postgres_server_url) as (url, _outage), exporter(url, tmp_path / "serve.log") as server:
        with fault_proxy("127.0.0.1", server.port, postgres=False) as proxy:
            client = ExporterClient(
                f"http://127.0.0.1:{proxy.port}", spool_dir=tmp_path / "spool", spool_after=0.2, batch_size=500,
                timeout=5,
            )
            try:
                disk = failing_disk(client.spool)
                client.register_rule_version("spool_refuses", "1")
                ids = [client.record_execution("spool_refuses", "1", duration_seconds=0.001) for _ in range(500)]
                assert client.flush(30).complete
                disk["full"] = True
                proxy.refuse()
                ids += [client.record_execution("spool_refuses", "1", duration_seconds=0.001) for _ in range(2500)]
                during = client.flush(2)
                assert during.spooled == 0 and during.pending > 0 and during.last_error
                proxy.restore()
                after = client.flush(30)
                assert after.complete, after
            finally:
                client.close(5)
        assert_stored_and_counted(url, ids, 3000, server.executions_counted())


def test_a_spool_filling_up_mid_outage_recovers_everything(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with proxied_database(postgres_server_url) as (url, through, proxy):
        # Room for about two batches of 500: the outage fills it and then holds batches in memory.
        rec = Recorder(through, spool_dir=tmp_path / "spool", spool_after=0.2, batch_size=500,
                       spool_max_bytes=150_000, full_policy="block", block_timeout=30)
        try:
            rv = rec.register_rule_version("spool_fills", "1.0.0")
            proxy.refuse()
            ids = [rec.record_execution(rv, duration_seconds=0.001) for _ in range(4000)]
            during = rec.flush(3)
            assert during.spooled > 0 and during.pending > 0
            proxy.restore()
            assert rec.flush(30).complete
        finally:
            rec.close(5)
        assert_stored_and_counted(url, ids, 4000, executions_counter(rec))


def test_a_spool_limit_below_one_batch_is_refused_at_construction(sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(SpoolTooSmall, match="cannot hold one batch of 5000 events"):
        Recorder(sqlite_url, spool_dir=tmp_path / "rec", spool_max_bytes=100_000, batch_size=5000)
    with pytest.raises(SpoolTooSmall, match="raise spool_max_bytes or lower batch_size"):
        ExporterClient("http://127.0.0.1:9", spool_dir=tmp_path / "http", spool_max_bytes=100_000, batch_size=1000)
    # Nothing was left locked: the same directories open with a sufficient limit.
    Recorder(sqlite_url, spool_dir=tmp_path / "rec", spool_max_bytes=2_000_000, batch_size=5000).close()


def test_an_unusable_spool_directory_is_a_heurmetrics_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with pytest.raises(SpoolError, match=str(blocker / "spool")):
        Spool(blocker / "spool")
    with pytest.raises(SpoolError, match="/sys/heurmetrics-spool"):  # a read-only file system
        Spool("/sys/heurmetrics-spool")


# --- 2. the answer to a COMMIT is lost ------------------------------------------------------------
def test_exporter_counts_a_batch_whose_commit_answer_was_lost(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with proxied_database(postgres_server_url) as (url, through, proxy), exporter(through, tmp_path / "s.log") as srv:
        with ExporterClient(srv.base, batch_size=1000, max_backoff=0.5) as client:
            client.register_rule_version("lost_commit", "1")
            proxy.drop_commit_answers(1)  # the next COMMIT (the first batch's) succeeds unseen
            ids = [client.record_execution("lost_commit", "1", duration_seconds=0.001) for _ in range(3000)]
            assert client.flush(60).complete
        assert proxy.dropped_answers == 1
        assert_stored_and_counted(url, ids, 3000, srv.executions_counted())


def test_recorder_counts_caller_ids_whose_commit_answer_was_lost(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with proxied_database(postgres_server_url) as (url, through, proxy):
        rec = Recorder(through, batch_size=2500)
        try:
            rv = rec.register_rule_version("lost_commit", "1.0.0")
            proxy.drop_commit_answers(2)  # two batches: their commits succeed unseen
            ids = [rec.record_execution(rv, duration_seconds=0.001, event_id=uuid.uuid4()) for _ in range(10_000)]
            assert rec.flush(60).complete
        finally:
            rec.close(5)
        assert proxy.dropped_answers == 2
        assert_stored_and_counted(url, ids, 10_000, executions_counter(rec))


# --- 3. a silent database connection --------------------------------------------------------------
def test_a_silent_connection_is_detected_and_the_recorder_spools(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with proxied_database(postgres_server_url) as (url, through, proxy):
        rec = Recorder(through, spool_dir=tmp_path / "spool", spool_after=0.5, batch_size=1000)
        try:
            rv = rec.register_rule_version("silent", "1.0.0")
            ids = [rec.record_execution(rv, duration_seconds=0.001) for _ in range(1000)]
            assert rec.flush(30).complete
            proxy.silence()  # open connections go silent (no RST) ...
            proxy.hang()  # ... and new ones are never answered
            ids += [rec.record_execution(rv, duration_seconds=0.001) for _ in range(3000)]
            # Detected within the checkout bound (2 s here) plus a connect timeout (1 s): spooled.
            during = rec.flush(20)
            assert during.durable and during.spooled == 3000, during
            assert during.last_error
            proxy.restore()
            assert rec.flush(30).complete
        finally:
            rec.close(5)
        assert_stored_and_counted(url, ids, 4000, executions_counter(rec))


# --- 4. a transaction orphaned right after its COPY -----------------------------------------------
def test_an_orphaned_transaction_is_ended_and_other_clients_are_served(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with proxied_database(postgres_server_url) as (url, through, proxy), exporter(through, tmp_path / "s.log") as srv:
        assert httpx.post(f"{srv.base}/v1/rule-versions", json={"rule": "orphan", "version": "1"}).is_success
        statuses: list[int] = []
        other_ids: list[str] = []
        with ExporterClient(srv.base, batch_size=1000, max_backoff=0.5) as stuck:
            proxy.silence_after_copy(1)  # this client's first batch: COPY done, then silence
            stuck_ids = [stuck.record_execution("orphan", "1", duration_seconds=0.001) for _ in range(1000)]
            time.sleep(0.5)  # its batch is in flight (a pause, not an assertion)

            def other_client() -> None:
                with httpx.Client(base_url=srv.base, timeout=30) as http:
                    for _ in range(10):
                        batch = [{"event_id": str(uuid.uuid4()), "rule": "orphan", "rule_version": "1",
                                  "duration_seconds": 0.002} for _ in range(100)]
                        for _attempt in range(20):
                            response = http.post("/v1/executions", json={"executions": batch})
                            statuses.append(response.status_code)
                            if response.is_success:
                                other_ids.extend(item["event_id"] for item in batch)
                                break

            others = [threading.Thread(target=other_client) for _ in range(3)]
            for t in others:
                t.start()
            for t in others:
                t.join(timeout=120)
            assert not any(t.is_alive() for t in others)
            assert stuck.flush(60).complete  # resends proceed once the server ended the orphan
        assert 500 not in statuses and set(statuses) <= {202, 503}
        assert len(other_ids) == 3000  # every other batch was accepted
        rows, stored = stored_ids(url)
        assert stored == {uuid.UUID(i) for i in other_ids} | set(stuck_ids) and rows == 4000
        assert srv.executions_counted() == rows


# --- 5. pool exhaustion ---------------------------------------------------------------------------
def test_an_exhausted_pool_answers_503_with_retry_after(
    postgres_server_url: str, tmp_path: Path, short_timeouts: dict[str, str]
) -> None:
    with proxied_database(postgres_server_url) as (url, through, proxy), exporter(through, tmp_path / "s.log") as srv:
        assert httpx.post(f"{srv.base}/v1/rule-versions", json={"rule": "pool", "version": "1"}).is_success
        proxy.silence()
        proxy.hang()  # every connection, open or new, holds its pool slot until its bound
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def post() -> None:
            item = {"event_id": str(uuid.uuid4()), "rule": "pool", "rule_version": "1", "duration_seconds": 0.001}
            response = httpx.post(f"{srv.base}/v1/executions", json={"executions": [item]}, timeout=30)
            with lock:
                answers.append(response)

        threads = [threading.Thread(target=post) for _ in range(30)]  # more than the 20 pooled connections
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(answers) == 30
        assert {r.status_code for r in answers} == {503}
        assert all(r.headers.get("retry-after") for r in answers)
        assert any("did not confirm" in r.text for r in answers)
        proxy.restore()
        ready: Any = None
        for _ in range(50):  # the exporter serves again once the database answers
            ready = httpx.get(f"{srv.base}/readyz", timeout=10)
            if ready.status_code == 200:
                break
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200
        assert stored_ids(url)[0] == 0 and srv.executions_counted() == 0
