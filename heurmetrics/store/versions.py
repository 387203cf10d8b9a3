"""Rule versions and their lifecycle events: registration, reads, and the locked lifecycle transaction.

A registration appends the version and its ``proposed`` event to the hash chain in one
transaction holding the chain lock (:func:`heurmetrics.store.chain.chain_transaction`). The
transitions' *policy* is audit logic (:mod:`heurmetrics.audit.lifecycle`); it runs inside
:meth:`SqlVersions.lifecycle`, whose :class:`LifecycleTx` gives it the locked state to check and
the one way to append an event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Connection

from heurmetrics.canonical import canonical_json
from heurmetrics.canonical import content_hash as compute_content_hash
from heurmetrics.domain import PROPOSED, LifecycleEvent, RuleVersion
from heurmetrics.errors import InvalidEvent, UnknownRuleVersion, VersionConflict
from heurmetrics.hashchain import EVENT_TABLE, VERSION_TABLE, append_time, event_record, link_hash, version_record
from heurmetrics.store.chain import chain_transaction, next_id, read_head
from heurmetrics.store.dialect import insert_ignoring
from heurmetrics.store.errors import translated
from heurmetrics.store.schema import BacktestRunRow, RuleRow, RuleVersionEventRow, RuleVersionRow

MAX_CODE_REF_LENGTH = 256


@dataclass(frozen=True, slots=True)
class VersionRef:
    """What a lifecycle check needs of a stored version."""

    id: int
    content_hash: str
    created_by: str
    rule_id: int


def _version_ref(conn: Connection, rule: str, version: str) -> VersionRef | None:
    row = conn.execute(
        select(RuleVersionRow.id, RuleVersionRow.content_hash, RuleVersionRow.created_by, RuleRow.id.label("rule_id"))
        .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
        .where(RuleRow.name == rule, RuleVersionRow.version == version)
    ).first()
    return None if row is None else VersionRef(int(row.id), row.content_hash, row.created_by, int(row.rule_id))


def load_events(
    conn: Connection, *, rule: str | None = None, rule_version_id: int | None = None
) -> list[LifecycleEvent]:
    """Lifecycle events in chain order, optionally of one rule or one version."""
    e = RuleVersionEventRow
    query = (
        select(e.__table__, RuleRow.name, RuleVersionRow.version)
        .join(RuleVersionRow, RuleVersionRow.id == e.rule_version_id)
        .join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)
        .order_by(e.chain_position)
    )
    if rule is not None:
        query = query.where(RuleRow.name == rule)
    if rule_version_id is not None:
        query = query.where(e.rule_version_id == rule_version_id)
    return [
        LifecycleEvent(
            id=r.id, position=r.chain_position, rule=r.name, version=r.version, rule_version_id=r.rule_version_id,
            event=r.event, env=r.env, actor=r.actor, reason=r.reason, occurred_at=r.occurred_at, details=r.details,
            prev_hash=r.prev_hash, row_hash=r.row_hash,
        )
        for r in conn.execute(query).all()
    ]


class LifecycleTx:
    """The lifecycle state and the event append of one locked chain transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def version(self, rule: str, version: str) -> VersionRef | None:
        return _version_ref(self._conn, rule, version)

    def events(self, *, rule: str | None = None, rule_version_id: int | None = None) -> list[LifecycleEvent]:
        return load_events(self._conn, rule=rule, rule_version_id=rule_version_id)

    def latest_completed_backtest(self, version_id: int) -> uuid.UUID | None:
        """The run id of the newest completed backtest of this exact version, or None."""
        return self._conn.execute(
            select(BacktestRunRow.run_id)
            .where(BacktestRunRow.rule_version_id == version_id, BacktestRunRow.status == "completed")
            .order_by(BacktestRunRow.finished_at.desc())
            .limit(1)
        ).scalar()

    def append_event(
        self,
        *,
        rule: str,
        version: str,
        rule_version_id: int,
        event: str,
        actor: str,
        reason: str,
        env: str | None = None,
        details: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> LifecycleEvent:
        """Hash one event onto the chain head and insert it (this transaction holds the chain lock)."""
        conn = self._conn
        head = read_head(conn)
        at = append_time(head, now)
        position = head.position + 1
        event_id = next_id(conn, EVENT_TABLE)
        details = details or {}
        record = event_record(
            position=position, id=event_id, rule_version_id=rule_version_id, rule=rule, version=version,
            event=event, env=env, actor=actor, reason=reason, occurred_at=at, details=details,
        )
        row_hash = link_hash(head.row_hash, record)
        conn.execute(insert(RuleVersionEventRow).values(
            id=event_id, rule_version_id=rule_version_id, event=event, env=env, actor=actor, reason=reason,
            occurred_at=at, details=details, chain_position=position, prev_hash=head.row_hash, row_hash=row_hash,
        ))
        return LifecycleEvent(event_id, position, rule, version, rule_version_id, event, env, actor, reason, at,
                              details, head.row_hash, row_hash)

    def insert_version(
        self,
        rule: str,
        version: str,
        *,
        params: dict[str, Any],
        source: str,
        digest: str,
        created_by: str,
        description: str | None,
        parent: str | None,
        code_ref: str | None,
    ) -> None:
        """Append the version and its ``proposed`` event (both chained)."""
        conn = self._conn
        head = read_head(conn)
        now = append_time(head)
        conn.execute(insert_ignoring(conn, RuleRow, ["name"]).values(name=rule, created_at=now))
        rule_id = int(conn.execute(select(RuleRow.id).where(RuleRow.name == rule)).scalar_one())
        parent_id = None if parent is None else self._resolve_parent(rule, version, parent)
        version_id = next_id(conn, VERSION_TABLE)
        position = head.position + 1
        record = version_record(
            position=position, id=version_id, rule_id=rule_id, rule=rule, version=version, content_hash=digest,
            parent_id=parent_id, code_ref=code_ref, created_at=now, created_by=created_by, description=description,
        )
        row_hash = link_hash(head.row_hash, record)
        conn.execute(insert(RuleVersionRow).values(
            id=version_id, rule_id=rule_id, version=version, content_hash=digest, params=params, source=source,
            created_at=now, created_by=created_by, description=description, parent_id=parent_id, code_ref=code_ref,
            chain_position=position, prev_hash=head.row_hash, row_hash=row_hash,
        ))
        stored = conn.execute(select(RuleVersionRow.params).where(RuleVersionRow.id == version_id)).scalar_one()
        if compute_content_hash(stored, source) != digest:
            raise InvalidEvent(
                "params",
                f"the database stores {canonical_json(stored)[:200]} for {canonical_json(params)[:200]}: the "
                "content hash would not match what is stored. Write such numbers as integers or strings.",
            )
        self.append_event(
            rule=rule, version=version, rule_version_id=version_id, event=PROPOSED, actor=created_by,
            reason=description or "registered", details={"content_hash": digest}, now=now,
        )

    def _resolve_parent(self, rule: str, version: str, parent: str) -> int:
        parent_rule, _, parent_version = parent.rpartition("@")
        parent_rule = parent_rule or rule
        if (parent_rule, parent_version) == (rule, version):
            raise InvalidEvent("parent", f"{rule}@{version} cannot be its own parent")
        ref = _version_ref(self._conn, parent_rule, parent_version)
        if ref is None:
            raise UnknownRuleVersion(parent_rule, parent_version)  # the parent: 404 like any unknown version
        return ref.id


def _version_query() -> Any:
    return select(
        RuleVersionRow.id,
        RuleRow.name,
        RuleVersionRow.version,
        RuleVersionRow.content_hash,
        RuleVersionRow.params,
        RuleVersionRow.source,
        RuleVersionRow.created_at,
        RuleVersionRow.created_by,
        RuleVersionRow.description,
    ).join(RuleRow, RuleRow.id == RuleVersionRow.rule_id)


def _to_version(row: Any) -> RuleVersion:
    return RuleVersion(
        id=row.id,
        rule=row.name,
        version=row.version,
        content_hash=row.content_hash,
        params=row.params,
        source=row.source,
        created_at=row.created_at,
        created_by=row.created_by,
        description=row.description,
    )


class SqlVersions:
    """Rule versions and lifecycle events on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, rule: str, version: str) -> RuleVersion | None:
        with translated(f"reading {rule}@{version}"), self.engine.connect() as conn:
            row = conn.execute(
                _version_query().where(RuleRow.name == rule, RuleVersionRow.version == version)
            ).first()
        return None if row is None else _to_version(row)

    def list(self) -> list[RuleVersion]:
        with translated("listing rule versions"), self.engine.connect() as conn:
            rows = conn.execute(_version_query().order_by(RuleRow.name, RuleVersionRow.id)).all()
        return [_to_version(r) for r in rows]

    @contextmanager
    def lifecycle(self) -> Iterator[LifecycleTx]:
        """A chain transaction (append lock held) for one lifecycle transition; commits on success."""
        with chain_transaction(self.engine) as conn:
            yield LifecycleTx(conn)

    def register(
        self,
        rule: str,
        version: str,
        *,
        params: dict[str, Any],
        source: str,
        created_by: str,
        description: str | None = None,
        parent: str | None = None,
        code_ref: str | None = None,
    ) -> tuple[RuleVersion, bool]:
        """Register ``rule@version`` with its chain record and a ``proposed`` event; returns (version, created).

        Identical content (same content hash) under an existing version is a no-op returning the
        stored version (its author, summary, parent and code reference are kept). Different content
        raises :class:`VersionConflict` and writes nothing. ``parent`` names the version this one
        derives from (``"1.0.0"`` for the same rule, or ``"other_rule@1.0.0"``); it must exist.
        Params whose JSON the database would store differently (e.g. ``1e+20`` becomes an integer
        in PostgreSQL ``jsonb``) are refused with :class:`InvalidEvent`: the stored content must
        hash to ``content_hash``. Serialised by the chain lock, so concurrent registrations from
        many processes are safe.
        """
        digest = compute_content_hash(params, source)
        existing = self.find(rule, version)
        if existing is not None:  # the common case (every runner start): no lock needed
            if existing.content_hash != digest:
                raise VersionConflict(rule, version, existing.content_hash, digest)
            return existing, False
        if code_ref is not None and len(code_ref) > MAX_CODE_REF_LENGTH:
            raise InvalidEvent("code_ref", f"is longer than {MAX_CODE_REF_LENGTH} characters")
        with self.lifecycle() as tx:
            ref = tx.version(rule, version)
            if ref is not None:  # registered by someone else between our read and the lock
                if ref.content_hash != digest:
                    raise VersionConflict(rule, version, ref.content_hash, digest)
                created = False
            else:
                tx.insert_version(
                    rule, version, params=params, source=source, digest=digest, created_by=created_by,
                    description=description, parent=parent, code_ref=code_ref,
                )
                created = True
        rv = self.find(rule, version)
        assert rv is not None
        return rv, created
