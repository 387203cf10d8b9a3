"""Walk-forward maths: anchored equity curves, window metrics, horizons and the signal expectation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from heurmetrics.backtest import compute_metrics_from_returns

# Re-exported: the efficiency helpers live with the shared result assembly.
from heurmetrics.backtest.summary import (  # noqa: F401
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_efficiency,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)
from heurmetrics.backtest.walkforward.api import (
    ExecutionRecord,
)
from heurmetrics.backtest.walkforward.folds import _as_utc
from heurmetrics.live.resolution import (
    HorizonTooShort,
    SignalStats,
    bar_interval_seconds,
    horizon_seconds,
    horizons_for_bars,
    resolve_against_prices,
    signal_direction,
    signal_stats,
)
from heurmetrics.metrics import definitions as d

if TYPE_CHECKING:
    pass


# --- helpers -----------------------------------------------------------------------------------------
def anchored_equity(returns: pd.Series, index: pd.Index) -> pd.Series:
    """``cumprod(1 + r)`` with a 1.0 point on the bar of ``index`` before the first return.

    NaN returns stay NaN points (missing, skipped by the metrics); nothing is filled.
    """
    curve = (1.0 + returns).cumprod(skipna=True)
    curve[returns.isna()] = np.nan
    if len(returns):
        position = int(index.searchsorted(returns.index[0], side="left"))
        if position > 0:
            anchor = pd.Series([1.0], index=index[position - 1 : position])
            curve = pd.concat([anchor, curve])
    return curve.rename("equity")


def _metrics(returns: pd.Series, periods_per_year: float, risk_free_rate: float) -> dict[str, Any]:
    return compute_metrics_from_returns(
        returns, periods_per_year=periods_per_year, risk_free_rate=risk_free_rate
    ).as_dict()


def _check_horizons(horizons: Sequence[str] | None, close: pd.Series | None) -> tuple[str, ...]:
    """Explicit horizons: each known and no shorter than the bars (else the error says which);
    None: every known horizon the bars allow (on daily bars only 1d — 1h and 4h would score
    signals on their own bar)."""
    if horizons is None:
        if close is None:
            return tuple(d.RESOLUTION_HORIZONS)
        return horizons_for_bars(pd.DatetimeIndex(close.index), d.RESOLUTION_HORIZONS)
    for horizon in horizons:
        if horizon not in d.RESOLUTION_HORIZONS:
            raise ValueError(f"unknown horizon {horizon!r}: use {', '.join(d.RESOLUTION_HORIZONS)}")
    if close is not None:
        interval = bar_interval_seconds(pd.DatetimeIndex(close.index))
        for horizon in horizons:
            if interval is not None and horizon_seconds(horizon) < interval:
                raise HorizonTooShort(horizon, interval)
    return tuple(horizons)


def _expectation(
    records: Sequence[ExecutionRecord], close: pd.Series | None, horizons: Sequence[str]
) -> dict[str, SignalStats]:
    if close is None:
        return {}
    signals = [
        (r.bar_time, direction)
        for r in records
        if r.bar_time is not None and (direction := signal_direction(r.outcome, r.signal, r.status)) != 0
    ]
    times = pd.DatetimeIndex([t for t, _ in signals]) if signals else pd.DatetimeIndex([], tz="UTC")
    directions = np.array([s for _, s in signals], dtype=np.float64)
    out = {}
    for horizon in horizons:
        resolved = resolve_against_prices(times, directions, close, horizon)
        out[horizon] = signal_stats(horizon, resolved.realized_return, resolved.correct)
    return out


def _pool_stats(parts: Sequence[dict[str, SignalStats]], horizons: Sequence[str]) -> dict[str, SignalStats]:
    """Fold statistics combined: signals and hits add up, the mean return is signal-weighted."""
    out = {}
    for horizon in horizons:
        found = [p[horizon] for p in parts if horizon in p]
        n = sum(s.signals for s in found)
        total = sum(s.mean_return * s.signals for s in found if s.mean_return is not None)
        out[horizon] = SignalStats(horizon, n, sum(s.hits for s in found), total / n if n else None)
    return out


def _utc(ts: pd.Timestamp) -> datetime:
    return _as_utc(ts).to_pydatetime()
