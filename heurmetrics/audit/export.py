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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from heurmetrics.audit import chain
from heurmetrics.audit.errors import AuditError
from heurmetrics.audit.model import Interval, fold, jsonable
from heurmetrics.audit.queries import LIVE_ENV
from heurmetrics.canonical import canonical_json
from heurmetrics.store.exports import BOOL, FLOAT, INT, JSON, STR, TIME

if TYPE_CHECKING:
    from heurmetrics.store.sql_store import SqlStore

Format = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "jsonl")
__all__ = ["BOOL", "FLOAT", "INT", "JSON", "STR", "TIME"]  # column kinds (heurmetrics.store.exports)


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


def export(
    store: SqlStore,
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
    report = chain.verify(store)
    with store.audit.reader() as r:
        states = fold(r.events())
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
    for table, columns, chunks in store.audit.export_tables(start, end):
        path = out / f"{table}.{fmt}"
        writer = _Writer(path, fmt, columns)
        transform: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = (
            flag if table == "heuristic_executions" else None
        )
        try:
            for rows in chunks():
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
