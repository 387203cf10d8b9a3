"""The Recorder's backtest, walk-forward and outcome-resolution calls (durable on return).

Each goes through the ingest service, which stores and counts it as the exporter's routes do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from heurmetrics.domain import BacktestFold, BacktestRun, RuleVersion
from heurmetrics.ingest import Ingest
from heurmetrics.sdk.delivery import DEFAULT_FLUSH_TIMEOUT, FlushResult
from heurmetrics.store.sql_store import SqlStore

if TYPE_CHECKING:
    from heurmetrics.backtest.splits import WalkForwardSplitter
    from heurmetrics.backtest.walkforward import WalkForwardResult
    from heurmetrics.live.resolution import Resolution
    from heurmetrics.store.live import ResolutionResult


class BacktestCalls:
    """Mixed into :class:`~heurmetrics.sdk.recorder.Recorder`."""

    ingest: Ingest
    store: SqlStore

    def flush(self, timeout: float | None = None) -> FlushResult:
        raise NotImplementedError

    # --- backtests --------------------------------------------------------------------------
    def record_backtest(
        self,
        rule_version: RuleVersion,
        equity: pd.Series,
        *,
        dataset: str,
        periods_per_year: float,
        risk_free_rate: float = 0.0,
        trades: pd.DataFrame | None = None,
        dataset_hash: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        run_id: uuid.UUID | None = None,
        config: dict[str, Any] | None = None,
        kind: str = "single",
        folds: Sequence[BacktestFold] = (),
        fold_equity: dict[int, pd.Series] | None = None,
    ) -> BacktestRun:
        """Compute the performance metrics of an equity curve and store the run (durable on return).

        ``equity`` is a Series indexed by time; ``periods_per_year`` is explicit (365*24 for
        hourly crypto bars, 252 for daily equities). Returns the stored run with its metrics.
        """
        run, _created = self.ingest.record_backtest(
            rule_version,
            equity,
            dataset=dataset,
            periods_per_year=periods_per_year,
            risk_free_rate=risk_free_rate,
            trades=trades,
            dataset_hash=dataset_hash,
            started_at=started_at,
            finished_at=finished_at,
            run_id=run_id,
            config=config,
            kind=kind,
            folds=folds,
            fold_equity=fold_equity,
        )
        return run

    def record_failed_backtest(
        self,
        rule_version: RuleVersion,
        *,
        error_message: str,
        dataset: str,
        periods_per_year: float,
        kind: str = "single",
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        run_id: uuid.UUID | None = None,
        config: dict[str, Any] | None = None,
    ) -> BacktestRun:
        """Store a backtest run that failed (status ``failed``, no metrics): it feeds the
        "Backtest failed" annotation and the ``BacktestFailed`` alert. Re-sending a ``run_id``
        stores and counts nothing."""
        run, _created = self.ingest.record_failed_backtest(
            rule_version,
            error_message=error_message,
            dataset=dataset,
            periods_per_year=periods_per_year,
            kind=kind,
            started_at=started_at,
            finished_at=finished_at,
            run_id=run_id,
            config=config,
        )
        return run

    def walk_forward(
        self,
        rule_version: RuleVersion,
        data: pd.DataFrame,
        *,
        run: Callable[..., pd.Series],
        splitter: WalkForwardSplitter,
        dataset: str,
        periods_per_year: float,
        fit: Callable[[pd.DataFrame], Any] | None = None,
        executor: Executor | None = None,
        **options: Any,
    ) -> WalkForwardResult:
        """Run and store a walk-forward backtest (kind ``walk_forward``): fit in-sample, run
        out-of-sample, stitch; folds in parallel on ``executor`` (a process pool by default).

        Thin wrapper of :func:`heurmetrics.backtest.walkforward.run_walk_forward` (``options``:
        ``output``, ``warmup``, ``price_column``, ``horizons``, ``risk_free_rate``,
        ``dataset_hash``, ``run_id``, ``config``, ``record_in_sample``, ``progress``); see
        ``docs/walk-forward.md``.
        """
        from heurmetrics.backtest.walkforward import run_walk_forward

        return run_walk_forward(
            self,  # type: ignore[arg-type]  # a Recorder
            rule_version,
            data,
            run=run,
            splitter=splitter,
            dataset=dataset,
            periods_per_year=periods_per_year,
            fit=fit,
            executor=executor,
            **options,
        )

    # --- outcome resolution -------------------------------------------------------------------
    def resolve(
        self,
        event_id: uuid.UUID | str,
        *,
        horizon: str = "1h",
        realized_return: float | None = None,
        correct: bool | None = None,
        resolved_at: datetime | None = None,
    ) -> bool:
        """Record what an execution's signal realised after ``horizon`` (durable on return).

        ``realized_return`` is signed by the signal's direction (positive = it was right);
        ``correct`` defaults to ``realized_return > 0``. Returns False when this (event, horizon)
        was resolved before: resolutions are append-only and never overwritten.
        """
        from heurmetrics.live.resolution import make_resolution

        item = make_resolution(
            event_id, horizon=horizon, realized_return=realized_return, correct=correct, resolved_at=resolved_at
        )
        return self.ingest.resolve([item]).accepted == 1

    def resolve_many(self, resolutions: Iterable[Resolution | Mapping[str, Any]]) -> ResolutionResult:
        """Batch form of :meth:`resolve` (one transaction): ``Resolution`` objects or dicts with
        ``event_id``, ``horizon``, ``realized_return`` / ``correct``, ``resolved_at``."""
        from heurmetrics.live.resolution import Resolution, make_resolution

        items = [r if isinstance(r, Resolution) else make_resolution(**r) for r in resolutions]
        return self.ingest.resolve(items)

    def resolve_from_prices(
        self, close: pd.Series, *, horizons: Sequence[str] = ("1h",), modes: Sequence[str] = ("live", "paper")
    ) -> ResolutionResult:
        """Resolve every stored, unresolved directional signal (of ``modes``) that ``close`` covers.

        Flushes first so executions recorded so far are included; see
        :func:`heurmetrics.live.resolution.resolve_pending`.
        """
        from heurmetrics.live.resolution import resolve_pending

        self.flush(DEFAULT_FLUSH_TIMEOUT)
        return resolve_pending(self.store, close, horizons=horizons, modes=modes, write=self.ingest.resolve)
