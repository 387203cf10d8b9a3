"""Executors for the folds: inline (``SerialExecutor``) or a process pool that never forks the caller."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing import forkserver, get_context
from typing import TYPE_CHECKING, ParamSpec, TypeVar

# Re-exported: the efficiency helpers live with the shared result assembly.
from heurmetrics.backtest.summary import (  # noqa: F401
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_efficiency,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)

if TYPE_CHECKING:
    pass

#: Preloaded in the fork server: the package holds the fold task the workers run.
_PACKAGE = "heurmetrics.backtest.walkforward"
P = ParamSpec("P")
T = TypeVar("T")


# --- executors ----------------------------------------------------------------------------------
class SerialExecutor(Executor):
    """Runs each task inline when submitted (no processes, no pickling): debugging, tiny runs."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def default_executor(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool (one worker per usable CPU by default) that never forks the caller.

    ``forkserver`` where available (Linux), else ``spawn``: forking a process that runs the
    Recorder's writer thread and holds database connections is unsafe.
    """
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return ProcessPoolExecutor(max_workers=max_workers or usable_cpus(), mp_context=get_context("spawn"))
    context = get_context("forkserver")
    # Preload pandas, NumPy and this module in the fork server (once, before it starts), so each
    # worker forked from it starts in milliseconds instead of importing them again (~1 s each).
    preload = list(getattr(getattr(forkserver, "_forkserver", None), "_preload_modules", None) or ["__main__"])
    if _PACKAGE not in preload:
        context.set_forkserver_preload([*preload, _PACKAGE])
    return ProcessPoolExecutor(max_workers=max_workers or usable_cpus(), mp_context=context)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
