"""Benchmark and calibration of heurmetrics.stats (a script, not a test).

    .venv/bin/python benchmarks/bench_stats.py [--quick]

Prints

1. process CPU time (``time.process_time``, best of N) of the Probability of Backtest
   Overfitting by CSCV with S = 16 blocks (12,870 splits) over 100 trials x 2,000 periods
   (target < 5 s), and at 1,000 trials; of the Deflated Sharpe Ratio of 2,000 returns;
2. the drift test's calibration table: false-alarm rate at alpha = 0.01 with the same hit
   probability live and in the backtest, and power against a 10-point shift, per (p, n0, n1)
   (seeded; the test suite reproduces it with ``tests/test_stats.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_environment, print_table

from heurmetrics.stats import deflated_sharpe_ratio, probability_of_backtest_overfitting
from heurmetrics.stats.drift import simulate_calibration


def best_cpu(fn: Callable[[], object], repeat: int) -> float:
    """Best process CPU time of ``repeat`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and replications")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    print_environment("heurmetrics.stats: PBO / DSR speed, drift-test calibration")

    rng = np.random.default_rng(7)
    small = rng.normal(0.0, 0.01, (2000, 100))
    large = rng.normal(0.0, 0.01, (2000, 1000))
    pbo_small = best_cpu(lambda: probability_of_backtest_overfitting(small), repeat)
    pbo_large = best_cpu(lambda: probability_of_backtest_overfitting(large), max(1, repeat // 2))
    dsr = best_cpu(lambda: deflated_sharpe_ratio(small[:, 0], 100, 0.5, 252), repeat)
    rows = [
        ("PBO, S = 16 (12,870 splits), 2,000 x 100", pbo_small, "< 5 s"),
        ("PBO, S = 16, 2,000 x 1,000", pbo_large, "-"),
        ("DSR, 2,000 returns", dsr, "-"),
    ]
    print_table(
        ("what", "CPU seconds (best)", "target"), [(w, f"{s:.3f}", t) for w, s, t in rows], "Speed (process CPU time)"
    )

    replications = 5_000 if args.quick else 20_000
    start = time.process_time()
    cells = simulate_calibration(replications=replications, seed=12)
    seconds = time.process_time() - start
    print_table(
        ("p", "backtest n0", "live n1", "false alarms (H0)", "power (+10 points)"),
        [(c.p, c.backtest_n, c.live_n, f"{c.false_alarm_rate:.4f}", f"{c.power:.3f}") for c in cells],
        f"Drift test calibration, alpha = 0.01, {replications:,} replications per cell ({seconds:.2f} s CPU)",
    )
    worst = max(c.false_alarm_rate for c in cells)
    print(f"worst false-alarm rate: {worst:.4f} (target <= 0.015)")


if __name__ == "__main__":
    main()
