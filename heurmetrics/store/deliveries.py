"""Delivery records: what each batch write inserted, so counting follows what is stored.

The problem: a batch is committed, but the answer to COMMIT is lost (the connection dies). The
writer cannot know whether the rows are stored, so it must not count them; the retry then finds
them all stored already and — if counting followed "inserted by this attempt" — nobody ever
counts them. The rule used instead:

1. The write that inserts executions nobody counted yet also inserts one ``heuristic_deliveries``
   row (:func:`record`), in the same transaction: it exists exactly when those rows do.
2. After the commit is *acknowledged*, the writer claims every unclaimed record of its delivery
   id (:func:`claim`: ``claimed_by = <fresh token>``, in one transaction) and counts what the
   claimed records list — its own write's rows and those of any earlier attempt whose answer was
   lost, on this process or another replica.
3. A claim whose own answer is lost is retried with the same token: the records carrying that
   token are exactly the ones this claimer owns, so it counts them once.

So a row is counted by the process that claims its record, and each record is claimed once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, Table, and_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from heurmetrics.errors import StoreUnavailable
from heurmetrics.store.schema import DeliveryRow

_TABLE: Table = DeliveryRow.__table__  # type: ignore[assignment]


def digest(event_ids: Iterable[uuid.UUID]) -> bytes:
    """16 bytes identifying a set of event ids (order does not matter)."""
    h = hashlib.sha256()
    for raw in sorted(e.bytes for e in event_ids):
        h.update(raw)
    return h.digest()[:16]


@dataclass(frozen=True)
class DeliveryStamp:
    """What a write must record: its delivery id and the batch's not-yet-counted event ids."""

    delivery_id: uuid.UUID
    uncounted: frozenset[uuid.UUID]
    digest: bytes


@dataclass(frozen=True)
class ClaimedRecord:
    """A record this claimer owns: ``event_ids`` (None = every uncounted event of a batch with ``digest``)."""

    digest: bytes
    event_ids: frozenset[uuid.UUID] | None


def stamp(delivery_id: uuid.UUID, uncounted: Collection[uuid.UUID]) -> DeliveryStamp:
    ids = frozenset(uncounted)
    return DeliveryStamp(delivery_id, ids, digest(ids))


def record(conn: Connection, delivery: DeliveryStamp, inserted: Collection[uuid.UUID]) -> None:
    """Insert the delivery record of this write (inside the write's transaction); nothing if it
    inserted none of the uncounted events."""
    mine = delivery.uncounted.intersection(inserted)
    if not mine:
        return
    explicit = None if len(mine) == len(delivery.uncounted) else b"".join(sorted(e.bytes for e in mine))
    conn.execute(
        _TABLE.insert().values(
            attempt_id=uuid.uuid4(),
            delivery_id=delivery.delivery_id,
            created_at=datetime.now(UTC),
            events=len(mine),
            digest=delivery.digest,
            event_ids=explicit,
            claimed_by=None,
        )
    )


def claim(engine: Engine, delivery_id: uuid.UUID, token: uuid.UUID) -> list[ClaimedRecord]:
    """Claim the unclaimed records of ``delivery_id`` for ``token``; return all records ``token`` owns.

    Idempotent for one token: calling it again after a lost answer returns the same records.
    Raises :class:`StoreUnavailable` when the database cannot be asked (then retry with the same
    token).
    """
    c = _TABLE.c
    try:
        with engine.begin() as conn:
            conn.execute(
                update(_TABLE)
                .where(and_(c.delivery_id == delivery_id, c.claimed_by.is_(None)))
                .values(claimed_by=token)
            )
            rows = conn.execute(
                select(c.digest, c.event_ids).where(and_(c.delivery_id == delivery_id, c.claimed_by == token))
            ).all()
    except (OperationalError, PoolTimeout) as exc:
        raise StoreUnavailable(f"claiming delivery {delivery_id} failed: {exc}") from exc
    return [ClaimedRecord(bytes(r.digest), _ids(r.event_ids)) for r in rows]


def _ids(raw: bytes | None) -> frozenset[uuid.UUID] | None:
    if raw is None:
        return None
    data = bytes(raw)
    return frozenset(uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16))
