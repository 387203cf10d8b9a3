"""The walk-forward runner: checks the arguments, runs the folds on an executor, stores the result."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from heurmetrics.backtest.overfit import DEFAULT_PBO_BLOCKS
from heurmetrics.backtest.splits import WalkForwardSplitter

# Re-exported: the efficiency helpers live with the shared result assembly.
from heurmetrics.backtest.summary import (  # noqa: F401
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_efficiency,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)
from heurmetrics.backtest.walkforward.api import (
    OUT_OF_SAMPLE,
    FitFn,
    Output,
    RunFn,
    WalkForwardError,
    WalkForwardResult,
)
from heurmetrics.backtest.walkforward.executors import SerialExecutor, default_executor, usable_cpus
from heurmetrics.backtest.walkforward.folds import _FoldFailed, _FoldOutput, _FoldTask, _run_fold
from heurmetrics.backtest.walkforward.maths import _check_horizons, _expectation
from heurmetrics.backtest.walkforward.persistence import _record, _store_failed, _store_result
from heurmetrics.backtest.walkforward.progress import _progress_bar
from heurmetrics.backtest.walkforward.search import _name
from heurmetrics.domain import RuleVersion
from heurmetrics.errors import InvalidEvent
from heurmetrics.live.resolution import (
    SignalStats,
)
from heurmetrics.validation import check_finite

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from heurmetrics.backtest.walkforward.recording import RunRecorder


# --- the runner ----------------------------------------------------------------------------------
def run_walk_forward(
    recorder: RunRecorder,
    rule_version: RuleVersion,
    data: pd.DataFrame,
    *,
    run: RunFn,
    splitter: WalkForwardSplitter,
    dataset: str,
    periods_per_year: float,
    fit: FitFn | None = None,
    executor: Executor | None = None,
    output: Output = "returns",
    warmup: int = 0,
    price_column: str | None = "close",
    horizons: Sequence[str] | None = None,
    risk_free_rate: float = 0.0,
    dataset_hash: str | None = None,
    run_id: uuid.UUID | None = None,
    config: Mapping[str, Any] | None = None,
    record_in_sample: bool = True,
    progress: bool | Console | Progress = True,
    pbo_blocks: int = DEFAULT_PBO_BLOCKS,
) -> WalkForwardResult:
    """Run a walk-forward backtest and store it (kind ``walk_forward``); see the module docstring.

    Returns when the run, its folds and curves are durable; its executions go through the
    recorder's background writer (``recorder.flush()`` makes them durable). A failing fold stores
    the run with status ``failed`` and raises :class:`WalkForwardError`. Invalid arguments raise
    ``TypeError`` / ``ValueError`` / :class:`InvalidEvent` before anything runs.
    """
    if rule_version.__class__ is not RuleVersion:
        raise InvalidEvent("rule_version", "must be the RuleVersion returned by register_rule_version")
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if not callable(run) or (fit is not None and not callable(fit)):
        raise TypeError("run (and fit, when given) must be callables")
    if output not in ("returns", "equity"):
        raise ValueError(f"output must be 'returns' or 'equity', got {output!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0 (bars), got {warmup!r}")
    if isinstance(pbo_blocks, bool) or not isinstance(pbo_blocks, int) or pbo_blocks < 2 or pbo_blocks % 2:
        raise ValueError(f"pbo_blocks must be an even int >= 2, got {pbo_blocks!r}")
    if not isinstance(splitter, WalkForwardSplitter):
        raise TypeError("splitter must be a WalkForwardSplitter")
    periods_per_year = check_finite("periods_per_year", periods_per_year, low=1e-9)
    splits = splitter.split(data.index)
    close = data[price_column] if price_column is not None and price_column in data.columns else None
    horizons = _check_horizons(horizons, close)
    run_id = run_id or uuid.uuid4()
    started_at = datetime.now(UTC)
    tasks = []
    for split in splits:
        lo = max(0, split.in_sample.start - warmup)
        tasks.append(
            _FoldTask(
                split, data.iloc[lo : split.out_of_sample.stop], lo, fit, run, dict(rule_version.params), output,
                warmup, record_in_sample,
            )
        )  # fmt: skip
    owned = executor is None
    if executor is None:
        workers = min(len(tasks), usable_cpus())
        executor = SerialExecutor() if workers <= 1 else default_executor(workers)
    if isinstance(executor, ProcessPoolExecutor):
        _check_picklable(fit, run)

    outputs: dict[int, _FoldOutput] = {}
    fold_stats: dict[int, dict[str, SignalStats]] = {}
    executions = 0
    try:
        with _progress_bar(progress, len(tasks), f"walk-forward {rule_version.key}") as advance:
            futures = {executor.submit(_run_fold, task): task.split.fold_index for task in tasks}
            try:
                for future in as_completed(futures):
                    fold_index = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:
                        raise _FoldFailed(fold_index, exc) from exc
                    executions += _record(recorder, rule_version, run_id, result.records)
                    # Resolve the fold's out-of-sample signals now and let its records go: memory
                    # stays bounded by one fold's evaluations, however long the run.
                    oos = [r for r in result.records if r.sample == OUT_OF_SAMPLE]
                    fold_stats[fold_index] = _expectation(oos, close, horizons)
                    outputs[fold_index] = replace(result, records=[], executions=len(result.records))
                    advance()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    except _FoldFailed as failure:
        _store_failed(recorder, rule_version, run_id, started_at, dataset, periods_per_year, failure)
        raise WalkForwardError(run_id, failure.fold_index, failure.cause) from failure.cause
    finally:
        if owned:
            executor.shutdown(wait=True, cancel_futures=True)

    ordered = [outputs[split.fold_index] for split in splits]
    return _store_result(
        recorder,
        rule_version,
        data,
        splits,
        ordered,
        [fold_stats[split.fold_index] for split in splits],
        run_id=run_id,
        started_at=started_at,
        dataset=dataset,
        dataset_hash=dataset_hash,
        periods_per_year=periods_per_year,
        risk_free_rate=risk_free_rate,
        price_column=price_column,
        horizons=tuple(horizons),
        executions=executions,
        pbo_blocks=pbo_blocks,
        config={
            **(config or {}),
            "walk_forward": {
                "splitter": splitter.describe(),
                "folds": len(splits),
                "output": output,
                "warmup": warmup,
                "fit": _name(fit) if fit is not None else None,
                "run": _name(run),
                "executor": type(executor).__name__,
                "record_in_sample": record_in_sample,
            },
        },
    )


def _check_picklable(fit: object, run: object) -> None:
    for name, fn in (("fit", fit), ("run", run)):
        if fn is None:
            continue
        try:
            pickle.dumps(fn)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                f"{name} cannot be sent to worker processes ({exc}). Define it as a module-level "
                "function of an importable module (not a lambda, closure or local function), or pass "
                "executor=SerialExecutor()."
            ) from None
