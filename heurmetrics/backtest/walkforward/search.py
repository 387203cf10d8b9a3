"""Packaged rules and the picklable in-sample optimiser (``GridSearch``, ``WalkForwardRule``)."""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from heurmetrics.backtest import compute_metrics_from_returns

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
    FitFn,
    FitResult,
    FoldContext,
    Output,
    RunFn,
)
from heurmetrics.backtest.walkforward.folds import _call_run, window_returns

if TYPE_CHECKING:
    pass


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


def _name(fn: object) -> str:
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{name}"[:256]
