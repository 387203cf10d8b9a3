"""Tearsheet of one stored backtest run: equity with fold boundaries, drawdown, folds, metrics.

``write_report(store, run_id, "run.html")`` writes a self-contained HTML page (charts as inline
SVG, no external assets); ``"run.png"`` writes a single image. Works for walk-forward runs (the
stitched out-of-sample curve, fold boundaries and the per-fold table) and for single runs.
Everything is read from the store (``backtest_runs``, ``backtest_folds``, ``equity_points``).
Charts need matplotlib.

Why one module of ~500 lines: one figure, whose panels share axes, fold boundaries and layout.
"""

from __future__ import annotations

import calendar
import html
import io
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from heurmetrics.report.analytics import (
    Drawdown,
    calendar_returns,
    period_returns,
    rolling_sharpe_volatility,
    rolling_window,
    worst_drawdowns,
)
from heurmetrics.store.sql_store import SqlStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Headline metrics of the tearsheet: (key, label, format).
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("total_return", "Total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("volatility", "Volatility (ann.)", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration", "Max drawdown duration (periods)", "int"),
    ("calmar", "Calmar", "num"),
    ("var_95", "VaR 95 % (historical)", "pct"),
    ("cvar_95", "CVaR 95 %", "pct"),
    ("probabilistic_sharpe", "Probabilistic Sharpe", "num"),
    ("exposure", "Exposure", "pct"),
    ("observations", "Observations", "int"),
    ("missing", "Missing points", "int"),
)


class RunNotFound(LookupError):
    """No backtest run with this id is stored."""


@dataclass(frozen=True)
class RunReport:
    """Everything a tearsheet shows, read from the store."""

    run_id: uuid.UUID
    rule: str
    version: str
    kind: str
    dataset: str
    status: str
    periods_per_year: float
    started_at: datetime
    finished_at: datetime
    metrics: dict[str, Any]
    config: dict[str, Any]
    error_message: str | None
    #: The run's curve (stitched for walk-forward): columns ``equity``, ``drawdown``, by time.
    curve: pd.DataFrame
    folds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def efficiency(self) -> float | None:
        value = (self.config.get("walk_forward") or {}).get("efficiency")
        return float(value) if isinstance(value, int | float) else None


def load_run(store: SqlStore, run_id: uuid.UUID | str) -> RunReport:
    """Read a run, its folds and its (stitched) curve; :class:`RunNotFound` when absent."""
    rid = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    stored = store.backtests.load_run(rid)
    if stored is None:
        raise RunNotFound(f"no backtest run {rid} in the store")
    folds = stored.folds
    points = stored.curve
    curve = pd.DataFrame(
        {"equity": [p[1] for p in points], "drawdown": [p[2] for p in points]},
        index=pd.DatetimeIndex([p[0] for p in points], name="ts"),
    )
    m = stored.run
    return RunReport(
        run_id=rid,
        rule=m["rule"],
        version=m["version"],
        kind=m["kind"],
        dataset=m["dataset"],
        status=m["status"],
        periods_per_year=m["periods_per_year"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        metrics=dict(m["metrics"] or {}),
        config=dict(m["config"] or {}),
        error_message=m["error_message"],
        curve=curve,
        folds=folds,
    )


def figure(report: RunReport, *, with_tables: bool = False) -> Figure:
    """The charts: equity (log scale when it spans > 10x) with fold boundaries, drawdown, rolling
    Sharpe ratio and volatility, monthly returns heatmap, yearly returns and, for walk-forward runs,
    in-sample vs out-of-sample Sharpe per fold.

    ``with_tables`` adds the headline metrics, the overfitting block, the worst drawdowns and the
    first 25 folds below (for PNG output).
    """
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

    returns = period_returns(report.curve["equity"]) if len(report.curve) else pd.Series(dtype=float)
    walk = bool(report.folds)
    heights = [3.0, 1.3, 1.7, 2.6] + ([1.9] if walk else []) + ([2.6] if with_tables else [])
    heights += [3.0] if with_tables and walk else []
    fig = Figure(figsize=(12, sum(heights) + 1.0), layout="constrained")
    grid = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=(3.2, 1.0))
    ax_eq = fig.add_subplot(grid[0, :])
    ax_dd = fig.add_subplot(grid[1, :], sharex=ax_eq)
    ax_roll = fig.add_subplot(grid[2, :], sharex=ax_eq)
    _equity_panels(report, ax_eq, ax_dd)
    _rolling_panel(returns, report.periods_per_year, ax_roll)
    monthly, yearly = calendar_returns(returns)
    _heatmap_panel(monthly, fig.add_subplot(grid[3, 0]))
    _yearly_panel(yearly, fig.add_subplot(grid[3, 1]))
    row = 4
    if walk:
        _folds_panel(report.folds, fig.add_subplot(grid[row, :]))
        row += 1
    if with_tables:
        boxes = grid[row, :].subgridspec(1, 3, width_ratios=(1.0, 1.0, 1.6))
        ax_text = fig.add_subplot(boxes[0, 0])
        ax_text.axis("off")
        lines = [f"{label}: {_fmt(report.metrics.get(key), kind)}" for key, label, kind in HEADLINE[:9]]
        if walk:
            lines.append(f"Walk-forward efficiency: {_fmt(report.efficiency, 'num')}")
        ax_text.set_title("Headline (stitched out-of-sample)" if walk else "Headline", loc="left", fontsize=9)
        ax_text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=8.5, family="monospace")
        ax_over = fig.add_subplot(boxes[0, 1])
        ax_over.axis("off")
        ax_over.set_title("Overfitting (DSR / PBO)", loc="left", fontsize=9)
        block = [f"{label}: {value}" for label, value in overfitting_rows(report)] or ["not a walk-forward run"]
        ax_over.text(0.0, 1.0, "\n".join(block), va="top", ha="left", fontsize=8.5, family="monospace")
        ax_worst = fig.add_subplot(boxes[0, 2])
        ax_worst.axis("off")
        ax_worst.set_title("Worst drawdowns", loc="left", fontsize=9)
        rows = [_drawdown_cells(dd) for dd in worst_drawdowns(report.curve["equity"])] if len(report.curve) else []
        if rows:
            table = ax_worst.table(
                cellText=rows,
                colLabels=DRAWDOWN_COLUMNS,
                bbox=Bbox.from_bounds(0, 0.25, 1, 0.75),
                cellLoc="right",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(7.5)
        if walk:
            ax_folds = fig.add_subplot(grid[row + 1, :])
            ax_folds.axis("off")
            shown = min(25, len(report.folds))
            ax_folds.set_title(f"Folds (first {shown} of {len(report.folds)})", loc="left", fontsize=9)
            cells = [_fold_cells(f) for f in report.folds[:25]]
            table = ax_folds.table(
                cellText=cells,
                colLabels=FOLD_COLUMNS,
                colWidths=(0.04, 0.2, 0.2, 0.06, 0.1, 0.1, 0.1, 0.1, 0.1),
                bbox=Bbox.from_bounds(0, 0, 1, 1),
                cellLoc="right",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(7)
    return fig


def _equity_panels(report: RunReport, ax_eq: Any, ax_dd: Any) -> None:
    curve = report.curve
    ax_eq.set_title(f"{report.rule}@{report.version} · {report.kind} · {report.dataset}", loc="left", fontsize=11)
    if len(curve):
        label = "equity (stitched OOS)" if report.folds else "equity"
        ax_eq.plot(curve.index, curve["equity"], color="#1f4e79", linewidth=1.2, label=label)
        ax_dd.fill_between(curve.index, curve["drawdown"], 0.0, color="#b22222", alpha=0.45, linewidth=0)
        low, high = curve["equity"].min(), curve["equity"].max()
        if low > 0 and high / low > 10:
            ax_eq.set_yscale("log")
    for i, fold in enumerate(report.folds):
        start, end = fold["out_of_sample_start"], fold["out_of_sample_end"]
        for ax in (ax_eq, ax_dd):
            ax.axvline(start, color="#888888", linewidth=0.6, linestyle="--")
        if i % 2 == 0:
            ax_eq.axvspan(start, end, color="#dddddd", alpha=0.35, linewidth=0)
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax_eq.xaxis.set_major_locator(locator)
    ax_eq.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax_eq.set_ylabel("equity")
    ax_eq.grid(alpha=0.3)
    ax_dd.set_ylabel("drawdown")
    ax_dd.yaxis.set_major_formatter(_percent_formatter())
    ax_dd.grid(alpha=0.3)
    if report.folds:
        ax_eq.text(
            0.995, 0.02, f"{len(report.folds)} folds (dashed: out-of-sample starts)", transform=ax_eq.transAxes,
            ha="right", va="bottom", fontsize=8, color="#555555",
        )  # fmt: skip


def _rolling_panel(returns: pd.Series, periods_per_year: float, ax: Any) -> None:
    window = rolling_window(len(returns), periods_per_year)
    ax.set_title(f"Rolling Sharpe ratio and volatility ({window} periods, annualised)", loc="left", fontsize=9)
    ax.set_ylabel("Sharpe", color="#1f4e79")
    ax.grid(alpha=0.3)
    if len(returns) < 4:
        return
    rolling = rolling_sharpe_volatility(returns, periods_per_year)
    ax.plot(rolling.index, rolling["sharpe"], color="#1f4e79", linewidth=1.0)
    ax.axhline(0.0, color="#555555", linewidth=0.6)
    twin = ax.twinx()
    twin.plot(rolling.index, rolling["volatility"], color="#d2691e", linewidth=1.0)
    twin.set_ylabel("volatility", color="#d2691e")
    twin.yaxis.set_major_formatter(_percent_formatter())


def _heatmap_panel(monthly: pd.DataFrame, ax: Any) -> None:
    ax.set_title("Monthly returns (compounded, UTC)", loc="left", fontsize=9)
    if monthly.empty:
        ax.axis("off")
        return
    values = monthly.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    bound = float(np.max(np.abs(finite))) if finite.size else 1.0
    ax.imshow(values, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(12), [calendar.month_abbr[m] for m in range(1, 13)], fontsize=8)
    ax.set_yticks(range(len(monthly.index)), [str(y) for y in monthly.index], fontsize=8)
    if values.size <= 12 * 12:
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.1%}", ha="center", va="center", fontsize=7)


def _yearly_panel(yearly: pd.Series, ax: Any) -> None:
    ax.set_title("Yearly returns", loc="left", fontsize=9)
    if yearly.empty:
        ax.axis("off")
        return
    colours = ["#2e8b57" if v >= 0 else "#b22222" for v in yearly.to_numpy()]
    labels = [str(y) for y in yearly.index]
    ax.barh(labels, yearly.to_numpy(), color=colours)
    ax.invert_yaxis()
    low, high = min(0.0, float(yearly.min())), max(0.0, float(yearly.max()))
    pad = 0.35 * (high - low or 1.0)  # room for the value labels
    ax.set_xlim(low - (pad if low < 0 else 0.0), high + (pad if high > 0 else 0.0))
    ax.axvline(0.0, color="#555555", linewidth=0.6)
    ax.xaxis.set_major_formatter(_percent_formatter())
    for i, value in enumerate(yearly.to_numpy()):
        ax.text(value, i, f" {value:.1%} ", va="center", ha="left" if value >= 0 else "right", fontsize=7)
    ax.grid(alpha=0.3, axis="x")


def _folds_panel(folds: list[dict[str, Any]], ax: Any) -> None:
    ax.set_title("In-sample vs out-of-sample Sharpe ratio per fold (annualised)", loc="left", fontsize=9)
    index = np.arange(len(folds))
    sharpe = {
        side: [_number((f[f"{side}_metrics"] or {}).get("sharpe")) for f in folds]
        for side in ("in_sample", "out_of_sample")
    }
    ax.bar(index - 0.2, sharpe["in_sample"], width=0.4, color="#8fa9c8", label="in-sample")
    ax.bar(index + 0.2, sharpe["out_of_sample"], width=0.4, color="#1f4e79", label="out-of-sample")
    ax.axhline(0.0, color="#555555", linewidth=0.6)
    ax.set_xticks(index, [str(f["fold_index"]) for f in folds], fontsize=7)
    ax.set_xlabel("fold", fontsize=8)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, axis="y")


def overfitting_rows(report: RunReport) -> list[tuple[str, str]]:
    """The DSR / PBO block (label, value) of a walk-forward run; empty for other runs."""
    stats = (report.config.get("walk_forward") or {}).get("overfitting")
    if not isinstance(stats, dict):
        return []
    years = stats.get("min_backtest_years")
    return [
        ("Trials per fold", _fmt(stats.get("n_trials"), "int")),
        ("Var. of trials' Sharpe", _fmt(stats.get("trials_sharpe_variance"), "num")),
        ("Sharpe (annualised)", _fmt(stats.get("sharpe"), "num")),
        ("Expected max Sharpe (SR0)", _fmt(stats.get("benchmark_sharpe"), "num")),
        ("Deflated Sharpe ratio", _fmt(stats.get("deflated_sharpe_ratio"), "num")),
        ("PBO (CSCV)", _fmt(stats.get("pbo"), "pct")),
        ("CSCV blocks / splits", f"{_fmt(stats.get('pbo_blocks'), 'int')} / {_fmt(stats.get('pbo_splits'), 'int')}"),
        ("P(OOS loss | IS best)", _fmt(stats.get("probability_of_loss"), "pct")),
        ("Min. backtest length", "n/a (Sharpe <= 0)" if years is None else f"{_fmt(years, 'num')} years"),
        ("Backtest length", f"{_fmt(stats.get('backtest_years'), 'num')} years"),
    ]


DRAWDOWN_COLUMNS = ("peak", "trough", "recovery", "depth", "periods")


def _drawdown_cells(dd: Drawdown) -> list[str]:
    return [
        f"{dd.peak:%Y-%m-%d %H:%M}",
        f"{dd.trough:%Y-%m-%d %H:%M}",
        "not recovered" if dd.recovery is None else f"{dd.recovery:%Y-%m-%d %H:%M}",
        f"{dd.depth:.2%}",
        f"{dd.periods:,}",
    ]


FOLD_COLUMNS = (
    "fold", "out-of-sample", "params", "trials", "IS return", "OOS return", "IS Sharpe", "OOS Sharpe", "WFE",
)  # fmt: skip


#: Characters of a fold's params shown in the fold tables (the stored run keeps them whole).
PARAMS_CHARS = 34


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fold_cells(fold: dict[str, Any]) -> list[str]:
    is_m, oos_m = fold["in_sample_metrics"] or {}, fold["out_of_sample_metrics"] or {}
    return [
        str(fold["fold_index"]),
        f"{fold['out_of_sample_start']:%Y-%m-%d} → {fold['out_of_sample_end']:%Y-%m-%d}",
        _cut(json.dumps(fold["params"], sort_keys=True), PARAMS_CHARS),
        str(fold["trials"]),
        _fmt(is_m.get("total_return"), "pct"),
        _fmt(oos_m.get("total_return"), "pct"),
        _fmt(is_m.get("sharpe"), "num"),
        _fmt(oos_m.get("sharpe"), "num"),
        _fmt(oos_m.get("walk_forward_efficiency"), "num"),
    ]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def render_html(report: RunReport) -> str:
    """A self-contained HTML tearsheet (inline SVG chart, no external assets)."""
    buffer = io.StringIO()
    figure(report).savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prologue: the SVG is inlined
    esc = html.escape
    headline = "".join(
        f"<tr><th>{esc(label)}</th><td>{esc(_fmt(report.metrics.get(key), kind))}</td></tr>"
        for key, label, kind in HEADLINE
    )
    wf = report.config.get("walk_forward") or {}
    if report.kind == "walk_forward":
        headline += (
            f"<tr><th>Walk-forward efficiency (Pardo, simple annualisation)</th>"
            f"<td>{esc(_fmt(report.efficiency, 'num'))}</td></tr>"
            f"<tr><th>In-sample annualised return (simple)</th>"
            f"<td>{esc(_fmt(wf.get('in_sample_annualized_return'), 'pct'))}</td></tr>"
            f"<tr><th>Out-of-sample annualised return (simple)</th>"
            f"<td>{esc(_fmt(wf.get('out_of_sample_annualized_return'), 'pct'))}</td></tr>"
            f"<tr><th>Walk-forward efficiency, compounded</th>"
            f"<td>{esc(_fmt(wf.get('efficiency_compounded'), 'num'))}</td></tr>"
        )
    expectation = wf.get("expectation") or {}
    expectation_rows = "".join(
        f"<tr><td>{esc(h)}</td><td>{s.get('signals')}</td><td>{esc(_fmt(s.get('hit_ratio'), 'pct'))}</td>"
        f"<td>{esc(_fmt(s.get('mean_return'), 'pct4'))}</td></tr>"
        for h, s in expectation.items()
        if isinstance(s, dict)
    )
    fold_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _fold_cells(f)) + "</tr>" for f in report.folds)
    overfitting = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in overfitting_rows(report))
    drawdowns = [_drawdown_cells(dd) for dd in worst_drawdowns(report.curve["equity"])] if len(report.curve) else []
    returns = period_returns(report.curve["equity"]) if len(report.curve) else pd.Series(dtype=float)
    monthly, yearly = calendar_returns(returns)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(report.rule)}@{esc(report.version)} backtest {report.run_id}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(report.rule)}@{esc(report.version)} — {esc(report.kind.replace('_', '-'))} backtest</h1>",
        "<p class='meta'>"
        f"run <code>{report.run_id}</code> · status {esc(report.status)} · dataset {esc(report.dataset)} · "
        f"{report.periods_per_year:g} periods per year · finished {report.finished_at:%Y-%m-%d %H:%M UTC}"
        "</p>",
    ]
    if report.error_message:
        parts.append(f"<p class='error'>{esc(report.error_message)}</p>")
    parts += [
        f"<div class='chart'>{svg}</div>",
        "<h2>Headline metrics</h2>",
        "<p class='note'>From the stitched out-of-sample curve for walk-forward runs; rank runs on these, "
        "not on in-sample figures.</p>",
        f"<table class='kv'>{headline}</table>",
    ]
    if overfitting:
        parts += [
            "<h2>Overfitting: Deflated Sharpe Ratio and PBO</h2>",
            "<p class='note'>DSR: probability that the true Sharpe ratio is above zero given the trials tried "
            "(Bailey &amp; López de Prado 2014). PBO: share of CSCV splits where the in-sample best candidate "
            "ranks at or below the out-of-sample median (Bailey, Borwein, López de Prado &amp; Zhu 2017). "
            "See docs/walk-forward.md.</p>",
            f"<table class='kv'>{overfitting}</table>",
        ]
    if drawdowns:
        parts += [
            "<h2>Worst drawdowns</h2>",
            "<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in DRAWDOWN_COLUMNS) + "</tr>",
            "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in drawdowns),
            "</table>",
        ]
    if not monthly.empty:
        header = "".join(f"<th>{calendar.month_abbr[m]}</th>" for m in range(1, 13))
        body = "".join(
            f"<tr><th>{year}</th>"
            + "".join(f"<td>{esc(_fmt(monthly.loc[year, m], 'pct'))}</td>" for m in range(1, 13))
            + f"<td><b>{esc(_fmt(yearly.loc[year], 'pct'))}</b></td></tr>"
            for year in monthly.index
        )
        parts += [
            "<h2>Monthly and yearly returns</h2>",
            f"<table><tr><th>year</th>{header}<th>year</th></tr>{body}</table>",
        ]
    if expectation_rows:
        parts += [
            "<h2>Out-of-sample signal expectation</h2>",
            "<table><tr><th>horizon</th><th>signals</th><th>hit ratio</th><th>mean return / signal</th></tr>",
            expectation_rows,
            "</table>",
        ]
    if fold_rows:
        parts += [
            f"<h2>Folds ({len(report.folds)})</h2>",
            "<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in FOLD_COLUMNS) + "</tr>",
            fold_rows,
            "</table>",
        ]
    parts += [
        "<h2>Configuration</h2>",
        f"<pre>{esc(json.dumps(report.config, indent=2, sort_keys=True, default=str))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(store: SqlStore, run_id: uuid.UUID | str, out: Path | str) -> Path:
    """Write the tearsheet of ``run_id`` to ``out`` (``.html`` / ``.htm`` or ``.png``)."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".htm", ".png"):
        raise ValueError(f"{path.name}: the tearsheet is written as .html or .png")
    report = load_run(store, run_id)
    if suffix == ".png":
        figure(report, with_tables=True).savefig(path, format="png", dpi=110)
    else:
        path.write_text(render_html(report), encoding="utf-8")
    return path


def _fmt(value: object, kind: str) -> str:
    if isinstance(value, str) and value in ("Infinity", "-Infinity"):
        return "∞" if value == "Infinity" else "-∞"
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return "n/a"
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "pct4":
        return f"{value:.4%}"
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:.2f}"


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=0)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.meta, .note { color: #555; font-size: 0.9em; } .error { color: #b22222; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 3px 9px; border-bottom: 1px solid #ddd; }
td { text-align: right; font-variant-numeric: tabular-nums; } th { text-align: left; }
table.kv td { text-align: right; } .chart svg { width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 1em; font-size: 0.8em; overflow-x: auto; }
"""
