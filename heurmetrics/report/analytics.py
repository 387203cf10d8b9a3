"""The tearsheet's derived views of a run's curve: calendar returns, rolling ratios, worst drawdowns.

Pure functions of the stored equity curve (``equity_points``), quantstats-style:

- **period returns** ``E_t / E_{t-1} - 1`` between observed points (missing points skipped, never
  filled, like :func:`heurmetrics.backtest.compute_metrics`);
- **monthly / yearly returns**: compounded within each calendar month / year (UTC):
  ``∏ (1 + r) - 1``;
- **rolling Sharpe ratio and volatility** over a trailing window of ``w`` returns:
  ``mean / std(ddof=1) · √A`` and ``std(ddof=1) · √A``; ``w`` = a month of periods
  (``round(A / 12)``), at least 10, and at most a quarter of the returns;
- **worst drawdowns**: the distinct drawdown periods (peak → trough → recovery to the peak, or
  still open at the end), deepest first, with depth and lengths in periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True, slots=True)
class Drawdown:
    """One drawdown period of a curve."""

    peak: pd.Timestamp
    trough: pd.Timestamp
    recovery: pd.Timestamp | None  #: first point back at the peak; None when still under water
    depth: float  #: trough / peak - 1 (negative fraction)
    periods: int  #: points from the peak to the recovery (or to the end)


def period_returns(equity: pd.Series) -> pd.Series:
    """Returns between consecutive observed (finite, positive-based) points."""
    observed = equity[np.isfinite(equity.to_numpy(dtype=np.float64))]
    base = observed.shift(1)
    return (observed / base - 1.0).where(base > 0).iloc[1:].dropna()


def calendar_returns(returns: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """``(monthly, yearly)``: a year x month (1-12) frame of compounded monthly returns (NaN for
    months without returns) and the compounded return of every year."""
    if returns.empty:
        return pd.DataFrame(columns=range(1, 13), dtype=float), pd.Series(dtype=float)
    index = pd.DatetimeIndex(returns.index)
    index = index.tz_convert("UTC") if index.tz is not None else index
    growth = pd.Series(np.log1p(returns.to_numpy(dtype=np.float64)), index=index)
    monthly = growth.groupby([index.year, index.month]).sum().apply(math.expm1)
    table = monthly.unstack().reindex(columns=range(1, 13))
    table.index.name, table.columns.name = "year", "month"
    yearly = growth.groupby(index.year).sum().apply(math.expm1)
    yearly.index.name = "year"
    return table, yearly


def rolling_window(n_returns: int, periods_per_year: float) -> int:
    """Trailing window of the rolling ratios (see the module docstring)."""
    month = max(10, round(periods_per_year / 12))
    return max(2, min(month, n_returns // 4))


def rolling_sharpe_volatility(returns: pd.Series, periods_per_year: float) -> pd.DataFrame:
    """Columns ``sharpe`` and ``volatility`` (annualised) over a trailing window of returns."""
    window = rolling_window(len(returns), periods_per_year)
    roll = returns.rolling(window, min_periods=window)
    mean, std = roll.mean(), roll.std(ddof=1)
    root = float(np.sqrt(periods_per_year))
    sharpe = (mean / std * root).where(std > 0)
    return pd.DataFrame({"sharpe": sharpe, "volatility": std * root})


def worst_drawdowns(equity: pd.Series, count: int = 5) -> list[Drawdown]:
    """The ``count`` deepest drawdown periods of ``equity`` (finite points only), deepest first."""
    curve = equity[np.isfinite(equity.to_numpy(dtype=np.float64))]
    values = curve.to_numpy(dtype=np.float64)
    found: list[Drawdown] = []
    if len(values) < 2:
        return found
    peak_value, peak_at = values[0], 0
    trough_value, trough_at = values[0], 0
    for i in range(1, len(values) + 1):
        value = values[i] if i < len(values) else np.inf  # sentinel closes an open drawdown
        if value >= peak_value:
            if trough_at != peak_at and peak_value > 0:
                recovered = i < len(values)
                found.append(
                    Drawdown(
                        peak=curve.index[peak_at],
                        trough=curve.index[trough_at],
                        recovery=curve.index[i] if recovered else None,
                        depth=float(trough_value / peak_value - 1.0),
                        periods=(i if recovered else len(values) - 1) - peak_at,
                    )
                )
            if i < len(values):
                peak_value, peak_at = value, i
                trough_value, trough_at = value, i
        elif value < trough_value:
            trough_value, trough_at = value, i
    found.sort(key=lambda dd: dd.depth)
    return found[:count]
