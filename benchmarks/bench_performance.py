"""Benchmark of the backtest performance suite (a script, not a test).

    .venv/bin/python benchmarks/bench_performance.py [--quick]

Prints best-of-N wall times (``time.perf_counter``) of

1. the whole suite, ``compute_metrics`` on an equity curve (returns, drawdown, every statistic),
   against empyrical-reloaded computing the equivalent metrics (sharpe, sortino,
   annual_volatility, max_drawdown, annual_return, calmar, value_at_risk,
   conditional_value_at_risk, tail_ratio) on a ready-made returns array, at 10,000 points;
   the ratio ours / empyrical (target <= 1.0);
2. the same with quantstats, if it is installed (its metrics are computed on a dated Series);
3. scaling of the suite at 10k, 100k, 1M and 10M points (``--quick``: up to 1M).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from heurmetrics.backtest import compute_metrics, compute_metrics_from_returns

A = 252.0


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def data(n: int, seed: int = 42) -> tuple[pd.Series, np.ndarray]:
    """A daily equity curve of ``n`` points and its ``n - 1`` returns.

    Mean return sigma^2 / 2 makes log-equity a driftless random walk, so even 10M periods stay
    far inside the float range (a positive drift would overflow to inf and the benchmark would
    time a curve of missing values).
    """
    rng = np.random.default_rng(seed)
    sigma = 0.01
    returns = rng.normal(sigma**2 / 2, sigma, n - 1)
    index = pd.date_range("2000-01-01", periods=n, freq="min")
    equity = pd.Series(100.0 * np.cumprod(np.concatenate(([1.0], 1.0 + returns))), index=index)
    assert np.isfinite(equity.to_numpy()).all() and (equity > 0).all()
    return equity, returns


def ours(equity: pd.Series) -> Callable[[], object]:
    return lambda: compute_metrics(equity, periods_per_year=A).as_dict()


def empyrical_suite(returns: np.ndarray | pd.Series) -> Callable[[], object]:
    import empyrical as ep

    def run() -> object:
        return (
            ep.sharpe_ratio(returns, annualization=A),
            ep.sortino_ratio(returns, annualization=A),
            ep.annual_volatility(returns, annualization=A),
            ep.max_drawdown(returns),
            ep.annual_return(returns, annualization=A),
            ep.calmar_ratio(returns, annualization=A),
            ep.value_at_risk(returns),
            ep.conditional_value_at_risk(returns),
            ep.tail_ratio(returns),
        )

    return run


def quantstats_suite(returns: pd.Series) -> Callable[[], object] | None:
    try:
        import quantstats as qs
    except ImportError:
        return None

    def run() -> object:
        s = qs.stats
        return (
            s.sharpe(returns, periods=252),
            s.sortino(returns, periods=252),
            s.volatility(returns, periods=252),
            s.max_drawdown(returns),
            s.cagr(returns, periods=252),
            s.calmar(returns, periods=252),
            s.value_at_risk(returns),
            s.cvar(returns),
            s.tail_ratio(returns),
        )

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaling up to 1M points only")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    equity, returns = data(10_000)
    series = pd.Series(returns, index=equity.index[1:])
    t_ours = best_of(ours(equity), 50)
    t_ours_r = best_of(lambda: compute_metrics_from_returns(series, periods_per_year=A).as_dict(), 50)
    t_emp = best_of(empyrical_suite(returns), 50)
    t_emp_s = best_of(empyrical_suite(series), 50)
    print("10,000 points, best of 50")
    print(f"  heurmetrics compute_metrics(equity)           {t_ours * 1e3:8.3f} ms  (whole suite)")
    print(f"  heurmetrics compute_metrics_from_returns      {t_ours_r * 1e3:8.3f} ms")
    print(f"  empyrical 9 metrics, ndarray returns          {t_emp * 1e3:8.3f} ms")
    print(f"  empyrical 9 metrics, Series returns           {t_emp_s * 1e3:8.3f} ms")
    print(f"  ratio ours / empyrical(ndarray)               {t_ours / t_emp:8.3f}  (target <= 1.0)")
    print(f"  ratio ours / empyrical(Series)                {t_ours / t_emp_s:8.3f}")
    qs_run = quantstats_suite(series)
    if qs_run is None:
        print("  quantstats: not installed, skipped")
    else:
        t_qs = best_of(qs_run, 20)
        print(f"  quantstats 9 metrics, Series returns          {t_qs * 1e3:8.3f} ms  (best of 20)")
        print(f"  ratio ours / quantstats                       {t_ours / t_qs:8.3f}")

    sizes = [10_000, 100_000, 1_000_000] + ([] if args.quick else [10_000_000])
    repeats = {10_000: 50, 100_000: 20, 1_000_000: 10, 10_000_000: 3}
    print("\nscaling: compute_metrics(equity) vs empyrical 9 metrics (ndarray)")
    print(f"  {'points':>12} {'ours ms':>10} {'ns/point':>9} {'empyrical ms':>13} {'ratio':>7}")
    for n in sizes:
        equity, returns = data(n)
        t = best_of(ours(equity), repeats[n])
        e = best_of(empyrical_suite(returns), repeats[n])
        print(f"  {n:>12,} {t * 1e3:>10.2f} {t / n * 1e9:>9.1f} {e * 1e3:>13.2f} {t / e:>7.3f}")
        del equity, returns


if __name__ == "__main__":
    main()
