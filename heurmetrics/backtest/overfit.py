"""Overfitting statistics of one walk-forward run, from its trials (docs/walk-forward.md).

The run's **trial return matrix** has one column per candidate the optimiser tried (``fit``'s
:attr:`~heurmetrics.backtest.walkforward.FitResult.candidates`, e.g. every point of a
:class:`~heurmetrics.backtest.walkforward.GridSearch` grid) and one row per out-of-sample bar of
the stitched curve: fold by fold, each candidate is run on the fold's out-of-sample window with
its params fixed. From it and the stitched returns:

- ``n_trials`` = the most candidates any fold tried; ``trials_sharpe_variance`` = the variance
  (ddof 1) of the columns' annualised Sharpe ratios — or, without a matrix, what ``fit`` reported
  (``FitResult.sharpe_variance``, the mean over folds); with one trial, 0;
- ``deflated_sharpe_ratio`` / ``benchmark_sharpe``: :func:`heurmetrics.stats.deflated_sharpe_ratio`
  of the stitched excess returns (NaN bars dropped) — None when the variance is unknown;
- ``pbo``, ``pbo_blocks``, ``pbo_splits``, ``probability_of_loss``:
  :func:`heurmetrics.stats.probability_of_backtest_overfitting` over the matrix (rows with a
  missing value dropped), S = 16 blocks by default — None without a matrix or with too few rows;
- ``min_backtest_years`` = :func:`heurmetrics.stats.minimum_backtest_length` of ``n_trials`` and
  the stitched annualised Sharpe ratio, next to ``backtest_years`` = stitched returns / A.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from heurmetrics.stats import deflated_sharpe_ratio, minimum_backtest_length, probability_of_backtest_overfitting

#: Blocks of the CSCV split (S): C(16, 8) = 12,870 splits.
DEFAULT_PBO_BLOCKS = 16


def trial_matrix(parts: Sequence[pd.DataFrame | None]) -> pd.DataFrame | None:
    """The folds' trial returns stacked in time order; None unless every fold has the same
    candidates (column labels) and there are at least two."""
    if not parts or any(p is None for p in parts):
        return None
    frames = [p for p in parts if p is not None]
    columns = list(frames[0].columns)
    if len(columns) < 2 or any(list(f.columns) != columns for f in frames):
        return None
    return pd.concat(frames).sort_index()


def overfitting_stats(
    returns: pd.Series,
    *,
    n_trials: int,
    periods_per_year: float,
    trial_returns: pd.DataFrame | None = None,
    reported_sharpe_variance: float | None = None,
    risk_free_rate: float = 0.0,
    n_blocks: int = DEFAULT_PBO_BLOCKS,
) -> dict[str, Any]:
    """The ``backtest_overfitting`` values of a run (see the module docstring). Extreme inputs
    (a per-period rate or returns that overflow) give undefined (None) values, never an error."""
    with np.errstate(all="ignore"):  # overflow in squares or sums: the statistic is undefined
        return _overfitting_stats(
            returns,
            n_trials=n_trials,
            periods_per_year=periods_per_year,
            trial_returns=trial_returns,
            reported_sharpe_variance=reported_sharpe_variance,
            risk_free_rate=risk_free_rate,
            n_blocks=n_blocks,
        )


def _overfitting_stats(
    returns: pd.Series,
    *,
    n_trials: int,
    periods_per_year: float,
    trial_returns: pd.DataFrame | None,
    reported_sharpe_variance: float | None,
    risk_free_rate: float,
    n_blocks: int,
) -> dict[str, Any]:
    try:
        rf = (1.0 + risk_free_rate) ** (1.0 / periods_per_year) - 1.0
    except OverflowError:  # e.g. periods_per_year = 1e-9: no finite per-period rate
        rf = math.inf
    excess = returns.dropna().to_numpy(dtype=np.float64) - rf
    excess = excess[np.isfinite(excess)]  # an overflowed return is missing, as in the metrics
    variance: float | None = None
    out: dict[str, Any] = {"n_trials": int(n_trials), "pbo": None, "pbo_blocks": None, "pbo_splits": None}
    if trial_returns is not None:
        matrix = trial_returns.dropna(how="any").to_numpy(dtype=np.float64) - rf
        sharpe = _annual_sharpe(matrix, periods_per_year)
        if np.isfinite(sharpe).sum() >= 2:
            variance = float(np.var(sharpe[np.isfinite(sharpe)], ddof=1))
        try:
            pbo = probability_of_backtest_overfitting(matrix, n_blocks=n_blocks)
        except ValueError:  # too few rows for the blocks: PBO stays undefined
            pbo = None
        if pbo is not None:
            out.update(
                pbo=pbo.pbo,
                pbo_blocks=pbo.n_blocks,
                pbo_splits=pbo.n_splits,
                probability_of_loss=pbo.probability_of_loss,
            )
    elif n_trials == 1:
        variance = 0.0
    elif reported_sharpe_variance is not None:
        variance = reported_sharpe_variance
    dsr = deflated_sharpe_ratio(excess, n_trials, variance if variance is not None else 0.0, periods_per_year)
    known = variance is not None
    min_years = minimum_backtest_length(n_trials, dsr.sharpe) if math.isfinite(dsr.sharpe) else math.nan
    out.update(
        trials_sharpe_variance=variance,
        sharpe=_finite(dsr.sharpe),
        deflated_sharpe_ratio=_finite(dsr.deflated_sharpe_ratio) if known else None,
        benchmark_sharpe=_finite(dsr.benchmark_sharpe) if known else None,
        min_backtest_years=_finite(min_years),
        backtest_years=len(excess) / periods_per_year,
    )
    out.setdefault("probability_of_loss", None)
    return out


def _annual_sharpe(matrix: np.ndarray, periods_per_year: float) -> np.ndarray:
    if matrix.shape[0] < 2:
        return np.full(matrix.shape[1], np.nan)
    sd = matrix.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = matrix.mean(axis=0) / sd * math.sqrt(periods_per_year)
    return np.where(sd > 0, sharpe, np.nan)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
