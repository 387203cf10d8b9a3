"""One fold, as a worker runs it: fit in-sample, evaluate both windows, the candidates' trial returns."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from heurmetrics.backtest.splits import Split

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
    IN_SAMPLE,
    OUT_OF_SAMPLE,
    WARMUP,
    ExecutionRecord,
    FitFn,
    FitResult,
    FoldContext,
    Output,
    RunFn,
)
from heurmetrics.canonical import canonical_json
from heurmetrics.validation import check_finite

if TYPE_CHECKING:
    pass


# --- the fold task (runs in a worker) -----------------------------------------------------------
@dataclass(frozen=True)
class _FoldTask:
    split: Split
    frame: pd.DataFrame  # rows [offset, out_of_sample.stop) of the data: warm-up, IS, gap, OOS
    offset: int
    fit: FitFn | None
    run: RunFn
    fixed_params: dict[str, Any]
    output: Output
    warmup: int
    record_in_sample: bool


@dataclass(frozen=True)
class _FoldOutput:
    fold_index: int
    params: dict[str, Any]
    trials: int
    in_sample_returns: pd.Series
    out_of_sample_returns: pd.Series
    records: list[ExecutionRecord]
    seconds: float
    executions: int = 0  # set by the parent once the records are recorded (and dropped)
    #: Out-of-sample returns of every candidate ``fit`` tried (columns = candidate index), or None.
    trial_returns: pd.DataFrame | None = None
    sharpe_variance: float | None = None


def _run_fold(task: _FoldTask) -> _FoldOutput:
    """Fit, then evaluate in-sample and out-of-sample (module level: it runs in worker processes)."""
    started = time.perf_counter()
    split, frame, base = task.split, task.frame, task.offset
    is_lo, is_hi = split.in_sample.start - base, split.in_sample.stop - base
    oos_lo, oos_hi = split.out_of_sample.start - base, split.out_of_sample.stop - base
    if task.fit is None:
        fitted = FitResult(dict(task.fixed_params), 1)
    else:
        fitted = _fit_result(task.fit(frame.iloc[is_lo:is_hi]))
    params, trials = fitted.params, fitted.trials
    records: list[ExecutionRecord] = []
    ctx = FoldContext(split.fold_index, IN_SAMPLE, params, record=task.record_in_sample)
    out = _call_run(task.run, frame.iloc[max(0, is_lo - task.warmup) : is_hi], params, ctx)
    is_returns = window_returns(out, task.output, split.in_sample_start, split.in_sample_end)
    records.extend(_tag_warmup(ctx.records, split.in_sample_start))
    ctx = FoldContext(split.fold_index, OUT_OF_SAMPLE, params)
    out = _call_run(task.run, frame.iloc[max(0, oos_lo - task.warmup) : oos_hi], params, ctx)
    oos_returns = window_returns(out, task.output, split.out_of_sample_start, split.out_of_sample_end)
    records.extend(_tag_warmup(ctx.records, split.out_of_sample_start))
    trial_returns = None
    if len(fitted.candidates) >= 2:
        # Every candidate out-of-sample (not recorded as executions): the columns of the trial
        # return matrix for PBO / DSR (heurmetrics.backtest.overfit).
        oos_frame = frame.iloc[max(0, oos_lo - task.warmup) : oos_hi]
        columns = {}
        for i, candidate in enumerate(fitted.candidates):
            trial_ctx = FoldContext(split.fold_index, "trial", candidate, record=False)
            out = _call_run(task.run, oos_frame, candidate, trial_ctx)
            columns[i] = window_returns(out, task.output, split.out_of_sample_start, split.out_of_sample_end)
        trial_returns = pd.DataFrame(columns)
    return _FoldOutput(
        split.fold_index,
        params,
        trials,
        is_returns,
        oos_returns,
        records,
        time.perf_counter() - started,
        trial_returns=trial_returns,
        sharpe_variance=fitted.sharpe_variance,
    )


def _tag_warmup(records: list[ExecutionRecord], window_start: pd.Timestamp) -> list[ExecutionRecord]:
    """Evaluations of warm-up bars (before the window) are executions too, but not the window's."""
    return [
        replace(r, sample=WARMUP) if r.bar_time is not None and _before(r.bar_time, window_start) else r
        for r in records
    ]


def _before(bar_time: pd.Timestamp, start: pd.Timestamp) -> bool:
    try:
        return bool(bar_time < start)
    except TypeError:  # tz-aware vs naive: compare in UTC
        return bool(_as_utc(bar_time) < _as_utc(start))


def _as_utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _fit_result(value: object) -> FitResult:
    if isinstance(value, FitResult):
        params, trials = value.params, value.trials
    elif isinstance(value, tuple) and len(value) == 2:
        params, trials = value
    elif isinstance(value, dict):
        params, trials = value, 1
    else:
        raise TypeError(
            f"fit must return FitResult(params, trials), a (params, trials) tuple or a params dict, "
            f"got {type(value).__name__}"
        )
    if not isinstance(params, dict):
        raise TypeError(f"fit: params must be a dict, got {type(params).__name__}")
    if isinstance(trials, bool) or not isinstance(trials, int | np.integer) or trials < 1:
        raise ValueError(f"fit: trials must be an int >= 1, got {trials!r}")
    try:
        canonical_json(params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fit: params must be JSON-serialisable without NaN/inf: {exc}") from None
    candidates: tuple[dict[str, Any], ...] = ()
    variance = None
    if isinstance(value, FitResult):
        candidates = tuple(dict(c) for c in value.candidates)
        if candidates and len(candidates) != trials:
            raise ValueError(f"fit: {len(candidates)} candidates given for {trials} trials")
        if value.sharpe_variance is not None:
            variance = check_finite("fit: sharpe_variance", value.sharpe_variance, low=0.0)
    return FitResult(dict(params), int(trials), candidates, variance)


def _call_run(run: RunFn, data: pd.DataFrame, params: dict[str, Any], ctx: FoldContext) -> object:
    return run(data, params, ctx) if _wants_context(run) else run(data, params)


def _wants_context(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` takes a third positional argument (``run(data, params, ctx)``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def window_returns(out: object, output: Output, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """The per-bar returns of ``run``'s series within ``[start, end]`` (see the module docstring).

    Raises ``TypeError`` / ``ValueError`` when ``run`` returned something else than a numeric,
    time-indexed, strictly increasing Series with finite-or-NaN values.
    """
    if not isinstance(out, pd.Series):
        raise TypeError(f"run must return a pandas Series of {output}, got {type(out).__name__}")
    if not isinstance(out.index, pd.DatetimeIndex):
        raise TypeError("run must return a Series indexed by time (a DatetimeIndex)")
    if not out.index.is_monotonic_increasing or out.index.has_duplicates:
        raise ValueError("run's series must have strictly increasing timestamps")
    try:
        values = out.astype("float64")
    except (TypeError, ValueError):
        raise TypeError("run must return numbers") from None
    if np.isinf(values.to_numpy()).any():
        raise ValueError("run returned ±inf (NaN marks a missing value; inf is not allowed)")
    if output == "equity":
        # Returns between consecutive *observed* points (like compute_metrics): a missing point is
        # a missing return, the change across it lands on the next observed point; the first
        # observed point has no return at all, and a base <= 0 gives an undefined (NaN) return.
        observed = values.dropna()
        base = observed.shift(1)
        returns = (observed / base - 1.0).where(base > 0).iloc[1:]
        if len(observed):
            gaps = values.index[values.isna().to_numpy() & (values.index > observed.index[0])]
            if len(gaps):
                returns = pd.concat([returns, pd.Series(np.nan, index=gaps)]).sort_index()
    else:
        returns = values
    inside = (returns.index >= start) & (returns.index <= end)
    return returns[inside].rename("returns")


class _FoldFailed(Exception):
    def __init__(self, fold_index: int, cause: BaseException) -> None:
        super().__init__(fold_index, cause)
        self.fold_index = fold_index
        self.cause = cause
