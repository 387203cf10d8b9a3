"""POST /v1/walk-forward: a finished walk-forward run from a runner outside Python."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from heurmetrics.backtest.walkforward import efficiency_ratio, pooled_annualized_return
from heurmetrics.performance.snapshot import expectation_of
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
    expected = efficiency_ratio(pooled_annualized_return(growth[1], 8760), pooled_annualized_return(growth[0], 8760))
    assert out["efficiency"] == pytest.approx(expected)
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
