"""heurmetrics.stats: the drift test's calibration, BH, the Deflated Sharpe Ratio, PBO, MinBTL."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from heurmetrics.stats import (
    benjamini_hochberg,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_estimates,
    expected_maximum_sharpe,
    fisher_p_value_table,
    hit_ratio_drift_test,
    minimum_backtest_length,
    probability_of_backtest_overfitting,
)
from heurmetrics.stats.drift import simulate_calibration


# --- drift -------------------------------------------------------------------------------------
def test_drift_test_is_fishers_exact_test_with_minimum_sample_sizes() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n0, n1 = rng.randint(30, 500), rng.randint(10, 500)
        k0, k1 = rng.randint(0, n0), rng.randint(0, n1)
        expected = scipy_stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]]).pvalue
        assert hit_ratio_drift_test(k1, n1, k0, n0).p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)
    # The example: 7 of 12 live against 0 of 1,638 — a real difference, and now a p-value
    # from two samples; the same live hits against a matching backtest do not alarm.
    assert hit_ratio_drift_test(7, 12, 0, 1638).p_value < 1e-10
    assert hit_ratio_drift_test(7, 12, 955, 1638).p_value == pytest.approx(1.0)
    small = hit_ratio_drift_test(3, 9, 20, 40)
    assert small.p_value is None and small.reason == "9 live signals < 10"
    assert hit_ratio_drift_test(3, 12, 20, 29).reason == "29 backtest signals < 30"
    assert hit_ratio_drift_test(6, 12, 30, 60).live_hit_ratio == 0.5
    with pytest.raises(ValueError, match="live_hits <= live_n"):
        hit_ratio_drift_test(13, 12, 20, 40)
    with pytest.raises(TypeError, match="backtest_n must be an integer"):
        hit_ratio_drift_test(3, 12, 20, 40.0)  # type: ignore[arg-type]


def test_p_value_table_equals_scipy() -> None:
    for n0, n1 in ((30, 50), (8, 5)):
        table = fisher_p_value_table(n0, n1)
        for k0, k1 in itertools.product(range(n0 + 1), range(n1 + 1)):
            expected = scipy_stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]]).pvalue
            assert table[k0 + k1, k1] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert np.isnan(table[0, 1])  # one live hit out of zero hits in total is impossible


def test_calibration_every_null_cell_at_most_0_015_and_power_grows_with_samples() -> None:
    """The table of docs/live-performance.md, reproduced (seeded; ~1 s)."""
    cells = simulate_calibration(replications=20_000, seed=12)
    assert len(cells) == 27
    worst = max(cells, key=lambda c: c.false_alarm_rate)
    assert worst.false_alarm_rate <= 0.015, worst
    power = {(c.p, c.backtest_n, c.live_n): c.power for c in cells}
    assert power[(0.55, 1000, 1000)] > 0.95  # plenty of signals: a 10-point shift is found
    assert power[(0.55, 30, 50)] < power[(0.55, 100, 200)] < power[(0.55, 1000, 1000)]


def test_benjamini_hochberg_matches_scipy_and_skips_untested() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 0.2, 25)
    expected = scipy_stats.false_discovery_control(p, method="bh")
    np.testing.assert_allclose(benjamini_hochberg(list(p)), expected, rtol=1e-12)
    assert benjamini_hochberg([0.01, None, 0.04, math.nan]) == [0.02, None, 0.04, None]
    assert benjamini_hochberg([]) == []
    with pytest.raises(ValueError, match="not in"):
        benjamini_hochberg([0.5, 1.5])


# --- Deflated Sharpe Ratio ------------------------------------------------------------------------
def test_dsr_reproduces_the_papers_worked_example() -> None:
    """Bailey & López de Prado (2014), section 5: annualised SR 2.5 over 5 years of daily data
    (T = 1,250, 250 days a year), N = 100 trials with V[SR_n] = 0.5 (annualised), skewness -3,
    kurtosis 10: SR0 = 0.1132 per day and DSR = 0.9004."""
    daily_variance = 0.5 / 250
    assert expected_maximum_sharpe(100, daily_variance) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio_from_estimates(2.5 / math.sqrt(250), 1250, -3.0, 10.0, 100, daily_variance)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_dsr_of_a_return_series_against_a_hand_computation() -> None:
    rng = np.random.default_rng(11)
    returns = pd.Series(rng.standard_t(5, 500) * 0.01 + 0.001)
    out = deflated_sharpe_ratio(returns, n_trials=20, trials_sharpe_variance=0.8, periods_per_year=252)
    r = returns.to_numpy()
    n, mean, sd = len(r), r.mean(), r.std(ddof=1)
    sr = mean / sd
    m2 = ((r - mean) ** 2).mean()
    skew = ((r - mean) ** 3).mean() / m2**1.5
    kurt = ((r - mean) ** 4).mean() / m2**2
    gamma = 0.5772156649015329
    norm = scipy_stats.norm
    sr0 = math.sqrt(0.8 / 252) * ((1 - gamma) * norm.ppf(1 - 1 / 20) + gamma * norm.ppf(1 - 1 / (20 * math.e)))
    z = (sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert out.deflated_sharpe_ratio == pytest.approx(norm.cdf(z), rel=1e-12)
    assert out.sharpe == pytest.approx(sr * math.sqrt(252), rel=1e-12)
    assert out.benchmark_sharpe == pytest.approx(sr0 * math.sqrt(252), rel=1e-12)
    assert (out.skewness, out.kurtosis, out.observations) == (pytest.approx(skew), pytest.approx(kurt), 500)
    # One trial: nothing to deflate (SR0 = 0, the probabilistic Sharpe ratio against zero).
    single = deflated_sharpe_ratio(returns, n_trials=1, trials_sharpe_variance=0.8, periods_per_year=252)
    assert single.benchmark_sharpe == 0.0 and single.deflated_sharpe_ratio > out.deflated_sharpe_ratio
    # Undefined inputs give NaN, never an exception; bad arguments name themselves.
    assert math.isnan(deflated_sharpe_ratio([0.01] * 10, 5, 0.5, 252).deflated_sharpe_ratio)
    assert math.isnan(deflated_sharpe_ratio([0.01], 5, 0.5, 252).deflated_sharpe_ratio)
    with pytest.raises(ValueError, match="n_trials"):
        deflated_sharpe_ratio(returns, 0, 0.5, 252)
    with pytest.raises(ValueError, match="periods_per_year"):
        deflated_sharpe_ratio(returns, 5, 0.5, 0)


def test_minimum_backtest_length() -> None:
    """Bailey et al. (2014): with 5 years of data, no more than ~45 independent configurations
    should be tried before one with an annualised Sharpe ratio of 1 is expected by chance."""
    assert minimum_backtest_length(45, 1.0) == pytest.approx(expected_maximum_sharpe(45) ** 2)
    assert minimum_backtest_length(45, 1.0) == pytest.approx(5.0, abs=0.01)
    assert minimum_backtest_length(45, 2.0) == pytest.approx(minimum_backtest_length(45, 1.0) / 4)
    assert minimum_backtest_length(1, 1.0) == 0.0 and minimum_backtest_length(10, 0.0) == math.inf


# --- PBO ------------------------------------------------------------------------------------------
def brute_force_pbo(matrix: np.ndarray, n_blocks: int) -> tuple[float, np.ndarray]:
    """CSCV written out literally: concatenate the rows of each half, Sharpe by np.std, ranks by
    scipy.stats.rankdata (independent of the vectorised implementation)."""
    t, n = matrix.shape
    rows = matrix[t - (t // n_blocks) * n_blocks :]
    blocks = np.array_split(rows, n_blocks)
    logits = []
    for chosen in itertools.combinations(range(n_blocks), n_blocks // 2):
        train = np.vstack([blocks[i] for i in chosen])
        test = np.vstack([blocks[i] for i in range(n_blocks) if i not in chosen])
        sr_train = train.mean(axis=0) / train.std(axis=0, ddof=1)
        sr_test = test.mean(axis=0) / test.std(axis=0, ddof=1)
        best = int(np.argmax(sr_train))
        omega = scipy_stats.rankdata(sr_test)[best] / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
    lam = np.array(logits)
    return float(np.mean(lam <= 0)), lam


def test_pbo_equals_a_brute_force_implementation() -> None:
    rng = np.random.default_rng(8)
    matrix = rng.normal(0.0005, 0.01, (203, 6)) + np.linspace(0, 0.001, 6)  # some trials better
    out = probability_of_backtest_overfitting(matrix, n_blocks=8)
    pbo, logits = brute_force_pbo(matrix, 8)
    assert out.n_splits == math.comb(8, 4) == len(logits)
    assert out.observations == 200  # the 3 oldest rows are dropped for equal blocks
    np.testing.assert_allclose(out.logits, logits, rtol=0, atol=1e-12)
    assert abs(out.pbo - pbo) <= 1e-12
    frame = pd.DataFrame(matrix)
    assert probability_of_backtest_overfitting(frame, n_blocks=8).pbo == out.pbo  # DataFrames too


def test_pbo_of_pure_noise_is_near_one_half_and_of_real_skill_near_zero() -> None:
    rng = np.random.default_rng(21)
    noise = rng.normal(0.0, 0.01, (2000, 50))
    assert probability_of_backtest_overfitting(noise).pbo == pytest.approx(0.5, abs=0.15)
    skill = noise + np.where(np.arange(50) == 7, 0.004, 0.0)  # one trial truly better
    out = probability_of_backtest_overfitting(skill)
    assert out.pbo < 0.05 and out.probability_of_loss < 0.05


def test_pbo_refuses_bad_input_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 trials"):
        probability_of_backtest_overfitting(np.zeros((100, 1)))
    with pytest.raises(ValueError, match="even integer"):
        probability_of_backtest_overfitting(np.zeros((100, 4)), n_blocks=7)
    with pytest.raises(ValueError, match="too few"):
        probability_of_backtest_overfitting(np.zeros((10, 4)), n_blocks=16)
    with pytest.raises(ValueError, match="finite"):
        probability_of_backtest_overfitting(np.full((100, 4), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        probability_of_backtest_overfitting(np.zeros(100))
