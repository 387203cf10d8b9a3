"""Export the audit trail for an auditor's own tools: CSV, Parquet or JSON Lines.

One file per table — ``rules``, ``rule_versions``, ``rule_version_events``, ``backtest_runs``,
``heuristic_executions`` — plus ``manifest.json`` with the row count and sha256 of every file, the
chain head and the result of :func:`heurmetrics.audit.chain.verify` at export time (anchor the
manifest's hash outside and the export itself becomes tamper-evident).

Conventions in every format: times are UTC (text ``2026-01-01T00:00:00.000000Z`` in CSV and
JSONL, ``timestamp[us, UTC]`` in Parquet); UUIDs are canonical hyphenated text; JSON columns
(``params``, ``details``, ``metrics``, ``config``) are canonical JSON text in CSV and Parquet and
nested objects in JSONL. ``heuristic_executions.flagged_live`` is the read-time flag of
:mod:`heurmetrics.audit.queries` (a live execution of a version not active in ``live`` then).
Rows are streamed in chunks, so exporting millions of executions needs little memory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from heurmetrics.audit import chain
from heurmetrics.audit.errors import AuditError
from heurmetrics.audit.lifecycle import load_events
from heurmetrics.audit.model import Interval, fold, jsonable
from heurmetrics.audit.queries import LIVE_ENV
from heurmetrics.canonical import canonical_json
from heurmetrics.store.schema import BacktestRunRow, ExecutionRow, RuleRow, RuleVersionEventRow, RuleVersionRow

Format = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "jsonl")
CHUNK_ROWS = 20_000

# Column kinds: how each value is written in each format.
INT, FLOAT, STR, TIME, JSON, BOOL = "int", "float", "str", "time", "json", "bool"


@dataclass(frozen=True, slots=True)
class ExportedFile:
    table: str
    path: Path
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ExportResult:
    directory: Path
    format: str
    files: list[ExportedFile]
    manifest: Path
    chain_ok: bool


def _require_pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet
    except ImportError:
        raise AuditError(
            "--format parquet needs the pyarrow package, which is not installed: `pip install pyarrow` "
            "(or use --format csv / jsonl)"
        ) from None
    return pa


def _arrow_type(pa: Any, kind: str) -> Any:
    return {INT: pa.int64(), FLOAT: pa.float64(), STR: pa.string(), TIME: pa.timestamp("us", tz="UTC"),
            JSON: pa.string(), BOOL: pa.bool_()}[kind]


def _text(value: Any, kind: str) -> Any:
    """A value for CSV/Parquet: JSON as canonical text, UUIDs as text, times kept (formatted later)."""
    if value is None:
        return None
    if kind == JSON:
        return canonical_json(jsonable(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class _Writer:
    def __init__(self, path: Path, fmt: Format, columns: list[tuple[str, str]]) -> None:
        self.path, self.fmt, self.columns, self.rows = path, fmt, columns, 0
        self._file: Any = None
        self._parquet: Any = None
        if fmt == "parquet":
            self._pa = _require_pyarrow()
            import pyarrow.parquet as pq

            schema = self._pa.schema([(name, _arrow_type(self._pa, kind)) for name, kind in columns])
            self._schema = schema
            self._parquet = pq.ParquetWriter(str(path), schema)
        else:
            self._file = path.open("w", encoding="utf-8", newline="")
            if fmt == "csv":
                self._csv = csv.writer(self._file)
                self._csv.writerow([name for name, _ in columns])

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        self.rows += len(rows)
        if self.fmt == "parquet":
            arrays = []
            for i, (_name, kind) in enumerate(self.columns):
                values = [_text(r[i], kind) for r in rows]
                arrays.append(self._pa.array(values, type=_arrow_type(self._pa, kind)))
            self._parquet.write_table(self._pa.Table.from_arrays(arrays, schema=self._schema))
        elif self.fmt == "csv":
            for r in rows:
                self._csv.writerow([
                    "" if v is None else chain.format_time(v) if kind == TIME else _text(v, kind)
                    for v, (_name, kind) in zip(r, self.columns, strict=True)
                ])
        else:
            for r in rows:
                record = {
                    name: chain.format_time(v) if kind == TIME and v is not None else jsonable(v)
                    for v, (name, kind) in zip(r, self.columns, strict=True)
                }
                self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None:
            self._file.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _chunks(engine: Engine, query: Any) -> Iterator[list[tuple[Any, ...]]]:
    with engine.connect() as conn:
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


def export(
    engine: Engine,
    out: Path,
    fmt: Format = "csv",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    source_url: str | None = None,
) -> ExportResult:
    """Write every audit table to ``out`` (created if missing) in ``fmt``; returns what was written.

    ``start``/``end`` restrict the executions to ``[start, end)`` by ``started_at``; versions,
    events and backtests are always complete (they are small and give the executions meaning).
    Existing files of the same names are overwritten. Parquet needs ``pyarrow``
    (:class:`AuditError` says so when it is missing).
    """
    if fmt not in FORMATS:
        raise AuditError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        _require_pyarrow()
    out.mkdir(parents=True, exist_ok=True)
    report = chain.verify(engine)
    with engine.connect() as conn:
        states = fold(load_events(conn))
    live: dict[int, list[Interval]] = {}
    for state in states.values():
        for (vid, env), intervals in state.intervals.items():
            if env == LIVE_ENV:
                live[vid] = intervals

    def flag(row: tuple[Any, ...]) -> tuple[Any, ...]:
        started, mode, vid = row[4], row[10], row[3]
        flagged = mode == "live" and not any(i.covers(started) for i in live.get(vid, []))
        return (*row, flagged)

    files = []
    for table, columns, query in _tables(start, end):
        path = out / f"{table}.{fmt}"
        writer = _Writer(path, fmt, columns)
        transform: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = (
            flag if table == "heuristic_executions" else None
        )
        try:
            for rows in _chunks(engine, query):
                writer.write([transform(r) for r in rows] if transform else rows)
        finally:
            writer.close()
        files.append(ExportedFile(table, path, writer.rows, _sha256(path)))
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps({
        "exported_at": chain.format_time(datetime.now(UTC)),
        "format": fmt,
        "source": source_url,
        "executions_window": {"from": None if start is None else chain.format_time(start),
                              "to": None if end is None else chain.format_time(end)},
        "chain": {
            "ok": report.ok, "records": report.records, "head_position": report.head.position,
            "head_hash": report.head.row_hash,
            "first_problem": None if report.first is None else report.first.message,
        },
        "files": [{"table": f.table, "file": f.path.name, "rows": f.rows, "sha256": f.sha256} for f in files],
    }, indent=2) + "\n", encoding="utf-8")
    return ExportResult(out, fmt, files, manifest, report.ok)
