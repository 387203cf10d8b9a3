"""Benchmark: walk-forward speed-up of parallel folds (a script, not a test).

    .venv/bin/python benchmarks/bench_walkforward.py [--folds 20] [--bars-per-fold 480] [--repeat 2]

The same walk-forward backtest — 20 folds; each fold grid-searches 4 x ``--thresholds`` (default
16) parameter sets of a CPU-bound rule in-sample (a rolling z-score evaluated bar by bar in pure
Python), then evaluates the chosen set in-sample and out-of-sample with one recorded execution
per bar; everything is stored on an SQLite file — is run three ways:

- ``serial``: ``SerialExecutor`` (inline, this process);
- ``pool, cold``: ``default_executor(2)`` created inside the timed region (forkserver start-up
  included: what a one-off run pays);
- ``pool, warm``: a pool of 2 started before timing (what a runner reusing its pool pays);
- ``dask``: ``client.get_executor()`` of a ``LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` started before timing (when ``distributed`` is installed: the ``dask`` extra),
  with the workers' statistical profiler off (``--dask-profile`` keeps Dask's default, on).

The modes run interleaved, in a new random order every repetition, and best and median wall
times are printed. Besides wall time, each run's CPU time is printed: the parent's
(``time.process_time``: recording every execution, the writer thread, stitching, storing) and the
workers' (pool: ``/proc/<pid>/stat`` of its processes; Dask: ``Client.run(time.process_time)``).
On a shared machine these do not depend on what else runs, and they bound the speed-up two free
cores allow: serial CPU / (parent + workers CPU) / 2 ("CPU bound" column).

Each timing is end to end: folds, stitching, metrics, storing the run, recording every execution
in the parent and waiting until they are durable. Prints best-of-``--repeat`` wall times and the
speed-ups (target >= 1.8x on 2 cores). On a shared machine other processes take cores from the
pool: each timed run waits (up to ``--max-wait`` s) until the CPUs are at least 85 % idle, and
the CPU share busy just before each run is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_environment, print_table

from heurmetrics import Recorder
from heurmetrics.backtest.splits import WalkForwardSplitter
from heurmetrics.backtest.walkforward import FoldContext, GridSearch, SerialExecutor, default_executor

WINDOW = 240  # warm-up bars; the largest window of the grid
WINDOWS = [90, 150, 210, 240]


def grid(thresholds: int) -> dict[str, list[Any]]:
    """4 windows x ``thresholds`` z-score thresholds (1.0, 1.25, ...)."""
    return {"window": WINDOWS, "threshold": [1.0 + 0.25 * k for k in range(thresholds)]}


A = 365 * 24


def zscore_run(data: pd.DataFrame, params: dict[str, Any], ctx: FoldContext) -> pd.Series:
    """Mean reversion on a rolling z-score, evaluated bar by bar in pure Python (CPU-bound)."""
    close = data["close"].to_numpy().tolist()
    window, threshold = int(params["window"]), float(params["threshold"])
    position = [0.0] * len(close)
    for i in range(len(close)):
        with ctx.execution(bar_time=data.index[i]) as ex:
            lo = max(0, i - window)
            sample = close[lo : i + 1]
            mean = sum(sample) / len(sample)
            sd = (sum((c - mean) ** 2 for c in sample) / len(sample)) ** 0.5 or 1.0
            z = (close[i] - mean) / sd
            signal = -1.0 if z > threshold else (1.0 if z < -threshold else 0.0)
            outcome = "bearish" if signal < 0 else ("bullish" if signal > 0 else "neutral")
            ex.set_result(outcome, signal, min(1.0, abs(z) / 3))
            position[i] = signal
    c = np.asarray(close)
    bar_return = np.concatenate(([np.nan], c[1:] / c[:-1] - 1.0))
    return pd.Series(np.concatenate(([0.0], position[:-1])) * bar_return, index=data.index)


def busy_share(seconds: float = 2.0) -> float | None:
    """Share of CPU time spent busy over ``seconds`` (Linux ``/proc/stat``; None elsewhere)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total1, idle1 = sample()
        time.sleep(seconds)
        total2, idle2 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle2 - idle1) / max(1, total2 - total1)


def wait_for_idle(max_wait: float, threshold: float = 0.15) -> str:
    """Wait (up to ``max_wait`` s) until other processes leave the CPUs idle; returns a note.

    On a shared machine other processes take cores from the pool and the comparison means
    nothing; each timed run starts only once the CPUs are at least 85 % idle.
    """
    deadline = time.monotonic() + max_wait
    share = busy_share()
    while share is not None and share > threshold and time.monotonic() < deadline:
        share = busy_share()
    return "n/a" if share is None else f"{share:.0%} busy"


def zscore_returns(data: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    """The same rule without recording executions (``--no-record``: isolates the fold work)."""
    return zscore_run(data, params, FoldContext(-1, "fit", params, record=False))


def bars(n: int, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.005, n)))
    return pd.DataFrame({"close": close}, index=pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"))


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process from /proc (0 where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def pool_cpu(pool: Executor) -> float:
    """CPU seconds used so far by the worker processes of a ``ProcessPoolExecutor``."""
    processes = getattr(pool, "_processes", None) or {}
    return sum(proc_cpu(pid) for pid in list(processes))


def run_once(
    url: str, data: pd.DataFrame, splitter: WalkForwardSplitter, executor: Executor, thresholds: int, record: bool
) -> tuple[float, int, int]:
    with Recorder(url) as rec:
        rv = rec.register_rule_version("zscore", "1.0.0", {"window": WINDOW, "threshold": 1.5})
        started = time.perf_counter()
        fit = GridSearch(zscore_run, grid(thresholds), A)
        result = rec.walk_forward(
            rv, data, run=zscore_run if record else zscore_returns, fit=fit, splitter=splitter, dataset="bench",
            periods_per_year=A,
            executor=executor, warmup=WINDOW, progress=False,
        )  # fmt: skip
        flushed = rec.flush()
        elapsed = time.perf_counter() - started
        assert flushed.complete
    return elapsed, len(result.folds), result.executions


def cold_pool(
    url: str, data: pd.DataFrame, splitter: WalkForwardSplitter, thresholds: int, record: bool
) -> tuple[float, int, int, float]:
    """A pool created (and its workers started) inside the timed region; returns its workers' CPU too."""
    started = time.perf_counter()
    pool = default_executor(2)
    try:
        _elapsed, folds, executions = run_once(url, data, splitter, pool, thresholds, record)
        workers = pool_cpu(pool)
    finally:
        pool.shutdown(wait=True)
    return time.perf_counter() - started, folds, executions, workers


_DASK: list[Any] = []


def start_dask(profile: bool = False) -> Executor | None:
    """A LocalCluster of 2 single-threaded worker processes (None without ``distributed``).

    ``profile`` False (the default here) turns off the workers' statistical profiler
    (``distributed.worker.profile.enabled``), which samples the running task's stack every 10 ms:
    about 1 to 1.5 s of worker CPU per run of these CPU-bound folds (docs/benchmarks.md).
    """
    try:
        import dask
        import distributed
    except ImportError:
        print("distributed is not installed (pip install 'heurmetrics[dask]'): no Dask run")
        return None
    dask.config.set({"distributed.worker.profile.enabled": profile})
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = distributed.Client(cluster)
    _DASK.extend([client, cluster])
    client.submit(time.sleep, 0).result()  # the workers are up before timing
    seen = set(client.run(lambda: dask.config.get("distributed.worker.profile.enabled")).values())
    print(f"Dask workers' statistical profiler enabled: {', '.join(map(str, sorted(seen)))}")
    return client.get_executor()


def dask_worker_cpu() -> float:
    """CPU seconds used so far by the Dask worker processes (``Client.run`` on every worker)."""
    return float(sum(_DASK[0].run(time.process_time).values()))


def stop_dask() -> None:
    for closable in _DASK:
        closable.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=20)
    parser.add_argument("--bars-per-fold", type=int, default=480, help="out-of-sample bars per fold")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--thresholds", type=int, default=4, help="grid: 4 windows x this many thresholds")
    parser.add_argument(
        "--record", action=argparse.BooleanOptionalAction, default=True,
        help="record one execution per evaluated bar (--no-record: the fold work alone)",
    )  # fmt: skip
    parser.add_argument(
        "--max-wait", type=float, default=120.0, help="seconds to wait for idle CPUs before each run (0: never)"
    )
    parser.add_argument(
        "--dask-profile",
        action="store_true",
        help="keep the Dask workers' statistical profiler on (Dask's default; off here: see start_dask)",
    )
    args = parser.parse_args()
    oos = args.bars_per_fold
    in_sample = 2 * oos
    data = bars(in_sample + args.folds * oos)
    splitter = WalkForwardSplitter(in_sample, oos)
    candidates = len(GridSearch(zscore_run, grid(args.thresholds), A).candidates())
    print_environment(
        "walk-forward: serial versus a process pool of 2",
        {
            "folds": str(args.folds),
            "bars": f"{len(data):,} (IS {in_sample}, OOS {oos}, warm-up {WINDOW})",
            "fit": f"grid search, {candidates} candidates per fold",
            "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        },
    )
    timings: dict[str, list[float]] = {"serial": [], "pool, cold": [], "pool, warm": []}
    dask_executor = start_dask(args.dask_profile)
    if dask_executor is not None:
        timings["dask"] = []
    notes: dict[str, list[str]] = {mode: [] for mode in timings}
    parent: dict[str, list[float]] = {mode: [] for mode in timings}
    workers: dict[str, list[float]] = {mode: [] for mode in timings}
    loads: dict[str, list[float]] = {mode: [] for mode in timings}
    folds = executions = 0
    warm = default_executor(2)
    warm.submit(time.sleep, 0).result()  # the workers are up before timing
    rng = random.Random(11)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeat):
                order = list(timings)
                rng.shuffle(order)  # interleaved, in a new order each repetition
                for k, mode in enumerate(order):
                    url = f"sqlite:///{Path(tmp) / f'bench-{k}-{r}.db'}"
                    notes[mode].append(wait_for_idle(args.max_wait) if args.max_wait > 0 else "not checked")
                    loads[mode].append(os.getloadavg()[0])
                    cpu = time.process_time()
                    used = 0.0
                    if mode == "serial":
                        elapsed, folds, executions = run_once(
                            url, data, splitter, SerialExecutor(), args.thresholds, args.record
                        )
                    elif mode == "pool, cold":
                        elapsed, folds, executions, used = cold_pool(
                            url, data, splitter, args.thresholds, args.record
                        )
                    elif mode == "dask":
                        assert dask_executor is not None
                        before = dask_worker_cpu()
                        elapsed, folds, executions = run_once(
                            url, data, splitter, dask_executor, args.thresholds, args.record
                        )
                        used = dask_worker_cpu() - before
                    else:
                        before = pool_cpu(warm)
                        elapsed, folds, executions = run_once(url, data, splitter, warm, args.thresholds, args.record)
                        used = pool_cpu(warm) - before
                    parent[mode].append(time.process_time() - cpu)
                    workers[mode].append(used)
                    timings[mode].append(elapsed)
                print(f"  repetition {r + 1}/{args.repeat} done ({', '.join(order)})", file=sys.stderr)
    finally:
        warm.shutdown(wait=True)
        stop_dask()
    serial = min(timings["serial"])
    serial_median = statistics.median(timings["serial"])
    serial_cpu = min(parent["serial"])
    rows = []
    for mode, t in timings.items():
        total_cpu = [p + w for p, w in zip(parent[mode], workers[mode], strict=True)]
        # On two free cores a run cannot take less than half its total CPU time: the speed-up it
        # allows is serial CPU / (total CPU / 2), whatever else ran on the machine meanwhile.
        bound = serial_cpu / (min(total_cpu) / 2) if mode != "serial" else 1.0
        rows.append(
            (
                mode,
                1 if mode == "serial" else 2,
                f"{min(t):.2f}",
                f"{statistics.median(t):.2f}",
                f"{serial / min(t):.2f}x",
                f"{serial_median / statistics.median(t):.2f}x",
                f"{statistics.median(parent[mode]):.2f}",
                f"{statistics.median(workers[mode]):.2f}" if mode != "serial" else "-",
                f"{bound:.2f}x" if mode != "serial" else "-",
            )
        )
    print_table(
        (
            "executor",
            "workers",
            "wall s (best)",
            "wall s (median)",
            "speed-up (best)",
            "speed-up (median)",
            "parent CPU s",
            "workers CPU s",
            "CPU bound on 2 free cores",
        ),
        rows,
        title=f"{folds} folds, {executions:,} executions recorded per run ({args.repeat} repetitions, interleaved)",
    )
    print("all runs (s): " + "; ".join(f"{mode} {[round(x, 2) for x in t]}" for mode, t in timings.items()))
    print("CPU before each run: " + "; ".join(f"{mode} {n}" for mode, n in notes.items()))
    print("1-min load average at each start: " + "; ".join(f"{m} {[round(x, 1) for x in v]}" for m, v in loads.items()))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for mode in [m for m in timings if m != "serial"]:
        speedup = serial / min(timings[mode])
        print(f"{mode}: speed-up {speedup:.2f}x {'meets' if speedup >= 1.8 else 'MISSES'} the 1.8x target")


if __name__ == "__main__":
    main()
