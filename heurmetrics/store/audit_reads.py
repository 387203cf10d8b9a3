"""Audit reads: versions with lineage, lifecycle events, backtest evidence and execution counts.

:meth:`SqlAuditReads.reader` opens one connection and returns an :class:`AuditReader` over it, so
a read model assembled from several reads (:mod:`heurmetrics.audit.queries`) sees one snapshot.
Counts come from the rollups (:mod:`heurmetrics.store.rollups`): exact after retention.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from heurmetrics.domain import BacktestEvidence, LifecycleEvent, VersionRecord
from heurmetrics.store import exports, rollups
from heurmetrics.store.errors import translated
from heurmetrics.store.schema import BacktestRunRow, ExecutionRow, RuleRow, RuleVersionRow
from heurmetrics.store.versions import load_events


@dataclass(frozen=True, slots=True)
class StoredExecution:
    """One stored execution, as the audit lists it."""

    event_id: uuid.UUID
    started_at: datetime
    mode: str
    status: str
    outcome: str | None
    signal: float | None
    confidence: float | None
    duration_seconds: float


def _window(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


class AuditReader:
    """Reads on one connection (one snapshot)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def versions(self, rule: str | None = None) -> list[VersionRecord]:
        """Every version (of ``rule``), in registration order."""
        parent = aliased(RuleVersionRow)
        parent_rule = aliased(RuleRow)
        v = RuleVersionRow
        query = (
            select(v.__table__, RuleRow.name, parent.version.label("parent_version"),
                   parent_rule.name.label("parent_rule"))
            .join(RuleRow, RuleRow.id == v.rule_id)
            .outerjoin(parent, parent.id == v.parent_id)
            .outerjoin(parent_rule, parent_rule.id == parent.rule_id)
            .order_by(v.id)
        )
        if rule is not None:
            query = query.where(RuleRow.name == rule)
        out = []
        for r in self._conn.execute(query).all():
            parent_ref = None
            if r.parent_version is not None:
                parent_ref = r.parent_version if r.parent_rule == r.name else f"{r.parent_rule}@{r.parent_version}"
            out.append(VersionRecord(
                id=r.id, rule=r.name, version=r.version, content_hash=r.content_hash, params=r.params,
                source=r.source, created_at=r.created_at, created_by=r.created_by, description=r.description,
                parent_id=r.parent_id, parent=parent_ref, code_ref=r.code_ref, position=r.chain_position,
                prev_hash=r.prev_hash, row_hash=r.row_hash,
            ))
        return out

    def events(self, *, rule: str | None = None, rule_version_id: int | None = None) -> list[LifecycleEvent]:
        """Lifecycle events in chain order, optionally of one rule or one version."""
        return load_events(self._conn, rule=rule, rule_version_id=rule_version_id)

    def rules(self) -> list[tuple[str, datetime]]:
        """(name, created_at) of every rule, by name."""
        return [(r.name, r.created_at) for r in self._conn.execute(
            select(RuleRow.name, RuleRow.created_at).order_by(RuleRow.name)
        ).all()]

    def version_keys(self) -> list[tuple[int, str, str]]:
        """(rule_version id, rule, version) of every version."""
        return [(int(r.id), r.name, r.version) for r in self._conn.execute(
            select(RuleVersionRow.id, RuleRow.name, RuleVersionRow.version).join(RuleRow)
        ).all()]

    def backtests(self, version_id: int) -> list[BacktestEvidence]:
        """The backtest runs of a version, oldest first."""
        runs = self._conn.execute(
            select(BacktestRunRow.__table__)
            .where(BacktestRunRow.rule_version_id == version_id)
            .order_by(BacktestRunRow.finished_at)
        ).all()
        return [
            BacktestEvidence(
                run_id=r.run_id, status=r.status, kind=r.kind, dataset=r.dataset, dataset_hash=r.dataset_hash,
                period_start=r.period_start, period_end=r.period_end, finished_at=r.finished_at, sharpe=r.sharpe,
                max_drawdown=r.max_drawdown, total_return=r.total_return, cagr=r.cagr,
            )
            for r in runs
        ]

    def count_executions(
        self, version_id: int | None, start: datetime | None, end: datetime | None, *, mode: str | None = None
    ) -> dict[tuple[int, str, str, str | None], int]:
        """(version id, mode, status, outcome) → executions in ``[start, end)`` (see :mod:`rollups`)."""
        return rollups.count_executions(self._conn, version_id, start, end, mode=mode)

    def rolled_up_ranges(self, start: datetime | None, end: datetime | None) -> list[tuple[datetime, datetime]]:
        """Ranges inside ``[start, end)`` whose raw executions retention dropped."""
        return rollups.rolled_up_ranges(self._conn, start, end)

    def executions(
        self, version_id: int, start: datetime | None, end: datetime | None, limit: int
    ) -> list[StoredExecution]:
        """Up to ``limit`` raw executions of a version in ``[start, end)``, oldest first."""
        e = ExecutionRow
        return [
            StoredExecution(r.event_id, r.started_at, r.mode, r.status, r.outcome, r.signal, r.confidence,
                            r.duration_seconds)
            for r in self._conn.execute(
                select(e.__table__).where(e.rule_version_id == version_id, *_window(e.started_at, start, end))
                .order_by(e.started_at, e.event_id).limit(limit)
            ).all()
        ]


class SqlAuditReads:
    """The audit's read side on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def reader(self) -> Iterator[AuditReader]:
        """An :class:`AuditReader` on one connection; driver failures become ``StoreUnavailable``."""
        with translated("reading the audit trail"), self.engine.connect() as conn:
            yield AuditReader(conn)

    def export_tables(self, start: datetime | None, end: datetime | None) -> list[exports.ExportTable]:
        """Every audit table with its columns and a chunked row stream (see :mod:`heurmetrics.store.exports`)."""
        return exports.export_tables(self.engine, start, end)
