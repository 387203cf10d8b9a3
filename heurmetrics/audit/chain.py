"""The audit hash chain: one chain over rule versions, their lifecycle events and retention events.

Every row of ``rule_versions`` and ``rule_version_events`` carries ``chain_position`` (1, 2, 3, …
across *both* tables, in append order), ``prev_hash`` (the ``row_hash`` of the record at the
previous position; 64 zeros for position 1) and::

    row_hash = sha256_hex(prev_hash + canonical_json(record))

where ``record`` is the dictionary built by :func:`version_record`, :func:`event_record` or
:func:`retention_record` (``retention_events``: a partition of raw executions dropped) from the
row's columns and ``canonical_json`` is :func:`heurmetrics.canonical.canonical_json` (the hex
``prev_hash`` and the JSON text are concatenated and UTF-8 encoded). Anyone can recompute it from
the documented columns (``docs/audit.md``).

Appends are serialised so concurrent writers cannot fork the chain: on PostgreSQL every appending
transaction first takes ``pg_advisory_xact_lock(CHAIN_LOCK_KEY)``; on SQLite it starts with
``BEGIN IMMEDIATE`` (one writer at a time). Inside the lock the head is read, the new record is
hashed onto it and inserted, and the lock is released at commit.

:func:`verify` recomputes every link and every content hash and names the first broken record;
:func:`chain_head` returns what to anchor outside the database. Both take the store
(:class:`heurmetrics.store.sql_store.SqlStore`): the SQL (lock, head, stored rows) is in
:mod:`heurmetrics.store.chain`, the record layout and hashing in :mod:`heurmetrics.hashchain`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from heurmetrics.hashchain import (  # noqa: F401  (re-exported: the chain's public vocabulary)
    CHAIN_LOCK_KEY,
    EVENT_TABLE,
    GENESIS_HASH,
    RECORD_FORMAT,
    RETENTION_TABLE,
    VERSION_TABLE,
    ChainHead,
    append_time,
    event_record,
    format_time,
    link_hash,
    retention_record,
    version_record,
)

if TYPE_CHECKING:
    from heurmetrics.store.sql_store import SqlStore


def chain_head(store: SqlStore) -> ChainHead:
    """The current chain head, read outside any append."""
    return store.chain.head()


# --- verifying ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One broken link: which record (table, id, position, rule@version) and what is wrong."""

    position: int
    table: str
    record_id: int | None
    ref: str | None
    kind: str  # "content_hash" | "row_hash" | "prev_hash" | "gap" | "duplicate_position"
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of :func:`verify`: ``ok`` and, if not, every problem found (``first`` is the earliest)."""

    ok: bool
    records: int
    versions: int
    events: int
    head: ChainHead
    problems: list[ChainProblem] = field(default_factory=list)
    anchor_found: bool | None = None
    retention_events: int = 0

    @property
    def first(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None


def verify(store: SqlStore, *, expect_head: str | None = None) -> VerifyReport:
    """Recompute the whole chain and every content hash.

    Detects a changed column of any version or event (its ``row_hash`` no longer matches), changed
    params or source (``content_hash``), a rewritten hash (the next record's ``prev_hash`` no longer
    matches), and deleted or inserted records (gaps or duplicate positions). Deleting the newest
    records is only detectable against an anchor kept outside the database: pass a previously
    exported head hash as ``expect_head`` and the report says whether the chain still contains it.
    """
    stored, head = store.chain.links()
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    expected_position = 1
    hashes: set[str] = set()
    for s in stored:
        where = f"{s.table} id {s.id} ({s.ref}, position {s.position})"
        if s.position < expected_position:
            problems.append(ChainProblem(s.position, s.table, s.id, s.ref, "duplicate_position",
                                         f"{where}: position {s.position} is used twice"))
        elif s.position > expected_position:
            problems.append(ChainProblem(expected_position, s.table, s.id, s.ref, "gap",
                                         f"positions {expected_position}..{s.position - 1} are missing before "
                                         f"{where}: records were deleted"))
        if not s.content_ok:
            problems.append(
                ChainProblem(s.position, s.table, s.id, s.ref, "content_hash", f"{where}: {s.content_message}")
            )
        if s.prev_hash != expected_prev:
            problems.append(ChainProblem(
                s.position, s.table, s.id, s.ref, "prev_hash",
                f"{where}: prev_hash {s.prev_hash} does not match the previous record's row_hash {expected_prev}: "
                "the previous record was altered (its hash rewritten) or removed",
            ))
        recomputed = link_hash(s.prev_hash, s.record)
        if recomputed != s.row_hash:
            problems.append(ChainProblem(
                s.position, s.table, s.id, s.ref, "row_hash",
                f"{where}: stored row_hash {s.row_hash} but the row now hashes to {recomputed}: "
                "a column of this record was changed after it was written",
            ))
        hashes.add(s.row_hash)
        expected_prev = s.row_hash
        expected_position = max(expected_position, s.position + 1)
    problems.sort(key=lambda p: p.position)
    anchor = None if expect_head is None else expect_head in hashes
    versions = sum(1 for s in stored if s.table == VERSION_TABLE)
    return VerifyReport(
        ok=not problems and anchor is not False, records=len(stored), versions=versions,
        events=sum(1 for s in stored if s.table == EVENT_TABLE), head=head, problems=problems,
        anchor_found=anchor, retention_events=sum(1 for s in stored if s.table == RETENTION_TABLE),
    )
