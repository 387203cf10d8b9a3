"""Backtest performance suite: period statistics of an equity curve and trade statistics.

Conventions (``docs/metrics.md``, section "Backtest performance metrics"):

* Returns are simple period returns ``r_t = E_t / E_{t-1} - 1``; ``A`` = ``periods_per_year`` is
  always explicit; the annual ``risk_free_rate`` becomes ``rf_p = (1 + rf)^(1/A) - 1`` per period
  and is also the minimum acceptable return (MAR) of the Sortino ratio.
* Nothing is imputed. Non-finite equity values are *missing*: they are skipped, and the return of
  the next observed point is taken against the previous observed point (the equity change across
  a gap is real and stays in total return and drawdown). A return whose base equity is <= 0, or
  whose ratio overflows, is undefined and excluded (``undefined_returns``).
* Drawdowns are measured on the curve anchored at 1.0 before the first return, so a first-period
  loss counts. Fractions everywhere: ``-0.25`` is a 25 % drawdown / loss.
* Period-based statistics (from returns) and trade-based statistics (from closed trades, fields
  prefixed ``trade_``) are kept apart.
* Data edge cases (empty, one point, constant, no losses, no drawdown, NaN, non-positive equity)
  give documented NaN / inf / 0 values and never raise; caller errors (wrong types, bad
  arguments, malformed trades frame) raise ``TypeError`` / ``ValueError``.

Everything is vectorised: moments are computed once from centred deviations, and the VaR, CVaR
and tail quantiles come from a single ``np.partition``.

Why one module of ~570 lines: the statistics share one pass over the returns (centred
moments, one partition for the tails); split, each would recompute them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "TRADE_COLUMNS",
    "PerformanceMetrics",
    "TradeMetrics",
    "compute_metrics",
    "compute_metrics_from_returns",
    "compute_trade_metrics",
    "drawdown_series",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Tail probability of the historical VaR / CVaR (95 % confidence) and of the tail ratio.
TAIL = 0.05
#: Columns of the trades frame: ``pnl`` is required, the two times are optional (both or neither).
TRADE_COLUMNS = ("pnl", "entry_time", "exit_time")
_NAN = float("nan")
#: Returns whose spread is below this share of their magnitude have no dispersion (rounding noise).
_DISPERSION_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class TradeMetrics:
    """Statistics of closed trades (one row of the trades frame per trade).

    A row is a closed trade when ``pnl`` is finite and, if an ``exit_time`` column exists, its exit
    time is set; other rows are counted in ``excluded``. PnL is in account currency.
    """

    count: int  #: closed trades used
    excluded: int  #: rows skipped: non-finite pnl or no exit time (open trade)
    win_rate: float  #: share of trades with pnl > 0 (break-even is not a win); NaN if count == 0
    profit_factor: float  #: gross profit / gross loss; inf if no loss, NaN if neither
    payoff_ratio: float  #: mean winning pnl / |mean losing pnl|; NaN if no win or no loss
    expectancy: float  #: mean pnl per trade (currency); NaN if count == 0
    avg_duration_seconds: float | None  #: mean exit - entry; None without time columns
    max_duration_seconds: float | None  #: longest exit - entry; None without time columns

    def as_dict(self) -> dict[str, float | int | None]:
        """Flat JSON-safe mapping with ``trade_``-prefixed keys."""
        return {
            "trade_count": self.count,
            "trade_excluded": self.excluded,
            "trade_win_rate": self.win_rate,
            "trade_profit_factor": self.profit_factor,
            "trade_payoff_ratio": self.payoff_ratio,
            "trade_expectancy": self.expectancy,
            "trade_avg_duration_seconds": self.avg_duration_seconds,
            "trade_max_duration_seconds": self.max_duration_seconds,
        }


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """Period-based performance of one equity curve (plus trade statistics when trades are given).

    Returns, drawdowns, VaR and CVaR are fractions (negative = loss); ratios are annualised with
    ``periods_per_year``. See ``docs/metrics.md`` for formulas and the edge-case table.
    """

    total_return: float  #: W_N - 1 (last / first equity - 1)
    cagr: float  #: W_N^(A / observations) - 1 (period-count method)
    volatility: float  #: std(r, ddof=1) * sqrt(A)
    sharpe: float  #: mean(r - rf_p) / std(r - rf_p, ddof=1) * sqrt(A)
    sortino: float  #: mean(r - rf_p) * sqrt(A) / sqrt(sum(min(r - rf_p, 0)^2) / N)
    max_drawdown: float  #: min(W_t / max_{s<=t} W_s - 1), in [-1, 0] for positive equity
    max_drawdown_duration: int  #: longest run of consecutive periods below a previous peak
    calmar: float  #: cagr / |max_drawdown|; NaN without drawdown
    var_95: float  #: historical 5 % quantile of r (linear interpolation)
    cvar_95: float  #: mean of the floor((N-1)*0.05)+1 lowest returns
    skew: float  #: population skewness g1 = m3 / m2^1.5 (biased estimator)
    kurtosis: float  #: population *excess* kurtosis g2 = m4 / m2^2 - 3 (biased estimator)
    tail_ratio: float  #: |q95(r)| / |q5(r)|
    probabilistic_sharpe: float  #: PSR(SR* = 0), Bailey & Lopez de Prado (2012)
    best_period: float  #: max(r)
    worst_period: float  #: min(r)
    exposure: float  #: share of periods in the market (see docs)
    observations: int  #: N, returns used in the statistics
    missing: int  #: non-finite values (NaN, +-inf) in the input series
    undefined_returns: int  #: returns skipped: base equity <= 0, or the ratio overflowed
    periods_per_year: float  #: A
    risk_free_rate: float  #: annual risk-free rate (also the Sortino MAR, per period)
    trades: TradeMetrics | None = None  #: trade statistics, only when a trades frame was given

    def as_dict(self) -> dict[str, float | int | None]:
        """Flat JSON-safe mapping of plain Python floats / ints (NaN and inf stay floats).

        The ``trade_*`` keys are present only when a trades frame was given.
        """
        out: dict[str, float | int | None] = {}
        for name in self.__dataclass_fields__:
            if name == "trades":
                continue
            value = getattr(self, name)
            out[name] = int(value) if isinstance(value, int | np.integer) else float(value)
        if self.trades is not None:
            out.update(self.trades.as_dict())
        return out


# --------------------------------------------------------------------------------------------
# public entry points


def compute_metrics(
    equity: pd.Series,
    trades: pd.DataFrame | None = None,
    *,
    periods_per_year: float,
    risk_free_rate: float = 0.0,
) -> PerformanceMetrics:
    """Performance statistics of an equity curve (account values, > 0 normally), in given order.

    Non-finite equity values are missing (counted, skipped, never filled); returns are taken
    between consecutive observed points. ``trades`` (optional): see :func:`compute_trade_metrics`.
    If it has entry/exit times and ``equity`` has a ``DatetimeIndex``, ``exposure`` is the share
    of return periods overlapping an open trade; otherwise the share of non-zero returns.

    Raises ``TypeError`` for a non-Series / non-numeric ``equity`` or a bad trades frame, and
    ``ValueError`` for ``periods_per_year <= 0``, ``risk_free_rate <= -1`` or a malformed trades
    frame. Data edge cases never raise (see ``docs/metrics.md``).
    """
    annual, rf = _check_args(periods_per_year, risk_free_rate)
    values, finite = _series_values(equity, "equity")
    _check_order(equity, "equity")
    trade_frame = _check_trades(trades)

    level = values if finite.all() else values[finite]
    with np.errstate(all="ignore"):
        returns = level[1:] / level[:-1]
        returns -= 1.0
    defined = (level[:-1] > 0.0) & np.isfinite(returns)  # base <= 0, or a ratio that overflowed
    bounds = None
    if _has_times(trade_frame) and isinstance(equity.index, pd.DatetimeIndex):
        times = equity.index[finite]
        bounds = (times[:-1], times[1:])
    return _assemble(
        returns,
        defined,
        level,
        annual=annual,
        rf=rf,
        missing=int(values.size - level.size),
        trades=trade_frame,
        period_bounds=bounds,
    )


def compute_metrics_from_returns(
    returns: pd.Series,
    trades: pd.DataFrame | None = None,
    *,
    periods_per_year: float,
    risk_free_rate: float = 0.0,
) -> PerformanceMetrics:
    """Same statistics from simple period returns (e.g. stitched walk-forward out-of-sample returns).

    Non-finite returns are missing: dropped and counted, not filled. The wealth curve is
    ``1.0`` followed by ``cumprod(1 + r)`` over the finite returns. With trade times and a
    ``DatetimeIndex``, period ``i`` spans ``(t_{i-1}, t_i]``; the first period, whose start is
    unknown, is exposed when a trade is open across ``t_0``. Errors as in :func:`compute_metrics`.
    """
    annual, rf = _check_args(periods_per_year, risk_free_rate)
    values, finite = _series_values(returns, "returns")
    _check_order(returns, "returns")
    trade_frame = _check_trades(trades)

    r = values[finite]
    with np.errstate(all="ignore"):
        level = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    # After a -100 % period the wealth is 0: later returns have no base, exactly as in
    # compute_metrics on the equity curve (undefined, excluded, counted in undefined_returns).
    bounds = None
    if _has_times(trade_frame) and isinstance(returns.index, pd.DatetimeIndex):
        idx = returns.index
        starts = idx[np.maximum(np.arange(idx.size) - 1, 0)]
        bounds = (starts[finite], idx[finite])
    return _assemble(
        r,
        level[:-1] > 0.0,
        level,
        annual=annual,
        rf=rf,
        missing=int(values.size - r.size),
        trades=trade_frame,
        period_bounds=bounds,
    )


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Drawdown of every equity point: ``E_t / max_{s<=t} E_s - 1`` (fraction, <= 0, same index).

    The running peak starts at the first observed point (the 1.0 anchor). Non-finite equity
    points give NaN (nothing is filled) and do not move the peak; points whose running peak is
    <= 0 give NaN. Equity below zero gives values below -1. Raises ``TypeError`` like
    :func:`compute_metrics`.
    """
    values, finite = _series_values(equity, "equity")
    _check_order(equity, "equity")
    out = np.full(values.size, np.nan)
    out[finite] = _drawdown(values[finite])
    return pd.Series(out, index=equity.index, name="drawdown")


def compute_trade_metrics(trades: pd.DataFrame) -> TradeMetrics:
    """Statistics of closed trades.

    Columns: ``pnl`` (required, numeric, realised PnL per trade in account currency);
    ``entry_time`` and ``exit_time`` (optional, both or neither, datetime-like, tz-aware or naive):
    enable the duration statistics. Rows with non-finite ``pnl`` or a missing ``exit_time``
    (open trades) are excluded and counted. Raises ``TypeError`` for a non-DataFrame or
    non-numeric ``pnl``, ``ValueError`` naming a missing column or for ``exit_time < entry_time``.
    """
    frame = _check_trades(trades)
    if frame is None:
        raise TypeError("trades must be a pandas DataFrame, got None")
    return _trade_metrics(frame)


# --------------------------------------------------------------------------------------------
# validation


def _check_args(periods_per_year: float, risk_free_rate: float) -> tuple[float, float]:
    annual = _real(periods_per_year, "periods_per_year")
    if not (math.isfinite(annual) and annual > 0):
        raise ValueError(f"periods_per_year must be a finite number > 0, got {periods_per_year!r}")
    rf = _real(risk_free_rate, "risk_free_rate")
    if not (math.isfinite(rf) and rf > -1):
        raise ValueError(f"risk_free_rate must be a finite annual rate > -1, got {risk_free_rate!r}")
    return annual, rf


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _series_values(series: object, name: str) -> tuple[FloatArray, BoolArray]:
    """Float64 values of a numeric Series and the mask of its finite values."""
    if not isinstance(series, pd.Series):
        raise TypeError(f"{name} must be a pandas Series, got {type(series).__name__}")
    dtype = series.dtype
    if (
        not pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_complex_dtype(dtype)
    ):
        raise TypeError(f"{name} must have a real numeric dtype, got {dtype}")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return values, np.isfinite(values)


def _check_order(series: pd.Series, name: str) -> None:
    """A time index must be strictly increasing: sorting or de-duplicating silently would change
    every statistic (the returns are taken between neighbours), so it is the caller's to fix."""
    index = series.index
    if not isinstance(index, pd.DatetimeIndex) or (index.is_monotonic_increasing and index.is_unique):
        return
    if index.has_duplicates:
        first = index[index.duplicated()][0]
        raise ValueError(f"{name}: duplicate timestamp {first} (timestamps must be strictly increasing)")
    position = int(np.argmax(index[1:] < index[:-1])) + 1
    raise ValueError(
        f"{name}: timestamps out of order at position {position} ({index[position]} after "
        f"{index[position - 1]}); sort the series first"
    )


def _check_trades(trades: object) -> pd.DataFrame | None:
    if trades is None:
        return None
    if not isinstance(trades, pd.DataFrame):
        raise TypeError(f"trades must be a pandas DataFrame or None, got {type(trades).__name__}")
    if "pnl" not in trades.columns:
        raise ValueError("trades frame is missing the required column 'pnl'")
    pnl = trades["pnl"]
    if not pd.api.types.is_numeric_dtype(pnl.dtype) or pd.api.types.is_bool_dtype(pnl.dtype):
        raise TypeError(f"trades column 'pnl' must be numeric, got {pnl.dtype}")
    present = [c for c in ("entry_time", "exit_time") if c in trades.columns]
    if len(present) == 1:
        absent = "exit_time" if present[0] == "entry_time" else "entry_time"
        raise ValueError(f"trades frame has '{present[0]}' but is missing the column '{absent}'")
    if present:
        frame = trades.copy()
        for column in present:
            frame[column] = _as_datetime(trades[column], column)
        if (frame["exit_time"] < frame["entry_time"]).any():
            raise ValueError("trades frame has rows with exit_time before entry_time")
        return frame
    return trades


def _has_times(trades: pd.DataFrame | None) -> bool:
    return trades is not None and "entry_time" in trades.columns


def _as_datetime(column: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        return column
    if pd.api.types.is_numeric_dtype(column.dtype):
        raise TypeError(f"trades column '{name}' must be datetime-like, got {column.dtype}")
    try:
        return pd.to_datetime(column)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"trades column '{name}' must be datetime-like: {exc}") from exc


# --------------------------------------------------------------------------------------------
# statistics


def _assemble(
    returns: FloatArray,
    defined: BoolArray,
    level: FloatArray,
    *,
    annual: float,
    rf: float,
    missing: int,
    trades: pd.DataFrame | None,
    period_bounds: tuple[pd.DatetimeIndex, pd.DatetimeIndex] | None,
) -> PerformanceMetrics:
    """Shared body of both entry points.

    ``returns[i]`` is the return of period ``i`` (into ``level[i + 1]``), ``defined`` masks the
    ones usable as statistics, ``level`` is the wealth / equity curve including its anchor point,
    ``period_bounds`` the (start, end) times of every period when the series is time-indexed.
    """
    r = returns if defined.all() else returns[defined]
    n = r.size
    exposed = None
    if trades is not None and period_bounds is not None:
        exposed = _trade_exposure(*period_bounds, trades)[defined]
    with np.errstate(all="ignore"):
        stats = _return_stats(r, annual=annual, rf=rf, exposed=exposed)
        growth = float(level[-1] / level[0]) if n and level[0] > 0 else _NAN
        mdd, duration = _drawdown_summary(level) if n else (_NAN, 0)
        # With an undefined return inside, no growth rate per period is defined either.
        cagr = _cagr(growth, n, annual) if n == returns.size else _NAN
    return PerformanceMetrics(
        total_return=growth - 1.0,
        cagr=cagr,
        max_drawdown=mdd,
        max_drawdown_duration=duration,
        calmar=cagr / abs(mdd) if mdd < 0 else _NAN,
        observations=n,
        missing=missing,
        undefined_returns=int(returns.size - n),
        periods_per_year=annual,
        risk_free_rate=rf,
        trades=None if trades is None else _trade_metrics(trades),
        **stats,
    )


def _return_stats(r: FloatArray, *, annual: float, rf: float, exposed: BoolArray | None) -> dict[str, float]:
    """Moment- and quantile-based statistics of finite returns ``r`` (moments computed once).

    Scalars stay ``np.float64`` under the caller's ``np.errstate`` so overflow gives inf, not
    ``OverflowError``.
    """
    n = r.size
    keys = ("volatility", "sharpe", "sortino", "skew", "kurtosis", "probabilistic_sharpe")
    stats: dict[str, float] = dict.fromkeys(keys, _NAN)
    if n == 0:
        stats.update(dict.fromkeys(("var_95", "cvar_95", "tail_ratio", "best_period", "worst_period"), _NAN))
        stats["exposure"] = _NAN
        return stats
    best, worst = r.max(), r.min()
    var, cvar, tail = _tail_stats(r)
    in_market = np.count_nonzero(r) if exposed is None else np.count_nonzero(exposed)
    stats.update(best_period=best, worst_period=worst, exposure=in_market / n)
    stats.update(var_95=var, cvar_95=cvar, tail_ratio=tail)
    if n >= 2:
        # Zero dispersion, also when it is only rounding noise (a spread below 1e-12 of the values'
        # magnitude): exact zeros, so the Sharpe ratio is the documented ±inf, not ~1e15.
        if best - worst <= _DISPERSION_TOLERANCE * max(abs(best), abs(worst)):
            mean, m2, m3, m4 = r.mean(), np.float64(0.0), np.float64(0.0), np.float64(0.0)
        else:
            mean = r.mean()
            dev = r - mean
            sq = dev * dev
            m2, m3, m4 = sq.sum(), np.dot(sq, dev), np.dot(sq, sq)
        rf_p = np.expm1(np.log1p(rf) / annual)  # (1 + rf)^(1/A) - 1
        excess = mean - rf_p
        std = np.sqrt(m2 / (n - 1))
        downside = np.minimum(r - rf_p, 0.0)
        semi = np.sqrt(np.dot(downside, downside) / n)
        sr = _ratio(excess, std)  # per period
        sqrt_a = np.sqrt(annual)
        stats.update(volatility=std * sqrt_a, sharpe=sr * sqrt_a, sortino=_ratio(excess * sqrt_a, semi))
        if m2 > 0:
            var_pop = m2 / n
            skew = (m3 / n) / (var_pop * np.sqrt(var_pop))
            kurt = (m4 / n) / (var_pop * var_pop) - 3.0
            psr = _probabilistic_sharpe(sr, n, skew, kurt)
            stats.update(skew=skew, kurtosis=kurt, probabilistic_sharpe=psr)
    return {key: float(value) for key, value in stats.items()}


def _ratio(num: float, den: float) -> float:
    """num / den for den >= 0: +-inf when only den is 0, NaN when both are (or either is NaN)."""
    if den > 0:
        return float(num / den)
    if den == 0 and num != 0 and not math.isnan(num):
        return math.copysign(math.inf, num)
    return _NAN


def _cagr(growth: float, n: int, annual: float) -> float:
    """Period-count CAGR ``growth^(A / n) - 1``; NaN for n == 0 or negative growth; may be inf."""
    if n == 0 or not growth >= 0:
        return _NAN
    return float(np.power(np.float64(growth), annual / n) - 1.0)


def _probabilistic_sharpe(sr: Any, n: int, skew: Any, kurt: Any) -> float:
    """PSR against SR* = 0: Phi(SR * sqrt(n - 1) / sqrt(1 - g1 * SR + (g2 + 2) / 4 * SR^2)).

    ``sr`` is the per-period Sharpe, ``kurt`` the excess kurtosis (so (gamma4 - 1) / 4 =
    (g2 + 2) / 4). NaN when the variance term is not positive.
    """
    var_term = 1.0 - skew * sr + (kurt + 2.0) / 4.0 * sr * sr
    if not var_term > 0:
        return _NAN
    z = float(sr * np.sqrt(n - 1) / np.sqrt(var_term))
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _tail_stats(r: FloatArray) -> tuple[float, float, float]:
    """(VaR 95, CVaR 95, tail ratio) of finite returns, from a single partial sort.

    Quantiles use linear interpolation between order statistics at ``(n - 1) * q`` (Hyndman-Fan
    type 7, ``numpy.percentile``'s default); CVaR is the mean of the ``floor((n - 1) * 0.05) + 1``
    lowest returns (all <= VaR).
    """
    n = r.size
    lo, hi = (n - 1) * TAIL, (n - 1) * (1.0 - TAIL)
    kth = sorted({min(k, n - 1) for k in (int(lo), int(lo) + 1, int(hi), int(hi) + 1)})
    part = np.partition(r, kth)
    var = _lerp(part, lo)
    cvar = float(part[: int(lo) + 1].mean())
    upper = _lerp(part, hi)
    return var, cvar, float(np.abs(np.float64(upper)) / np.abs(np.float64(var)))


def _lerp(part: FloatArray, index: float) -> float:
    """Value at fractional ``index`` of the (partitioned) order statistics, as numpy computes it."""
    i = int(index)
    a, b = part[i], part[min(i + 1, part.size - 1)]
    t = index - i
    return float(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t)


def _drawdown(level: FloatArray) -> FloatArray:
    """Drawdown of each point of a level curve against its running peak; NaN where the peak <= 0."""
    if not level.size:
        return level.copy()
    peak = np.maximum.accumulate(level)
    with np.errstate(all="ignore"):
        dd: FloatArray = level / peak
        dd -= 1.0
    dd[: np.searchsorted(peak, 0.0, "right")] = np.nan  # the running peak is sorted: <= 0 on a prefix
    return dd


def _drawdown_summary(level: FloatArray) -> tuple[float, int]:
    """(max drawdown, longest run of consecutive points below a previous peak)."""
    dd = _drawdown(level)
    mdd = float(np.nanmin(dd)) if not np.isnan(dd).all() else _NAN
    under = np.concatenate(([0], (dd < 0).view(np.int8), [0]))
    edges = np.flatnonzero(np.diff(under))  # alternating run starts and ends
    duration = int((edges[1::2] - edges[::2]).max()) if edges.size else 0
    return mdd, duration


def _ns(times: pd.DatetimeIndex | pd.Series, utc: bool) -> npt.NDArray[np.int64]:
    """Nanoseconds since the epoch (UTC when tz-aware); NaT stays the minimum int64."""
    idx = pd.DatetimeIndex(times)
    if (idx.tz is not None) != utc:
        raise ValueError("trade times and the series index must both be tz-aware or both be naive")
    if idx.tz is not None:
        idx = idx.tz_convert("UTC")
    return idx.as_unit("ns").asi8


def _trade_exposure(starts: pd.DatetimeIndex, ends: pd.DatetimeIndex, trades: pd.DataFrame) -> BoolArray:
    """Whether each period ``(start, end]`` overlaps a trade ``[entry, exit]`` (open trade: exit = +inf).

    For entry <= exit, the trades overlapping ``(a, b]`` are those entered before ``b`` minus those
    exited at or before ``a`` (both counted by binary search on the sorted times). A zero-length
    period ``a == b`` is exposed when a trade is open strictly across ``a``.
    """
    utc = ends.tz is not None
    rows = trades[trades["entry_time"].notna()]
    entry = np.sort(_ns(rows["entry_time"], utc))
    exit_ns = _ns(rows["exit_time"], utc)
    exit_ns = np.sort(np.where(rows["exit_time"].isna().to_numpy(), np.iinfo(np.int64).max, exit_ns))
    open_trades = np.searchsorted(entry, _ns(ends, utc), "left") - np.searchsorted(exit_ns, _ns(starts, utc), "right")
    exposed: BoolArray = open_trades > 0
    return exposed


def _trade_metrics(trades: pd.DataFrame) -> TradeMetrics:
    with np.errstate(all="ignore"):  # sums of huge PnLs may overflow to inf
        return _closed_trade_metrics(trades)


def _closed_trade_metrics(trades: pd.DataFrame) -> TradeMetrics:
    pnl_all = trades["pnl"].to_numpy(dtype=np.float64, na_value=np.nan)
    closed = np.isfinite(pnl_all)
    timed = "exit_time" in trades.columns
    if timed:
        closed &= trades["exit_time"].notna().to_numpy()
    pnl = pnl_all[closed]
    n = pnl.size
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_win, gross_loss = float(wins.sum()), float(-losses.sum())
    avg_duration: float | None = None
    max_duration: float | None = None
    if timed:
        rows = trades[closed]
        seconds = (
            (rows["exit_time"] - rows["entry_time"]).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
        )
        seconds = seconds[np.isfinite(seconds)]
        avg_duration = float(seconds.mean()) if seconds.size else _NAN
        max_duration = float(seconds.max()) if seconds.size else _NAN
    return TradeMetrics(
        count=n,
        excluded=int(pnl_all.size - n),
        win_rate=wins.size / n if n else _NAN,
        profit_factor=_ratio(gross_win, gross_loss),
        payoff_ratio=float(wins.mean()) / abs(float(losses.mean())) if wins.size and losses.size else _NAN,
        expectancy=float(pnl.mean()) if n else _NAN,
        avg_duration_seconds=avg_duration,
        max_duration_seconds=max_duration,
    )
