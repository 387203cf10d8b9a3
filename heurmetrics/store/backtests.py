"""Backtest runs with their folds, equity points and overfitting statistics; reads for reports.

A run is stored in one transaction (run, folds, the walk-forward DSR / PBO row, equity points);
on PostgreSQL equity points go through binary ``COPY``. A re-sent run (same ``run_id``) is a no-op.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, func, select
from sqlalchemy.engine import Connection

from heurmetrics.domain import BacktestFold, BacktestRun, EquityPoint, LatestBacktest
from heurmetrics.store.dialect import insert_ignoring
from heurmetrics.store.errors import translated
from heurmetrics.store.overfitting import insert_overfitting, latest_overfitting
from heurmetrics.store.schema import BacktestFoldRow, BacktestRunRow, EquityPointRow, RuleRow, RuleVersionRow

_EQUITY_COLUMNS = ("run_id", "fold_index", "ts", "equity", "drawdown")
_EQUITY_PG_TYPES = ("uuid", "int4", "timestamptz", "float8", "float8")
_HEADLINE = ("total_return", "cagr", "volatility", "sharpe", "max_drawdown")


def _table(row: type[Any]) -> Table:
    """The Core table of an ORM row class (typed for the insert constructs)."""
    table: Table = row.__table__
    return table


@dataclass(frozen=True, slots=True)
class StoredRun:
    """A stored run as a report reads it: the run's columns (with ``rule`` and ``version``), its
    folds' columns, and its (stitched) curve as ``(ts, equity, drawdown)`` in time order."""

    run: dict[str, Any]
    folds: list[dict[str, Any]]
    curve: list[tuple[datetime, float, float]]


class SqlBacktests:
    """Backtest writes and reads on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def insert_backtest(
        self,
        run: BacktestRun,
        equity: Iterable[EquityPoint] = (),
        folds: Iterable[BacktestFold] = (),
    ) -> bool:
        """Store a run with its equity points and folds in one transaction.

        Returns False (and writes nothing) when a run with this id is already stored: a re-sent
        run is a no-op, like a re-sent execution.
        """
        row = {
            "run_id": run.run_id,
            "rule_version_id": run.rule_version.id,
            "kind": run.kind,
            "dataset": run.dataset,
            "dataset_hash": run.dataset_hash,
            "period_start": run.period_start,
            "period_end": run.period_end,
            "periods_per_year": run.periods_per_year,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_seconds": run.duration_seconds,
            "metrics": run.metrics,
            "config": run.config,
            "observations": int(run.metrics.get("observations") or 0),
            "missing": int(run.metrics.get("missing") or 0),
            "error_message": run.error_message,
            **{name: run.headline(name) for name in _HEADLINE},
        }
        with translated(f"writing backtest run {run.run_id}"), self.engine.begin() as conn:
            table = _table(BacktestRunRow)
            result = conn.execute(
                insert_ignoring(conn, table, ["run_id"]).values(row).returning(table.c.run_id)
            )
            if result.first() is None:
                return False
            fold_rows = [
                {
                    "run_id": run.run_id,
                    "fold_index": f.fold_index,
                    "in_sample_start": f.in_sample_start,
                    "in_sample_end": f.in_sample_end,
                    "out_of_sample_start": f.out_of_sample_start,
                    "out_of_sample_end": f.out_of_sample_end,
                    "params": f.params,
                    "trials": f.trials,
                    "in_sample_metrics": f.in_sample_metrics,
                    "out_of_sample_metrics": f.out_of_sample_metrics,
                }
                for f in folds
            ]
            if fold_rows:
                conn.execute(_table(BacktestFoldRow).insert(), fold_rows)
            insert_overfitting(conn, run)  # walk-forward runs: DSR / PBO row (issue 12)
            self._insert_equity(conn, run.run_id, equity)
        return True

    def _insert_equity(self, conn: Connection, run_id: uuid.UUID, points: Iterable[EquityPoint]) -> None:
        if self.dialect == "postgresql":
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cols = ", ".join(_EQUITY_COLUMNS)
            with cursor.copy(f"COPY equity_points ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_EQUITY_PG_TYPES)
                for p in points:
                    copy.write_row((run_id, p.fold_index, p.ts, p.equity, p.drawdown))
            return
        rows = [
            {"run_id": run_id, "fold_index": p.fold_index, "ts": p.ts, "equity": p.equity, "drawdown": p.drawdown}
            for p in points
        ]
        if rows:
            conn.execute(_table(EquityPointRow).insert(), rows)

    def backtest_metrics(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        """The stored metrics of a run, or None when no run has this id."""
        with translated("reading backtests"), self.engine.connect() as conn:
            value = conn.execute(select(BacktestRunRow.metrics).where(BacktestRunRow.run_id == run_id)).scalar()
        return None if value is None else dict(value)

    def latest_backtests(self) -> list[LatestBacktest]:
        """The latest completed run of every rule version that has one."""
        latest = (
            select(BacktestRunRow.rule_version_id, func.max(BacktestRunRow.finished_at).label("finished_at"))
            .where(BacktestRunRow.status == "completed")
            .group_by(BacktestRunRow.rule_version_id)
            .subquery()
        )
        query = (
            select(
                RuleRow.name,
                RuleVersionRow.version,
                BacktestRunRow.finished_at,
                BacktestRunRow.total_return,
                BacktestRunRow.cagr,
                BacktestRunRow.sharpe,
                BacktestRunRow.max_drawdown,
            )
            .join(
                latest,
                (latest.c.rule_version_id == BacktestRunRow.rule_version_id)
                & (latest.c.finished_at == BacktestRunRow.finished_at),
            )
            .join(RuleVersionRow, RuleVersionRow.id == BacktestRunRow.rule_version_id)
            .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
            .where(BacktestRunRow.status == "completed")
            .order_by(RuleRow.name, RuleVersionRow.version)
        )
        with translated("reading backtests"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        seen: set[tuple[str, str]] = set()
        out = []
        for r in rows:  # two runs finishing in the same instant: keep one
            if (r.name, r.version) not in seen:
                seen.add((r.name, r.version))
                out.append(
                    LatestBacktest(r.name, r.version, r.finished_at, r.total_return, r.cagr, r.sharpe, r.max_drawdown)
                )
        return out

    def load_run(self, run_id: uuid.UUID) -> StoredRun | None:
        """A run, its folds and its stitched curve (``fold_index`` NULL); None when absent."""
        b, e = BacktestRunRow, EquityPointRow
        with translated(f"reading backtest run {run_id}"), self.engine.connect() as conn:
            row = conn.execute(
                select(b, RuleRow.name.label("rule"), RuleVersionRow.version.label("version"))
                .join(RuleVersionRow, RuleVersionRow.id == b.rule_version_id)
                .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
                .where(b.run_id == run_id)
            ).first()
            if row is None:
                return None
            folds = [
                dict(f._mapping)
                for f in conn.execute(
                    select(BacktestFoldRow).where(BacktestFoldRow.run_id == run_id).order_by(BacktestFoldRow.fold_index)
                )
            ]
            points = conn.execute(
                select(e.ts, e.equity, e.drawdown).where(e.run_id == run_id, e.fold_index.is_(None)).order_by(e.ts)
            ).all()
        return StoredRun(dict(row._mapping), folds, [(p.ts, p.equity, p.drawdown) for p in points])

    def latest_overfitting(self) -> list[dict[str, Any]]:
        """See :func:`heurmetrics.store.overfitting.latest_overfitting`."""
        with translated("reading overfitting statistics"):
            return latest_overfitting(self.engine)
