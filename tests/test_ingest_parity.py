"""SDK and HTTP count identically: one script of operations, run through both front doors.

The same sequence — rule versions (new, duplicate, conflicting), a proposal, lifecycle transitions
(one refused by the policy), executions (ok, error, a caller-given id sent twice), a completed
backtest, a bad backtest, a failed walk-forward run, a walk-forward run and resolutions (one of them
repeated) — is run once through :class:`~heurmetrics.sdk.recorder.Recorder` on its own database and
once over HTTP against a real ``heurmetrics serve`` (``ExporterClient`` for versions and executions,
the documented routes for the rest) on another. Every sample of
``heurmetrics_ingested_events_total`` must be equal, and match what the script did.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from heurmetrics.backtest.splits import WalkForwardSplitter
from heurmetrics.backtest.walkforward import SerialExecutor, WalkForwardError
from heurmetrics.errors import HeurmetricsError, InvalidEvent, VersionConflict
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk.http_client import ExporterClient
from heurmetrics.sdk.recorder import Recorder
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from tests.conftest import free_port
from tests.e2e_helpers import Exporter, exporter, fresh_postgres_database

RULE = "parity"
PARAMS = {"window": 24}
SOURCE = "def rule(bars): ..."
START = datetime(2026, 1, 1, tzinfo=UTC)
CALLER_ID = uuid.UUID("0190c0de-0000-7000-8000-000000000001")
PERIODS = 365 * 24


def _bars(n: int = 240) -> pd.DataFrame:
    index = pd.date_range(START, periods=n, freq="1h")
    close = 100 * np.cumprod(1 + 0.001 * np.sin(np.arange(n) / 5) + 0.0004)
    return pd.DataFrame({"close": close}, index=index)


def hold(data: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    return data["close"].pct_change().dropna()


def broken(data: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    raise RuntimeError("the rule crashed")


def _equity() -> pd.Series:
    return pd.Series([1.0, 1.01, 1.005, 1.02], index=pd.date_range(START, periods=4, freq="1D"))


def _equity_json(equity: pd.Series) -> dict[str, Any]:
    return {"timestamps": [t.isoformat() for t in equity.index], "values": [float(v) for v in equity]}


class Sdk:
    """The script's operations through the Recorder."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def register(self, version: str, params: dict[str, Any]) -> None:
        self.rec.register_rule_version(RULE, version, params=params, source=SOURCE)

    def propose(self, version: str, author: str) -> None:
        self.rec.propose(RULE, version, PARAMS, SOURCE, parent="1.0.0", created_by=author)

    def approve(self, version: str, actor: str) -> None:
        self.rec.approve(f"{RULE}@{version}", actor=actor, reason="reviewed")

    def activate(self, version: str) -> None:
        self.rec.activate(f"{RULE}@{version}", "live", actor="carol", reason="go live")

    def executions(self, version: str) -> None:
        rv = self.rec.ingest.rule_version(RULE, version)
        for i in range(3):
            self.rec.record_execution(rv, duration_seconds=0.01, outcome="bullish", signal=1.0, confidence=0.5 + i / 10)
        self.rec.record_execution(rv, duration_seconds=0.02, status="error", error_type="ValueError")
        for _ in range(2):  # a caller's id, sent twice: one row, one duplicate
            self.rec.record_execution(
                rv, duration_seconds=0.01, outcome="bullish", signal=1.0, event_id=CALLER_ID, started_at=START
            )
        assert self.rec.flush(30).complete

    def backtest(self, version: str, equity: pd.Series, run_id: uuid.UUID) -> None:
        rv = self.rec.ingest.rule_version(RULE, version)
        self.rec.record_backtest(rv, equity, dataset="BTCUSD-1d", periods_per_year=365, run_id=run_id)

    def failed_walk_forward(self, version: str, run_id: uuid.UUID) -> None:
        rv = self.rec.ingest.rule_version(RULE, version)
        with pytest.raises(WalkForwardError):
            self.rec.walk_forward(
                rv, _bars(), run=broken, splitter=WalkForwardSplitter("4D", "2D"), dataset="BTCUSD-1h",
                periods_per_year=PERIODS, executor=SerialExecutor(), progress=False, run_id=run_id,
            )  # fmt: skip

    def walk_forward(self, version: str, run_id: uuid.UUID) -> None:
        rv = self.rec.ingest.rule_version(RULE, version)
        self.rec.walk_forward(
            rv, _bars(), run=hold, splitter=WalkForwardSplitter("4D", "2D"), dataset="BTCUSD-1h",
            periods_per_year=PERIODS, executor=SerialExecutor(), progress=False, run_id=run_id,
        )  # fmt: skip

    def resolve(self) -> None:
        self.rec.resolve(CALLER_ID, horizon="1h", realized_return=0.01)

    def text(self) -> str:
        return generate_latest(self.rec.registry).decode()


class Http:
    """The same operations over HTTP: ExporterClient where it has them, the documented routes otherwise."""

    def __init__(self, server: Exporter, client: ExporterClient) -> None:
        self.server = server
        self.client = client
        self.http = server.client()

    def _post(self, path: str, body: dict[str, Any], refused: int | None = None) -> Any:
        response = self.http.post(path, json=body)
        if refused is not None:
            assert response.status_code == refused, response.text
            raise HeurmetricsError(response.text)
        assert response.status_code in (200, 201, 202), response.text
        return response.json()

    def register(self, version: str, params: dict[str, Any]) -> None:
        self.client.register_rule_version(RULE, version, params=params, source=SOURCE)

    def propose(self, version: str, author: str) -> None:
        body = {"params": PARAMS, "source": SOURCE, "created_by": author, "parent": "1.0.0"}
        self._post(f"/v1/rule-versions/{RULE}/{version}/propose", body)

    def approve(self, version: str, actor: str) -> None:
        refused = 409 if actor == "ana" else None
        self._post(f"/v1/rule-versions/{RULE}/{version}/approve", {"actor": actor, "reason": "reviewed"}, refused)

    def activate(self, version: str) -> None:
        body = {"actor": "carol", "reason": "go live", "env": "live"}
        self._post(f"/v1/rule-versions/{RULE}/{version}/activate", body)

    def executions(self, version: str) -> None:
        for i in range(3):
            self.client.record_execution(
                RULE, version, duration_seconds=0.01, outcome="bullish", signal=1.0, confidence=0.5 + i / 10
            )
        self.client.record_execution(RULE, version, duration_seconds=0.02, status="error", error_type="ValueError")
        for _ in range(2):
            self.client.record_execution(
                RULE, version, duration_seconds=0.01, outcome="bullish", signal=1.0, event_id=CALLER_ID,
                started_at=START,
            )  # fmt: skip
        assert self.client.flush(30).complete

    def backtest(self, version: str, equity: pd.Series, run_id: uuid.UUID) -> None:
        body = {
            "run_id": str(run_id), "rule": RULE, "rule_version": version, "dataset": "BTCUSD-1d",
            "periods_per_year": 365, "equity": _equity_json(equity),
        }  # fmt: skip
        response = self.http.post("/v1/backtests", json=body)
        if response.status_code == 422:
            raise InvalidEvent("equity", response.text)
        assert response.status_code in (200, 201), response.text

    def failed_walk_forward(self, version: str, run_id: uuid.UUID) -> None:
        body = {
            "run_id": str(run_id), "rule": RULE, "rule_version": version, "kind": "walk_forward",
            "dataset": "BTCUSD-1h", "periods_per_year": PERIODS, "error_message": "fold 0: RuntimeError: crashed",
        }  # fmt: skip
        self._post("/v1/backtests/failed", body)

    def walk_forward(self, version: str, run_id: uuid.UUID) -> None:
        equity = _equity()
        fold = {
            "fold_index": 0,
            "in_sample_start": (START - timedelta(days=4)).isoformat(),
            "in_sample_end": (START - timedelta(days=1)).isoformat(),
            "out_of_sample_start": START.isoformat(),
            "out_of_sample_end": equity.index[-1].isoformat(),
            "out_of_sample_equity": _equity_json(equity),
        }
        body = {
            "run_id": str(run_id), "rule": RULE, "rule_version": version, "dataset": "BTCUSD-1h",
            "periods_per_year": PERIODS, "equity": _equity_json(equity), "folds": [fold],
        }  # fmt: skip
        self._post("/v1/walk-forward", body)

    def resolve(self) -> None:
        item = {"event_id": str(CALLER_ID), "horizon": "1h", "realized_return": 0.01}
        self._post("/v1/resolutions", {"resolutions": [item]})

    def text(self) -> str:
        return self.server.metrics_text()


def run_script(door: Sdk | Http) -> None:
    """The one script: what both front doors are asked to do, in this order."""
    door.register("1.0.0", PARAMS)
    door.register("1.0.0", PARAMS)  # duplicate
    with pytest.raises(VersionConflict):
        door.register("1.0.0", {"window": 48})  # conflict: rejected
    door.propose("1.1.0", author="ana")
    door.approve("1.1.0", actor="bob")
    with pytest.raises(HeurmetricsError):
        door.approve("1.1.0", actor="ana")  # the author cannot approve: refused by the policy
    door.executions("1.1.0")
    door.backtest("1.1.0", _equity(), uuid.UUID(int=1))
    door.backtest("1.1.0", _equity(), uuid.UUID(int=1))  # re-sent run id: duplicate
    bad = _equity().iloc[::-1]  # timestamps going backwards
    with pytest.raises(InvalidEvent):
        door.backtest("1.1.0", bad, uuid.UUID(int=2))
    door.activate("1.1.0")
    door.failed_walk_forward("1.1.0", uuid.UUID(int=3))
    door.walk_forward("1.1.0", uuid.UUID(int=4))
    door.resolve()
    door.resolve()  # already resolved: duplicate


def ingested(text: str) -> dict[tuple[str, str], float]:
    """Every sample of heurmetrics_ingested_events_total, by (kind, result)."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == d.INGESTED_EVENTS.sample_name:
                out[(sample.labels["kind"], sample.labels["result"])] = sample.value
    return out


@contextlib.contextmanager
def _two_databases(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'sdk.db'}", f"sqlite:///{tmp_path / 'http.db'}"
        return
    server_url = request.getfixturevalue("postgres_server_url")
    with fresh_postgres_database(server_url) as one, fresh_postgres_database(server_url) as two:
        yield one, two


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sdk_and_http_count_the_same_script_identically(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with _two_databases(backend, tmp_path, request) as (sdk_url, http_url):
        for url in (sdk_url, http_url):
            engine = create_store_engine(url)
            migrations.upgrade(engine)
            engine.dispose()
        with Recorder(sdk_url, created_by="ana") as rec:
            sdk = Sdk(rec)
            run_script(sdk)
            sdk_counts = ingested(sdk.text())
        with (
            exporter(http_url, free_port(), tmp_path / "serve.log") as server,
            ExporterClient(server.base_url, flush_interval=0.01) as client,
        ):
            http = Http(server, client)
            run_script(http)
            http_counts = ingested(http.text())

    expected = {
        ("rule_version", "accepted"): 2,  # 1.0.0 registered, 1.1.0 proposed
        ("rule_version", "duplicate"): 1,
        ("rule_version", "rejected"): 1,  # the conflict
        ("lifecycle", "accepted"): 2,  # approved, activated
        ("lifecycle", "rejected"): 1,  # the author's own approval
        ("execution", "accepted"): 5,
        ("execution", "duplicate"): 1,
        ("backtest", "accepted"): 3,  # completed, failed walk-forward, walk-forward
        ("backtest", "duplicate"): 1,
        ("backtest", "rejected"): 1,  # the bad equity curve
        ("resolution", "accepted"): 1,
        ("resolution", "duplicate"): 1,
    }
    every = {(k, r): 0.0 for k in d.INGEST_KINDS for r in d.INGEST_RESULTS} | expected
    assert sdk_counts == every
    assert http_counts == sdk_counts


def test_the_script_fails_when_a_door_skips_ingest(tmp_path: Path) -> None:
    """The comparison can fail: a write that bypasses the ingest service is missing from the counts."""
    url = f"sqlite:///{tmp_path / 'sdk.db'}"
    with Recorder(url, created_by="ana") as rec:
        rec.register_rule_version(RULE, "1.0.0", params=PARAMS, source=SOURCE)
        bypass: Callable[..., Any] = rec.store.register_rule_version  # straight to the store
        bypass(RULE, "2.0.0", params=PARAMS, source=SOURCE, created_by="ana")
        counts = ingested(generate_latest(rec.registry).decode())
    assert counts[("rule_version", "accepted")] == 1
