"""Property tests of the performance suite (hypothesis): no crash, and invariants that must hold."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from heurmetrics.backtest import (
    compute_metrics,
    compute_metrics_from_returns,
    compute_trade_metrics,
    drawdown_series,
)

# No deadline: the machine is shared, and timing is not a property.
SETTINGS = settings(max_examples=150, deadline=None)

any_float = st.floats(allow_nan=True, allow_infinity=True)
positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
positive_or_missing = st.one_of(positive, st.just(math.nan))
annual = st.sampled_from([1.0, 12.0, 52.0, 252.0, 365.0, 8760.0, 0.5, 1e-3])
risk_free = st.sampled_from([0.0, 0.02, -0.01, 0.5])


def series(values: list[float], time_index: bool) -> pd.Series:
    index = pd.date_range("2024-01-01", periods=len(values), freq="h", tz="UTC") if time_index else None
    return pd.Series(values, index=index, dtype=np.float64)


def assert_plain(d: dict[str, float | int | None]) -> None:
    assert all(type(v) in (int, float) for v in d.values()), d


@SETTINGS
@given(st.lists(any_float, max_size=40), annual, risk_free, st.booleans())
def test_never_raises_on_any_float_series(values: list[float], a: float, rf: float, time_index: bool) -> None:
    s = series(values, time_index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out of the suite either
        m = compute_metrics(s, periods_per_year=a, risk_free_rate=rf)
        r = compute_metrics_from_returns(s, periods_per_year=a, risk_free_rate=rf)
        dd = drawdown_series(s)
    finite = int(np.isfinite(s.to_numpy()).sum())
    assert m.missing == len(values) - finite == r.missing
    assert m.observations + m.undefined_returns == max(finite - 1, 0)
    assert r.observations + r.undefined_returns == finite  # returns after a -100 % period are undefined
    assert_plain(m.as_dict())
    assert_plain(r.as_dict())
    assert dd.index.equals(s.index)
    for stats in (m, r):
        for name in ("exposure", "probabilistic_sharpe"):
            value = getattr(stats, name)
            assert math.isnan(value) or 0.0 <= value <= 1.0


@SETTINGS
@given(st.lists(positive_or_missing, max_size=60), annual)
def test_drawdown_invariants_for_positive_equity(values: list[float], a: float) -> None:
    s = series(values, time_index=True)
    m = compute_metrics(s, periods_per_year=a)
    dd = drawdown_series(s)
    observed = dd[s.notna()]
    assert (observed <= 0).all() and (observed >= -1).all()
    assert dd[s.isna()].isna().all()
    if m.observations:
        assert -1.0 <= m.max_drawdown <= 0.0
        assert m.max_drawdown == observed.min()
        assert 0 <= m.max_drawdown_duration <= m.observations
        valid = s.dropna()
        assert m.total_return == pytest.approx(valid.iloc[-1] / valid.iloc[0] - 1, rel=1e-12, abs=1e-15)
        assert m.worst_period <= m.cvar_95 <= m.var_95 <= m.best_period
    else:
        assert math.isnan(m.max_drawdown) and math.isnan(m.total_return)


@SETTINGS
@given(st.lists(positive, min_size=3, max_size=60), st.integers(-20, 20), annual, risk_free)
def test_statistics_invariant_to_equity_scale(values: list[float], exponent: int, a: float, rf: float) -> None:
    # scaling by a power of two is exact in binary floating point, so every statistic is identical
    s = series(values, time_index=False)
    base = compute_metrics(s, periods_per_year=a, risk_free_rate=rf).as_dict()
    scaled = compute_metrics(s * 2.0**exponent, periods_per_year=a, risk_free_rate=rf).as_dict()
    assert scaled.keys() == base.keys()
    for key, value in base.items():
        assert scaled[key] == value or (math.isnan(value) and math.isnan(scaled[key])), key  # type: ignore[arg-type]


@SETTINGS
@given(st.lists(positive, min_size=3, max_size=60), st.floats(0.01, 100.0), annual)
def test_sharpe_invariant_to_any_equity_scale(values: list[float], scale: float, a: float) -> None:
    s = series(values, time_index=False)
    r = s.pct_change().dropna()
    assume(r.std() > 1e-9 * max(r.abs().max(), 1e-300))  # dispersion well above rounding noise
    sharpe = compute_metrics(s, periods_per_year=a).sharpe
    assert compute_metrics(s * scale, periods_per_year=a).sharpe == pytest.approx(sharpe, rel=1e-6, abs=1e-9)


@SETTINGS
@given(st.lists(st.floats(1.0, 1e4), min_size=2, max_size=60), annual, risk_free)
def test_entry_points_agree(values: list[float], a: float, rf: float) -> None:
    s = series(values, time_index=False)
    via_equity = compute_metrics(s, periods_per_year=a, risk_free_rate=rf)
    via_returns = compute_metrics_from_returns(s.pct_change(), periods_per_year=a, risk_free_rate=rf)
    assert via_equity.observations == via_returns.observations
    for name in ("var_95", "cvar_95", "best_period", "worst_period", "volatility", "sharpe"):
        assert getattr(via_returns, name) == getattr(via_equity, name) or math.isnan(getattr(via_equity, name))
    # compounded returns vs the equity ratio: compare wealth, 1 + x. (1 + r) loses digits when r is
    # close to -1, hence equity within [1, 1e4] here: at most 4 digits lost per step.
    for name in ("total_return", "max_drawdown"):
        wealth = 1.0 + getattr(via_equity, name)
        assert 1.0 + getattr(via_returns, name) == pytest.approx(wealth, rel=1e-9, abs=1e-12), name


@SETTINGS
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.just(math.nan), max_size=40))
def test_trade_metrics_bounds(pnl: list[float]) -> None:
    tm = compute_trade_metrics(pd.DataFrame({"pnl": pd.Series(pnl, dtype=np.float64)}))
    assert tm.count + tm.excluded == len(pnl)
    if tm.count:
        assert 0.0 <= tm.win_rate <= 1.0
        assert math.isnan(tm.profit_factor) or tm.profit_factor >= 0.0
        assert tm.expectancy == pytest.approx(np.nansum(pnl) / tm.count, rel=1e-9, abs=1e-6)
    else:
        assert math.isnan(tm.win_rate) and math.isnan(tm.expectancy)
