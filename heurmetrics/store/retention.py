"""Audited retention of raw executions: whole partitions, verified against the rollups, chained.

A partition of ``heuristic_executions`` is dropped when its whole range is older than the policy
window of every mode that has executions in it (per-mode windows, e.g. backtest 30 days, live 400
days; a partition holding live executions is kept as long as live ones must be). Applying:

1. takes the audit chain's append lock (one retention or registration at a time);
2. reads the partition: its rows per rule version and its content digest (below; ``mh64`` in the
   same aggregate pass, ``sha256`` in a second, ordered pass), and compares the counts with the
   rollups over the same range (read from the day level: partitions are whole UTC days): any
   difference refuses the run and drops nothing;
3. appends a ``retention_events`` record to the hash chain (range, row count, counts per version,
   digest, policy, actor);
4. ``DETACH PARTITION`` + ``DROP TABLE`` -- never a row ``DELETE``: the append-only triggers stay
   in force for every remaining row. All of it is one transaction: the event exists iff the
   partition is gone.

**Content digest** (:mod:`heurmetrics.store.digests`, chosen per run with ``--digest``): ``mh64:``
(default) is a 64-bit order-independent checksum computed in the same parallel scan as the counts
(about 0.3 s per million rows); it catches accidental differences but is not collision-resistant.
``sha256:`` (``--digest sha256``) is the sha256 of the canonical export (text ``COPY`` ordered by
``started_at, event_id``): collision-resistant, so an auditor can prove an export equals what was
dropped; it costs an ordered read and a serial hash. Either is recomputable from an export
(``docs/storage.md``). Events chained before the prefixes carry the same sha256 without one.

Rule versions, lifecycle events, backtests, equity curves and rollups are never touched. SQLite
keeps one flat table whose rows the triggers protect from DELETE: retention is refused there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import Connection

from heurmetrics import hashchain
from heurmetrics.errors import HeurmetricsError
from heurmetrics.store import chain, digests, partitions, rollup_job, rollups
from heurmetrics.store.codes import MODE_CODES, MODE_NAMES
from heurmetrics.store.engine import lift_bounds_for_transaction
from heurmetrics.store.schema import RetentionEventRow

#: Raw executions kept per mode by default.
DEFAULT_WINDOWS: dict[str, timedelta] = {
    "live": timedelta(days=400), "paper": timedelta(days=400), "backtest": timedelta(days=30)
}
_LOCK_TIMEOUT = "5s"
# Kept here too: the names earlier code and tests use.
DIGEST_COLUMNS = digests.DIGEST_COLUMNS
DIGEST_FORMAT = digests.FAST
scan_sql = digests.mh64_scan_sql
digest_of = digests.mh64_of


class RetentionError(HeurmetricsError):
    """Retention refused (unsupported database, bad policy, rollups not covering a partition)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How long raw executions are kept, per mode."""

    windows: dict[str, timedelta]

    def as_record(self) -> dict[str, Any]:
        return {mode: f"{int(w.total_seconds() // 86400)}d" for mode, w in sorted(self.windows.items())}


def parse_policy(spec: str | None) -> Policy:
    """``live=400d,paper=400d,backtest=30d`` (days); unspecified modes keep their default window."""
    windows = dict(DEFAULT_WINDOWS)
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        match = re.fullmatch(r"([a-z]+)=(\d+)d", part)
        if match is None:
            raise RetentionError(f"retention policy item {part!r}: expected MODE=DAYSd, e.g. backtest=30d")
        mode, days = match.group(1), int(match.group(2))
        if mode not in MODE_CODES:
            raise RetentionError(f"retention policy item {part!r}: unknown mode {mode!r} ({', '.join(MODE_CODES)})")
        if days < 1:
            raise RetentionError(f"retention policy item {part!r}: keep at least 1 day")
        windows[mode] = timedelta(days=days)
    return Policy(windows)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A partition the policy would drop, with why."""

    partition: partitions.Partition
    modes: list[str]
    window: timedelta


@dataclass(frozen=True, slots=True)
class RetentionEvent:
    id: int
    chain_position: int
    partition_name: str
    range_start: datetime
    range_end: datetime
    row_count: int
    counts: dict[str, int]
    content_digest: str
    row_hash: str


def _require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise RetentionError(
            "retention drops whole PostgreSQL partitions; SQLite keeps one flat heuristic_executions table "
            "whose rows are append-only (DELETE is refused by triggers), so nothing is removed there. "
            "Use PostgreSQL for long-lived deployments (see docs/storage.md)."
        )


def _modes_in(conn: Connection, start: datetime, end: datetime) -> list[str]:
    # Partition bounds are whole UTC days: the day level answers with ~one row per key and day.
    codes: set[int] = set()
    for level, lo, hi in rollups.segments(start, end):
        table = rollups.LEVEL_TABLES[level]
        codes |= {int(c) for c in conn.execute(
            text(f"SELECT DISTINCT mode FROM {table} WHERE bucket_start >= :s AND bucket_start < :e"),
            {"s": lo, "e": hi},
        ).scalars()}
    return sorted(MODE_NAMES[c] for c in codes)


def plan(engine: Engine, policy: Policy, *, now: datetime | None = None) -> list[Candidate]:
    """The partitions the policy drops now, oldest first (the default partition never)."""
    _require_postgres(engine)
    now = now or datetime.now(UTC)
    out = []
    with engine.connect() as conn:
        modes_by_range = {(s, e): _modes_in(conn, s, e) for s, e in partitions.covered_ranges(conn)}
    for p in partitions.list_partitions(engine):
        if p.start is None or p.end is None:
            continue
        modes = modes_by_range.get((p.start, p.end), [])
        window = max((policy.windows[m] for m in modes), default=max(policy.windows.values()))
        if p.end <= now - window:
            out.append(Candidate(p, modes, window))
    return out


def scan(conn: Connection, source: str, digest: str = digests.FAST) -> tuple[dict[str, int], str]:
    """Rows per rule version (as text keys) and the ``digest`` of ``source`` (see :mod:`~heurmetrics.store.digests`)."""
    return digests.scan(conn, source, digest)


def drop_partition(
    engine: Engine, candidate: Candidate, policy: Policy, *, actor: str, now: datetime | None = None,
    digest: str = digests.FAST,
) -> RetentionEvent:
    """Verify, digest (``mh64`` or ``sha256``), chain and drop one partition (one transaction; nothing
    happens on error)."""
    _require_postgres(engine)
    digests.check(digest)
    p = candidate.partition
    assert p.start is not None and p.end is not None
    # The rollups must hold the whole partition: let the roll-up job reach its end first.
    rollup_job.advance(engine, min(p.end, rollup_job.closed_until()))
    # Counting and digesting a month of rows can outlast the statement timeout and the checkout
    # bound of ordinary connections (docs/reliability.md): lift them for this one transaction.
    with chain.chain_transaction(engine) as conn:
        lift_bounds_for_transaction(conn)
        conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
        # No row may enter the partition between the scan and the DROP: it would be dropped
        # without being in the chained counts and digest. SHARE blocks writers, not readers.
        conn.execute(text(f"LOCK TABLE {p.name} IN SHARE MODE"))
        # The modes were planned outside this transaction: a live row that arrived since keeps
        # the partition under the live window.
        modes = _modes_in(conn, p.start, p.end)
        window = max((policy.windows[m] for m in modes), default=max(policy.windows.values()))
        if p.end > (now or datetime.now(UTC)) - window:
            raise RetentionError(
                f"{p.name}: now holds {', '.join(modes)} executions, kept {window.days} days; nothing was dropped"
            )
        through = rollup_job.watermark(conn)
        if through is not None and through < p.end:
            raise RetentionError(
                f"{p.name}: the roll-up job has rolled up executions only until {through.isoformat()}, not to "
                f"the partition's end {p.end.isoformat()}; run `heurmetrics db rollup`; nothing was dropped"
            )
        raw, content_digest = scan(conn, p.name, digest)
        rolled = {str(v): n for v, n in rollups.counts_per_version(conn, p.start, p.end, rollups_only=True).items()}
        if raw != rolled:
            diff = {v: (raw.get(v, 0), rolled.get(v, 0)) for v in sorted(set(raw) | set(rolled))
                    if raw.get(v, 0) != rolled.get(v, 0)}
            raise RetentionError(
                f"{p.name}: rollups do not cover the partition exactly (rule_version_id: (raw rows, rolled up) "
                f"{diff}); nothing was dropped"
            )
        head = chain.read_head(conn)
        position, event_id = head.position + 1, chain.next_id(conn, hashchain.RETENTION_TABLE)
        occurred = hashchain.append_time(head, now)
        row_count = sum(raw.values())
        record = hashchain.retention_record(
            position=position, id=event_id, table_name=partitions.TABLE, partition_name=p.name,
            range_start=p.start, range_end=p.end, row_count=row_count, counts=raw, content_digest=content_digest,
            policy=policy.as_record(), actor=actor, occurred_at=occurred,
        )
        row_hash = hashchain.link_hash(head.row_hash, record)
        conn.execute(
            insert(RetentionEventRow).values(
                id=event_id, table_name=partitions.TABLE, partition_name=p.name, range_start=p.start,
                range_end=p.end, row_count=row_count, counts=raw, content_digest=content_digest,
                policy=policy.as_record(), actor=actor, occurred_at=occurred, chain_position=position,
                prev_hash=head.row_hash, row_hash=row_hash,
            )
        )
        conn.execute(text(f"ALTER TABLE {partitions.TABLE} DETACH PARTITION {p.name}"))
        conn.execute(text(f"DROP TABLE {p.name}"))
    return RetentionEvent(event_id, position, p.name, p.start, p.end, row_count, raw, content_digest, row_hash)


def apply(
    engine: Engine, policy: Policy, *, actor: str, now: datetime | None = None, digest: str = digests.FAST
) -> list[RetentionEvent]:
    """Drop every partition :func:`plan` selects, oldest first; stops at the first refusal."""
    digests.check(digest)
    return [drop_partition(engine, c, policy, actor=actor, now=now, digest=digest)
            for c in plan(engine, policy, now=now)]
