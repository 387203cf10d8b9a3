"""Delivery records: what each batch write inserted, so counting follows what is stored.

The problem: a batch is committed, but the answer to COMMIT is lost (the connection dies). The
writer cannot know whether the rows are stored, so it must not count them; the retry then finds
them all stored already and — if counting followed "inserted by this attempt" — nobody ever
counts them. The rule used instead:

1. The write that inserts executions nobody counted yet also inserts one ``heuristic_deliveries``
   row (:func:`record`), in the same transaction: it exists exactly when those rows do.
2. After the commit is *acknowledged*, the writer claims every unclaimed record of its delivery
   id (:func:`claim`: one ``UPDATE … SET claimed_by = <fresh token> … RETURNING``, in a
   transaction of its own) and counts what the claimed records list — its own write's rows and
   those of any earlier attempt whose answer was lost, on this process or another replica.
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
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from heurmetrics.store.errors import translated


def digest(event_ids: Iterable[uuid.UUID]) -> bytes:
    """16 bytes identifying a set of event ids (order does not matter)."""
    # Sorted as integers: the same order as their 16 big-endian bytes, and cheaper than .bytes.
    return hashlib.sha256(b"".join([i.to_bytes(16, "big") for i in sorted([e.int for e in event_ids])])).digest()[:16]


@dataclass(frozen=True)
class DeliveryStamp:
    """What a write must record: its delivery id and the batch's not-yet-counted event ids."""

    delivery_id: uuid.UUID
    uncounted: Collection[uuid.UUID]
    digest: bytes


@dataclass(frozen=True)
class ClaimedRecord:
    """A record this claimer owns: ``event_ids`` (None = every uncounted event of a batch with ``digest``)."""

    digest: bytes
    event_ids: frozenset[uuid.UUID] | None


def stamp(delivery_id: uuid.UUID, uncounted: Collection[uuid.UUID]) -> DeliveryStamp:
    """The stamp of a batch whose distinct not-yet-counted event ids are ``uncounted``."""
    return DeliveryStamp(delivery_id, uncounted, digest(uncounted))


def record(conn: Connection, delivery: DeliveryStamp, inserted: Collection[uuid.UUID] | None, batch_size: int) -> None:
    """Insert the delivery record of this write (inside the write's transaction); nothing if it
    inserted none of the uncounted events. ``batch_size``: distinct events the write carried;
    ``inserted`` None: the write inserted every one of them."""
    if inserted is None or len(inserted) >= batch_size:  # the common case: everything was new
        mine: Collection[uuid.UUID] = delivery.uncounted
    else:
        mine = [e for e in delivery.uncounted if e in inserted]
    if not mine:
        return
    explicit = None if len(mine) == len(delivery.uncounted) else b"".join(sorted(e.bytes for e in mine))
    now = datetime.now(UTC)
    values: tuple[Any, ...]
    # Through the driver: this runs once per batch on the hot path, and SQLAlchemy's statement
    # machinery costs more than the statement itself.
    if conn.dialect.name == "postgresql":
        values = (uuid.uuid4(), delivery.delivery_id, now, len(mine), delivery.digest, explicit)
    else:  # stored the way SQLAlchemy stores Uuid and UTCDateTime on SQLite
        values = (uuid.uuid4().hex, delivery.delivery_id.hex, _sqlite_time(now), len(mine), delivery.digest, explicit)
    cursor = _cursor(conn)
    cursor.execute(_INSERT.replace("?", _marker(conn)), values)


def claim(engine: Engine, delivery_id: uuid.UUID, token: uuid.UUID) -> list[ClaimedRecord]:
    """Claim the unclaimed records of ``delivery_id`` for ``token``; return all records ``token`` owns.

    Idempotent for one token: calling it again after a lost answer returns the same records.
    Raises :class:`StoreUnavailable` when the database cannot be asked (then retry with the same
    token).
    """
    # Every driver failure (unreachable, a socket the checkout watchdog shut, a pool timeout) is
    # StoreUnavailable: the caller keeps the claim and retries it.
    with translated(f"claiming delivery {delivery_id}"):
        if engine.dialect.name == "postgresql":
            rows = _claim_pg(engine, (token, delivery_id, token))
        else:
            with engine.begin() as conn:
                cursor = _cursor(conn)
                cursor.execute(_CLAIM, (token.hex, delivery_id.hex, token.hex))
                rows = cursor.fetchall()
    return [ClaimedRecord(bytes(r[0]), _ids(r[1])) for r in rows]


def _claim_pg(engine: Engine, params: tuple[Any, ...]) -> list[Any]:
    """The claim as one statement in its own implicit transaction (autocommit): one round trip
    instead of BEGIN, SET LOCAL, UPDATE and COMMIT (issue 11).

    The claim needs no fsync of its own: losing it in a database crash only makes its records
    claimable again, and they are re-claimed only by a re-send of a batch that was already
    answered (see docs/reliability.md). ``set_config(…, true)`` turns ``synchronous_commit`` off
    for this statement's transaction only: it saves a WAL flush per batch.
    """
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        driver.autocommit = True  # the pool hands out idle connections (the checkout listener sees to it)
        try:
            cursor = driver.cursor()
            cursor.execute(_CLAIM_PG, params)
            rows = cursor.fetchall()
        finally:
            try:
                driver.autocommit = False
            except Exception:  # broken mid-statement: never hand it back to the pool
                conn.invalidate()
    return rows


# One statement: claim what nobody claimed, and return what this token owns (again, after a lost
# answer). SQLite's placeholders here, PostgreSQL's in _CLAIM_PG.
_CLAIM = (
    "UPDATE heuristic_deliveries SET claimed_by = ? "
    "WHERE delivery_id = ? AND (claimed_by IS NULL OR claimed_by = ?) RETURNING digest, event_ids"
)
_CLAIM_PG = (
    "UPDATE heuristic_deliveries SET claimed_by = %s "
    "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS _no_fsync "
    "WHERE delivery_id = %s AND (claimed_by IS NULL OR claimed_by = %s) RETURNING digest, event_ids"
)
_INSERT = (
    "INSERT INTO heuristic_deliveries (attempt_id, delivery_id, created_at, events, digest, event_ids, claimed_by) "
    "VALUES (?, ?, ?, ?, ?, ?, NULL)"
)


def _marker(conn: Connection) -> str:
    return "%s" if conn.dialect.name == "postgresql" else "?"


def _cursor(conn: Connection) -> Any:
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _ids(raw: bytes | None) -> frozenset[uuid.UUID] | None:
    if raw is None:
        return None
    data = bytes(raw)
    return frozenset(uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16))
