"""Resolutions, live window statistics and performance snapshots (``rule.version.performance``).

The SQL side of :mod:`heurmetrics.live` on SQLite and PostgreSQL. ``execution_resolutions`` and
``rule_version_performance`` are append-only (database triggers reject UPDATE / DELETE), so
everything here inserts or reads. Resolution inserts are idempotent on (``event_id``, ``horizon``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, Table, and_, case, exists, func, or_, select
from sqlalchemy.orm import aliased

from heurmetrics.domain import NON_DIRECTIONAL_OUTCOMES
from heurmetrics.store.dialect import insert_ignoring
from heurmetrics.store.errors import translated
from heurmetrics.store.schema import (
    BacktestRunRow,
    ExecutionResolutionRow,
    ExecutionRow,
    RuleRow,
    RuleVersionPerformanceRow,
    RuleVersionRow,
)

#: Modes whose executions count as "live" behaviour by default.
LIVE_MODES: tuple[str, ...] = ("live", "paper")


def _table(row: type[Any]) -> Table:
    table: Table = row.__table__
    return table


class ResolutionLike(Protocol):
    """What the store reads of a resolution (:class:`heurmetrics.live.resolution.Resolution`)."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def horizon(self) -> str: ...
    @property
    def horizon_seconds(self) -> int: ...
    @property
    def realized_return(self) -> float | None: ...
    @property
    def correct(self) -> bool | None: ...
    @property
    def resolved_at(self) -> datetime: ...
    @property
    def method(self) -> str: ...
    @property
    def price_at_signal(self) -> float | None: ...
    @property
    def price_at_horizon(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ResolutionResult:
    """What a batch of resolutions did: ``accepted`` new rows, ``duplicates`` already stored."""

    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class PendingSignal:
    """A stored directional execution not yet resolved at some horizon."""

    event_id: uuid.UUID
    rule_version_id: int
    started_at: datetime
    outcome: str | None
    signal: float | None


@dataclass(frozen=True, slots=True)
class ExecutionStats:
    """Execution statistics of one version over one window."""

    executions: int
    errors: int
    ok: int
    signals: int
    mean_confidence: float | None
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None


@dataclass(frozen=True, slots=True)
class ResolutionStats:
    resolved: int
    hits: int
    mean_realized_return: float | None


def directional_clause() -> Any:
    """SQL twin of :func:`~heurmetrics.live.resolution.signal_direction` != 0 (status aside)."""
    e = ExecutionRow
    return or_(
        e.outcome.in_(("bullish", "bearish")),
        and_(
            or_(e.outcome.is_(None), e.outcome.not_in(tuple(NON_DIRECTIONAL_OUTCOMES))),
            e.signal.is_not(None),
            e.signal != 0,
        ),
    )


class SqlLiveStore:
    """Resolutions, window statistics and performance snapshots on one engine (``SqlStore.live``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    # --- resolutions -------------------------------------------------------------------------
    def insert_resolutions(self, items: Sequence[ResolutionLike]) -> ResolutionResult:
        """Append resolutions in one transaction; an (event, horizon) already stored is skipped."""
        unique: dict[tuple[uuid.UUID, str], ResolutionLike] = {}
        for item in items:
            unique.setdefault((item.event_id, item.horizon), item)
        if not unique:
            return ResolutionResult(0, len(items))
        now = datetime.now(UTC)
        rows = [
            {
                "event_id": r.event_id,
                "horizon": r.horizon,
                "horizon_seconds": r.horizon_seconds,
                "realized_return": r.realized_return,
                "correct": r.correct,
                "price_at_signal": r.price_at_signal,
                "price_at_horizon": r.price_at_horizon,
                "method": r.method,
                "resolved_at": r.resolved_at,
                "ingested_at": now,
            }
            for r in unique.values()
        ]
        table = _table(ExecutionResolutionRow)
        accepted = 0
        with translated(f"writing {len(rows)} resolutions"), self.engine.begin() as conn:
            statement = insert_ignoring(conn, table, ["event_id", "horizon"]).returning(table.c.id)
            for start in range(0, len(rows), 5000):
                accepted += len(conn.execute(statement, rows[start : start + 5000]).all())
        return ResolutionResult(accepted, len(items) - accepted)

    def pending_signals(
        self,
        horizon: str,
        *,
        until: datetime,
        since: datetime | None = None,
        modes: Sequence[str] = LIVE_MODES,
        rule_version_ids: Sequence[int] | None = None,
        limit: int | None = None,
    ) -> list[PendingSignal]:
        """Directional ``ok`` executions of ``modes`` started in ``[since, until]`` and not yet
        resolved at ``horizon``, oldest first (the caller validates ``horizon``)."""
        e, r = ExecutionRow, ExecutionResolutionRow
        query = (
            select(e.event_id, e.rule_version_id, e.started_at, e.outcome, e.signal)
            .where(
                e.mode.in_(tuple(modes)),
                e.status == "ok",
                e.started_at <= until,
                directional_clause(),
                ~exists().where(r.event_id == e.event_id, r.horizon == horizon),
            )
            .order_by(e.started_at, e.event_id)
        )
        if since is not None:
            query = query.where(e.started_at >= since)
        if rule_version_ids is not None:
            query = query.where(e.rule_version_id.in_(tuple(rule_version_ids)))
        if limit is not None:
            query = query.limit(limit)
        with translated("reading live performance"), self.engine.connect() as conn:
            return [PendingSignal(*row) for row in conn.execute(query).all()]

    # --- window statistics --------------------------------------------------------------------
    def execution_stats(
        self, rule_version_id: int, start: datetime, end: datetime, modes: Sequence[str] = LIVE_MODES
    ) -> ExecutionStats:
        """Counts, mean confidence and latency percentiles (linear interpolation, like
        ``percentile_cont``) of the executions started in ``[start, end)``."""
        e = ExecutionRow
        window = (
            e.rule_version_id == rule_version_id,
            e.mode.in_(tuple(modes)),
            e.started_at >= start,
            e.started_at < end,
        )
        ok = e.status == "ok"
        columns: list[Any] = [
            func.count(),
            func.coalesce(func.sum(case((ok, 0), else_=1)), 0),
            func.coalesce(func.sum(case((ok, 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(ok, directional_clause()), 1), else_=0)), 0),
            func.avg(e.confidence),
        ]
        postgres = self.dialect == "postgresql"
        if postgres:
            columns += [
                func.percentile_cont(0.5).within_group(e.duration_seconds),
                func.percentile_cont(0.95).within_group(e.duration_seconds),
            ]
        with translated("reading live performance"), self.engine.connect() as conn:
            row = conn.execute(select(*columns).where(*window)).one()
            if postgres:
                p50, p95 = row[5], row[6]
            else:
                durations = np.fromiter(
                    conn.execute(select(e.duration_seconds).where(*window)).scalars(), dtype=np.float64
                )
                p50, p95 = (
                    (float(np.percentile(durations, 50)), float(np.percentile(durations, 95)))
                    if durations.size
                    else (None, None)
                )
        return ExecutionStats(
            executions=int(row[0]),
            errors=int(row[1]),
            ok=int(row[2]),
            signals=int(row[3]),
            mean_confidence=None if row[4] is None else float(row[4]),
            latency_p50_seconds=None if p50 is None else float(p50),
            latency_p95_seconds=None if p95 is None else float(p95),
        )

    def resolution_stats(
        self,
        rule_version_id: int,
        start: datetime,
        end: datetime,
        horizon: str,
        modes: Sequence[str] = LIVE_MODES,
    ) -> ResolutionStats:
        """Resolved signals, hits and mean realised return at ``horizon`` of the executions
        started in ``[start, end)`` (whenever they were resolved)."""
        e, r = ExecutionRow, ExecutionResolutionRow
        query = (
            select(
                func.count(),
                func.coalesce(func.sum(case((r.correct.is_(True), 1), else_=0)), 0),
                func.avg(r.realized_return),
            )
            .select_from(r)
            .join(e, e.event_id == r.event_id)
            .where(
                e.rule_version_id == rule_version_id,
                e.mode.in_(tuple(modes)),
                e.started_at >= start,
                e.started_at < end,
                r.horizon == horizon,
                r.correct.is_not(None),
            )
        )
        with translated("reading live performance"), self.engine.connect() as conn:
            n, hits, mean = conn.execute(query).one()
        return ResolutionStats(int(n), int(hits), None if mean is None else float(mean))

    def latest_walk_forward(self, rule_version_id: int) -> tuple[uuid.UUID, dict[str, Any]] | None:
        """Run id and config of the version's latest completed walk-forward run, if any."""
        b = BacktestRunRow
        query = (
            select(b.run_id, b.config)
            .where(b.rule_version_id == rule_version_id, b.kind == "walk_forward", b.status == "completed")
            .order_by(b.finished_at.desc(), b.run_id)
            .limit(1)
        )
        with translated("reading live performance"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row[0], dict(row[1] or {}))

    # --- snapshots ------------------------------------------------------------------------------
    def insert_snapshots(self, rows: Sequence[dict[str, Any]]) -> int:
        """Append snapshot rows (``rule_version_performance`` columns) in one transaction."""
        if not rows:
            return 0
        with translated(f"writing {len(rows)} performance snapshots"), self.engine.begin() as conn:
            conn.execute(_table(RuleVersionPerformanceRow).insert(), list(rows))
        return len(rows)

    def latest_snapshots(self, horizon: str | None = None, *, windows: Sequence[str]) -> list[dict[str, Any]]:
        """The latest snapshot per (version, window in ``windows``) — of ``horizon`` when given — with
        the rule and version names under ``rule`` / ``version``, in ``windows`` order per version.

        One index lookup per version and window (``ix_rule_version_performance_version_window_at``,
        newest first), so the cost does not grow with the table's history.
        """
        p, q, v = RuleVersionPerformanceRow, aliased(RuleVersionPerformanceRow), RuleVersionRow
        rows: list[dict[str, Any]] = []
        with translated("reading live performance"), self.engine.connect() as conn:
            for window in windows:
                latest = (
                    select(q.id)
                    .where(q.rule_version_id == v.id, q.time_window == window)
                    .order_by(q.computed_at.desc(), q.id.desc())
                    .limit(1)
                )
                if horizon is not None:
                    latest = latest.where(q.horizon == horizon)
                query = (
                    select(p, RuleRow.name.label("rule"), v.version.label("version"))
                    .select_from(v)
                    .join(RuleRow, RuleRow.id == v.rule_id)
                    .join(p, p.id == latest.correlate(v).scalar_subquery())
                )
                rows.extend(dict(row._mapping) for row in conn.execute(query).all())
        rows.sort(key=lambda r: (r["rule"], r["version"], list(windows).index(r["time_window"])))
        return rows

    def executions_by_id(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str | None, float | None]]:
        """``event_id → (status, outcome, signal)`` of stored executions (missing ids are absent)."""
        out: dict[uuid.UUID, tuple[str, str | None, float | None]] = {}
        e = ExecutionRow
        ids = list(event_ids)
        with translated("reading live performance"), self.engine.connect() as conn:
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                for row in conn.execute(select(e.event_id, e.status, e.outcome, e.signal).where(e.event_id.in_(chunk))):
                    out[row[0]] = (row[1], row[2], row[3])
        return out
