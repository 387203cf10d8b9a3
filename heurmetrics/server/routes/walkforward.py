"""``POST /v1/walk-forward``: a finished walk-forward run from a runner outside Python.

The stitched equity curve and every fold (bounds, params, trials, metrics given or computed from
the fold's equity) → 201 created, 200 when the run id exists. Errors have the API's usual shape
(:mod:`heurmetrics.server.errors`); an invalid fold or value refuses the whole run naming the field,
nothing is written, and the run counts as a rejected backtest. Executions of a walk-forward run go
through ``POST /v1/executions`` with ``mode: "backtest"`` and ``backtest_run_id`` set to the run
id the runner chose up front. Outcome resolutions: :mod:`heurmetrics.server.routes.resolutions`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from heurmetrics.backtest import compute_metrics
from heurmetrics.backtest.overfit import DEFAULT_PBO_BLOCKS
from heurmetrics.backtest.summary import fold_row, json_tree, run_summary
from heurmetrics.domain import BacktestFold
from heurmetrics.errors import InvalidEvent, UnknownRuleVersion
from heurmetrics.ingest import Ingest
from heurmetrics.metrics import definitions as d
from heurmetrics.server.fields import (
    Count,
    Dataset,
    DatasetHash,
    Horizon,
    JsonObject,
    Name,
    ReturnValue,
    SharpeVariance,
    Timestamp,
    Trials,
    integral,
)
from heurmetrics.server.models import (
    UNAUTHORIZED,
    UNKNOWN_RULE_VERSION,
    EquityIn,
    ErrorOut,
    Uuid,
    equity_series,
    unknown_rule_version,
)

#: Largest number of folds one request may carry.
MAX_FOLDS_PER_RUN = 1_000
#: Bounds of a posted trial return matrix (PBO over C(16, 8) splits stays well under a second).
MAX_TRIAL_COLUMNS = 1_000
MAX_TRIAL_ROWS = 100_000
MAX_TRIAL_CELLS = 1_000_000
MAX_PBO_BLOCKS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class WalkForwardFoldIn(_Strict):
    """One fold: ``out_of_sample_metrics`` or ``out_of_sample_equity`` (or both) must be given."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "object"}}}
                for name in ("out_of_sample_metrics", "out_of_sample_equity")
            ]
        }
    )
    fold_index: Count = Field(description="0, 1, … in time order.")
    in_sample_start: Timestamp
    in_sample_end: Timestamp
    out_of_sample_start: Timestamp
    out_of_sample_end: Timestamp
    params: JsonObject = Field(default_factory=dict, description="Parameters chosen in-sample.")
    trials: Trials = Field(1, description="Candidates tried in-sample.")
    in_sample_metrics: JsonObject | None = Field(
        None, description="Metric set of the in-sample evaluation (needs total_return and observations for efficiency)."
    )
    out_of_sample_metrics: JsonObject | None = None
    in_sample_equity: EquityIn | None = Field(None, description="Instead of in_sample_metrics: computed here.")
    out_of_sample_equity: EquityIn | None = Field(
        None, description="Instead of out_of_sample_metrics: computed here, and stored as the fold's curve."
    )


class SignalStatsIn(_Strict):
    signals: Count = Field(description="Out-of-sample directional signals resolved at this horizon.")
    hits: Count = Field(description="Of which right (direction-signed return > 0); at most signals.")
    mean_return: float | None = Field(None, description="Mean direction-signed realised return.")


class OverfittingIn(_Strict):
    """What the Deflated Sharpe Ratio and PBO need from a search run elsewhere (docs/walk-forward.md)."""

    n_trials: Trials | None = Field(
        None, description="Candidates the search tried (DSR's N); default: the largest fold trials."
    )
    trials_sharpe_variance: SharpeVariance | None = Field(
        None,
        description="Variance (ddof 1) of the trials' annualised Sharpe ratios (DSR's V); "
        "ignored when trial_returns is given (V is then computed from its columns).",
    )
    trial_returns: (
        Annotated[
            list[Annotated[list[ReturnValue], Field(min_length=2, max_length=MAX_TRIAL_COLUMNS)]],
            Field(min_length=1, max_length=MAX_TRIAL_ROWS),
        ]
        | None
    ) = Field(
        None,
        description="Trial return matrix for PBO: one row per period of `equity` "
        "(len(equity.timestamps) - 1 rows, row i = the returns into point i + 1, time order), one "
        f"column per trial (2 to {MAX_TRIAL_COLUMNS}, the same in every row, at most n_trials), "
        f"finite simple returns; at most {MAX_TRIAL_CELLS:,} values.",
    )
    pbo_blocks: Annotated[int, Field(ge=2, le=MAX_PBO_BLOCKS, multiple_of=2), BeforeValidator(integral)] = Field(
        DEFAULT_PBO_BLOCKS, description="CSCV blocks S (even)."
    )


class WalkForwardIn(_Strict):
    run_id: Uuid | None = Field(None, description="Idempotency key; generated when absent.")
    rule: Name
    rule_version: Name
    dataset: Dataset
    dataset_hash: DatasetHash | None = None
    periods_per_year: Annotated[float, Field(ge=1e-9)]
    risk_free_rate: Annotated[float, Field(ge=-1)] = 0.0
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    equity: EquityIn = Field(description="The stitched out-of-sample equity curve: the run's result.")
    folds: list[WalkForwardFoldIn] = Field(
        min_length=1,
        max_length=MAX_FOLDS_PER_RUN,
        description=f"1 to {MAX_FOLDS_PER_RUN} folds with distinct fold_index; in fold_index order, "
        "in_sample_start <= in_sample_end < out_of_sample_start <= out_of_sample_end and out-of-sample "
        "windows do not overlap.",
    )
    expectation: dict[Horizon, SignalStatsIn] = Field(
        default_factory=dict, description=f"Per horizon ({', '.join(d.RESOLUTION_HORIZONS)}): OOS signal hits."
    )
    overfitting: OverfittingIn | None = Field(
        None, description="Inputs of the overfitting statistics (DSR, PBO) for a search run elsewhere."
    )
    config: JsonObject = Field(default_factory=dict)


class WalkForwardOut(BaseModel):
    run_id: uuid.UUID
    rule: str
    rule_version: str
    created: bool
    folds: int
    efficiency: float | None = Field(description="Walk-forward efficiency, simple annualisation (None when undefined).")
    efficiency_compounded: float | None = Field(description="The compounded variant (None when undefined).")
    overfitting: dict[str, Any] = Field(description="DSR, PBO and minimum backtest length (backtest_overfitting).")
    metrics: dict[str, Any]


def _invalid(field: str, message: str) -> InvalidEvent:
    return InvalidEvent(field, message)


def _series(field: str, body: EquityIn) -> pd.Series:
    return equity_series(field, body)


def _aware(field: str, ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise _invalid(field, "needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    return ts


def build_router(ingest: Ingest, authorize: Callable[..., None]) -> APIRouter:
    """The walk-forward route, bound to the app's ingest path and bearer-token dependency."""
    router = APIRouter(dependencies=[Depends(authorize)], responses={422: {"model": ErrorOut}, **UNAUTHORIZED})

    @router.post(
        "/v1/walk-forward",
        response_model=WalkForwardOut,
        status_code=201,
        responses={200: {"model": WalkForwardOut}, **UNKNOWN_RULE_VERSION},
    )
    def post_walk_forward(body: WalkForwardIn, response: Response) -> WalkForwardOut:
        """Store a finished walk-forward run: the stitched curve (metrics computed here), every
        fold's bounds, params, trials and metrics (given, or computed from its equity), and the
        out-of-sample signal expectation per horizon. 201 created; 200 when the run id exists."""
        try:
            rv = ingest.rule_version(body.rule, body.rule_version)
        except UnknownRuleVersion as exc:
            ingest.count_rejected(d.KIND_BACKTEST)
            raise unknown_rule_version("rule_version", exc) from None
        try:
            arguments, summary = _prepare(rv, body)
        except InvalidEvent:  # refused before it reaches ingest: counted here
            ingest.count_rejected(d.KIND_BACKTEST)
            raise
        run, created = ingest.record_backtest(rv, **arguments)  # a refusal from here on is counted by ingest
        response.status_code = 201 if created else 200
        return WalkForwardOut(
            run_id=run.run_id,
            rule=rv.rule,
            rule_version=rv.version,
            created=created,
            folds=len(body.folds),
            efficiency=summary["efficiency"],
            efficiency_compounded=summary["efficiency_compounded"],
            overfitting=json_tree(summary["overfitting"]),
            metrics=run.metrics,
        )

    return router


def _trial_matrix(inputs: OverfittingIn | None, equity: pd.Series, n_trials: int) -> pd.DataFrame | None:
    """The posted trial return matrix, checked for what its schema cannot say (shape, size)."""
    rows = None if inputs is None else inputs.trial_returns
    if rows is None:
        return None
    field = "overfitting.trial_returns"
    width = len(rows[0])
    if len(rows) * width > MAX_TRIAL_CELLS:
        raise _invalid(field, f"{len(rows)} x {width} values exceed the limit of {MAX_TRIAL_CELLS:,}")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise _invalid(f"{field}[{i}]", f"has {len(row)} values; row 0 has {width} (one per trial)")
    if len(rows) != len(equity) - 1:
        raise _invalid(field, f"has {len(rows)} rows; needs one per period of equity ({len(equity) - 1})")
    if width > n_trials:
        raise _invalid("overfitting.n_trials", f"is {n_trials}, below the {width} trials of trial_returns")
    return pd.DataFrame(rows, index=equity.index[1:], dtype="float64")


def _stitched_returns(equity: pd.Series) -> pd.Series:
    """Returns between consecutive observed points (missing points skipped, as in the metrics)."""
    observed = equity.dropna()
    with np.errstate(over="ignore"):
        returns = (observed / observed.shift(1) - 1.0).iloc[1:]
    return returns.where(np.isfinite(returns)).rename("returns")  # an overflowed ratio is missing


def _prepare(rv: Any, body: WalkForwardIn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the run and assemble what ``Ingest.record_backtest`` stores, with the run summary."""
    if not 1 <= len(body.folds) <= MAX_FOLDS_PER_RUN:
        raise _invalid("folds", f"needs 1 to {MAX_FOLDS_PER_RUN} folds, got {len(body.folds)}")
    try:
        periods = float(body.periods_per_year)
        if not (math.isfinite(periods) and periods > 0):
            raise ValueError
    except ValueError:
        raise _invalid("periods_per_year", "must be a finite number > 0") from None
    equity = _series("equity", body.equity)
    folds = sorted(enumerate(body.folds), key=lambda item: item[1].fold_index)
    rows: list[BacktestFold] = []
    fold_metrics: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
    fold_equity: dict[int, pd.Series] = {}
    previous_end: datetime | None = None
    seen: set[int] = set()
    for position, fold in folds:
        where = f"folds[{position}]"
        if fold.fold_index in seen:
            raise _invalid(f"{where}.fold_index", f"fold {fold.fold_index} appears twice")
        seen.add(fold.fold_index)
        bounds = [
            _aware(f"{where}.{name}", getattr(fold, name))
            for name in ("in_sample_start", "in_sample_end", "out_of_sample_start", "out_of_sample_end")
        ]
        if not (bounds[0] <= bounds[1] < bounds[2] <= bounds[3]):
            raise _invalid(where, "needs in_sample_start <= in_sample_end < out_of_sample_start <= out_of_sample_end")
        if previous_end is not None and bounds[2] <= previous_end:
            raise _invalid(f"{where}.out_of_sample_start", "out-of-sample windows must not overlap (fold order)")
        previous_end = bounds[3]
        metrics: dict[str, dict[str, Any] | None] = {}
        for side, given, curve in (
            ("in_sample", fold.in_sample_metrics, fold.in_sample_equity),
            ("out_of_sample", fold.out_of_sample_metrics, fold.out_of_sample_equity),
        ):
            if curve is not None:
                series = _series(f"{where}.{side}_equity", curve)
                computed = compute_metrics(series, periods_per_year=periods, risk_free_rate=float(body.risk_free_rate))
                metrics[side] = {**computed.as_dict(), **(given or {})}
                if side == "out_of_sample":
                    fold_equity[fold.fold_index] = series
            else:
                metrics[side] = given
        if metrics["out_of_sample"] is None:
            raise _invalid(f"{where}.out_of_sample_metrics", "give out_of_sample_metrics or out_of_sample_equity")
        oos_metrics = metrics["out_of_sample"]
        fold_metrics.append((metrics["in_sample"], oos_metrics))
        # The same fold row as the SDK's runner (heurmetrics.backtest.summary.fold_row).
        rows.append(
            fold_row(
                fold.fold_index,
                (bounds[0], bounds[1], bounds[2], bounds[3]),
                fold.params,
                fold.trials,
                metrics["in_sample"],
                oos_metrics,
                periods,
            )
        )
    expectation = {}
    for horizon, stats in body.expectation.items():
        if horizon not in d.RESOLUTION_HORIZONS:
            raise _invalid(f"expectation.{horizon}", f"unknown horizon: use {', '.join(d.RESOLUTION_HORIZONS)}")
        if stats.hits > stats.signals:
            raise _invalid(f"expectation.{horizon}.hits", "cannot exceed signals")
        expectation[horizon] = {
            "signals": stats.signals,
            "hits": stats.hits,
            "hit_ratio": stats.hits / stats.signals if stats.signals else None,
            "mean_return": None if stats.mean_return is None else float(stats.mean_return),
        }
    inputs = body.overfitting
    n_trials = max(f.trials for f in body.folds) if inputs is None or inputs.n_trials is None else inputs.n_trials
    summary = run_summary(
        fold_metrics,
        _stitched_returns(equity),
        periods_per_year=periods,
        risk_free_rate=float(body.risk_free_rate),
        n_trials=n_trials,
        trial_returns=_trial_matrix(inputs, equity, n_trials),
        reported_sharpe_variance=None if inputs is None else inputs.trials_sharpe_variance,
        pbo_blocks=DEFAULT_PBO_BLOCKS if inputs is None else inputs.pbo_blocks,
    )
    config = {
        **body.config,
        "walk_forward": {"source": "api", "folds": len(rows), **summary, "expectation": expectation},
    }
    arguments = {
        "equity": equity,
        "dataset": body.dataset,
        "periods_per_year": periods,
        "risk_free_rate": float(body.risk_free_rate),
        "dataset_hash": body.dataset_hash,
        "started_at": body.started_at,
        "finished_at": body.finished_at,
        "run_id": body.run_id,
        "config": json_tree(config),
        "kind": "walk_forward",
        "folds": rows,
        "fold_equity": fold_equity,
    }
    return arguments, summary
