"""Walk-forward result assembly shared by the SDK runner and ``POST /v1/walk-forward``.

Both paths turn per-fold metrics and the stitched out-of-sample returns into the same figures,
so a run gives the same efficiency and overfitting statistics wherever it was made:

- :func:`fold_efficiency` — the per-fold ``walk_forward_efficiency`` (simple) and
  ``walk_forward_efficiency_compounded`` stored in each fold's ``out_of_sample_metrics``;
- :func:`run_summary` — the efficiency fields and ``overfitting`` block of ``config.walk_forward``;
- :func:`fold_row` — one fold as stored (``backtest_folds``), the same from both paths;
- :func:`json_tree` — metric trees made JSON-safe before they are stored.

Efficiency is Pardo's: annualised out-of-sample return / annualised in-sample return with
**simple** annualisation ``(Σ R_k / Σ N_k) · A`` (headline), the compounded variant
``(∏ (1 + R_k))^(A / Σ N_k) - 1`` kept as ``…_compounded``. A fold's growth comes from its metrics'
``total_return`` and ``observations``; a run whose folds do not all have both on each side has no
run efficiency. Undefined (None) when the in-sample annualised return is below
:data:`MIN_IN_SAMPLE_ANNUAL_RETURN` or either side is not finite (docs/walk-forward.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from heurmetrics.backtest.overfit import DEFAULT_PBO_BLOCKS, overfitting_stats
from heurmetrics.backtest.record import json_safe
from heurmetrics.domain import BacktestFold

#: Below this in-sample annualised return (1 % a year) the efficiency ratio is undefined.
MIN_IN_SAMPLE_ANNUAL_RETURN = 0.01

#: ``(growth W_k = 1 + total return, returns N_k)`` of one window.
Growth = tuple[float, int]
#: ``(in_sample_metrics, out_of_sample_metrics)`` of one fold; None when not known.
FoldMetrics = tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]


def pooled_annualized_return(parts: Sequence[Growth], periods_per_year: float) -> float | None:
    """``(∏ W_k)^(A / Σ N_k) - 1`` over ``(growth W_k, returns N_k)`` parts; None without returns.

    A part with ``N_k = 0`` is ignored; total loss (some ``W_k <= 0``) gives -1.
    """
    used = [(w, n) for w, n in parts if n > 0 and math.isfinite(w)]
    total = sum(n for _, n in used)
    if total == 0:
        return None
    if any(w <= 0 for w, _ in used):
        return -1.0
    exponent = periods_per_year / total * sum(math.log(w) for w, _ in used)
    try:
        return math.exp(exponent) - 1.0
    except OverflowError:
        return math.inf


def simple_annualized_return(parts: Sequence[Growth], periods_per_year: float) -> float | None:
    """Pardo's simple annualisation ``(Σ (W_k - 1) / Σ N_k) · A`` over ``(growth W_k, returns N_k)``
    parts (the mean return per period, scaled linearly to a year); None without returns."""
    used = [(w, n) for w, n in parts if n > 0 and math.isfinite(w)]
    total = sum(n for _, n in used)
    if total == 0:
        return None
    return sum(w - 1.0 for w, _ in used) / total * periods_per_year


def efficiency_ratio(out_of_sample: float | None, in_sample: float | None) -> float | None:
    """Walk-forward efficiency: OOS / IS annualised return; None when IS is below
    :data:`MIN_IN_SAMPLE_ANNUAL_RETURN` (non-positive or tiny) or either is not finite."""
    if out_of_sample is None or in_sample is None:
        return None
    if not (math.isfinite(out_of_sample) and math.isfinite(in_sample)) or in_sample < MIN_IN_SAMPLE_ANNUAL_RETURN:
        return None
    ratio = out_of_sample / in_sample
    return ratio if math.isfinite(ratio) else None  # a huge OOS over a tiny IS can overflow


def metrics_growth(metrics: Mapping[str, Any] | None) -> Growth | None:
    """``(1 + total_return, observations)`` of a metric set; None when either is missing or not a
    number. A window without returns is ``(1.0, 0)``: it adds nothing (its total return is NaN)."""
    if not metrics:
        return None
    total, n = metrics.get("total_return"), metrics.get("observations")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        return None
    if n == 0:
        return 1.0, 0
    if isinstance(total, bool) or not isinstance(total, int | float):
        return None
    return 1.0 + float(total), n


def _pair(growth: Sequence[Growth], periods_per_year: float) -> tuple[float | None, float | None]:
    return simple_annualized_return(growth, periods_per_year), pooled_annualized_return(growth, periods_per_year)


def fold_efficiency(
    in_sample: Mapping[str, Any] | None, out_of_sample: Mapping[str, Any] | None, periods_per_year: float
) -> dict[str, float | None]:
    """A fold's ``walk_forward_efficiency`` (simple) and ``walk_forward_efficiency_compounded``."""
    is_growth, oos_growth = metrics_growth(in_sample), metrics_growth(out_of_sample)
    if is_growth is None or oos_growth is None:
        return {"walk_forward_efficiency": None, "walk_forward_efficiency_compounded": None}
    (is_simple, is_compounded), (oos_simple, oos_compounded) = (
        _pair([is_growth], periods_per_year),
        _pair([oos_growth], periods_per_year),
    )
    return {
        "walk_forward_efficiency": efficiency_ratio(oos_simple, is_simple),
        "walk_forward_efficiency_compounded": efficiency_ratio(oos_compounded, is_compounded),
    }


def run_efficiency(folds: Sequence[FoldMetrics], periods_per_year: float) -> dict[str, Any]:
    """The efficiency fields of ``config.walk_forward`` over all folds (None unless every fold
    has a growth on both sides)."""
    growth = [(metrics_growth(is_m), metrics_growth(oos_m)) for is_m, oos_m in folds]
    complete = bool(growth) and all(g is not None and h is not None for g, h in growth)
    is_parts = [g for g, _ in growth if g is not None]
    oos_parts = [h for _, h in growth if h is not None]
    is_simple, is_compounded = _pair(is_parts, periods_per_year) if complete else (None, None)
    oos_simple, oos_compounded = _pair(oos_parts, periods_per_year) if complete else (None, None)
    return {
        "efficiency": efficiency_ratio(oos_simple, is_simple),
        "in_sample_annualized_return": is_simple,
        "out_of_sample_annualized_return": oos_simple,
        "annualization": "simple (Pardo): (sum R_k / sum N_k) * A",
        "efficiency_compounded": efficiency_ratio(oos_compounded, is_compounded),
        "in_sample_annualized_return_compounded": is_compounded,
        "out_of_sample_annualized_return_compounded": oos_compounded,
        "annualization_compounded": "pooled period-count: (prod W_k)^(A / sum N_k) - 1",
    }


def run_summary(
    folds: Sequence[FoldMetrics],
    stitched_returns: pd.Series,
    *,
    periods_per_year: float,
    risk_free_rate: float,
    n_trials: int,
    trial_returns: pd.DataFrame | None = None,
    reported_sharpe_variance: float | None = None,
    pbo_blocks: int = DEFAULT_PBO_BLOCKS,
) -> dict[str, Any]:
    """Efficiency fields plus ``overfitting`` (:func:`heurmetrics.backtest.overfit.overfitting_stats`)
    for ``config.walk_forward``; the store copies ``overfitting`` into ``backtest_overfitting``."""
    return {
        **run_efficiency(folds, periods_per_year),
        "overfitting": overfitting_stats(
            stitched_returns,
            n_trials=n_trials,
            periods_per_year=periods_per_year,
            trial_returns=trial_returns,
            reported_sharpe_variance=reported_sharpe_variance,
            risk_free_rate=risk_free_rate,
            n_blocks=pbo_blocks,
        ),
    }


def json_tree(value: Any) -> Any:
    """``value`` with NaN / inf made JSON-safe (NaN -> null, inf -> "Infinity"), recursively."""
    if isinstance(value, dict):
        return {str(k): json_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_tree(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return json_safe(value)


def fold_row(
    fold_index: int,
    bounds: tuple[datetime, datetime, datetime, datetime],
    params: dict[str, Any],
    trials: int,
    in_sample_metrics: Mapping[str, Any] | None,
    out_of_sample_metrics: Mapping[str, Any],
    periods_per_year: float,
    extra: Mapping[str, Any] | None = None,
) -> BacktestFold:
    """One fold as stored: ``bounds`` = (in-sample start, end, out-of-sample start, end), metrics made
    JSON-safe, the computed :func:`fold_efficiency` (winning over a same-named given key) and
    ``extra`` (the SDK's per-horizon signal statistics) added to the out-of-sample metrics."""
    efficiency = fold_efficiency(in_sample_metrics, out_of_sample_metrics, periods_per_year)
    return BacktestFold(
        fold_index=fold_index,
        in_sample_start=bounds[0],
        in_sample_end=bounds[1],
        out_of_sample_start=bounds[2],
        out_of_sample_end=bounds[3],
        params=params,
        trials=trials,
        in_sample_metrics=json_tree(in_sample_metrics or {}),
        out_of_sample_metrics=json_tree({**out_of_sample_metrics, **efficiency, **(extra or {})}),
    )
