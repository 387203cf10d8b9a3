"""The audit hash chain's record layout and hashing: pure functions, no database.

One chain runs over ``rule_versions``, ``rule_version_events`` and ``retention_events`` (see
:mod:`heurmetrics.audit.chain` for the full description and ``docs/audit.md`` for the formula).
This module sits below both the store (which hashes each record onto the head inside the append
lock) and the audit package (which recomputes every link in ``verify``), so neither imports the
other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from heurmetrics.canonical import canonical_json, sha256_hex

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


def append_time(head: ChainHead, now: datetime | None = None) -> datetime:
    """The timestamp of a new record: now, but never earlier than the head's (time follows the chain)."""
    now = now or datetime.now(UTC)
    return now if head.recorded_at is None or now >= head.recorded_at else head.recorded_at
