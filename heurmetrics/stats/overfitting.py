"""Is a backtest overfit? Deflated Sharpe Ratio, PBO by CSCV and the minimum backtest length.

All Sharpe ratios here are of *excess* returns (subtract the risk-free rate first), estimated as
``mean / std(ddof=1)``. Formulas (``docs/walk-forward.md`` has them with the references):

- **Expected maximum Sharpe ratio** of N trials with no skill whose Sharpe estimates have variance
  V (Bailey & López de Prado 2014, eq. 2, after the false strategy theorem):
  ``SR0 = √V · ((1 - gamma) Φ⁻¹(1 - 1/N) + gamma Φ⁻¹(1 - 1/(N e)))``, gamma = Euler-Mascheroni constant;
  ``SR0 = 0`` for N = 1.
- **Deflated Sharpe Ratio** = the probabilistic Sharpe ratio of the observed ``SR`` against
  ``SR0``: ``DSR = Φ((SR - SR0) √(T - 1) / √(1 - skew SR + (kurt - 1)/4 SR²))`` with per-period SR and
  SR0, T observations, skew the skewness and kurt the (non-excess) kurtosis of the returns (biased
  sample moments, as in the paper). A probability: the chance that the true Sharpe ratio is above
  zero after accounting for the selection among N trials.
- **PBO by combinatorially symmetric cross-validation** (Bailey, Borwein, López de Prado & Zhu
  2017): split the T x N matrix of trial returns into S row blocks; for each of the C(S, S/2)
  ways to pick S/2 blocks as in-sample (the rest out-of-sample), take the trial with the best
  in-sample Sharpe ratio, its relative rank ω = rank / (N + 1) among the out-of-sample Sharpe
  ratios (rank 1 = worst, average ranks for ties) and the logit λ = ln(ω / (1 - ω)).
  PBO = share of splits with λ <= 0 (the in-sample winner is at or below the out-of-sample median).
- **Minimum backtest length** (Bailey, Borwein, López de Prado & Zhu 2014): the years of data
  below which the best of N trials with no skill is expected to show an annualised Sharpe ratio
  of at least ``SR``: ``MinBTL = (E[max_N] / SR)²`` with ``E[max_N]`` the expected maximum for
  unit variance (above).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

#: Euler-Mascheroni constant.
EULER_GAMMA = 0.5772156649015329
#: Combinations evaluated per matrix product in the PBO (bounds memory at ~ chunk x trials floats).
_CHUNK = 2048


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    """Result of :func:`deflated_sharpe_ratio` (Sharpe ratios annualised unless named per period)."""

    deflated_sharpe_ratio: float
    sharpe: float
    benchmark_sharpe: float  #: SR0, the expected maximum of the trials (annualised)
    sharpe_per_period: float
    benchmark_sharpe_per_period: float
    observations: int
    skewness: float
    kurtosis: float  #: non-excess (3 for a normal law)
    n_trials: int
    trials_sharpe_variance: float  #: of annualised Sharpe ratios


@dataclass(frozen=True)
class BacktestOverfitting:
    """Result of :func:`probability_of_backtest_overfitting`."""

    pbo: float
    n_blocks: int
    n_splits: int
    n_trials: int
    observations: int  #: rows used (the oldest ``T mod S`` rows are dropped)
    logits: np.ndarray  #: λ per split, in :func:`itertools.combinations` order
    in_sample_sharpe: np.ndarray  #: per split, of the selected trial (per period)
    out_of_sample_sharpe: np.ndarray  #: per split, of the selected trial (per period)

    @property
    def probability_of_loss(self) -> float:
        """Share of splits where the selected trial's out-of-sample Sharpe ratio is below zero."""
        return float(np.mean(self.out_of_sample_sharpe < 0))


def expected_maximum_sharpe(n_trials: int, variance: float = 1.0) -> float:
    """Expected maximum of ``n_trials`` Sharpe estimates with mean 0 and ``variance`` (see module)."""
    _check_trials(n_trials)
    if not (math.isfinite(variance) and variance >= 0):
        raise ValueError(f"the trials' Sharpe variance must be finite and >= 0, got {variance!r}")
    if n_trials == 1:
        return 0.0
    q1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    q2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(variance) * ((1.0 - EULER_GAMMA) * q1 + EULER_GAMMA * q2))


def deflated_sharpe_ratio_from_estimates(
    sharpe: float,
    observations: int,
    skewness: float,
    kurtosis: float,
    n_trials: int,
    trials_sharpe_variance: float,
) -> float:
    """DSR from per-period estimates (the paper's worked example is given this way): ``sharpe``
    and ``trials_sharpe_variance`` per period, ``kurtosis`` non-excess. NaN when undefined
    (fewer than 2 observations, non-finite inputs, or a non-positive variance term)."""
    threshold = expected_maximum_sharpe(n_trials, trials_sharpe_variance)
    return _psr(sharpe, threshold, observations, skewness, kurtosis)


def deflated_sharpe_ratio(
    returns: pd.Series | np.ndarray | Any,
    n_trials: int,
    trials_sharpe_variance: float,
    periods_per_year: float,
) -> DeflatedSharpe:
    """Deflated Sharpe Ratio of a series of (excess) per-period returns.

    ``n_trials``: how many configurations were tried to find this one (>= 1);
    ``trials_sharpe_variance``: the variance across those trials of their **annualised** Sharpe
    ratios (converted per period as ``V / periods_per_year``). NaN returns are dropped (missing).
    """
    values = np.asarray(returns, dtype=np.float64).ravel()
    if np.isinf(values).any():
        raise ValueError("returns must be finite (NaN marks a missing value)")
    values = values[~np.isnan(values)]
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year!r}")
    variance_pp = trials_sharpe_variance / periods_per_year
    root = math.sqrt(periods_per_year)
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    sd = float(np.std(values, ddof=1)) if n > 1 else math.nan
    # A deviation at rounding level of the mean is no dispersion: the Sharpe ratio is undefined.
    if n > 1 and math.isfinite(sd) and sd > 1e-12 * abs(mean):
        # numpy scalars: extreme returns overflow / underflow the moments to inf / 0 (DSR undefined)
        # where Python floats would raise OverflowError or ZeroDivisionError.
        with np.errstate(all="ignore"):
            deviation = values - mean
            m2 = np.mean(deviation**2)
            sharpe = mean / sd
            skewness = float(np.mean(deviation**3) / m2**1.5)  # biased sample moments, as in the paper
            kurtosis = float(np.mean(deviation**4) / m2**2)
    else:
        sharpe = skewness = kurtosis = math.nan
    threshold = expected_maximum_sharpe(n_trials, variance_pp)
    return DeflatedSharpe(
        deflated_sharpe_ratio=_psr(sharpe, threshold, n, skewness, kurtosis),
        sharpe=sharpe * root,
        benchmark_sharpe=threshold * root,
        sharpe_per_period=sharpe,
        benchmark_sharpe_per_period=threshold,
        observations=n,
        skewness=skewness,
        kurtosis=kurtosis,
        n_trials=int(n_trials),
        trials_sharpe_variance=float(trials_sharpe_variance),
    )


def minimum_backtest_length(n_trials: int, sharpe: float) -> float:
    """Minimum backtest length in **years** (see module): 0 for one trial, inf for ``sharpe <= 0``."""
    expected = expected_maximum_sharpe(n_trials)
    if not math.isfinite(sharpe):
        raise ValueError(f"sharpe must be finite, got {sharpe!r}")
    if n_trials == 1:
        return 0.0
    if sharpe <= 0:
        return math.inf
    ratio = expected / sharpe
    return ratio * ratio  # a tiny Sharpe ratio gives inf (``**`` would raise OverflowError)


def probability_of_backtest_overfitting(
    trial_returns: pd.DataFrame | np.ndarray | Any, n_blocks: int = 16
) -> BacktestOverfitting:
    """PBO by CSCV over a periods x trials matrix of returns (rows in time order; see module).

    ``n_blocks`` (S) must be even and >= 2; T mod S oldest rows are dropped so the blocks have
    equal size. A trial whose Sharpe ratio is undefined on a subset (constant returns) ranks
    below every defined one there. Raises ``ValueError`` for fewer than 2 trials, fewer than one
    row per block, or non-finite returns.
    """
    matrix = np.asarray(trial_returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"trial_returns must be a 2-D periods x trials array, got {matrix.ndim} dimension(s)")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int | np.integer) or n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be an even integer >= 2, got {n_blocks!r}")
    periods, trials = matrix.shape
    if trials < 2:
        raise ValueError(f"PBO needs at least 2 trials (columns), got {trials}")
    length = periods // n_blocks
    if length * (n_blocks // 2) < 2:
        raise ValueError(f"{periods} periods are too few for {n_blocks} blocks (need >= 2 rows per half)")
    if not np.isfinite(matrix).all():
        raise ValueError("trial_returns must be finite (fill or drop missing periods first)")
    used = matrix[periods - length * n_blocks :]
    # Centre each trial so sums of squares do not cancel catastrophically; Sharpe = (mean + m) / sd.
    centre = used.mean(axis=0)
    centred = used - centre
    block_sum = centred.reshape(n_blocks, length, trials).sum(axis=1)
    block_sq = (centred * centred).reshape(n_blocks, length, trials).sum(axis=1)
    total_sum, total_sq = block_sum.sum(axis=0), block_sq.sum(axis=0)
    combos = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)), dtype=np.intp)
    half = length * (n_blocks // 2)
    logits, is_sr, oos_sr = [], [], []
    for start in range(0, len(combos), _CHUNK):
        chosen = combos[start : start + _CHUNK]
        indicator = np.zeros((len(chosen), n_blocks))
        np.put_along_axis(indicator, chosen, 1.0, axis=1)
        train_sum, train_sq = indicator @ block_sum, indicator @ block_sq
        train = _sharpe(train_sum, train_sq, half, centre)
        test = _sharpe(total_sum - train_sum, total_sq - train_sq, half, centre)
        best = np.argmax(train, axis=1)
        rows = np.arange(len(chosen))
        value = test[rows, best][:, None]
        rank = (test < value).sum(axis=1) + ((test == value).sum(axis=1) + 1) / 2.0
        omega = rank / (trials + 1)
        logits.append(np.log(omega / (1.0 - omega)))
        is_sr.append(train[rows, best])
        oos_sr.append(test[rows, best])
    lam = np.concatenate(logits)
    return BacktestOverfitting(
        pbo=float(np.mean(lam <= 0)),
        n_blocks=int(n_blocks),
        n_splits=len(lam),
        n_trials=trials,
        observations=length * n_blocks,
        logits=lam,
        in_sample_sharpe=np.concatenate(is_sr),
        out_of_sample_sharpe=np.concatenate(oos_sr),
    )


def _sharpe(total: np.ndarray, squares: np.ndarray, n: int, centre: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio from centred sums; -inf where the deviation is zero (ranks last)."""
    variance = (squares - total * total / n) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = (total / n + centre) / np.sqrt(variance)
    # A variance that is zero up to rounding is zero: the Sharpe ratio is undefined there.
    undefined = ~(variance > 1e-12 * np.maximum(squares / n, 1e-300)) | ~np.isfinite(sharpe)
    return np.where(undefined, -np.inf, sharpe)


def _psr(sharpe: float, threshold: float, observations: int, skewness: float, kurtosis: float) -> float:
    values = (sharpe, threshold, skewness, kurtosis)
    if observations < 2 or not all(math.isfinite(v) for v in values):
        return math.nan
    term = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if term <= 0:
        return math.nan
    z = (sharpe - threshold) * math.sqrt(observations - 1) / math.sqrt(term)
    return float(stats.norm.cdf(z))


def _check_trials(n_trials: int) -> None:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
