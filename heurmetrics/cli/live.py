"""``heurmetrics live …``: resolve signals, take and show live performance (rule.version.performance) snapshots."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from heurmetrics.cli.options import DatabaseUrl, console, open_store
from heurmetrics.cli.options import fail as _fail
from heurmetrics.errors import HeurmetricsError
from heurmetrics.metrics import definitions as d

live_app = typer.Typer(
    help="rule.version.performance: resolve signals, snapshot live performance and drift.", no_args_is_help=True
)
Horizon = Annotated[str, typer.Option(help=f"Resolution horizon: {', '.join(d.RESOLUTION_HORIZONS)}.")]


@live_app.command("snapshot")
def snapshot(
    horizon: Horizon = d.DEFAULT_PERFORMANCE_HORIZON,
    alpha: Annotated[float, typer.Option(help="Drift significance level (BH-adjusted Fisher test).")] = d.DRIFT_ALPHA,
    window: Annotated[
        list[str] | None, typer.Option(help=f"Window(s) to compute (default all: {', '.join(d.PERFORMANCE_WINDOWS)}).")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Compute every active rule version's performance per window and append it (rule_version_performance)."""
    from heurmetrics.live.snapshot import take_snapshot

    store = open_store(database_url)
    url = store.url  # password masked
    try:
        snapshots = take_snapshot(store, horizon=horizon, alpha=alpha, windows=tuple(window or d.PERFORMANCE_WINDOWS))
    except (HeurmetricsError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    console.print(snapshot_table([asdict(s) for s in snapshots], f"Performance snapshot (horizon {horizon})"))
    console.print(f"Appended {len(snapshots)} rows to rule_version_performance in {url}.")


@live_app.command("show")
def show(horizon: Horizon = d.DEFAULT_PERFORMANCE_HORIZON, database_url: DatabaseUrl = None) -> None:
    """Print the latest snapshot of every rule version and window."""
    store = open_store(database_url)
    try:
        rows = store.live.latest_snapshots(horizon, windows=d.PERFORMANCE_WINDOWS)
    except HeurmetricsError as exc:  # the database went away after opening
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if not rows:
        console.print("No performance snapshots yet: run `heurmetrics live snapshot`.")
        return
    console.print(snapshot_table(rows, f"Latest performance snapshots (horizon {horizon})"))


@live_app.command("resolve")
def resolve(
    prices: Annotated[Path, typer.Option(help="CSV of prices: first column time (UTC), a close column.")],
    column: Annotated[str, typer.Option(help="Price column.")] = "close",
    horizon: Annotated[
        list[str] | None, typer.Option(help=f"Horizon(s) (default 1h): {', '.join(d.RESOLUTION_HORIZONS)}.")
    ] = None,
    mode: Annotated[list[str] | None, typer.Option(help="Execution modes to resolve (default live, paper).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Resolve stored, unresolved directional signals against a price series (append-only)."""
    from prometheus_client import CollectorRegistry

    from heurmetrics.ingest import Ingest
    from heurmetrics.live.resolution import resolve_pending
    from heurmetrics.metrics.pipeline import PipelineMetrics

    store = open_store(database_url)  # before any work: a bad database is the first thing to say
    ingest = Ingest(store, PipelineMetrics(CollectorRegistry()))  # every write goes through ingest
    try:
        try:
            frame = pd.read_csv(prices, index_col=0)
            frame.index = pd.to_datetime(frame.index, utc=True)
            close = frame[column].sort_index()
        except (OSError, KeyError, ValueError) as exc:
            raise _fail(f"reading {prices}: {type(exc).__name__}: {exc}") from None
        result = resolve_pending(
            store,
            close,
            horizons=tuple(horizon or ("1h",)),
            modes=tuple(mode or ("live", "paper")),
            write=ingest.resolve,
        )
    except (HeurmetricsError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    console.print(f"Resolved {result.accepted} signals ({result.duplicates} already resolved).")


def snapshot_table(rows: list[dict[str, object]], title: str) -> Table:
    """A rich table of snapshot rows (dicts with the ``rule_version_performance`` columns)."""
    table = Table(title=title)
    for column in (
        "rule version",
        "window",
        "executions",
        "error ratio",
        "p95 latency",
        "signal ratio",
        "hit ratio [95% CI]",
        "n",
        "expected",
        "drift p",
        "BH-adj. p",
        "drifted",
    ):
        table.add_column(column, justify="left" if column in ("rule version", "window") else "right")
    for row in rows:
        low, high = row.get("hit_ratio_low"), row.get("hit_ratio_high")
        hit = _pct(row.get("hit_ratio"))
        if isinstance(low, float) and isinstance(high, float):
            hit += f" [{low:.0%}, {high:.0%}]"
        drifted = row.get("drifted")
        table.add_row(
            f"{row['rule']}@{row['version']}",
            str(row["time_window"]),
            f"{row['executions']:,}",
            _pct(row.get("error_ratio")),
            _ms(row.get("latency_p95_seconds")),
            _pct(row.get("signal_ratio")),
            hit,
            str(row.get("resolved")),
            _pct(row.get("expected_hit_ratio")),
            f"{row['drift_p_value']:.3g}" if isinstance(row.get("drift_p_value"), float) else "n/a",
            f"{row['drift_adjusted_p_value']:.3g}" if isinstance(row.get("drift_adjusted_p_value"), float) else "n/a",
            "[bold red]yes[/]" if drifted else ("no" if drifted is False else "n/a"),
        )
    return table


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) and not isinstance(value, bool) else "n/a"


def _ms(value: object) -> str:
    return f"{value * 1e3:.3f} ms" if isinstance(value, int | float) else "n/a"
