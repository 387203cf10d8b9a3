"""The demo's walk-forward and drift part: expectation from backtests, live hits, drift test.

Called by :func:`heurmetrics.demo.run.run_demo` once every demo rule version has been evaluated:

1. a walk-forward backtest of each version over the end of the backtest segment (rolling 30-day
   in-sample, 10-day out-of-sample windows, the version's own params, folds in a process pool);
   its out-of-sample signals, resolved against the bars, give the **expected hit ratio**;
2. the version's live (or paper) executions are resolved at 1 h against the bars that followed
   them (:class:`~heurmetrics.live.resolution.Resolution`, method ``prices``);
3. a performance snapshot (``rule_version_performance``) compares live hits with the expectation
   (Fisher's exact test of the two samples, Benjamini-Hochberg adjusted across versions) — the
   table printed at the end of the demo. Live and backtest signals of a version come from the
   same rule on the same synthetic market, so no version should be flagged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from heurmetrics.backtest.splits import WalkForwardSplitter
from heurmetrics.backtest.walkforward import FoldContext, WalkForwardResult, default_executor
from heurmetrics.demo.rules import DEMO_RULES, DataGap
from heurmetrics.live.resolution import METHOD_PRICES, Resolution, resolve_against_prices, signal_direction
from heurmetrics.live.snapshot import PerformanceSnapshot, take_snapshot
from heurmetrics.sdk.delivery import DEFAULT_FLUSH_TIMEOUT
from heurmetrics.sdk.recorder import Recorder

#: How much of the backtest segment (its end) the walk-forward covers, and its windows.
WALK_FORWARD_DAYS = 120
IN_SAMPLE = "30D"
OUT_OF_SAMPLE = "10D"
HORIZON = "1h"
TABLE_WINDOW = "1d"


@dataclass(frozen=True)
class DemoRuleRun:
    """``run(data, params, ctx)`` for a demo rule: evaluate bar by bar, hold the signal as the
    position over the next bar, pay ``fee_per_turn`` per unit of position change (picklable)."""

    evaluate: Callable[[dict[str, np.ndarray], dict[str, Any]], tuple[str, float, float]]
    lookback: int
    fee_per_turn: float

    def __call__(self, data: pd.DataFrame, params: dict[str, Any], ctx: FoldContext) -> pd.Series:
        bars = {c: data[c].to_numpy() for c in ("open", "high", "low", "close")}
        n = len(data)
        positions = np.zeros(n)
        position = 0.0
        for i in range(self.lookback, n):
            window = {k: v[i - self.lookback + 1 : i + 1] for k, v in bars.items()}
            try:
                with ctx.execution(bar_time=data.index[i]) as ex:
                    outcome, signal, confidence = self.evaluate(window, params)
                    ex.set_result(outcome, signal, confidence)
                position = signal
            except DataGap:
                pass
            positions[i] = position
        close = bars["close"]
        returns = np.concatenate(([np.nan], close[1:] / close[:-1] - 1.0))
        held = np.concatenate(([0.0], positions[:-1]))
        turnover = np.abs(np.diff(held, prepend=0.0))
        return pd.Series(held * returns - turnover * self.fee_per_turn, index=data.index)


def run_drift_demo(
    rec: Recorder,
    frame: pd.DataFrame,
    *,
    split: int,
    live_events: Mapping[str, Mapping[int, uuid.UUID]],
    dataset: str,
    dataset_hash: str | None,
    periods_per_year: float,
    fee_per_turn: float,
    console: Console | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Table:
    """Walk-forward every demo version, resolve its live executions, snapshot; returns the table.

    ``frame`` is the demo's OHLC frame, ``split`` the first live bar, ``live_events`` maps each
    ``rule@version`` to ``{bar index: event id}`` of the executions recorded for bars
    ``>= split`` (live or paper). ``progress``: a running rich ``Progress`` to add the fold bars
    to (the demo's own); else bars are drawn on ``console``.
    """
    console = console or Console()
    start = max(0, split - WALK_FORWARD_DAYS * 24)
    history = frame.iloc[start:split]
    owned = executor is None
    pool = executor or default_executor()
    results: dict[str, WalkForwardResult] = {}
    try:
        for rule in DEMO_RULES:
            rv = rec.register_rule_version(
                rule.name, rule.version, rule.params, rule.source, description=rule.description
            )
            results[rv.key] = rec.walk_forward(
                rv,
                history,
                run=DemoRuleRun(rule.evaluate, rule.lookback, fee_per_turn),
                splitter=WalkForwardSplitter(IN_SAMPLE, OUT_OF_SAMPLE),
                dataset=f"{dataset} (last {WALK_FORWARD_DAYS} days before live)",
                dataset_hash=dataset_hash,
                periods_per_year=periods_per_year,
                executor=pool,
                warmup=rule.lookback + 1,
                record_in_sample=False,
                progress=progress if progress is not None else console,
                config={"fee_per_turn": fee_per_turn},
            )
    finally:
        if owned:
            pool.shutdown(wait=True)
    rec.flush(DEFAULT_FLUSH_TIMEOUT)
    resolved = _resolve_live(rec, frame, live_events)
    snapshots = take_snapshot(rec.store, horizon=HORIZON)
    return _table(results, snapshots, resolved)


def _resolve_live(rec: Recorder, frame: pd.DataFrame, live_events: Mapping[str, Mapping[int, uuid.UUID]]) -> int:
    """Resolve each live execution at ``HORIZON`` against the bar it evaluated (not its wall-clock time)."""
    pstore = rec.store.live
    items: list[Resolution] = []
    now = datetime.now(UTC)
    for events in live_events.values():
        stored = pstore.executions_by_id(list(events.values()))
        bars = [(i, eid) for i, eid in events.items() if eid in stored]
        directions = np.array([signal_direction(stored[eid][1], stored[eid][2], stored[eid][0]) for _, eid in bars])
        times = pd.DatetimeIndex(frame.index[[i for i, _ in bars]])
        outcome = resolve_against_prices(times, directions, frame["close"], HORIZON)
        for k, (_, eid) in enumerate(bars):
            if outcome.resolvable[k]:
                items.append(
                    Resolution(
                        eid,
                        HORIZON,
                        float(outcome.realized_return[k]),
                        bool(outcome.correct[k]),
                        now,
                        METHOD_PRICES,
                        float(outcome.price_at_signal[k]),
                        float(outcome.price_at_horizon[k]),
                    )
                )
    return rec.resolve_many(items).accepted


def _table(results: Mapping[str, WalkForwardResult], snapshots: list[PerformanceSnapshot], resolved: int) -> Table:
    by_key = {f"{s.rule}@{s.version}": s for s in snapshots if s.time_window == TABLE_WINDOW}
    table = Table(
        title=f"Live versus walk-forward expectation (signals resolved at {HORIZON}; {resolved:,} live resolutions)"
    )
    for column in (
        "rule version",
        "WF folds",
        "WF OOS Sharpe",
        "WF efficiency",
        "expected hit (n)",
        "live hit [95% CI] (n)",
        "drift p",
        "BH-adj. p",
        "drifted",
        "DSR",
    ):
        table.add_column(column, justify="left" if column == "rule version" else "right")
    for key, result in results.items():
        s = by_key.get(key)
        expected = result.expectation.get(HORIZON)
        live = "n/a"
        if s is not None and s.hit_ratio is not None:
            live = f"{s.hit_ratio:.1%} [{s.hit_ratio_low:.0%}, {s.hit_ratio_high:.0%}] ({s.resolved})"
        p_value = s.drift_p_value if s is not None else None
        adjusted = s.drift_adjusted_p_value if s is not None else None
        dsr = result.overfitting.get("deflated_sharpe_ratio")
        drifted = s.drifted if s is not None else None
        table.add_row(
            key,
            str(len(result.folds)),
            _num(result.metrics.get("sharpe")),
            _num(result.efficiency),
            "n/a"
            if expected is None or expected.hit_ratio is None
            else f"{expected.hit_ratio:.1%} ({expected.signals})",
            live,
            "n/a" if p_value is None else f"{p_value:.3g}",
            "n/a" if adjusted is None else f"{adjusted:.3g}",
            "[bold red]yes[/]" if drifted else ("no" if drifted is False else "n/a (too few signals)"),
            _num(dsr),
        )
    return table


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "n/a"
