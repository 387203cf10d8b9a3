"""SQL side of the audit hash chain: the append lock, the head, ids, and the stored links.

The record layout and hashing are pure (:mod:`heurmetrics.hashchain`); verifying is audit logic
(:func:`heurmetrics.audit.chain.verify`). This module only reads and locks: on PostgreSQL every
appending transaction first takes ``pg_advisory_xact_lock(CHAIN_LOCK_KEY)``; on SQLite it starts
with ``BEGIN IMMEDIATE`` (one writer at a time). Inside the lock the head is read, the new record
is hashed onto it and inserted, and the lock is released at commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, literal, select, text, union_all
from sqlalchemy.engine import Connection

from heurmetrics.canonical import content_hash
from heurmetrics.hashchain import (
    CHAIN_LOCK_KEY,
    EVENT_TABLE,
    GENESIS_HASH,
    RETENTION_TABLE,
    VERSION_TABLE,
    ChainHead,
    event_record,
    retention_record,
    version_record,
)
from heurmetrics.store.errors import translated
from heurmetrics.store.schema import RetentionEventRow, RuleRow, RuleVersionEventRow, RuleVersionRow


@contextmanager
def chain_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the chain's append lock; commits on success, rolls back on error.

    Every write to ``rule_versions``, ``rule_version_events`` or ``retention_events`` happens inside
    one. Reads in it see everything committed before the lock was granted.
    """
    with translated("audit chain write"), engine.connect() as conn:
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


def next_id(conn: Connection, table: str) -> int:
    """Allocate the primary key of a row about to be appended (it is part of the hashed record)."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")).scalar_one())
    # SQLite: inside BEGIN IMMEDIATE nobody else can insert; rowids are max + 1 anyway.
    return int(conn.execute(text(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")).scalar_one())


@dataclass(slots=True)
class StoredLink:
    """One chained record as stored: its hashed record rebuilt from the columns, and its hashes.

    ``content_ok`` is False for a version whose params/source no longer hash to its stored
    ``content_hash`` (``content_message`` says what differs).
    """

    position: int
    table: str
    id: int
    ref: str
    record: dict[str, Any]
    prev_hash: str
    row_hash: str
    content_ok: bool = True
    content_message: str = ""


def _stored_links(conn: Connection) -> list[StoredLink]:
    out: list[StoredLink] = []
    v = RuleVersionRow
    for row in conn.execute(
        select(v.__table__, RuleRow.name).join(RuleRow, RuleRow.id == v.rule_id).order_by(v.chain_position)
    ).all():
        rec = version_record(
            position=row.chain_position, id=row.id, rule_id=row.rule_id, rule=row.name, version=row.version,
            content_hash=row.content_hash, parent_id=row.parent_id, code_ref=row.code_ref,
            created_at=row.created_at, created_by=row.created_by, description=row.description,
        )
        link = StoredLink(row.chain_position, VERSION_TABLE, row.id, f"{row.name}@{row.version}", rec, row.prev_hash,
                          row.row_hash)
        recomputed = content_hash(row.params, row.source)
        if recomputed != row.content_hash:
            link.content_ok = False
            link.content_message = (
                f"params/source hash to {recomputed}, but the stored content_hash is {row.content_hash}: "
                "the parameters or source were changed after registration"
            )
        out.append(link)
    e = RuleVersionEventRow
    for ev in conn.execute(
        select(e.__table__, RuleRow.name, RuleVersionRow.version)
        .join(RuleVersionRow, RuleVersionRow.id == e.rule_version_id)
        .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
        .order_by(e.chain_position)
    ).all():
        rec = event_record(
            position=ev.chain_position, id=ev.id, rule_version_id=ev.rule_version_id, rule=ev.name,
            version=ev.version, event=ev.event, env=ev.env, actor=ev.actor, reason=ev.reason,
            occurred_at=ev.occurred_at, details=ev.details,
        )
        out.append(StoredLink(ev.chain_position, EVENT_TABLE, ev.id, f"{ev.name}@{ev.version}", rec, ev.prev_hash,
                              ev.row_hash))
    for rr in conn.execute(select(RetentionEventRow.__table__).order_by(RetentionEventRow.chain_position)).all():
        rec = retention_record(
            position=rr.chain_position, id=rr.id, table_name=rr.table_name, partition_name=rr.partition_name,
            range_start=rr.range_start, range_end=rr.range_end, row_count=rr.row_count, counts=rr.counts,
            content_digest=rr.content_digest, policy=rr.policy, actor=rr.actor, occurred_at=rr.occurred_at,
        )
        out.append(StoredLink(rr.chain_position, RETENTION_TABLE, rr.id, rr.partition_name, rec, rr.prev_hash,
                              rr.row_hash))
    out.sort(key=lambda s: (s.position, s.table))
    return out


class SqlChain:
    """Reads of the hash chain (appends go through the concern that owns the record)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def head(self) -> ChainHead:
        """The current chain head, read outside any append."""
        with translated("reading the audit chain head"), self.engine.connect() as conn:
            return read_head(conn)

    def links(self) -> tuple[list[StoredLink], ChainHead]:
        """Every chained record in position order, and the head, read in one snapshot."""
        with translated("reading the audit chain"), self.engine.connect() as conn:
            return _stored_links(conn), read_head(conn)
