"""Walk-forward API types: what user code returns (``FitResult``) and receives (``FoldContext``), and the results."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

# Re-exported: the efficiency helpers live with the shared result assembly.
from heurmetrics.backtest.summary import (  # noqa: F401
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_efficiency,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)
from heurmetrics.domain import BacktestFold, BacktestRun
from heurmetrics.errors import HeurmetricsError
from heurmetrics.execution_builder import TimedExecution, start_time
from heurmetrics.live.resolution import (
    SignalStats,
)

if TYPE_CHECKING:
    pass

Output = Literal["returns", "equity"]
IN_SAMPLE = "in_sample"
OUT_OF_SAMPLE = "out_of_sample"
#: Evaluations of the ``warmup`` bars before a window.
WARMUP = "warmup"


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
        # The one execution builder's checks (heurmetrics.execution_builder), as the parent's Recorder applies them.
        start = start_time(duration_seconds, status, outcome, signal, confidence, "backtest", started_at, error_type)
        if not self._keep:
            return
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


class Evaluation(TimedExecution):
    """Times one evaluation (an :class:`~heurmetrics.execution_builder.TimedExecution`); see
    :meth:`FoldContext.execution`."""

    __slots__ = ("_bar_time", "_ctx")

    def __init__(self, ctx: FoldContext, bar_time: Any) -> None:
        super().__init__()
        self._ctx = ctx
        self._bar_time = bar_time

    def _finish(
        self,
        duration: float,
        status: str,
        outcome: str | None,
        signal: float | None,
        confidence: float | None,
        error_type: str | None,
    ) -> None:
        self._ctx.record(
            duration_seconds=duration,
            status=status,
            outcome=outcome,
            signal=signal,
            confidence=confidence,
            started_at=self._start,
            error_type=error_type,
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
