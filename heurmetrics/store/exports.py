"""What an audit export reads: every audit table, streamed in chunks, with each column's kind.

The columns and their kinds (how :mod:`heurmetrics.audit.export` writes each value in CSV,
Parquet or JSON lines) are declared here, next to the queries, because they name stored columns.
The executions table gets one computed column more (``flagged_live``), added by the exporter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from heurmetrics.store.errors import translated
from heurmetrics.store.schema import BacktestRunRow, ExecutionRow, RuleRow, RuleVersionEventRow, RuleVersionRow

#: Rows per streamed chunk.
CHUNK_ROWS = 20_000
# Column kinds: how each value is written in each format.
INT, FLOAT, STR, TIME, JSON, BOOL = "int", "float", "str", "time", "json", "bool"

#: (file/table name, [(column, kind)], a function streaming the rows in chunks).
ExportTable = tuple[str, list[tuple[str, str]], Callable[[], Iterator[list[tuple[Any, ...]]]]]


def _chunks(engine: Engine, query: Any) -> Iterator[list[tuple[Any, ...]]]:
    with translated("exporting the audit trail"), engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
        for part in result.partitions(CHUNK_ROWS):
            yield [tuple(r) for r in part]


def _tables(start: datetime | None, end: datetime | None) -> list[tuple[str, list[tuple[str, str]], Any]]:
    v, e, x, b = RuleVersionRow, RuleVersionEventRow, ExecutionRow, BacktestRunRow
    parent = aliased(RuleVersionRow)
    versions = (
        select(v.id, RuleRow.name, v.version, v.content_hash, v.params, v.source, v.created_at, v.created_by,
               v.description, v.parent_id, parent.version, v.code_ref, v.chain_position, v.prev_hash, v.row_hash)
        .join(RuleRow, RuleRow.id == v.rule_id).outerjoin(parent, parent.id == v.parent_id).order_by(v.id)
    )
    events = (
        select(e.id, RuleRow.name, v.version, e.rule_version_id, e.event, e.env, e.actor, e.reason, e.occurred_at,
               e.details, e.chain_position, e.prev_hash, e.row_hash)
        .join(v, v.id == e.rule_version_id).join(RuleRow, RuleRow.id == v.rule_id).order_by(e.chain_position)
    )
    runs = (
        select(b.run_id, RuleRow.name, v.version, b.rule_version_id, b.kind, b.dataset, b.dataset_hash,
               b.period_start, b.period_end, b.periods_per_year, b.status, b.started_at, b.finished_at,
               b.duration_seconds, b.total_return, b.cagr, b.volatility, b.sharpe, b.max_drawdown, b.observations,
               b.missing, b.metrics, b.config, b.error_message)
        .join(v, v.id == b.rule_version_id).join(RuleRow, RuleRow.id == v.rule_id).order_by(b.finished_at, b.run_id)
    )
    window = []
    if start is not None:
        window.append(x.started_at >= start)
    if end is not None:
        window.append(x.started_at < end)
    executions = (
        select(x.event_id, RuleRow.name, v.version, x.rule_version_id, x.started_at, x.duration_seconds, x.status,
               x.outcome, x.signal, x.confidence, x.mode, x.error_type, x.backtest_run_id)
        .join(v, v.id == x.rule_version_id).join(RuleRow, RuleRow.id == v.rule_id)
        .where(*window).order_by(x.started_at, x.event_id)
    )
    return [
        ("rules", [("id", INT), ("name", STR), ("description", STR), ("created_at", TIME)],
         select(RuleRow.id, RuleRow.name, RuleRow.description, RuleRow.created_at).order_by(RuleRow.id)),
        ("rule_versions", [
            ("id", INT), ("rule", STR), ("version", STR), ("content_hash", STR), ("params", JSON), ("source", STR),
            ("created_at", TIME), ("created_by", STR), ("description", STR), ("parent_id", INT),
            ("parent_version", STR), ("code_ref", STR), ("chain_position", INT), ("prev_hash", STR),
            ("row_hash", STR)], versions),
        ("rule_version_events", [
            ("id", INT), ("rule", STR), ("version", STR), ("rule_version_id", INT), ("event", STR), ("env", STR),
            ("actor", STR), ("reason", STR), ("occurred_at", TIME), ("details", JSON), ("chain_position", INT),
            ("prev_hash", STR), ("row_hash", STR)], events),
        ("backtest_runs", [
            ("run_id", STR), ("rule", STR), ("version", STR), ("rule_version_id", INT), ("kind", STR),
            ("dataset", STR), ("dataset_hash", STR), ("period_start", TIME), ("period_end", TIME),
            ("periods_per_year", FLOAT), ("status", STR), ("started_at", TIME), ("finished_at", TIME),
            ("duration_seconds", FLOAT), ("total_return", FLOAT), ("cagr", FLOAT), ("volatility", FLOAT),
            ("sharpe", FLOAT), ("max_drawdown", FLOAT), ("observations", INT), ("missing", INT), ("metrics", JSON),
            ("config", JSON), ("error_message", STR)], runs),
        ("heuristic_executions", [
            ("event_id", STR), ("rule", STR), ("version", STR), ("rule_version_id", INT), ("started_at", TIME),
            ("duration_seconds", FLOAT), ("status", STR), ("outcome", STR), ("signal", FLOAT), ("confidence", FLOAT),
            ("mode", STR), ("error_type", STR), ("backtest_run_id", STR), ("flagged_live", BOOL)], executions),
    ]


def export_tables(engine: Engine, start: datetime | None, end: datetime | None) -> list[ExportTable]:
    """The audit tables in export order; executions restricted to ``[start, end)`` by ``started_at``."""
    return [(name, columns, functools.partial(_chunks, engine, query)) for name, columns, query in _tables(start, end)]
