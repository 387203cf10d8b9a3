"""How the SDK's queued executions are written to the spool, and what the queue holds.

The queue holds :class:`~heurmetrics.domain.ExecutionEvent` s the Recorder counted at record time
(ids it generated) and :class:`Uncounted` wrappers for events with a caller's id (counted once
the store confirms they are new). That is the batch's business, not the event's.

Spool payload of one batch (compact JSON, UTF-8, ASCII-escaped)::

    {"v": 1,
     "rv": [[rule, version, content_hash], ...],
     "e":  [[rv_index, event_id_hex, started_at, duration_seconds, status, outcome, signal,
             confidence, mode, error_type, backtest_run_id_hex, counted], ...]}

Floats are written with ``repr`` precision, so a replayed event is bit-identical. ``counted``
(0/1) says whether the process that recorded the event already counted it in Prometheus (an
event counted before is not counted again when replayed: see docs/reliability.md). The format
is unchanged since version 1: spools written before events became immutable replay as they were.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from heurmetrics.domain import ExecutionEvent, RuleVersion

__all__ = ["QueuedExecution", "Uncounted", "decode", "encode", "split_counted"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PAYLOAD_VERSION = 1


class Uncounted:
    """A queued event nobody counted yet (the caller gave its id): count it after its insert."""

    __slots__ = ("event",)

    def __init__(self, event: ExecutionEvent) -> None:
        self.event = event


QueuedExecution = ExecutionEvent | Uncounted


def split_counted(batch: list[QueuedExecution]) -> tuple[list[ExecutionEvent], set[uuid.UUID]]:
    """The batch's events, and the ids of those not counted yet."""
    if Uncounted not in set(map(type, batch)):  # the common case (SDK ids), checked at C speed
        return batch, set()  # type: ignore[return-value]
    events: list[ExecutionEvent] = []
    uncounted: set[uuid.UUID] = set()
    for item in batch:
        if item.__class__ is Uncounted:
            event = item.event
            uncounted.add(event.event_id)
            events.append(event)
        else:
            events.append(item)  # type: ignore[arg-type]
    return events, uncounted


def encode(batch: list[QueuedExecution]) -> bytes:
    index: dict[int, int] = {}
    versions: list[list[str]] = []
    rows: list[list[Any]] = []
    for item in batch:
        counted = item.__class__ is not Uncounted
        e: ExecutionEvent = item if counted else item.event  # type: ignore[assignment,union-attr]
        rv = e.rule_version
        i = index.get(id(rv))
        if i is None:
            i = index[id(rv)] = len(versions)
            versions.append([rv.rule, rv.version, rv.content_hash])
        rows.append(
            [
                i,
                e.event_id.hex,
                e.started_at,
                e.duration_seconds,
                e.status,
                e.outcome,
                e.signal,
                e.confidence,
                e.mode,
                e.error_type,
                None if e.backtest_run_id is None else e.backtest_run_id.hex,
                1 if counted else 0,
            ]
        )
    document = {"v": _PAYLOAD_VERSION, "rv": versions, "e": rows}
    return json.dumps(document, separators=(",", ":")).encode()


def decode(payload: bytes) -> list[QueuedExecution]:
    """The inverse of :func:`encode`; versions are placeholders (id -1) resolved by name on delivery."""
    document = json.loads(payload)
    if document.get("v") != _PAYLOAD_VERSION:
        raise ValueError(f"unknown spool payload version {document.get('v')!r}")
    versions = [RuleVersion(-1, r, v, h, {}, "", _EPOCH, "") for r, v, h in document["rv"]]
    out: list[QueuedExecution] = []
    for row in document["e"]:
        event = ExecutionEvent(
            uuid.UUID(hex=row[1]),
            versions[row[0]],
            float(row[2]),
            float(row[3]),
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            None if row[10] is None else uuid.UUID(hex=row[10]),
        )
        out.append(event if row[11] else Uncounted(event))
    return out
