"""Tearsheet of one stored backtest run: equity with fold boundaries, drawdown, folds, metrics.

``write_report(store, run_id, "run.html")`` writes a self-contained HTML page (charts as inline
SVG, no external assets); ``"run.png"`` writes a single image. Works for walk-forward runs (the
stitched out-of-sample curve, fold boundaries and the per-fold table) and for single runs.
Everything is read from the store (``backtest_runs``, ``backtest_folds``, ``equity_points``).
Charts need matplotlib.
"""

from __future__ import annotations

import html
import io
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import select

from heurmetrics.store.schema import BacktestFoldRow, BacktestRunRow, EquityPointRow, RuleRow, RuleVersionRow
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
    b = BacktestRunRow
    with store.engine.connect() as conn:
        row = conn.execute(
            select(b, RuleRow.name.label("rule"), RuleVersionRow.version.label("version"))
            .join(RuleVersionRow, RuleVersionRow.id == b.rule_version_id)
            .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
            .where(b.run_id == rid)
        ).first()
        if row is None:
            raise RunNotFound(f"no backtest run {rid} in the store")
        folds = [
            dict(f._mapping)
            for f in conn.execute(
                select(BacktestFoldRow).where(BacktestFoldRow.run_id == rid).order_by(BacktestFoldRow.fold_index)
            )
        ]
        e = EquityPointRow
        points = conn.execute(
            select(e.ts, e.equity, e.drawdown).where(e.run_id == rid, e.fold_index.is_(None)).order_by(e.ts)
        ).all()
    curve = pd.DataFrame(
        {"equity": [p.equity for p in points], "drawdown": [p.drawdown for p in points]},
        index=pd.DatetimeIndex([p.ts for p in points], name="ts"),
    )
    m = row._mapping
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
    """The chart: equity (log scale when it spans > 10x) with fold boundaries, and drawdown.

    ``with_tables`` adds the headline metrics and the first 25 folds below (for PNG output).
    """
    from matplotlib.figure import Figure

    heights = [3.0, 1.4] + ([3.2] if with_tables else [])
    fig = Figure(figsize=(11, sum(heights) + 0.8), layout="constrained")
    axes = fig.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights})
    ax_eq, ax_dd = axes[0], axes[1]
    curve = report.curve
    title = f"{report.rule}@{report.version} · {report.kind} · {report.dataset}"
    ax_eq.set_title(title, loc="left", fontsize=11)
    if len(curve):
        ax_eq.plot(curve.index, curve["equity"], color="#1f4e79", linewidth=1.2, label="equity (stitched OOS)")
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

    for ax in (ax_eq, ax_dd):
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
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
    if with_tables:
        ax_t = axes[2]
        ax_t.axis("off")
        lines = [f"{label}: {_fmt(report.metrics.get(key), kind)}" for key, label, kind in HEADLINE[:8]]
        if report.efficiency is not None or report.folds:
            lines.append(f"Walk-forward efficiency: {_fmt(report.efficiency, 'num')}")
        ax_t.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace")
        if report.folds:
            rows = [_fold_cells(f) for f in report.folds[:25]]
            table = ax_t.table(
                cellText=rows,
                colLabels=FOLD_COLUMNS,
                colWidths=(0.05, 0.22, 0.2, 0.07, 0.11, 0.11, 0.11, 0.13),
                bbox=(0.32, 0.0, 0.68, 1.0),
                cellLoc="right",
                colLoc="right",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(7)
    return fig


FOLD_COLUMNS = ("fold", "out-of-sample", "params", "trials", "IS return", "OOS return", "OOS Sharpe", "WFE")


def _fold_cells(fold: dict[str, Any]) -> list[str]:
    is_m, oos_m = fold["in_sample_metrics"] or {}, fold["out_of_sample_metrics"] or {}
    return [
        str(fold["fold_index"]),
        f"{fold['out_of_sample_start']:%Y-%m-%d} → {fold['out_of_sample_end']:%Y-%m-%d}",
        json.dumps(fold["params"], sort_keys=True)[:48],
        str(fold["trials"]),
        _fmt(is_m.get("total_return"), "pct"),
        _fmt(oos_m.get("total_return"), "pct"),
        _fmt(oos_m.get("sharpe"), "num"),
        _fmt(oos_m.get("walk_forward_efficiency"), "num"),
    ]


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
            f"<tr><th>Walk-forward efficiency</th><td>{esc(_fmt(report.efficiency, 'num'))}</td></tr>"
            f"<tr><th>In-sample annualised return (pooled)</th>"
            f"<td>{esc(_fmt(wf.get('in_sample_annualized_return'), 'pct'))}</td></tr>"
            f"<tr><th>Out-of-sample annualised return (pooled)</th>"
            f"<td>{esc(_fmt(wf.get('out_of_sample_annualized_return'), 'pct'))}</td></tr>"
        )
    expectation = wf.get("expectation") or {}
    expectation_rows = "".join(
        f"<tr><td>{esc(h)}</td><td>{s.get('signals')}</td><td>{esc(_fmt(s.get('hit_ratio'), 'pct'))}</td>"
        f"<td>{esc(_fmt(s.get('mean_return'), 'pct4'))}</td></tr>"
        for h, s in expectation.items()
        if isinstance(s, dict)
    )
    fold_rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _fold_cells(f)) + "</tr>" for f in report.folds)
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
