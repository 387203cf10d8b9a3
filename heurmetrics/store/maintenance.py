"""Storage maintenance behind the store API: partitions of raw executions and retention.

Thin, translated entry points over :mod:`heurmetrics.store.partitions` and
:mod:`heurmetrics.store.retention` for ``heurmetrics db partitions`` / ``db retention``: a database
that cannot be reached raises :class:`~heurmetrics.errors.StoreUnavailable`, any other database
failure :class:`~heurmetrics.errors.StoreError`, each naming the (password-masked) URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from heurmetrics.errors import StoreError
from heurmetrics.store import digests, partitions, retention, rollup_job
from heurmetrics.store.errors import reason, translated


class SqlMaintenance:
    """Partition and retention operations on one engine."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self._url = url

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            with translated("maintenance", unavailable=f"cannot reach database {self._url}"):
                yield
        except SQLAlchemyError as exc:  # a failing statement: one line, never a traceback
            first = reason(exc).splitlines()[0] if reason(exc) else type(exc).__name__
            raise StoreError(f"database error at {self._url}: {first}") from exc

    def ensure_partitions(self, *, ahead: int, interval: partitions.Interval) -> list[str]:
        """Create the current partition and ``ahead`` more; returns the names created."""
        with self._translated():
            return partitions.ensure_ahead(self.engine, ahead=ahead, interval=interval)

    def list_partitions(self) -> list[partitions.Partition]:
        with self._translated():
            return partitions.list_partitions(self.engine)

    def roll_up(self, until: datetime | None = None) -> datetime | None:
        """Run the roll-up job to ``until`` (default: the minutes closed a grace period ago); see
        :func:`heurmetrics.store.rollup_job.advance`. Returns the watermark (``None``: no job here)."""
        with self._translated():
            return rollup_job.advance(self.engine, until)

    def rollup_watermark(self) -> datetime | None:
        """Every execution started before this is in the rollup tables (``None``: every execution)."""
        with self._translated(), self.engine.connect() as conn:
            return rollup_job.watermark(conn)

    def retention_plan(self, policy: retention.Policy, *, now: datetime | None = None) -> list[retention.Candidate]:
        with self._translated():
            return retention.plan(self.engine, policy, now=now)

    def drop_partition(
        self, candidate: retention.Candidate, policy: retention.Policy, *, actor: str, now: datetime | None = None,
        digest: str = digests.FAST,
    ) -> retention.RetentionEvent:
        with self._translated():
            return retention.drop_partition(self.engine, candidate, policy, actor=actor, now=now, digest=digest)
