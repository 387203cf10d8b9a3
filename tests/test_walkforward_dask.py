"""Walk-forward folds on a real Dask cluster: ``executor=client.get_executor()``.

``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` starts two worker processes
(a scheduler and nannies included), so ``fit`` and ``run`` travel by reference to other
interpreters exactly as on a remote cluster. The result must be identical to a serial run, every
execution recorded once, and a failing fold must fail the run as it does locally.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import distributed  # the dask extra (in dev): never skipped, a missing install fails
import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from heurmetrics import Recorder
from heurmetrics.backtest.splits import WalkForwardSplitter
from heurmetrics.backtest.walkforward import SerialExecutor, WalkForwardError
from heurmetrics.store.schema import BacktestRunRow, ExecutionRow
from tests.walkforward_helpers import failing_run, hourly_bars, momentum_fit, momentum_run

A = 365 * 24
SPLITTER = WalkForwardSplitter("4D", "2D")


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def stored_executions(rec: Recorder, run_id: uuid.UUID) -> int:
    with Session(rec.store.engine) as session:
        return int(session.scalar(select(func.count()).where(ExecutionRow.backtest_run_id == run_id)) or 0)


def test_dask_folds_match_serial_and_every_execution_is_recorded_once(
    client: distributed.Client, sqlite_url: str
) -> None:
    data = hourly_bars(24 * 20)
    options = {
        "fit": momentum_fit, "run": momentum_run, "splitter": SPLITTER, "dataset": "synthetic",
        "periods_per_year": A, "warmup": 24, "progress": False,
    }  # fmt: skip
    with Recorder(sqlite_url) as rec:
        rv = rec.register_rule_version("momentum", "1.0.0", params={"lookback": 12})
        serial = rec.walk_forward(rv, data, executor=SerialExecutor(), **options)
        on_dask = rec.walk_forward(rv, data, executor=client.get_executor(), **options)
        assert rec.flush(timeout=60).complete
        pd.testing.assert_series_equal(serial.returns, on_dask.returns)
        pd.testing.assert_series_equal(serial.equity, on_dask.equity)
        assert [f.fold.params for f in serial.folds] == [f.fold.params for f in on_dask.folds]
        assert serial.metrics == on_dask.metrics and serial.efficiency == on_dask.efficiency
        assert on_dask.executions == serial.executions > 0
        assert stored_executions(rec, on_dask.run_id) == on_dask.executions
        assert on_dask.run.config["walk_forward"]["executor"] == "ClientExecutor"
    # Both workers took part (the folds were really distributed).
    assert len(client.scheduler_info()["workers"]) == 2


def test_a_failing_fold_on_dask_fails_the_run_and_stores_it_as_failed(
    client: distributed.Client, sqlite_url: str
) -> None:
    data = hourly_bars(24 * 20)  # 2025-01-20 (where failing_run breaks) is inside
    run_id = uuid.uuid4()
    with Recorder(sqlite_url) as rec:
        rv = rec.register_rule_version("momentum", "1.0.0", params={"lookback": 12})
        with pytest.raises(WalkForwardError, match="feed broken") as failed:
            rec.walk_forward(
                rv, data, run=failing_run, splitter=SPLITTER, dataset="synthetic", periods_per_year=A,
                executor=client.get_executor(),
                progress=False, run_id=run_id,
            )  # fmt: skip
        assert failed.value.run_id == run_id
        with Session(rec.store.engine) as session:
            status = session.scalar(select(BacktestRunRow.status).where(BacktestRunRow.run_id == run_id))
        assert status == "failed"
