"""POST /v1/walk-forward: a finished walk-forward run from a runner outside Python."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from heurmetrics.backtest.summary import efficiency_ratio, pooled_annualized_return, simple_annualized_return
from heurmetrics.live.snapshot import expectation_of
from heurmetrics.store.schema import BacktestFoldRow, BacktestRunRow, EquityPointRow
from tests.walkforward_helpers import exporter

HOURS = [f"2026-01-01T{h:02d}:00:00Z" for h in range(24)]


def fold(index: int, is_start: int, oos_start: int, oos_end: int, **extra: Any) -> dict[str, Any]:
    return {
        "fold_index": index,
        "in_sample_start": HOURS[is_start],
        "in_sample_end": HOURS[oos_start - 1],
        "out_of_sample_start": HOURS[oos_start],
        "out_of_sample_end": HOURS[oos_end],
        "params": {"lookback": 6 + index},
        "trials": 4,
        **extra,
    }


def body(**overrides: Any) -> dict[str, Any]:
    folds = [
        fold(0, 0, 8, 11, in_sample_metrics={"total_return": 0.02, "observations": 7, "sharpe": 1.5},
             out_of_sample_metrics={"total_return": 0.01, "observations": 4}),
        fold(1, 4, 12, 15, in_sample_metrics={"total_return": 0.03, "observations": 7},
             out_of_sample_equity={"timestamps": HOURS[11:16], "values": [1.0, 1.01, 1.0, 0.99, 1.02]}),
    ]  # fmt: skip
    return {
        "rule": "ext",
        "rule_version": "1.0.0",
        "dataset": "BTCUSD-1h",
        "periods_per_year": 8760,
        "equity": {"timestamps": HOURS[7:16], "values": [1.0, 1.002, 1.004, 1.007, 1.01, 1.02, 1.01, 1.0, 1.03]},
        "folds": folds,
        "expectation": {"1h": {"signals": 120, "hits": 70, "mean_return": 0.001}},
        "config": {"engine": "rust-backtester 0.3"},
        **overrides,
    }


def test_post_walk_forward_stores_run_folds_curves_and_expectation(migrated_url: str) -> None:
    client = exporter(migrated_url)
    assert client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"}).status_code == 201
    run_id = str(uuid.uuid4())
    first = client.post("/v1/walk-forward", json=body(run_id=run_id))
    assert first.status_code == 201, first.json()
    out = first.json()
    assert out["created"] and out["folds"] == 2 and out["run_id"] == run_id
    assert out["metrics"]["total_return"] == pytest.approx(0.03) and out["metrics"]["observations"] == 8
    # Fold 1's out-of-sample metrics were computed from its curve: total return 2 % over 4 returns.
    growth = [(1.02, 7), (1.03, 7)], [(1.01, 4), (1.02, 4)]
    simple = efficiency_ratio(simple_annualized_return(growth[1], 8760), simple_annualized_return(growth[0], 8760))
    compounded = efficiency_ratio(pooled_annualized_return(growth[1], 8760), pooled_annualized_return(growth[0], 8760))
    assert out["efficiency"] == pytest.approx(simple) and out["efficiency_compounded"] == pytest.approx(compounded)
    assert out["efficiency"] != pytest.approx(compounded)  # Pardo's simple annualisation is the headline
    assert out["overfitting"]["n_trials"] == 4  # default: the largest fold trials
    again = client.post("/v1/walk-forward", json=body(run_id=run_id))
    assert again.status_code == 200 and again.json()["created"] is False

    store = client.app.state.ingest.store  # type: ignore[attr-defined]
    with Session(store.engine) as session:
        run = session.scalars(select(BacktestRunRow)).one()
        folds = session.scalars(select(BacktestFoldRow).order_by(BacktestFoldRow.fold_index)).all()
        curves = session.execute(select(EquityPointRow.fold_index, EquityPointRow.equity)).all()
    assert run.kind == "walk_forward" and str(run.run_id) == run_id
    assert run.config["engine"] == "rust-backtester 0.3" and run.config["walk_forward"]["source"] == "api"
    assert [f.params for f in folds] == [{"lookback": 6}, {"lookback": 7}] and folds[1].trials == 4
    assert folds[0].in_sample_metrics["sharpe"] == 1.5
    assert folds[1].out_of_sample_metrics["total_return"] == pytest.approx(0.02)
    assert folds[1].out_of_sample_metrics["observations"] == 4
    assert len([c for c in curves if c.fold_index is None]) == 9 and len([c for c in curves if c.fold_index == 1]) == 5
    expectation = expectation_of(run.config, run.run_id, "1h")
    assert expectation is not None and expectation.hit_ratio == pytest.approx(70 / 120) and expectation.signals == 120


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"folds": []}, "folds"),
        ({"periods_per_year": 0}, "periods_per_year"),
        ({"expectation": {"2h": {"signals": 1, "hits": 1}}}, "expectation.2h"),
        ({"expectation": {"1h": {"signals": 1, "hits": 2}}}, "expectation.1h.hits"),
        ({"equity": {"timestamps": HOURS[:2], "values": [1.0]}}, "equity.values"),
        ({"equity": {"timestamps": ["2026-01-01T00:00:00", "2026-01-01T01:00:00"], "values": [1, 2]}},
         "equity.timestamps[0]"),
    ],
)  # fmt: skip
def test_invalid_runs_are_rejected_whole(migrated_url: str, change: dict[str, Any], field: str) -> None:
    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    response = client.post("/v1/walk-forward", json=body(**change))
    assert response.status_code == 422, response.json()
    assert response.json()["detail"][0]["field"] == field


def test_unknown_rule_version_is_404_like_everywhere(migrated_url: str) -> None:
    client = exporter(migrated_url)
    response = client.post("/v1/walk-forward", json=body(rule_version="9.9.9"))
    assert response.status_code == 404 and response.json()["detail"][0]["field"] == "rule_version"


def test_fold_rules_are_checked(migrated_url: str) -> None:
    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    good = body()["folds"]
    cases = [
        ([good[0], fold(1, 4, 10, 15, out_of_sample_metrics={})], "folds[1].out_of_sample_start"),  # overlap
        ([good[0], good[0]], "folds[1].fold_index"),
        ([fold(0, 5, 4, 8, out_of_sample_metrics={})], "folds[0]"),  # IS after OOS
        ([fold(0, 0, 8, 11)], "folds[0].out_of_sample_metrics"),  # neither metrics nor equity
        ([{**good[0], "in_sample_start": "2026-01-01T00:00:00"}], "folds[0].in_sample_start"),
    ]
    for folds, field in cases:
        response = client.post("/v1/walk-forward", json=body(folds=folds))
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == field, response.json()
    with client.app.state.ingest.store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.execute(select(BacktestRunRow.run_id)).all() == []


def test_without_in_sample_metrics_efficiency_is_undefined(migrated_url: str) -> None:
    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    folds = [fold(0, 0, 8, 15, out_of_sample_metrics={"total_return": 0.03, "observations": 8, "sharpe": math.pi})]
    response = client.post("/v1/walk-forward", json=body(folds=folds, expectation={}))
    assert response.status_code == 201 and response.json()["efficiency"] is None


def _stored_overfitting(client: Any) -> list[Any]:
    from heurmetrics.store.schema import BacktestOverfittingRow

    with Session(client.app.state.ingest.store.engine) as session:
        return list(session.scalars(select(BacktestOverfittingRow)).all())


def test_http_and_sdk_give_identical_efficiency_for_the_same_folds(migrated_url: str) -> None:
    from heurmetrics import Recorder
    from heurmetrics.backtest.splits import WalkForwardSplitter
    from heurmetrics.backtest.walkforward import SerialExecutor
    from tests.walkforward_helpers import hourly_bars, momentum_fit, momentum_run

    with Recorder(migrated_url, created_by="tester") as rec:
        rv = rec.register_rule_version("sdk", "1.0.0", params={"lookback": 12})
        result = rec.walk_forward(
            rv, hourly_bars(24 * 20), run=momentum_run, fit=momentum_fit, splitter=WalkForwardSplitter("4D", "2D"),
            dataset="d", periods_per_year=8760, executor=SerialExecutor(), warmup=24, progress=False,
        )  # fmt: skip
    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    folds = [
        {
            "fold_index": f.fold.fold_index,
            "in_sample_start": f.fold.in_sample_start.strftime(stamp),
            "in_sample_end": f.fold.in_sample_end.strftime(stamp),
            "out_of_sample_start": f.fold.out_of_sample_start.strftime(stamp),
            "out_of_sample_end": f.fold.out_of_sample_end.strftime(stamp),
            "trials": f.fold.trials,
            "in_sample_metrics": f.fold.in_sample_metrics,
            "out_of_sample_metrics": f.fold.out_of_sample_metrics,
        }
        for f in result.folds
    ]
    equity = {
        "timestamps": [t.strftime(stamp) for t in result.equity.index],
        "values": [None if math.isnan(v) else v for v in result.equity],
    }
    response = client.post("/v1/walk-forward", json=body(folds=folds, equity=equity, expectation={}))
    assert response.status_code == 201, response.json()
    assert response.json()["efficiency"] == result.efficiency and result.efficiency is not None
    names = [
        "efficiency", "efficiency_compounded", "in_sample_annualized_return", "out_of_sample_annualized_return",
        "in_sample_annualized_return_compounded", "out_of_sample_annualized_return_compounded",
    ]  # fmt: skip
    with Session(client.app.state.ingest.store.engine) as session:  # type: ignore[attr-defined]
        runs = {r.run_id: r for r in session.scalars(select(BacktestRunRow)).all()}
        stored = {(f.run_id, f.fold_index): f.out_of_sample_metrics for f in session.scalars(select(BacktestFoldRow))}
    api_run = runs[uuid.UUID(response.json()["run_id"])]
    sdk_wf, api_wf = runs[result.run_id].config["walk_forward"], api_run.config["walk_forward"]
    assert {n: api_wf[n] for n in names} == {n: sdk_wf[n] for n in names}
    for f in result.folds:
        for name in ("walk_forward_efficiency", "walk_forward_efficiency_compounded"):
            # float(): PostgreSQL's JSONB returns a large whole number as an int (same value).
            api, sdk = stored[(api_run.run_id, f.fold.fold_index)][name], f.fold.out_of_sample_metrics[name]
            assert (api, sdk) == (None, None) or float(api) == float(sdk)
            assert stored[(result.run_id, f.fold.fold_index)][name] == api
    assert api_wf["overfitting"]["n_trials"] == sdk_wf["overfitting"]["n_trials"] == 3
    assert api_wf["overfitting"]["sharpe"] == pytest.approx(sdk_wf["overfitting"]["sharpe"], rel=1e-9)
    assert len(_stored_overfitting(client)) == 2  # a backtest_overfitting row for each path


def _equity_returns() -> Any:
    import pandas as pd

    values = body()["equity"]["values"]
    return pd.Series(values).pct_change().iloc[1:]


def test_overfitting_inputs_give_dsr_and_pbo_stored_and_exported(migrated_url: str) -> None:
    import numpy as np
    from prometheus_client.parser import text_string_to_metric_families

    from heurmetrics.metrics import definitions as d
    from heurmetrics.stats import deflated_sharpe_ratio, probability_of_backtest_overfitting

    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    response = client.post("/v1/walk-forward", json=body(overfitting={"n_trials": 20, "trials_sharpe_variance": 0.5}))
    assert response.status_code == 201, response.json()
    dsr = deflated_sharpe_ratio(_equity_returns().to_numpy(), 20, 0.5, 8760).deflated_sharpe_ratio
    stats = response.json()["overfitting"]
    assert stats["n_trials"] == 20 and stats["trials_sharpe_variance"] == 0.5
    assert stats["deflated_sharpe_ratio"] == pytest.approx(dsr, rel=1e-9) and stats["pbo"] is None
    [row] = _stored_overfitting(client)
    assert row.n_trials == 20 and row.deflated_sharpe_ratio == pytest.approx(dsr, rel=1e-9)
    page = client.get("/metrics").text
    exported = {
        s.name: s.value
        for f in text_string_to_metric_families(page)
        for s in f.samples
        if s.labels.get("rule") == "ext" and s.name.startswith("backtest_overfitting_")
    }
    assert exported[d.BACKTEST_OVERFITTING_DSR.name] == pytest.approx(dsr, rel=1e-9)

    matrix = np.random.default_rng(5).normal(0.0, 0.01, size=(8, 5)).tolist()
    inputs = {"n_trials": 5, "trial_returns": matrix, "pbo_blocks": 2, "trials_sharpe_variance": 9.0}
    response = client.post("/v1/walk-forward", json=body(overfitting=inputs))
    assert response.status_code == 201, response.json()
    stats = response.json()["overfitting"]
    assert stats["pbo"] == probability_of_backtest_overfitting(np.array(matrix), n_blocks=2).pbo
    assert stats["pbo_blocks"] == 2 and stats["pbo_splits"] == 2
    sharpes = np.array(matrix).mean(axis=0) / np.array(matrix).std(axis=0, ddof=1) * math.sqrt(8760)
    # With a matrix, V comes from its columns (the given variance is ignored, as documented).
    assert stats["trials_sharpe_variance"] == pytest.approx(float(np.var(sharpes, ddof=1)), rel=1e-9)


GOOD_MATRIX = [[0.01, -0.01, 0.0]] * 8


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"trials_sharpe_variance": -1.0}, "overfitting.trials_sharpe_variance"),
        ({"trials_sharpe_variance": math.nan}, "overfitting.trials_sharpe_variance"),
        ({"trials_sharpe_variance": math.inf}, "overfitting.trials_sharpe_variance"),
        ({"n_trials": 0}, "overfitting.n_trials"),
        ({"n_trials": 2, "trial_returns": GOOD_MATRIX}, "overfitting.n_trials"),
        ({"pbo_blocks": 3}, "overfitting.pbo_blocks"),
        ({"pbo_blocks": 18}, "overfitting.pbo_blocks"),
        ({"trial_returns": [[0.01, math.nan, 0.0], *GOOD_MATRIX[1:]]}, "overfitting.trial_returns[0][1]"),
        ({"trial_returns": [[0.01, 1e7, 0.0], *GOOD_MATRIX[1:]]}, "overfitting.trial_returns[0][1]"),
        ({"trial_returns": [*GOOD_MATRIX[:3], [0.01, 0.0], *GOOD_MATRIX[4:]]}, "overfitting.trial_returns[3]"),
        ({"trial_returns": [[0.01]] * 8}, "overfitting.trial_returns[0]"),
        ({"trial_returns": [[0.0] * 1001] * 8}, "overfitting.trial_returns[0]"),
        ({"trial_returns": GOOD_MATRIX[:7]}, "overfitting.trial_returns"),  # one row per period of equity
        ({"trial_returns": []}, "overfitting.trial_returns"),
        ({"trial_returns": GOOD_MATRIX, "unknown": 1}, "overfitting.unknown"),
    ],
)
def test_bad_overfitting_input_is_rejected_naming_the_field(
    migrated_url: str, inputs: dict[str, Any], field: str
) -> None:
    import json

    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    # json.dumps writes NaN / Infinity literals: the server must refuse them, not store them.
    payload = json.dumps(body(overfitting=inputs))
    response = client.post("/v1/walk-forward", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.json()
    assert response.json()["detail"][0]["field"] == field, response.json()
    with client.app.state.ingest.store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.execute(select(BacktestRunRow.run_id)).all() == []
    assert _stored_overfitting(client) == []


def test_too_large_a_trial_matrix_is_refused(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from heurmetrics.server.routes import walkforward

    monkeypatch.setattr(walkforward, "MAX_TRIAL_CELLS", 20)  # 8 x 3 = 24 values: over the limit
    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    response = client.post("/v1/walk-forward", json=body(overfitting={"trial_returns": GOOD_MATRIX}))
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "overfitting.trial_returns"
    assert "exceed the limit of 20" in response.json()["detail"][0]["message"]
    assert _stored_overfitting(client) == []


def test_extreme_values_give_undefined_statistics_not_errors(migrated_url: str) -> None:
    from heurmetrics.stats import minimum_backtest_length

    assert minimum_backtest_length(10**6, 1e-200) == math.inf  # no OverflowError
    client = exporter(migrated_url)
    client.post("/v1/rule-versions", json={"rule": "ext", "version": "1.0.0"})
    # Ratios of these points overflow (1e300 / 1e-300) and a per-period rate (1.5^(1/1e-9)) too.
    equity = {"timestamps": HOURS[7:11], "values": [1e-300, 1e300, 1e-300, 6e307]}
    extreme = body(equity=equity, periods_per_year=1e-9, risk_free_rate=0.5, overfitting={"n_trials": 5,
                   "trials_sharpe_variance": 1.0, "trial_returns": [[1e6, -1e6]] * 3, "pbo_blocks": 2.0})  # fmt: skip
    response = client.post("/v1/walk-forward", json=extreme)
    assert response.status_code == 201, response.json()
    stats = response.json()["overfitting"]
    assert stats["n_trials"] == 5 and stats["deflated_sharpe_ratio"] is None
    [row] = _stored_overfitting(client)
    assert row.n_trials == 5 and row.deflated_sharpe_ratio is None
