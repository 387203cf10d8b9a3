"""Statistics quants check before trusting a backtest or a live rule: one public module.

- :func:`hit_ratio_drift_test` — live hits against the walk-forward's out-of-sample hits as two
  samples (Fisher's exact test, two-sided), with minimum sample sizes;
- :func:`benjamini_hochberg` — false-discovery-rate adjusted p-values across rule versions;
- :func:`deflated_sharpe_ratio` — the Sharpe ratio deflated for the number of trials tried
  (Bailey & López de Prado, 2014);
- :func:`probability_of_backtest_overfitting` — PBO by combinatorially symmetric
  cross-validation (Bailey, Borwein, López de Prado & Zhu, 2017);
- :func:`minimum_backtest_length` — the years of data below which N trials find a given Sharpe
  ratio by chance (Bailey, Borwein, López de Prado & Zhu, 2014).

Formulas, conventions and references: ``docs/live-performance.md`` (drift) and
``docs/walk-forward.md`` (overfitting).
"""

from heurmetrics.stats.drift import (
    MIN_BACKTEST_SIGNALS,
    MIN_LIVE_SIGNALS,
    DriftTest,
    benjamini_hochberg,
    fisher_p_value_table,
    hit_ratio_drift_test,
)
from heurmetrics.stats.overfitting import (
    BacktestOverfitting,
    DeflatedSharpe,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_estimates,
    expected_maximum_sharpe,
    minimum_backtest_length,
    probability_of_backtest_overfitting,
)

__all__ = [
    "MIN_BACKTEST_SIGNALS",
    "MIN_LIVE_SIGNALS",
    "BacktestOverfitting",
    "DeflatedSharpe",
    "DriftTest",
    "benjamini_hochberg",
    "deflated_sharpe_ratio",
    "deflated_sharpe_ratio_from_estimates",
    "expected_maximum_sharpe",
    "fisher_p_value_table",
    "hit_ratio_drift_test",
    "minimum_backtest_length",
    "probability_of_backtest_overfitting",
]
