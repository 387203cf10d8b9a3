"""Storing a walk-forward run: its executions, the stitched result with its folds, or the failure."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from heurmetrics.backtest.overfit import DEFAULT_PBO_BLOCKS, trial_matrix
from heurmetrics.backtest.splits import Split

# Re-exported: the efficiency helpers live with the shared result assembly.
from heurmetrics.backtest.summary import (  # noqa: F401
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_row,
    json_tree,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)
from heurmetrics.backtest.walkforward.api import (
    ExecutionRecord,
    WalkForwardFold,
    WalkForwardResult,
)
from heurmetrics.backtest.walkforward.folds import _FoldFailed, _FoldOutput
from heurmetrics.backtest.walkforward.maths import _metrics, _pool_stats, _utc, anchored_equity
from heurmetrics.domain import BacktestFold, RuleVersion
from heurmetrics.errors import HeurmetricsError
from heurmetrics.live.resolution import (
    SignalStats,
)

if TYPE_CHECKING:
    from heurmetrics.backtest.walkforward.recording import RunRecorder


def _record(recorder: RunRecorder, rv: RuleVersion, run_id: uuid.UUID, records: Sequence[ExecutionRecord]) -> int:
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
    recorder: RunRecorder,
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
        oos_extra: dict[str, Any] = {}
        for horizon, s in stats.items():
            oos_extra.update(
                {
                    f"signals_{horizon}": s.signals,
                    f"hits_{horizon}": s.hits,
                    f"hit_ratio_{horizon}": s.hit_ratio,
                    f"mean_signal_return_{horizon}": s.mean_return,
                }
            )
        bounds = (split.in_sample_start, split.in_sample_end, split.out_of_sample_start, split.out_of_sample_end)
        row = fold_row(
            split.fold_index,
            (_utc(bounds[0]), _utc(bounds[1]), _utc(bounds[2]), _utc(bounds[3])),
            out.params,
            out.trials,
            is_metrics,
            oos_metrics,
            periods_per_year,
            oos_extra,
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
                row.out_of_sample_metrics["walk_forward_efficiency"],
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
    recorder: RunRecorder,
    rv: RuleVersion,
    run_id: uuid.UUID,
    started_at: datetime,
    dataset: str,
    periods_per_year: float,
    failure: _FoldFailed,
) -> None:
    """Store the run as ``failed`` (its recorded executions point to it) and count it."""
    message = f"fold {failure.fold_index}: {type(failure.cause).__name__}: {failure.cause}"[:4000]
    with contextlib.suppress(HeurmetricsError):  # the fold's error is the one to report
        recorder.record_failed_backtest(
            rv,
            error_message=message,
            dataset=dataset[:256] or "unknown",
            periods_per_year=periods_per_year,
            kind="walk_forward",
            started_at=started_at,
            run_id=run_id,
            config={"walk_forward": {"failed_fold": failure.fold_index}},
        )


def _dataset_hash(data: pd.DataFrame) -> str | None:
    import hashlib

    try:
        hashed = pd.util.hash_pandas_object(data, index=True).to_numpy()
    except TypeError:  # unhashable cells (lists, dicts): no hash rather than a wrong one
        return None
    return hashlib.sha256(hashed.tobytes()).hexdigest()
