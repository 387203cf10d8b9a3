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

Modules: :mod:`.api` (the types user code sees), :mod:`.search` (``GridSearch``,
``WalkForwardRule``), :mod:`.folds` (one fold, in a worker), :mod:`.executors`, :mod:`.runner`
(:func:`run_walk_forward`), :mod:`.maths`, :mod:`.persistence` (storing the run through the
recorder), :mod:`.progress`; the result assembly shared with ``POST /v1/walk-forward`` is
:mod:`heurmetrics.backtest.summary`.
"""

from heurmetrics.backtest.summary import (
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_efficiency,
    json_tree,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)
from heurmetrics.backtest.walkforward.api import (
    IN_SAMPLE,
    OUT_OF_SAMPLE,
    WARMUP,
    Evaluation,
    ExecutionRecord,
    FitFn,
    FitResult,
    FoldContext,
    Output,
    RunFn,
    WalkForwardError,
    WalkForwardFold,
    WalkForwardResult,
)
from heurmetrics.backtest.walkforward.executors import SerialExecutor, default_executor, usable_cpus
from heurmetrics.backtest.walkforward.folds import window_returns
from heurmetrics.backtest.walkforward.maths import anchored_equity
from heurmetrics.backtest.walkforward.runner import run_walk_forward
from heurmetrics.backtest.walkforward.search import GridSearch, WalkForwardRule

__all__ = [
    "IN_SAMPLE",
    "MIN_IN_SAMPLE_ANNUAL_RETURN",
    "OUT_OF_SAMPLE",
    "WARMUP",
    "Evaluation",
    "ExecutionRecord",
    "FitFn",
    "FitResult",
    "FoldContext",
    "GridSearch",
    "Output",
    "RunFn",
    "SerialExecutor",
    "WalkForwardError",
    "WalkForwardFold",
    "WalkForwardResult",
    "WalkForwardRule",
    "anchored_equity",
    "default_executor",
    "efficiency_ratio",
    "fold_efficiency",
    "json_tree",
    "pooled_annualized_return",
    "run_summary",
    "run_walk_forward",
    "simple_annualized_return",
    "usable_cpus",
    "window_returns",
]
