"""``heurmetrics demo``: a realistic workload on the embedded store, then a summary.

Three rules in two versions each are evaluated bar by bar over seeded synthetic hourly data:
the first 80 % of the bars as a backtest (executions in mode ``backtest`` linked to the run), the
rest as if live (the newer version ``live``, the older one ``paper``). A few bars carry injected
data gaps, so error ratios are not all zero. Every evaluation is one recorded execution.
"""

from __future__ import annotations

import shlex
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from heurmetrics.demo.data import dataset_hash, synthetic_ohlc
from heurmetrics.demo.rules import DEMO_RULES, DataGap, DemoRule
from heurmetrics.domain import BacktestRun, RuleVersion
from heurmetrics.errors import HeurmetricsError
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk.delivery import DEFAULT_FLUSH_TIMEOUT
from heurmetrics.sdk.recorder import Recorder
from heurmetrics.store.urls import redact_url

DEMO_DATABASE = "heurmetrics-demo.db"
PERIODS_PER_YEAR = 365 * 24  # hourly crypto bars trade around the clock
FEE_PER_TURN = 0.0005  # 5 bps per unit of position change
BACKTEST_SHARE = 0.8


class DemoAlreadyRun(HeurmetricsError):
    """The database already holds the demo's rule versions and lifecycle; nothing was written."""


def run_demo(database_url: str, *, days: int = 540, seed: int = 7, console: Console | None = None) -> dict[str, object]:
    """Run the demo workload into ``database_url`` and print the summary; returns its figures.

    1. every version is registered and evaluated over the first 80 % of the bars as a backtest;
    2. a lifecycle is recorded (approvals by another person, activations, a rollback, a retirement);
    3. the remaining bars run as if live, in the environment where each version is active; a
       version that was rolled back keeps running live for a day (a forgotten runner: the audit
       trail flags those executions);
    4. a walk-forward backtest per version, the live signals resolved, a performance snapshot
       with the drift of each version.
    """
    from heurmetrics.audit.lifecycle import seed_demo_lifecycle
    from heurmetrics.audit.queries import version_statuses
    from heurmetrics.demo.drift import run_drift_demo

    console = console or Console()
    started = time.perf_counter()
    frame = synthetic_ohlc(days, seed=seed)
    bars = {c: frame[c].to_numpy() for c in ("open", "high", "low", "close")}
    n = len(frame)
    split = int(n * BACKTEST_SHARE)
    gaps = set(np.random.default_rng(seed + 1).choice(n, size=max(1, n // 400), replace=False).tolist())
    dataset = f"BTCUSD-1h synthetic (seed {seed}, {days} days)"
    digest = dataset_hash(frame)
    console.print(
        f"[bold]heurmetrics demo[/]: {n:,} hourly bars, {len(DEMO_RULES)} rule versions → {redact_url(database_url)}"
    )
    runs: dict[str, BacktestRun] = {}
    live_events: dict[str, dict[int, uuid.UUID]] = {}
    with (
        Recorder(database_url, created_by="demo") as rec,
        Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
    ):
        # The demo records a lifecycle (approvals, a retirement) that cannot happen twice: refuse a
        # database that holds it already, before writing anything.
        already = [f"{r.name}@{r.version}" for r in DEMO_RULES if rec.store.find_rule_version(r.name, r.version)]
        if already:
            raise DemoAlreadyRun(
                f"{redact_url(database_url)} already holds the demo's rule versions ({', '.join(already[:3])}, …): "
                "run the demo on a fresh database (without --database-url it recreates ./heurmetrics-demo.db)"
            )
        versions: list[tuple[DemoRule, RuleVersion]] = []
        for rule in DEMO_RULES:
            parent = next((v.version for r, v in versions if r.name == rule.name), None)
            rv = rec.propose(
                rule.name, rule.version, rule.params, rule.source, description=rule.description, parent=parent
            )
            versions.append((rule, rv))
            run_id = uuid.uuid4()
            run_started = datetime.now(UTC)
            task = progress.add_task(f"backtest {rv.key}", total=split - rule.lookback)
            positions = _evaluate(rec, rv, rule, bars, range(rule.lookback, split), gaps, progress, task, run_id=run_id)
            equity = _equity(frame["close"], positions, rule.lookback, split)
            runs[rv.key] = rec.record_backtest(
                rv,
                equity,
                dataset=dataset,
                dataset_hash=digest,
                periods_per_year=PERIODS_PER_YEAR,
                run_id=run_id,
                started_at=run_started,
                finished_at=datetime.now(UTC),
                config={"fee_per_turn": FEE_PER_TURN, "bars": f"{rule.lookback}..{split}", "seed": seed},
            )
        seed_demo_lifecycle(rec.store)
        statuses = version_statuses(rec.store)
        for rule, rv in versions:
            status, envs = statuses[rv.id]
            if status == "retired":
                continue
            mode, end = ("live", n) if "live" in envs else ("paper", n) if "paper" in envs else ("live", split + 24)
            task = progress.add_task(f"{mode:<5} {rv.key}", total=end - split)
            events: dict[int, uuid.UUID] = {}
            _evaluate(rec, rv, rule, bars, range(split, end), gaps, progress, task, mode=mode, events=events)
            live_events[rv.key] = events
        drift = run_drift_demo(
            rec,
            frame,
            split=split,
            live_events=live_events,
            dataset=dataset,
            dataset_hash=digest,
            periods_per_year=PERIODS_PER_YEAR,
            fee_per_turn=FEE_PER_TURN,
            console=console,
            progress=progress,
        )
        flushed = rec.flush(DEFAULT_FLUSH_TIMEOUT)
        summary = _summary(rec, runs)
        counts = rec.store.table_counts()
        counted = _counted_executions(rec)
    elapsed = time.perf_counter() - started
    console.print(summary)
    console.print(drift)
    console.print(
        f"Stored {counts['heuristic_executions']:,} executions, {counts['backtest_runs']} backtest runs and "
        f"{counts['equity_points']:,} equity points in {elapsed:.1f} s "
        f"({'all durable' if flushed.complete else f'{flushed.pending} NOT durable'}; "
        f"Prometheus counted {counted:,})."
    )
    url = shlex.quote(redact_url(database_url))
    console.print(f"Data: {url}")
    console.print(
        "Next: serve and scrape it, or audit it →\n"
        f"  heurmetrics serve --port 9464 --database-url {url}\n"
        "  curl -s localhost:9464/metrics | grep backtest_result_sharpe_ratio   # stored results: there at once\n"
        "  (execution counters count what this exporter ingests from its start: send runs to it)\n"
        f"  heurmetrics audit rules --database-url {url}",
        highlight=False,
    )
    return {"counts": counts, "counted": counted, "elapsed_seconds": elapsed, "pending": flushed.pending}


def _evaluate(
    rec: Recorder,
    rv: RuleVersion,
    rule: DemoRule,
    bars: dict[str, np.ndarray],
    indices: range,
    gaps: set[int],
    progress: Progress,
    task: TaskID,
    *,
    mode: str = "backtest",
    run_id: uuid.UUID | None = None,
    events: dict[int, uuid.UUID] | None = None,
) -> np.ndarray:
    """Evaluate the rule on every bar of ``indices``, recording each evaluation.

    Returns the position held after each bar (the previous one is kept after a failed bar, like
    a real runner would); ``events`` receives the event id of every bar's execution.
    """
    positions = np.zeros(len(bars["close"]))
    position = 0.0
    lookback = rule.lookback
    for count, i in enumerate(indices):
        window = {k: v[i - lookback + 1 : i + 1] for k, v in bars.items()}
        context = rec.execution(rv, mode=mode, backtest_run_id=run_id)
        try:
            with context as ex:
                if i in gaps:
                    raise DataGap(f"bar {i}: feed gap")
                outcome, signal, confidence = rule.evaluate(window, rule.params)
                ex.set_result(outcome, signal, confidence)
            position = signal
        except DataGap:
            pass  # recorded as an error by the context
        if events is not None and context.event_id is not None:
            events[i] = context.event_id
        positions[i] = position
        if count % 500 == 0:
            progress.update(task, completed=count)
    progress.update(task, completed=len(indices))
    return positions


def _counted_executions(rec: Recorder) -> int:
    """``heuristic_executions_total`` summed over the recorder's registry (must equal the rows)."""
    total = 0.0
    for family in rec.registry.collect():
        if family.name == d.HEURISTIC_EXECUTIONS.name:
            total += sum(s.value for s in family.samples if s.name == d.HEURISTIC_EXECUTIONS.sample_name)
    return int(total)


def _equity(close: pd.Series, positions: np.ndarray, start: int, end: int) -> pd.Series:
    """Equity of holding ``positions[i]`` over bar i+1, net of fees, over bars [start, end)."""
    returns = close.pct_change().to_numpy()
    held = np.concatenate(([0.0], positions[:-1]))  # decided at the close of bar i, earns bar i+1
    turnover = np.abs(np.diff(held, prepend=0.0))
    strategy = held * np.nan_to_num(returns) - turnover * FEE_PER_TURN
    segment = pd.Series(strategy[start:end], index=close.index[start:end])
    return (1.0 + segment).cumprod()


def _summary(rec: Recorder, runs: dict[str, BacktestRun]) -> Table:
    frame = pd.DataFrame(rec.store.executions.outcomes(), columns=["rule", "version", "status", "duration"])
    table = Table(title="Rule versions (executions from the store, backtest of the first 80 % of bars)")
    for column in (
        "rule version",
        "executions",
        "error ratio",
        "p95 latency",
        "Sharpe",
        "max drawdown",
        "total return",
    ):
        table.add_column(column, justify="left" if column == "rule version" else "right")
    for (rule, version), group in frame.groupby(["rule", "version"], sort=True):
        run = runs[f"{rule}@{version}"]
        m = run.metrics
        table.add_row(
            f"{rule}@{version}",
            f"{len(group):,}",
            f"{(group['status'] != 'ok').mean():.2%}",
            f"{group['duration'].quantile(0.95) * 1e3:.3f} ms",
            _fmt(m.get("sharpe"), "{:.2f}"),
            _fmt(m.get("max_drawdown"), "{:.1%}"),
            _fmt(m.get("total_return"), "{:.1%}"),
        )
    return table


def _fmt(value: object, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, int | float) else "n/a"
