"""SQL of ``backtest_overfitting``: written with its walk-forward run, read per rule version.

A walk-forward run carries its overfitting statistics in ``config.walk_forward.overfitting``
(:mod:`heurmetrics.backtest.overfit` computes them); :func:`insert_overfitting` copies them
into their own row in the run's transaction, so SQL panels and the exporter read columns, not JSON.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select

from heurmetrics.domain import BacktestRun
from heurmetrics.store.schema import BacktestOverfittingRow, BacktestRunRow, RuleRow, RuleVersionRow

_FLOATS = (
    "trials_sharpe_variance",
    "sharpe",
    "deflated_sharpe_ratio",
    "benchmark_sharpe",
    "pbo",
    "probability_of_loss",
    "min_backtest_years",
    "backtest_years",
)
_INTS = ("pbo_blocks", "pbo_splits")
COLUMNS = ("n_trials", *_FLOATS, *_INTS)


def overfitting_row(run: BacktestRun) -> dict[str, Any] | None:
    """The ``backtest_overfitting`` row of a walk-forward run, or None when it has no statistics."""
    stats = (run.config.get("walk_forward") or {}).get("overfitting") if run.kind == "walk_forward" else None
    if not isinstance(stats, dict) or not isinstance(stats.get("n_trials"), int):
        return None
    row: dict[str, Any] = {"run_id": run.run_id, "n_trials": int(stats["n_trials"])}
    for name in _FLOATS:
        value = stats.get(name)
        finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        row[name] = float(value) if finite and value is not None else None
    for name in _INTS:
        value = stats.get(name)
        row[name] = int(value) if isinstance(value, int) and not isinstance(value, bool) else None
    return row


def insert_overfitting(conn: Connection, run: BacktestRun) -> None:
    """Insert the run's statistics row (inside the caller's transaction), if it has any."""
    row = overfitting_row(run)
    if row is not None:
        table: Table = BacktestOverfittingRow.__table__  # type: ignore[assignment]
        conn.execute(table.insert(), [row])


def latest_overfitting(engine: Engine) -> list[dict[str, Any]]:
    """Per rule version, the statistics of its latest completed walk-forward run that has them,
    with ``rule``, ``version``, ``rule_version_id``, ``run_id`` and ``finished_at``."""
    b, o, v = BacktestRunRow, BacktestOverfittingRow, RuleVersionRow
    latest = (
        select(b.rule_version_id, func.max(b.finished_at).label("finished_at"))
        .join(o, o.run_id == b.run_id)
        .where(b.kind == "walk_forward", b.status == "completed")
        .group_by(b.rule_version_id)
        .subquery()
    )
    query = (
        select(
            RuleRow.name.label("rule"),
            v.version.label("version"),
            b.rule_version_id,
            b.run_id,
            b.finished_at,
            *(getattr(o, c) for c in COLUMNS),
        )
        .join(latest, (latest.c.rule_version_id == b.rule_version_id) & (latest.c.finished_at == b.finished_at))
        .join(o, o.run_id == b.run_id)
        .join(v, v.id == b.rule_version_id)
        .join(RuleRow, RuleRow.id == v.rule_id)
        .where(b.kind == "walk_forward", b.status == "completed")
        .order_by(RuleRow.name, v.version, b.run_id)
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query).all()]
    unique: dict[int, dict[str, Any]] = {}
    for row in rows:  # two runs finished at the same instant: keep one, deterministically
        unique.setdefault(row["rule_version_id"], row)
    return list(unique.values())
