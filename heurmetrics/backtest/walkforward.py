"""Walk-forward backtests: fit in-sample, run unchanged out-of-sample, roll, stitch.

    result = rec.walk_forward(rv, data, fit=fit, run=run,
                              splitter=WalkForwardSplitter("60D", "14D"),
                              dataset="BTCUSD-1h", periods_per_year=365 * 24)

Per fold (:class:`~heurmetrics.backtest.splits.WalkForwardSplitter` makes them):

1. ``fit(in_sample) -> FitResult(params, trials)`` — or a ``(params, trials)`` tuple, or just a
   params dict (1 trial). ``in_sample`` is exactly the in-sample rows of ``data``. Without ``fit``
   every fold uses the rule version's own params (1 trial).
2. ``run(data, params)`` or ``run(data, params, ctx)`` — evaluates the rule with fixed params and
   returns a ``pd.Series`` indexed by time: **per-bar simple returns** when ``output="returns"``
   (the default; the value at ``t`` is the return earned over the bar ending at ``t``), or an
   **equity curve** (account values, any scale) when ``output="equity"`` (converted to returns
   ``E_t / E_{t-1} - 1``; the first point has no return). The runner tells which *only* from
   ``output``; it never guesses from the values. ``data`` holds the window plus up to ``warmup``
   bars before it (indicator history); values outside the window are ignored. ``run`` is called
   on the in-sample window (for the in-sample metrics) and on the out-of-sample window.
3. The out-of-sample returns of all folds are chained into **one stitched equity curve**, anchored
   at 1.0 on the bar before the first out-of-sample return: that curve is the run's result
   (metrics, ``equity_points``). Each fold's own out-of-sample curve (rebased to 1.0) is stored
   with its ``fold_index``. NaN returns are missing, never filled.

**Executions.** ``run(data, params, ctx)`` gets a :class:`FoldContext`; every
``with ctx.execution(bar_time=ts) as ex: ex.set_result(...)`` (or ``ctx.record(...)``) is one rule
evaluation. The context only collects lightweight :class:`ExecutionRecord` s — a worker process
cannot share the parent's Recorder — and the parent records them through its Recorder as
executions with mode ``backtest`` and ``backtest_run_id`` = the run id, as each fold completes.
In-sample evaluations are recorded too (``record_in_sample=False`` turns that off); the
candidates tried inside ``fit`` are not (``trials`` counts them).

**Efficiency.** Walk-forward efficiency as Pardo defines it: annualised out-of-sample return /
annualised in-sample return, with **simple** annualisation ``(Σ R_k / Σ N_k) · A`` (``R_k`` = total
return of fold ``k``'s window, ``N_k`` its returns, ``A`` periods per year): the headline
``efficiency``. The compounded variant ``(∏ (1 + R_k))^(A / Σ N_k) - 1`` (for the out-of-sample
side exactly the stitched curve's CAGR) is kept as ``efficiency_compounded``. Both are None when
the in-sample annualised return is below 1 % a year (:data:`MIN_IN_SAMPLE_ANNUAL_RETURN`: a
non-positive or tiny denominator makes the ratio meaningless) or either side is not finite.
Stored in ``config.walk_forward``; per fold in its ``out_of_sample_metrics``
(``walk_forward_efficiency``, ``walk_forward_efficiency_compounded``). Rank runs on the stitched
statistics.

**Expectation.** When ``data`` has a ``price_column`` (default ``"close"``) and the out-of-sample
evaluations carry ``bar_time``, their directional signals are resolved against those prices
(:func:`heurmetrics.live.resolution.resolve_against_prices`) at every horizon no shorter
than the bars (by default; an explicit shorter horizon is refused): signals,
hits, hit ratio and mean realised return, stored in ``config.walk_forward.expectation`` — the
baseline the live drift test compares against (``docs/live-performance.md``).

**Overfitting.** When ``fit`` reports its candidates (:class:`GridSearch` does), each candidate
is also run on every out-of-sample window: that trial return matrix gives the Probability of
Backtest Overfitting (CSCV, ``pbo_blocks`` = 16 by default) and the variance of the trials'
Sharpe ratios for the Deflated Sharpe Ratio of the stitched curve; with the minimum backtest
length they are stored in ``config.walk_forward.overfitting`` and the ``backtest_overfitting``
table (:mod:`heurmetrics.backtest.overfit`).

**Parallelism.** Folds run on any :class:`concurrent.futures.Executor`. The default is a
``ProcessPoolExecutor`` with one worker per CPU (``forkserver`` start method: the Recorder's
writer thread and database connections must not be forked); ``SerialExecutor()`` runs inline,
``ThreadPoolExecutor`` works for code that releases the GIL, and a Dask distributed client's
``client.get_executor()`` spreads folds over a cluster. For processes, ``fit``, ``run`` and
the data must pickle: define ``fit`` and ``run`` at module level of an importable module (no
lambdas or closures; :class:`GridSearch` instances pickle), and a script that starts a
walk-forward guards its entry point with ``if __name__ == "__main__":`` (workers import it).
"""

from __future__ import annotations

import inspect
import itertools
import math
import multiprocessing
import os
import pickle
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing import forkserver, get_context
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import numpy as np
import pandas as pd

from heurmetrics.backtest import compute_metrics_from_returns
from heurmetrics.backtest.overfit import DEFAULT_PBO_BLOCKS, trial_matrix
from heurmetrics.backtest.record import json_safe
from heurmetrics.backtest.splits import Split, WalkForwardSplitter

# Re-exported: the efficiency helpers live with the shared result assembly.
from heurmetrics.backtest.summary import (  # noqa: F401
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_efficiency,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)
from heurmetrics.canonical import canonical_json
from heurmetrics.domain import BacktestFold, BacktestRun, RuleVersion
from heurmetrics.errors import HeurmetricsError, InvalidEvent
from heurmetrics.live.resolution import (
    HorizonTooShort,
    SignalStats,
    bar_interval_seconds,
    horizon_seconds,
    horizons_for_bars,
    resolve_against_prices,
    signal_direction,
    signal_stats,
)
from heurmetrics.metrics import definitions as d
from heurmetrics.validation import check_execution, check_finite

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from heurmetrics.sdk.recorder import Recorder

Output = Literal["returns", "equity"]
IN_SAMPLE = "in_sample"
OUT_OF_SAMPLE = "out_of_sample"
#: Evaluations of the ``warmup`` bars before a window.
WARMUP = "warmup"
P = ParamSpec("P")
T = TypeVar("T")


# --- what user code returns and receives ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FitResult:
    """What ``fit`` chose in-sample: the params, and how many candidates it tried (>= 1)."""

    params: dict[str, Any]
    trials: int = 1
    #: Every candidate tried (params dicts, in a fixed order): the runner evaluates each one
    #: out-of-sample too, for the trial return matrix of the overfitting statistics (PBO, DSR).
    candidates: tuple[dict[str, Any], ...] = ()
    #: Variance of the candidates' annualised Sharpe ratios, when ``fit`` knows it and gives no
    #: candidates (optimisers run elsewhere): the Deflated Sharpe Ratio's V.
    sharpe_variance: float | None = None


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One rule evaluation inside a fold, as a worker returns it to the parent (picklable, small).

    ``started_at`` is wall-clock Unix seconds (when the evaluation ran); ``bar_time`` is the bar
    it evaluated (for resolving its signal), or None. ``sample`` is ``"in_sample"``,
    ``"out_of_sample"`` or ``"warmup"`` (a bar before the window, evaluated for indicator history).
    """

    started_at: float
    duration_seconds: float
    status: str = "ok"
    outcome: str | None = None
    signal: float | None = None
    confidence: float | None = None
    error_type: str | None = None
    bar_time: pd.Timestamp | None = None
    sample: str = OUT_OF_SAMPLE


class FoldContext:
    """The third argument of ``run(data, params, ctx)``: collects the fold's rule evaluations.

    ``fold_index``, ``sample`` (``"in_sample"``, ``"out_of_sample"``, or ``"fit"`` inside
    :class:`GridSearch`) and ``params`` describe the call. ``records`` holds what was recorded.
    """

    __slots__ = ("_keep", "fold_index", "params", "records", "sample")

    def __init__(self, fold_index: int, sample: str, params: Mapping[str, Any], *, record: bool = True) -> None:
        self.fold_index = fold_index
        self.sample = sample
        self.params = dict(params)
        self.records: list[ExecutionRecord] = []
        self._keep = record

    def execution(self, bar_time: Any = None) -> Evaluation:
        """Time a block as one evaluation: ``with ctx.execution(ts) as ex: ex.set_result(...)``.

        An exception leaving the block is recorded as status ``error`` (``timeout`` for
        TimeoutError) with its type, and re-raised — catch it in ``run`` to keep going.
        """
        return Evaluation(self, bar_time)

    def record(
        self,
        *,
        duration_seconds: float,
        status: str = "ok",
        outcome: str | None = None,
        signal: float | None = None,
        confidence: float | None = None,
        started_at: float | None = None,
        error_type: str | None = None,
        bar_time: Any = None,
    ) -> None:
        """Record one evaluation explicitly (validated now: :class:`InvalidEvent` names the field)."""
        check_execution(
            status=status,
            mode="backtest",
            duration_seconds=duration_seconds,
            outcome=outcome,
            signal=signal,
            confidence=confidence,
            error_type=error_type,
        )
        if not self._keep:
            return
        start = time.time() - duration_seconds if started_at is None else float(started_at)
        self.records.append(
            ExecutionRecord(
                start,
                float(duration_seconds),
                status,
                outcome,
                None if signal is None else float(signal),
                None if confidence is None else float(confidence),
                error_type,
                None if bar_time is None else pd.Timestamp(bar_time),
                self.sample,
            )
        )


class Evaluation:
    """Times one evaluation; see :meth:`FoldContext.execution`."""

    __slots__ = ("_bar_time", "_ctx", "_result", "_start", "_t0")

    def __init__(self, ctx: FoldContext, bar_time: Any) -> None:
        self._ctx = ctx
        self._bar_time = bar_time
        self._result: tuple[str | None, float | None, float | None] = (None, None, None)

    def set_result(
        self, outcome: str | None = None, signal: float | None = None, confidence: float | None = None
    ) -> None:
        self._result = (outcome, signal, confidence)

    def __enter__(self) -> Evaluation:
        self._start = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = time.perf_counter() - self._t0
        if exc_type is None:
            outcome, signal, confidence = self._result
            self._ctx.record(
                duration_seconds=duration,
                outcome=outcome,
                signal=signal,
                confidence=confidence,
                started_at=self._start,
                bar_time=self._bar_time,
            )
            return
        self._ctx.record(
            duration_seconds=duration,
            status="timeout" if issubclass(exc_type, TimeoutError) else "error",
            started_at=self._start,
            error_type=exc_type.__qualname__[:128],
            bar_time=self._bar_time,
        )


FitFn = Callable[[pd.DataFrame], "FitResult | tuple[dict[str, Any], int] | dict[str, Any]"]
RunFn = Callable[..., pd.Series]


# --- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WalkForwardFold:
    """One fold's stored provenance plus its return series and curve."""

    fold: BacktestFold
    in_sample_returns: pd.Series
    out_of_sample_returns: pd.Series
    #: The fold's own out-of-sample curve, rebased to 1.0 on the bar before its first return.
    equity: pd.Series
    executions: int
    efficiency: float | None
    seconds: float


@dataclass(frozen=True)
class WalkForwardResult:
    """A stored walk-forward run: the stitched curve is the result; folds carry the provenance."""

    run: BacktestRun
    folds: tuple[WalkForwardFold, ...]
    #: The stitched out-of-sample equity curve (1.0 on the bar before the first return).
    equity: pd.Series
    #: The stitched out-of-sample returns (NaN = missing).
    returns: pd.Series
    #: Pardo's walk-forward efficiency (simple annualisation); see the module docstring.
    efficiency: float | None
    in_sample_annualized_return: float | None
    out_of_sample_annualized_return: float | None
    expectation: dict[str, SignalStats]
    #: Executions recorded for this run (mode ``backtest``, linked by ``backtest_run_id``).
    executions: int
    #: Deflated Sharpe Ratio, PBO, minimum backtest length (:mod:`heurmetrics.backtest.overfit`).
    overfitting: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> uuid.UUID:
        return self.run.run_id

    @property
    def metrics(self) -> dict[str, Any]:
        """Performance metrics of the stitched curve (as stored with the run)."""
        return self.run.metrics


class WalkForwardError(HeurmetricsError):
    """A fold failed; the run is stored with status ``failed`` and this message."""

    def __init__(self, run_id: uuid.UUID, fold_index: int, cause: BaseException) -> None:
        super().__init__(f"walk-forward run {run_id}: fold {fold_index} failed: {type(cause).__name__}: {cause}")
        self.run_id = run_id
        self.fold_index = fold_index


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
    if __name__ not in preload:
        context.set_forkserver_preload([*preload, __name__])
    return ProcessPoolExecutor(max_workers=max_workers or usable_cpus(), mp_context=context)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- a picklable optimiser ----------------------------------------------------------------------
@dataclass(frozen=True)
class GridSearch:
    """A ``fit`` that tries every combination of ``grid`` in-sample and keeps the best.

    Each candidate is ``{**base_params, **combination}``, evaluated with ``run`` on the in-sample
    window and scored by ``metric`` of :func:`heurmetrics.backtest.compute_metrics_from_returns`
    (default Sharpe; ``maximize=False`` for metrics where lower is better). NaN scores never win;
    ties keep the first candidate (grid order). ``trials`` = number of candidates. Instances pickle
    when ``run`` is a module-level function, so they work with process pools.
    """

    run: RunFn
    grid: Mapping[str, Sequence[Any]]
    periods_per_year: float
    metric: str = "sharpe"
    base_params: Mapping[str, Any] = field(default_factory=dict)
    output: Output = "returns"
    maximize: bool = True

    def candidates(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [
            {**self.base_params, **dict(zip(keys, values, strict=True))}
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]

    def __call__(self, in_sample: pd.DataFrame) -> FitResult:
        candidates = self.candidates()
        if not candidates:
            raise ValueError("GridSearch: the grid has no candidates")
        best, best_score = candidates[0], -math.inf
        start, end = in_sample.index[0], in_sample.index[-1]
        for params in candidates:
            ctx = FoldContext(-1, "fit", params, record=False)
            returns = window_returns(_call_run(self.run, in_sample, params, ctx), self.output, start, end)
            value = compute_metrics_from_returns(returns, periods_per_year=self.periods_per_year).as_dict()
            score = value.get(self.metric)
            if not isinstance(score, int | float) or math.isnan(score):
                continue
            score = float(score) if self.maximize else -float(score)
            if score > best_score:
                best, best_score = params, score
        return FitResult(best, len(candidates), candidates=tuple(candidates))


@dataclass(frozen=True)
class WalkForwardRule:
    """A rule packaged for ``heurmetrics backtest walk-forward MODULE:NAME`` (or for code).

    ``run`` as in the module docstring; ``fit`` optional; without ``fit`` but with ``grid``, a
    :class:`GridSearch` over ``grid`` (scored by ``metric``) fits each fold; with neither, every
    fold runs ``params``. ``name`` / ``version`` / ``params`` / ``source`` / ``description``
    register the rule version (``source`` defaults to the source code of ``run`` and ``fit``).
    """

    name: str
    version: str
    run: RunFn
    fit: FitFn | None = None
    params: dict[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] | None = None
    metric: str = "sharpe"
    output: Output = "returns"
    warmup: int = 0
    source: str | None = None
    description: str | None = None

    def source_text(self) -> str:
        if self.source is not None:
            return self.source
        parts = []
        for fn in (self.run, self.fit):
            if fn is None:
                continue
            try:
                parts.append(inspect.getsource(fn))
            except (OSError, TypeError):
                parts.append(_name(fn))
        return "\n".join(parts)

    def fit_for(self, periods_per_year: float) -> FitFn | None:
        """``fit``, or a :class:`GridSearch` over ``grid``, or None (fixed ``params``)."""
        if self.fit is not None or not self.grid:
            return self.fit
        return GridSearch(
            self.run, self.grid, periods_per_year, metric=self.metric, base_params=self.params, output=self.output
        )


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


# --- the runner ----------------------------------------------------------------------------------
def run_walk_forward(
    recorder: Recorder,
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


class _FoldFailed(Exception):
    def __init__(self, fold_index: int, cause: BaseException) -> None:
        super().__init__(fold_index, cause)
        self.fold_index = fold_index
        self.cause = cause


def _record(recorder: Recorder, rv: RuleVersion, run_id: uuid.UUID, records: Sequence[ExecutionRecord]) -> int:
    """Record a fold's evaluations in one batch (``Recorder.record_executions``)."""
    recorder.record_executions(
        rv,
        (
            {
                "duration_seconds": r.duration_seconds,
                "status": r.status,
                "outcome": r.outcome,
                "signal": r.signal,
                "confidence": r.confidence,
                "started_at": r.started_at,
                "error_type": r.error_type,
            }
            for r in records
        ),
        mode="backtest",
        backtest_run_id=run_id,
    )
    return len(records)


def _store_result(
    recorder: Recorder,
    rv: RuleVersion,
    data: pd.DataFrame,
    splits: Sequence[Split],
    outputs: Sequence[_FoldOutput],
    stats_by_fold: Sequence[dict[str, SignalStats]],
    *,
    run_id: uuid.UUID,
    started_at: datetime,
    dataset: str,
    dataset_hash: str | None,
    periods_per_year: float,
    risk_free_rate: float,
    price_column: str | None,
    horizons: tuple[str, ...],
    executions: int,
    config: dict[str, Any],
    pbo_blocks: int = DEFAULT_PBO_BLOCKS,
) -> WalkForwardResult:
    close = data[price_column] if price_column is not None and price_column in data.columns else None
    folds: list[WalkForwardFold] = []
    fold_rows: list[BacktestFold] = []
    fold_equity: dict[int, pd.Series] = {}
    fold_metrics: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for split, out, stats in zip(splits, outputs, stats_by_fold, strict=True):
        is_metrics = _metrics(out.in_sample_returns, periods_per_year, risk_free_rate)
        oos_metrics = _metrics(out.out_of_sample_returns, periods_per_year, risk_free_rate)
        fold_metrics.append((is_metrics, oos_metrics))
        oos_extra: dict[str, Any] = fold_efficiency(is_metrics, oos_metrics, periods_per_year)
        for horizon, s in stats.items():
            oos_extra.update(
                {
                    f"signals_{horizon}": s.signals,
                    f"hits_{horizon}": s.hits,
                    f"hit_ratio_{horizon}": s.hit_ratio,
                    f"mean_signal_return_{horizon}": s.mean_return,
                }
            )
        row = BacktestFold(
            fold_index=split.fold_index,
            in_sample_start=_utc(split.in_sample_start),
            in_sample_end=_utc(split.in_sample_end),
            out_of_sample_start=_utc(split.out_of_sample_start),
            out_of_sample_end=_utc(split.out_of_sample_end),
            params=out.params,
            trials=out.trials,
            in_sample_metrics=json_tree(is_metrics),
            out_of_sample_metrics=json_tree({**oos_metrics, **oos_extra}),
        )
        curve = anchored_equity(out.out_of_sample_returns, data.index)
        fold_rows.append(row)
        fold_equity[split.fold_index] = curve
        folds.append(
            WalkForwardFold(
                row,
                out.in_sample_returns,
                out.out_of_sample_returns,
                curve,
                out.executions,
                oos_extra["walk_forward_efficiency"],
                out.seconds,
            )
        )
    stitched_returns = pd.concat([out.out_of_sample_returns for out in outputs]).rename("returns")
    stitched = anchored_equity(stitched_returns, data.index)
    expectation = _pool_stats(stats_by_fold, horizons) if close is not None else {}
    reported = [out.sharpe_variance for out in outputs if out.sharpe_variance is not None]
    summary = run_summary(
        fold_metrics,
        stitched_returns,
        periods_per_year=periods_per_year,
        risk_free_rate=risk_free_rate,
        n_trials=max((out.trials for out in outputs), default=1),
        trial_returns=trial_matrix([out.trial_returns for out in outputs]),
        reported_sharpe_variance=float(np.mean(reported)) if reported else None,
        pbo_blocks=pbo_blocks,
    )
    wf = config["walk_forward"]
    wf.update(
        {
            **summary,
            "price_column": price_column if close is not None else None,
            "expectation": {h: s.as_dict() for h, s in expectation.items()},
            "executions": executions,
        }
    )
    if dataset_hash is None:
        dataset_hash = _dataset_hash(data)
    stored = recorder.record_backtest(
        rv,
        stitched,
        dataset=dataset,
        periods_per_year=periods_per_year,
        risk_free_rate=risk_free_rate,
        dataset_hash=dataset_hash,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        run_id=run_id,
        config=json_tree(config),
        kind="walk_forward",
        folds=fold_rows,
        fold_equity=fold_equity,
    )
    return WalkForwardResult(
        stored,
        tuple(folds),
        stitched,
        stitched_returns,
        summary["efficiency"],
        summary["in_sample_annualized_return"],
        summary["out_of_sample_annualized_return"],
        expectation,
        executions,
        summary["overfitting"],
    )


def _store_failed(
    recorder: Recorder,
    rv: RuleVersion,
    run_id: uuid.UUID,
    started_at: datetime,
    dataset: str,
    periods_per_year: float,
    failure: _FoldFailed,
) -> None:
    """Store the run as ``failed`` (its recorded executions point to it) and count it."""
    message = f"fold {failure.fold_index}: {type(failure.cause).__name__}: {failure.cause}"[:4000]
    run = BacktestRun(
        run_id=run_id,
        rule_version=rv,
        kind="walk_forward",
        dataset=dataset[:256] or "unknown",
        dataset_hash=None,
        period_start=None,
        period_end=None,
        periods_per_year=periods_per_year,
        status="failed",
        started_at=started_at,
        finished_at=datetime.now(UTC),
        metrics={},
        config={"walk_forward": {"failed_fold": failure.fold_index}},
        error_message=message,
    )
    try:
        if recorder.store.insert_backtest(run):
            recorder.metrics.observe_backtest(run)
    except HeurmetricsError:  # the fold's error is the one to report
        pass


# --- helpers -----------------------------------------------------------------------------------------
def anchored_equity(returns: pd.Series, index: pd.Index) -> pd.Series:
    """``cumprod(1 + r)`` with a 1.0 point on the bar of ``index`` before the first return.

    NaN returns stay NaN points (missing, skipped by the metrics); nothing is filled.
    """
    curve = (1.0 + returns).cumprod(skipna=True)
    curve[returns.isna()] = np.nan
    if len(returns):
        position = int(index.searchsorted(returns.index[0], side="left"))
        if position > 0:
            anchor = pd.Series([1.0], index=index[position - 1 : position])
            curve = pd.concat([anchor, curve])
    return curve.rename("equity")


def _metrics(returns: pd.Series, periods_per_year: float, risk_free_rate: float) -> dict[str, Any]:
    return compute_metrics_from_returns(
        returns, periods_per_year=periods_per_year, risk_free_rate=risk_free_rate
    ).as_dict()


def _check_horizons(horizons: Sequence[str] | None, close: pd.Series | None) -> tuple[str, ...]:
    """Explicit horizons: each known and no shorter than the bars (else the error says which);
    None: every known horizon the bars allow (on daily bars only 1d — 1h and 4h would score
    signals on their own bar)."""
    if horizons is None:
        if close is None:
            return tuple(d.RESOLUTION_HORIZONS)
        return horizons_for_bars(pd.DatetimeIndex(close.index), d.RESOLUTION_HORIZONS)
    for horizon in horizons:
        if horizon not in d.RESOLUTION_HORIZONS:
            raise ValueError(f"unknown horizon {horizon!r}: use {', '.join(d.RESOLUTION_HORIZONS)}")
    if close is not None:
        interval = bar_interval_seconds(pd.DatetimeIndex(close.index))
        for horizon in horizons:
            if interval is not None and horizon_seconds(horizon) < interval:
                raise HorizonTooShort(horizon, interval)
    return tuple(horizons)


def _expectation(
    records: Sequence[ExecutionRecord], close: pd.Series | None, horizons: Sequence[str]
) -> dict[str, SignalStats]:
    if close is None:
        return {}
    signals = [
        (r.bar_time, direction)
        for r in records
        if r.bar_time is not None and (direction := signal_direction(r.outcome, r.signal, r.status)) != 0
    ]
    times = pd.DatetimeIndex([t for t, _ in signals]) if signals else pd.DatetimeIndex([], tz="UTC")
    directions = np.array([s for _, s in signals], dtype=np.float64)
    out = {}
    for horizon in horizons:
        resolved = resolve_against_prices(times, directions, close, horizon)
        out[horizon] = signal_stats(horizon, resolved.realized_return, resolved.correct)
    return out


def _pool_stats(parts: Sequence[dict[str, SignalStats]], horizons: Sequence[str]) -> dict[str, SignalStats]:
    """Fold statistics combined: signals and hits add up, the mean return is signal-weighted."""
    out = {}
    for horizon in horizons:
        found = [p[horizon] for p in parts if horizon in p]
        n = sum(s.signals for s in found)
        total = sum(s.mean_return * s.signals for s in found if s.mean_return is not None)
        out[horizon] = SignalStats(horizon, n, sum(s.hits for s in found), total / n if n else None)
    return out


def json_tree(value: Any) -> Any:
    """``value`` with NaN / inf made JSON-safe (NaN -> null, inf -> "Infinity"), recursively."""
    if isinstance(value, dict):
        return {str(k): json_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_tree(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return json_safe(value)


def _utc(ts: pd.Timestamp) -> datetime:
    return _as_utc(ts).to_pydatetime()


def _name(fn: object) -> str:
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{name}"[:256]


def _dataset_hash(data: pd.DataFrame) -> str | None:
    import hashlib

    try:
        hashed = pd.util.hash_pandas_object(data, index=True).to_numpy()
    except TypeError:  # unhashable cells (lists, dicts): no hash rather than a wrong one
        return None
    return hashlib.sha256(hashed.tobytes()).hexdigest()


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


@contextmanager
def _progress_bar(progress: bool | Console | Progress, total: int, description: str) -> Iterator[Callable[[], None]]:
    """Advance a folds bar: none (False), a new bar on a console (True: stderr), or a task added to
    a running ``rich.progress.Progress`` (only one live display may be active per console)."""
    if progress is False:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if isinstance(progress, Progress):
        running = progress.add_task(description, total=total)
        yield lambda: progress.advance(running)
        return
    console = progress if isinstance(progress, Console) else Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folds"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
