"""Performance suite: hand-computed formulas, edge cases, trades, and a cross-check with empyrical.

Expected values are computed here from first principles (explicit NumPy on a handful of numbers,
or closed forms), never by calling the function under test.

Cross-check tolerances against empyrical-reloaded 0.7.1 (pinned in pyproject):
  * sharpe, sortino, volatility, max_drawdown, cagr, calmar: rtol 1e-9, atol 1e-12
    (different summation order: empyrical uses bottleneck's nanmean / nanstd);
  * value_at_risk, conditional_value_at_risk, tail_ratio: rtol 1e-12, atol 0 (same order statistics);
  * skew / kurtosis against scipy.stats (biased, Fisher): rtol 1e-9, atol 1e-10.
Where the conventions differ we compare only where they agree (see the comments in the tests).
"""

from __future__ import annotations

import json
import math
from functools import partial

import empyrical
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from heurmetrics.backtest import (
    PerformanceMetrics,
    compute_metrics,
    compute_metrics_from_returns,
    compute_trade_metrics,
    drawdown_series,
)

PERIOD_KEYS = {
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar",
    "var_95",
    "cvar_95",
    "skew",
    "kurtosis",
    "tail_ratio",
    "probabilistic_sharpe",
    "best_period",
    "worst_period",
    "exposure",
    "observations",
    "missing",
    "undefined_returns",
    "periods_per_year",
    "risk_free_rate",
}
TRADE_KEYS = {
    "trade_count",
    "trade_excluded",
    "trade_win_rate",
    "trade_profit_factor",
    "trade_payoff_ratio",
    "trade_expectancy",
    "trade_avg_duration_seconds",
    "trade_max_duration_seconds",
}

# 11 distinct returns whose order statistics make the quantiles round numbers:
# sorted: -0.12 -0.08 -0.05 -0.03 0 0.01 0.02 0.04 0.06 0.10 0.15
R11 = np.array([0.10, -0.05, 0.02, -0.08, 0.15, 0.01, -0.03, 0.04, 0.00, -0.12, 0.06])


def equity_from(returns: np.ndarray, start: float = 100.0, index: pd.Index | None = None) -> pd.Series:
    values = start * np.cumprod(np.concatenate(([1.0], 1.0 + returns)))
    return pd.Series(values, index=index)


def metrics(equity: pd.Series, **kwargs: float) -> PerformanceMetrics:
    kwargs.setdefault("periods_per_year", 252)
    return compute_metrics(equity, **kwargs)  # type: ignore[arg-type]


def approx(value: float | np.floating) -> object:
    return pytest.approx(value, rel=1e-12, abs=1e-15)


# ------------------------------------------------------------------------------------------
# formulas, hand-computed


def test_sharpe_closed_form() -> None:
    # r = [0.01, 0.03]: mean 0.02, std(ddof=1) = 0.01*sqrt(2); A = 4 -> 0.02 / (0.01 sqrt 2) * 2 = 2 sqrt 2
    m = metrics(equity_from(np.array([0.01, 0.03])), periods_per_year=4)
    assert m.sharpe == approx(2 * math.sqrt(2))
    assert m.volatility == approx(0.01 * math.sqrt(2) * 2)


def test_sharpe_with_risk_free_rate_converted_per_period() -> None:
    r, annual, rf = R11, 12.0, 0.05
    rf_p = (1 + rf) ** (1 / annual) - 1
    excess = r - rf_p
    expected = excess.mean() / excess.std(ddof=1) * math.sqrt(annual)
    m = metrics(equity_from(r), periods_per_year=annual, risk_free_rate=rf)
    assert m.sharpe == pytest.approx(expected, rel=1e-12)
    assert m.volatility == pytest.approx(r.std(ddof=1) * math.sqrt(annual), rel=1e-12)


def test_sortino_closed_form_and_full_count_denominator() -> None:
    # r = [0.01, -0.03], A = 4: mean -0.01; downside sqrt(0.03^2 / 2) (N = all observations)
    m = metrics(equity_from(np.array([0.01, -0.03])), periods_per_year=4)
    assert m.sortino == approx(-0.01 * 2 / (0.03 / math.sqrt(2)))


def test_sortino_uses_risk_free_rate_as_mar() -> None:
    r, annual, rf = R11, 52.0, 0.03
    mar = (1 + rf) ** (1 / annual) - 1
    downside = np.minimum(r - mar, 0.0)
    expected = (r - mar).mean() * math.sqrt(annual) / math.sqrt((downside**2).sum() / r.size)
    m = metrics(equity_from(r), periods_per_year=annual, risk_free_rate=rf)
    assert m.sortino == pytest.approx(expected, rel=1e-12)


def test_total_return_and_cagr_period_count_method() -> None:
    eq = pd.Series([100.0, 110.0, 121.0])
    assert metrics(eq, periods_per_year=2).cagr == approx(0.21)  # 1.21^(2/2) - 1
    m = metrics(eq, periods_per_year=1)
    assert m.cagr == approx(0.1)  # 1.21^(1/2) - 1
    assert m.total_return == approx(0.21)
    m = metrics(equity_from(R11), periods_per_year=12)
    growth = np.prod(1 + R11)
    assert m.total_return == approx(growth - 1)
    assert m.cagr == approx(growth ** (12 / 11) - 1)


def test_max_drawdown_hand_computed() -> None:
    # wealth 1, 1.1, 0.99, 1.089, 0.9801, 1.17612: trough 0.9801 against peak 1.1 -> -0.109
    m = metrics(equity_from(np.array([0.10, -0.10, 0.10, -0.10, 0.20])), periods_per_year=12)
    assert m.max_drawdown == approx(0.9801 / 1.1 - 1)
    assert m.max_drawdown_duration == 3  # three points below the 1.1 peak
    assert m.calmar == approx(m.cagr / 0.109)


def test_first_period_loss_counts_in_drawdown() -> None:
    assert metrics(pd.Series([100.0, 90.0, 95.0])).max_drawdown == approx(-0.1)
    from_returns = compute_metrics_from_returns(pd.Series([-0.1, 0.05]), periods_per_year=252)
    assert from_returns.max_drawdown == approx(-0.1)
    assert from_returns.max_drawdown_duration == 2


def test_unrecovered_drawdown_duration_counts_to_the_end() -> None:
    eq = pd.Series([1.0, 2.0, 1.9, 2.5, 2.4, 2.0, 1.9, 1.8])
    assert metrics(eq).max_drawdown_duration == 4
    assert metrics(eq).max_drawdown == approx(1.8 / 2.5 - 1)


def test_var_cvar_tail_ratio_historical() -> None:
    m = metrics(equity_from(R11))
    # (n - 1) * 0.05 = 0.5: halfway between -0.12 and -0.08; CVaR = mean of the 1 lowest
    assert m.var_95 == approx(-0.10)
    assert m.cvar_95 == approx(-0.12)
    # (n - 1) * 0.95 = 9.5: halfway between 0.10 and 0.15 -> 0.125; tail = 0.125 / 0.10
    assert m.tail_ratio == approx(1.25)
    assert m.best_period == approx(0.15)
    assert m.worst_period == approx(-0.12)


def test_cvar_averages_the_tail() -> None:
    r = np.random.default_rng(3).permutation((np.arange(41) - 20) / 100)  # -0.20 ... 0.20
    m = compute_metrics_from_returns(pd.Series(r), periods_per_year=252)
    assert m.var_95 == approx(-0.18)  # (41 - 1) * 0.05 = 2 -> third lowest
    assert m.cvar_95 == approx(np.mean([-0.20, -0.19, -0.18]))
    assert m.tail_ratio == approx(1.0)


def test_skew_kurtosis_population_excess() -> None:
    dev = R11 - R11.mean()
    m2, m3, m4 = (dev**2).mean(), (dev**3).mean(), (dev**4).mean()
    m = metrics(equity_from(R11))
    assert m.skew == pytest.approx(m3 / m2**1.5, rel=1e-10)
    assert m.kurtosis == pytest.approx(m4 / m2**2 - 3, rel=1e-10)


def test_probabilistic_sharpe_bailey_lopez_de_prado() -> None:
    r, rf = R11, 0.02
    annual = 252.0
    rf_p = (1 + rf) ** (1 / annual) - 1
    sr = (r - rf_p).mean() / (r - rf_p).std(ddof=1)
    g3 = sps.skew(r)
    g4 = sps.kurtosis(r, fisher=False)  # non-excess kurtosis in the paper's formula
    z = sr * math.sqrt(r.size - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    m = metrics(equity_from(r), periods_per_year=annual, risk_free_rate=rf)
    assert m.probabilistic_sharpe == pytest.approx(sps.norm.cdf(z), rel=1e-9)


def test_exposure_is_share_of_non_zero_returns() -> None:
    assert metrics(equity_from(R11)).exposure == approx(10 / 11)


def test_as_dict_keys_and_plain_types() -> None:
    d = metrics(equity_from(R11)).as_dict()
    assert set(d) == PERIOD_KEYS
    for key in ("observations", "missing", "undefined_returns", "max_drawdown_duration"):
        assert type(d[key]) is int
    assert all(type(v) in (int, float) for v in d.values())
    json.dumps(d)  # JSON-serialisable (NaN as float('nan'))
    assert d["observations"] == 11


def test_equity_and_returns_entry_points_agree() -> None:
    eq = equity_from(R11)
    a = compute_metrics(eq, periods_per_year=12, risk_free_rate=0.01).as_dict()
    b = compute_metrics_from_returns(eq.pct_change(), periods_per_year=12, risk_free_rate=0.01).as_dict()
    assert b.pop("missing") == 1  # the leading NaN of pct_change
    a.pop("missing")
    assert a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_drawdown_series_same_index_nan_at_missing() -> None:
    idx = pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC")
    eq = pd.Series([100.0, 80.0, np.nan, 120.0, 90.0], index=idx)
    dd = drawdown_series(eq)
    assert dd.index.equals(idx)
    np.testing.assert_allclose(dd.to_numpy(), [0.0, -0.2, np.nan, 0.0, -0.25], rtol=1e-12)


# ------------------------------------------------------------------------------------------
# edge cases (documented in docs/metrics.md)

ALWAYS_NAN_WITHOUT_RETURNS = PERIOD_KEYS - {
    "max_drawdown_duration",
    "observations",
    "missing",
    "undefined_returns",
    "periods_per_year",
    "risk_free_rate",
}


@pytest.mark.parametrize(
    "values", [[], [100.0], [np.nan, np.nan], [np.nan, 5.0, np.inf]], ids=["empty", "one", "nan", "one-valid"]
)
def test_no_returns_gives_nan(values: list[float]) -> None:
    d = metrics(pd.Series(values, dtype=float)).as_dict()
    assert all(math.isnan(d[k]) for k in ALWAYS_NAN_WITHOUT_RETURNS)  # type: ignore[arg-type]
    assert d["observations"] == 0
    assert d["max_drawdown_duration"] == 0
    assert d["missing"] == sum(not math.isfinite(v) for v in values)


def test_single_return() -> None:
    m = metrics(pd.Series([100.0, 90.0]))
    assert m.total_return == approx(-0.1)
    assert m.max_drawdown == approx(-0.1)
    assert m.var_95 == m.cvar_95 == m.worst_period == m.best_period == approx(-0.1)
    assert m.tail_ratio == 1.0
    for name in ("volatility", "sharpe", "sortino", "skew", "kurtosis", "probabilistic_sharpe"):
        assert math.isnan(getattr(m, name)), name


def test_constant_curve() -> None:
    m = metrics(pd.Series([50.0] * 6))
    assert (m.total_return, m.cagr, m.volatility, m.max_drawdown, m.exposure) == (0, 0, 0, 0, 0)
    assert m.var_95 == m.cvar_95 == 0.0
    for name in ("sharpe", "sortino", "calmar", "tail_ratio", "skew", "kurtosis", "probabilistic_sharpe"):
        assert math.isnan(getattr(m, name)), name
    with_rf = metrics(pd.Series([50.0] * 6), risk_free_rate=0.05)
    assert with_rf.sharpe == -math.inf  # excess = -rf_p < 0 with zero dispersion
    assert with_rf.sortino == pytest.approx(-math.sqrt(252))  # mean(-rf_p) / rf_p * sqrt(A)


def test_constant_positive_returns_zero_dispersion() -> None:
    m = compute_metrics_from_returns(pd.Series([0.01] * 5), periods_per_year=12)
    assert m.volatility == 0.0
    assert m.sharpe == math.inf
    assert m.sortino == math.inf
    assert m.max_drawdown == 0.0
    assert math.isnan(m.calmar)


def test_near_zero_dispersion_is_zero_dispersion_not_a_huge_sharpe() -> None:
    # 0.01 + 1e-17 is rounding noise: the Sharpe ratio is the documented +inf, not ~1e15.
    noisy = pd.Series([0.01, 0.01 + 1e-17, 0.01, 0.01 - 1e-17, 0.01])
    m = compute_metrics_from_returns(noisy, periods_per_year=12)
    assert m.volatility == 0.0 and m.sharpe == math.inf
    assert math.isnan(m.skew) and math.isnan(m.probabilistic_sharpe)
    real = compute_metrics_from_returns(pd.Series([0.01, 0.0101, 0.01]), periods_per_year=12)
    assert math.isfinite(real.sharpe) and real.volatility > 0  # a real spread is kept


def test_unsorted_or_duplicate_timestamps_are_refused() -> None:
    idx = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    eq = pd.Series([1.0, 1.1, 1.05, 1.2, 1.15, 1.3], index=idx)
    shuffled = eq.iloc[[0, 2, 1, 3, 4, 5]]
    for fn in (compute_metrics, compute_metrics_from_returns, drawdown_series):
        with pytest.raises(ValueError, match=r"timestamps out of order at position 2 \(2024-01-02"):
            fn(shuffled, **({} if fn is drawdown_series else {"periods_per_year": 252}))
    doubled = pd.concat([eq.iloc[:3], eq.iloc[2:]])
    with pytest.raises(ValueError, match="duplicate timestamp 2024-01-03"):
        compute_metrics(doubled, periods_per_year=252)
    # An integer index is positional: the given order is the order (nothing to check).
    assert compute_metrics(eq.reset_index(drop=True), periods_per_year=252).observations == 5


def test_entry_points_agree_after_a_total_loss() -> None:
    returns = pd.Series([0.1, -1.0, 0.5, 0.2])
    equity = pd.Series([1.0, 1.1, 0.0, 0.0, 0.0])  # what those returns do to an account
    a = compute_metrics(equity, periods_per_year=12).as_dict()
    b = compute_metrics_from_returns(returns, periods_per_year=12).as_dict()
    assert b["undefined_returns"] == a["undefined_returns"] == 2 and b["observations"] == a["observations"] == 2
    assert a == pytest.approx(b, rel=1e-12, abs=1e-15, nan_ok=True)


def test_all_gains_no_drawdown() -> None:
    m = metrics(equity_from(np.array([0.01, 0.02, 0.005, 0.03])))
    assert m.max_drawdown == 0.0
    assert m.max_drawdown_duration == 0
    assert math.isnan(m.calmar)
    assert m.sortino == math.inf
    assert m.exposure == 1.0


def test_nan_inside_is_skipped_not_imputed() -> None:
    # the 100 -> 120 change across the gap is one observed return; nothing is filled
    m = metrics(pd.Series([100.0, np.nan, 120.0, 90.0]))
    assert m.missing == 1
    assert m.observations == 2
    assert m.total_return == approx(-0.1)
    assert m.best_period == approx(0.2)
    assert m.max_drawdown == approx(-0.25)
    returns_nan = compute_metrics_from_returns(pd.Series([0.1, np.nan, -0.1]), periods_per_year=252)
    assert (returns_nan.missing, returns_nan.observations) == (1, 2)
    assert returns_nan.total_return == approx(1.1 * 0.9 - 1)


def test_non_positive_equity() -> None:
    m = metrics(pd.Series([100.0, 50.0, 0.0, 20.0, -10.0, 30.0]))
    # returns with base <= 0 (0 -> 20, -10 -> 30) are undefined; 20 -> -10 has base 20 > 0: -1.5
    assert m.undefined_returns == 2
    assert m.observations == 3
    assert m.worst_period == approx(-1.5)
    assert m.max_drawdown == approx(-1.1)  # -10 against the peak 100
    assert m.total_return == approx(-0.7)
    assert math.isnan(m.cagr)
    assert math.isnan(m.calmar)
    starts_at_zero = metrics(pd.Series([0.0, 10.0, 5.0]))
    assert math.isnan(starts_at_zero.total_return)
    np.testing.assert_allclose(drawdown_series(pd.Series([0.0, 10.0, 5.0])), [np.nan, 0.0, -0.5])


def test_overflowing_return_is_undefined() -> None:
    m = metrics(pd.Series([1e-300, 1e308, 5e307]))  # 1e308 / 1e-300 overflows to inf
    assert (m.undefined_returns, m.observations) == (1, 1)
    assert m.best_period == approx(-0.5)
    assert math.isnan(m.cagr)


def test_cagr_overflow_is_inf_not_an_error() -> None:
    m = metrics(pd.Series([1.0, 10.0]), periods_per_year=365 * 24)
    assert m.cagr == math.inf
    assert math.isnan(m.calmar)  # no drawdown


def test_nullable_and_integer_dtypes() -> None:
    m = metrics(pd.Series([100, 110, None, 99], dtype="Int64"))
    assert (m.missing, m.observations) == (1, 2)
    assert metrics(pd.Series([100, 110, 99])).observations == 2


@pytest.mark.parametrize("bad", [0, -1, 0.0, math.nan, math.inf])
def test_periods_per_year_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="periods_per_year"):
        compute_metrics(pd.Series([1.0, 2.0]), periods_per_year=bad)
    with pytest.raises(ValueError, match="periods_per_year"):
        compute_metrics_from_returns(pd.Series([0.1]), periods_per_year=bad)


@pytest.mark.parametrize("bad", [-1.0, -2.0, math.nan])
def test_risk_free_rate_must_exceed_minus_one(bad: float) -> None:
    with pytest.raises(ValueError, match="risk_free_rate"):
        compute_metrics(pd.Series([1.0, 2.0]), periods_per_year=12, risk_free_rate=bad)


@pytest.mark.parametrize(
    "bad",
    [
        [1.0, 2.0],
        np.array([1.0, 2.0]),
        pd.DataFrame({"a": [1.0]}),
        pd.Series(["1", "2"]),
        pd.Series([True, False]),
        pd.Series(pd.date_range("2024", periods=2)),
        pd.Series([1 + 1j, 2 + 0j]),
    ],
    ids=["list", "ndarray", "frame", "str", "bool", "datetime", "complex"],
)
def test_type_errors(bad: object) -> None:
    with pytest.raises(TypeError):
        compute_metrics(bad, periods_per_year=252)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        drawdown_series(bad)  # type: ignore[arg-type]


def test_periods_per_year_type_error() -> None:
    with pytest.raises(TypeError, match="periods_per_year"):
        compute_metrics(pd.Series([1.0, 2.0]), periods_per_year="252")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# trades


def trade_frame() -> pd.DataFrame:
    t = pd.Timestamp("2024-01-01", tz="UTC")
    h = pd.Timedelta(hours=1)
    return pd.DataFrame(
        {
            "pnl": [100.0, -50.0, 0.0, 200.0, -25.0, np.nan, 10.0],
            "entry_time": [t, t + h, t + 2 * h, t + 3 * h, t + 4 * h, t, t + 5 * h],
            "exit_time": [t + h, t + 3 * h, t + 2 * h, t + 7 * h, t + 5 * h, t + h, pd.NaT],
        }
    )


def test_trade_metrics_hand_computed() -> None:
    tm = compute_trade_metrics(trade_frame())
    # closed trades: 100, -50, 0, 200, -25 (NaN pnl and the open trade are excluded)
    assert (tm.count, tm.excluded) == (5, 2)
    assert tm.win_rate == approx(2 / 5)
    assert tm.profit_factor == approx(300 / 75)
    assert tm.payoff_ratio == approx(150 / 37.5)
    assert tm.expectancy == approx(225 / 5)
    assert tm.avg_duration_seconds == approx((1 + 2 + 0 + 4 + 1) * 3600 / 5)
    assert tm.max_duration_seconds == approx(4 * 3600)


def test_trade_metrics_without_times_and_edge_values() -> None:
    tm = compute_trade_metrics(pd.DataFrame({"pnl": [5.0, 7.0]}))
    assert tm.avg_duration_seconds is None and tm.max_duration_seconds is None
    assert tm.profit_factor == math.inf  # no losses
    assert math.isnan(tm.payoff_ratio)  # no losing trade to average
    losses = compute_trade_metrics(pd.DataFrame({"pnl": [-5.0, -7.0]}))
    assert losses.profit_factor == 0.0 and losses.win_rate == 0.0
    empty = compute_trade_metrics(pd.DataFrame({"pnl": pd.Series([], dtype=float)}))
    assert empty.count == 0
    assert all(math.isnan(v) for v in (empty.win_rate, empty.profit_factor, empty.expectancy))
    flat = compute_trade_metrics(pd.DataFrame({"pnl": [0.0, 0.0]}))
    assert math.isnan(flat.profit_factor) and flat.win_rate == 0.0


def test_trade_keys_only_with_trades() -> None:
    eq = equity_from(R11, index=pd.date_range("2024-01-01", periods=12, freq="h", tz="UTC"))
    assert not set(metrics(eq).as_dict()) & TRADE_KEYS
    d = metrics(eq, trades=trade_frame()).as_dict()  # type: ignore[arg-type]
    assert set(d) == PERIOD_KEYS | TRADE_KEYS
    assert d["trade_count"] == 5


def test_trade_validation_errors() -> None:
    with pytest.raises(ValueError, match="'pnl'"):
        compute_trade_metrics(pd.DataFrame({"profit": [1.0]}))
    with pytest.raises(ValueError, match="'exit_time'"):
        compute_trade_metrics(pd.DataFrame({"pnl": [1.0], "entry_time": [pd.Timestamp("2024")]}))
    with pytest.raises(ValueError, match="'entry_time'"):
        compute_trade_metrics(pd.DataFrame({"pnl": [1.0], "exit_time": [pd.Timestamp("2024")]}))
    backwards = pd.DataFrame(
        {"pnl": [1.0], "entry_time": [pd.Timestamp("2024-02")], "exit_time": [pd.Timestamp("2024-01")]}
    )
    with pytest.raises(ValueError, match="exit_time before entry_time"):
        compute_trade_metrics(backwards)
    with pytest.raises(TypeError, match="pnl"):
        compute_trade_metrics(pd.DataFrame({"pnl": ["1"]}))
    with pytest.raises(TypeError, match="entry_time"):
        compute_trade_metrics(pd.DataFrame({"pnl": [1.0], "entry_time": [1], "exit_time": [2]}))
    with pytest.raises(TypeError, match="DataFrame"):
        compute_metrics(pd.Series([1.0, 2.0]), [1.0], periods_per_year=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DataFrame"):
        compute_trade_metrics(None)  # type: ignore[arg-type]


def test_string_times_are_parsed() -> None:
    tm = compute_trade_metrics(
        pd.DataFrame({"pnl": [1.0], "entry_time": ["2024-01-01 00:00"], "exit_time": ["2024-01-01 00:30"]})
    )
    assert tm.max_duration_seconds == 1800.0


def test_exposure_from_trades() -> None:
    days = pd.date_range("2024-01-01", periods=6, freq="D")
    eq = pd.Series([100.0, 101.0, 102.0, 101.0, 101.0, 103.0], index=days)
    # a trade held over [d1, d3] earns the returns of periods (d1, d2] and (d2, d3]
    trades = pd.DataFrame({"pnl": [1.0], "entry_time": [days[1]], "exit_time": [days[3]]})
    assert metrics(eq, trades=trades).exposure == approx(2 / 5)  # type: ignore[arg-type]
    # an open trade (no exit) entered at d3 is exposed in (d3, d4] and (d4, d5]
    open_trade = pd.DataFrame({"pnl": [np.nan], "entry_time": [days[3]], "exit_time": [pd.NaT]})
    both = pd.concat([trades, open_trade], ignore_index=True)
    assert metrics(eq, trades=both).exposure == approx(4 / 5)  # type: ignore[arg-type]
    # returns variant: period i is (t_{i-1}, t_i]; the first one (start unknown) is exposed when
    # a trade is open across t_0
    returns = eq.pct_change().iloc[1:]  # indexed d1 ... d5
    assert compute_metrics_from_returns(returns, trades, periods_per_year=252).exposure == approx(2 / 5)
    early = pd.DataFrame({"pnl": [1.0], "entry_time": [days[0]], "exit_time": [days[2]]})
    assert compute_metrics_from_returns(returns, early, periods_per_year=252).exposure == approx(2 / 5)
    assert metrics(eq, trades=early).exposure == approx(2 / 5)  # type: ignore[arg-type]
    # without a DatetimeIndex the share of non-zero returns is used
    assert metrics(eq.reset_index(drop=True), trades=trades).exposure == approx(4 / 5)  # type: ignore[arg-type]


def test_exposure_tz_mismatch_is_an_error() -> None:
    days = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    naive = pd.DataFrame(
        {"pnl": [1.0], "entry_time": [pd.Timestamp("2024-01-01")], "exit_time": [pd.Timestamp("2024-01-02")]}
    )
    with pytest.raises(ValueError, match="tz-aware"):
        metrics(pd.Series([1.0, 2.0, 3.0], index=days), trades=naive)  # type: ignore[arg-type]


def test_exposure_tz_aware_times_in_other_zone() -> None:
    days = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    ny = days.tz_convert("America/New_York")
    trades = pd.DataFrame({"pnl": [1.0], "entry_time": [ny[0]], "exit_time": [ny[1]]})
    assert metrics(pd.Series([1.0, 2.0, 3.0], index=days), trades=trades).exposure == 0.5  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# cross-check against empyrical-reloaded 0.7.1
#
# Conventions agree for sharpe (with our per-period rf passed as empyrical's risk_free), sortino
# (MAR = per-period rf, N = all observations), annual_volatility, max_drawdown (anchored at the
# start), cagr/annual_return (period-count method ending_value^(A/N) - 1), value_at_risk (numpy
# linear percentile), conditional_value_at_risk, tail_ratio. Differences, not compared:
#   * calmar: empyrical maps an infinite ratio to NaN, we keep inf -> compared when finite;
#   * NaN returns: empyrical's cagr counts NaN periods in N and value_at_risk propagates NaN;
#     we drop them -> the NaN cross-check compares only sharpe/sortino/volatility/max_drawdown.

RTOL, ATOL = 1e-9, 1e-12
QUANTILE_RTOL = 1e-12


def random_returns(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(2, 1500))
    kind = rng.integers(3)
    if kind == 0:
        r = rng.normal(rng.normal(0, 0.001), rng.uniform(0.001, 0.05), n)
    elif kind == 1:
        r = rng.standard_t(3, n) * rng.uniform(0.001, 0.02)
    else:  # sparse: flat periods between trades
        r = np.where(rng.random(n) < 0.3, rng.normal(0.001, 0.02, n), 0.0)
    return np.clip(r, -0.9, None)


def cases(count: int, seed: int) -> list[tuple[np.ndarray, float, float]]:
    rng = np.random.default_rng(seed)
    return [
        (random_returns(rng), float(rng.choice([12, 52, 252, 365, 8760])), float(rng.choice([0.0, 0.03])))
        for _ in range(count)
    ]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # empyrical's own 0/0 in tail_ratio
@pytest.mark.parametrize("entry", ["equity", "returns"])
def test_cross_check_empyrical(entry: str) -> None:
    for r_true, annual, rf in cases(200, seed=20240501):
        if entry == "equity":
            eq = equity_from(r_true)
            r = eq.pct_change().to_numpy()[1:]  # the same returns our function sees
            m = compute_metrics(eq, periods_per_year=annual, risk_free_rate=rf)
        else:
            r = r_true
            m = compute_metrics_from_returns(pd.Series(r), periods_per_year=annual, risk_free_rate=rf)
        rf_p = (1 + rf) ** (1 / annual) - 1
        ctx = f"n={r.size} A={annual} rf={rf}"
        close = partial(np.testing.assert_allclose, rtol=RTOL, atol=ATOL, err_msg=ctx)
        close(m.sharpe, empyrical.sharpe_ratio(r, risk_free=rf_p, annualization=annual))
        close(m.sortino, empyrical.sortino_ratio(r, required_return=rf_p, annualization=annual))
        close(m.volatility, empyrical.annual_volatility(r, annualization=annual))
        close(m.max_drawdown, empyrical.max_drawdown(r))
        close(m.cagr, empyrical.cagr(r, annualization=annual))
        close(m.total_return, empyrical.cum_returns_final(r))
        their_calmar = empyrical.calmar_ratio(r, annualization=annual)
        if math.isfinite(m.calmar) or not math.isnan(their_calmar):
            close(m.calmar, their_calmar)
        quantile = partial(np.testing.assert_allclose, rtol=QUANTILE_RTOL, atol=0, err_msg=ctx)
        quantile(m.var_95, empyrical.value_at_risk(r, 0.05))
        quantile(m.cvar_95, empyrical.conditional_value_at_risk(r, 0.05))
        quantile(m.tail_ratio, empyrical.tail_ratio(r))
        np.testing.assert_allclose(m.skew, sps.skew(r), rtol=1e-9, atol=1e-10, err_msg=ctx)
        np.testing.assert_allclose(m.kurtosis, sps.kurtosis(r), rtol=1e-9, atol=1e-10, err_msg=ctx)
        assert m.best_period == r.max() and m.worst_period == r.min()
        assert m.observations == r.size


def test_cross_check_empyrical_with_missing_returns() -> None:
    rng = np.random.default_rng(7)
    for r, annual, rf in cases(50, seed=99):
        r = r.copy()
        r[rng.random(r.size) < 0.1] = np.nan
        if np.isfinite(r).sum() < 2:
            continue
        rf_p = (1 + rf) ** (1 / annual) - 1
        m = compute_metrics_from_returns(pd.Series(r), periods_per_year=annual, risk_free_rate=rf)
        close = partial(np.testing.assert_allclose, rtol=RTOL, atol=ATOL)
        close(m.sharpe, empyrical.sharpe_ratio(r, risk_free=rf_p, annualization=annual))
        close(m.sortino, empyrical.sortino_ratio(r, required_return=rf_p, annualization=annual))
        close(m.volatility, empyrical.annual_volatility(r, annualization=annual))
        close(m.max_drawdown, empyrical.max_drawdown(r))
        assert m.missing == int(np.isnan(r).sum())
