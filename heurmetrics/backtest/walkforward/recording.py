"""What the walk-forward runner stores its run through: a protocol the SDK's ``Recorder`` meets.

The runner is a layer below the SDK (the SDK's ``Recorder.walk_forward`` calls it), so it names
the few recorder calls it makes here instead of importing ``Recorder``: the executions of each
fold, the finished run, and a failed run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from heurmetrics.domain import BacktestFold, BacktestRun, RuleVersion


class RunRecorder(Protocol):
    """The recorder a walk-forward run is stored through (:class:`heurmetrics.Recorder`)."""

    def record_executions(
        self,
        rule_version: RuleVersion,
        executions: Iterable[Mapping[str, Any]],
        *,
        mode: str = ...,
        backtest_run_id: uuid.UUID | None = ...,
    ) -> list[uuid.UUID]: ...

    def record_backtest(
        self,
        rule_version: RuleVersion,
        equity: pd.Series,
        *,
        dataset: str,
        periods_per_year: float,
        risk_free_rate: float = ...,
        trades: pd.DataFrame | None = ...,
        dataset_hash: str | None = ...,
        started_at: datetime | None = ...,
        finished_at: datetime | None = ...,
        run_id: uuid.UUID | None = ...,
        config: dict[str, Any] | None = ...,
        kind: str = ...,
        folds: Sequence[BacktestFold] = ...,
        fold_equity: dict[int, pd.Series] | None = ...,
    ) -> BacktestRun: ...

    def record_failed_backtest(
        self,
        rule_version: RuleVersion,
        *,
        error_message: str,
        dataset: str,
        periods_per_year: float,
        kind: str = ...,
        started_at: datetime | None = ...,
        finished_at: datetime | None = ...,
        run_id: uuid.UUID | None = ...,
        config: dict[str, Any] | None = ...,
    ) -> BacktestRun: ...
