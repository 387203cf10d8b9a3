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
:func:`chain_head` returns what to anchor outside the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, literal, select, text, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from heurmetrics.canonical import canonical_json, content_hash, sha256_hex
from heurmetrics.errors import StoreUnavailable
from heurmetrics.store.schema import RetentionEventRow, RuleRow, RuleVersionEventRow, RuleVersionRow

#: ``prev_hash`` of the first record.
GENESIS_HASH = "0" * 64
#: Version of the record layout below; part of every record so a future layout cannot be confused.
RECORD_FORMAT = 1
#: Key of the PostgreSQL advisory lock that serialises appends (any fixed 64-bit number).
CHAIN_LOCK_KEY = 0x6865_7572_6D61_7564  # "heurmaud"

VERSION_TABLE = "rule_versions"
EVENT_TABLE = "rule_version_events"
RETENTION_TABLE = "retention_events"


def format_time(value: datetime) -> str:
    """The canonical text of a timestamp in a record: UTC, microseconds, ``Z``."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} in an audit record")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_record(
    *,
    position: int,
    id: int,
    rule_id: int,
    rule: str,
    version: str,
    content_hash: str,
    parent_id: int | None,
    code_ref: str | None,
    created_at: datetime,
    created_by: str,
    description: str | None,
) -> dict[str, Any]:
    """The hashed record of a ``rule_versions`` row (params and source enter via ``content_hash``)."""
    return {
        "format": RECORD_FORMAT, "table": VERSION_TABLE, "position": position, "id": id, "rule_id": rule_id,
        "rule": rule, "version": version, "content_hash": content_hash, "parent_id": parent_id,
        "code_ref": code_ref, "created_at": format_time(created_at), "created_by": created_by,
        "description": description,
    }


def event_record(
    *,
    position: int,
    id: int,
    rule_version_id: int,
    rule: str,
    version: str,
    event: str,
    env: str | None,
    actor: str,
    reason: str,
    occurred_at: datetime,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The hashed record of a ``rule_version_events`` row."""
    return {
        "format": RECORD_FORMAT, "table": EVENT_TABLE, "position": position, "id": id,
        "rule_version_id": rule_version_id, "rule": rule, "version": version, "event": event, "env": env,
        "actor": actor, "reason": reason, "occurred_at": format_time(occurred_at), "details": details,
    }


def retention_record(
    *,
    position: int,
    id: int,
    table_name: str,
    partition_name: str,
    range_start: datetime,
    range_end: datetime,
    row_count: int,
    counts: dict[str, Any],
    content_digest: str,
    policy: dict[str, Any],
    actor: str,
    occurred_at: datetime,
) -> dict[str, Any]:
    """The hashed record of a ``retention_events`` row (a partition of raw executions dropped)."""
    return {
        "format": RECORD_FORMAT, "table": RETENTION_TABLE, "position": position, "id": id,
        "table_name": table_name, "partition_name": partition_name, "range_start": format_time(range_start),
        "range_end": format_time(range_end), "row_count": row_count, "counts": counts,
        "content_digest": content_digest, "policy": policy, "actor": actor, "occurred_at": format_time(occurred_at),
    }


def link_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """``sha256_hex(prev_hash + canonical_json(record))``."""
    return sha256_hex(prev_hash + canonical_json(record))


# --- appending ---------------------------------------------------------------------------------
@contextmanager
def chain_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the chain's append lock; commits on success, rolls back on error.

    Every write to ``rule_versions`` or ``rule_version_events`` must happen inside one. Reads in
    it see everything committed before the lock was granted.
    """
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # pysqlite opens transactions lazily and DEFERRED; take the write lock up front.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
    except OperationalError as exc:
        raise StoreUnavailable(f"audit chain write failed: {exc.orig}") from exc


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record of the chain: anchor ``row_hash`` (with its position) outside the database."""

    position: int
    row_hash: str
    recorded_at: datetime | None
    table: str | None
    record_id: int | None

    @property
    def empty(self) -> bool:
        return self.position == 0


def _head_query() -> Any:
    versions = select(
        RuleVersionRow.chain_position.label("position"), RuleVersionRow.row_hash.label("row_hash"),
        RuleVersionRow.created_at.label("at"), literal(VERSION_TABLE).label("tbl"), RuleVersionRow.id.label("rid"),
    ).order_by(RuleVersionRow.chain_position.desc()).limit(1)
    events = select(
        RuleVersionEventRow.chain_position, RuleVersionEventRow.row_hash, RuleVersionEventRow.occurred_at,
        literal(EVENT_TABLE), RuleVersionEventRow.id,
    ).order_by(RuleVersionEventRow.chain_position.desc()).limit(1)
    retention = select(
        RetentionEventRow.chain_position, RetentionEventRow.row_hash, RetentionEventRow.occurred_at,
        literal(RETENTION_TABLE), RetentionEventRow.id,
    ).order_by(RetentionEventRow.chain_position.desc()).limit(1)
    both = union_all(
        versions.subquery().select(), events.subquery().select(), retention.subquery().select()
    ).subquery()
    return select(both).order_by(both.c.position.desc()).limit(1)


def read_head(conn: Connection) -> ChainHead:
    """The current head (position 0 and the genesis hash when the chain is empty)."""
    row = conn.execute(_head_query()).first()
    if row is None:
        return ChainHead(0, GENESIS_HASH, None, None, None)
    at = row.at
    if isinstance(at, str):  # SQLite returns the union's timestamp column untyped
        at = datetime.fromisoformat(at).replace(tzinfo=UTC)
    elif at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return ChainHead(int(row.position), str(row.row_hash), at, str(row.tbl), int(row.rid))


def chain_head(engine: Engine) -> ChainHead:
    """The current chain head, read outside any append."""
    with engine.connect() as conn:
        return read_head(conn)


def next_id(conn: Connection, table: str) -> int:
    """Allocate the primary key of a row about to be appended (it is part of the hashed record)."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")).scalar_one())
    # SQLite: inside BEGIN IMMEDIATE nobody else can insert; rowids are max + 1 anyway.
    return int(conn.execute(text(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")).scalar_one())


def append_time(head: ChainHead, now: datetime | None = None) -> datetime:
    """The timestamp of a new record: now, but never earlier than the head's (time follows the chain)."""
    now = now or datetime.now(UTC)
    return now if head.recorded_at is None or now >= head.recorded_at else head.recorded_at


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


@dataclass(slots=True)
class _Stored:
    position: int
    table: str
    id: int
    ref: str
    record: dict[str, Any]
    prev_hash: str
    row_hash: str
    content_ok: bool = True
    content_message: str = ""


def _stored_records(conn: Connection) -> list[_Stored]:
    out: list[_Stored] = []
    v = RuleVersionRow
    for r in conn.execute(
        select(v.__table__, RuleRow.name).join(RuleRow, RuleRow.id == v.rule_id).order_by(v.chain_position)
    ).all():
        row = r
        rec = version_record(
            position=row.chain_position, id=row.id, rule_id=row.rule_id, rule=r.name, version=row.version,
            content_hash=row.content_hash, parent_id=row.parent_id, code_ref=row.code_ref,
            created_at=row.created_at, created_by=row.created_by, description=row.description,
        )
        stored = _Stored(row.chain_position, VERSION_TABLE, row.id, f"{r.name}@{row.version}", rec, row.prev_hash,
                         row.row_hash)
        recomputed = content_hash(row.params, row.source)
        if recomputed != row.content_hash:
            stored.content_ok = False
            stored.content_message = (
                f"params/source hash to {recomputed}, but the stored content_hash is {row.content_hash}: "
                "the parameters or source were changed after registration"
            )
        out.append(stored)
    e = RuleVersionEventRow
    for r in conn.execute(
        select(e.__table__, RuleRow.name, RuleVersionRow.version)
        .join(RuleVersionRow, RuleVersionRow.id == e.rule_version_id)
        .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
        .order_by(e.chain_position)
    ).all():
        ev = r
        rec = event_record(
            position=ev.chain_position, id=ev.id, rule_version_id=ev.rule_version_id, rule=r.name,
            version=r.version, event=ev.event, env=ev.env, actor=ev.actor, reason=ev.reason,
            occurred_at=ev.occurred_at, details=ev.details,
        )
        out.append(_Stored(ev.chain_position, EVENT_TABLE, ev.id, f"{r.name}@{r.version}", rec, ev.prev_hash,
                           ev.row_hash))
    for rr in conn.execute(select(RetentionEventRow.__table__).order_by(RetentionEventRow.chain_position)).all():
        rec = retention_record(
            position=rr.chain_position, id=rr.id, table_name=rr.table_name, partition_name=rr.partition_name,
            range_start=rr.range_start, range_end=rr.range_end, row_count=rr.row_count, counts=rr.counts,
            content_digest=rr.content_digest, policy=rr.policy, actor=rr.actor, occurred_at=rr.occurred_at,
        )
        out.append(_Stored(rr.chain_position, RETENTION_TABLE, rr.id, rr.partition_name, rec, rr.prev_hash,
                           rr.row_hash))
    out.sort(key=lambda s: (s.position, s.table))
    return out


def verify(engine: Engine, *, expect_head: str | None = None) -> VerifyReport:
    """Recompute the whole chain and every content hash.

    Detects a changed column of any version or event (its ``row_hash`` no longer matches), changed
    params or source (``content_hash``), a rewritten hash (the next record's ``prev_hash`` no longer
    matches), and deleted or inserted records (gaps or duplicate positions). Deleting the newest
    records is only detectable against an anchor kept outside the database: pass a previously
    exported head hash as ``expect_head`` and the report says whether the chain still contains it.
    """
    with engine.connect() as conn:
        stored = _stored_records(conn)
        head = read_head(conn)
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


def count_records(engine: Engine) -> int:
    """Number of chained records (versions + lifecycle events + retention events)."""
    with engine.connect() as conn:
        a = conn.execute(select(func.count()).select_from(RuleVersionRow)).scalar_one()
        b = conn.execute(select(func.count()).select_from(RuleVersionEventRow)).scalar_one()
        c = conn.execute(select(func.count()).select_from(RetentionEventRow)).scalar_one()
    return int(a) + int(b) + int(c)
