"""The fast path of ``POST /v1/executions``: one msgspec decode of the whole body (issue 11).

:class:`heurmetrics.server.models.ExecutionBatchIn` (pydantic) stays the documented request body
and the *authority* on what is valid and on every error message. This module is a pre-filter
that accepts a subset of what the pydantic model accepts, decoded straight from bytes into
untracked msgspec structs (no per-item pydantic model, no per-item validator calls):

- every constraint of :class:`~heurmetrics.server.models.ExecutionIn` that msgspec can state is
  stated here the same way (unknown fields forbidden, strict types, bounds, enums, name
  length); a value outside them fails the decode;
- the rest is checked after the decode: the name pattern by
  :func:`heurmetrics.validation.check_label_value` (once per distinct name), an RFC 3339
  ``started_at`` by the pydantic field validator itself, free text without NUL and a finite
  ``signal`` by the one execution builder.

Whenever the fast path fails in any way, the route forgets it and runs the pydantic path from
the start: the answer (202, 404 or 422, with its body and counts) is exactly the one the
pydantic path gives. ``tests/test_execution_decoder.py`` checks that the fast path never accepts
what the pydantic model refuses and never decodes a value differently.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import TypeAdapter

from heurmetrics.metrics import definitions as d
from heurmetrics.server.fields import Timestamp
from heurmetrics.validation import MAX_EXECUTION_SECONDS

# The name pattern is checked after the decode, once per distinct value (check_label_value and
# its cache): a msgspec pattern runs Python's re on every string, which cost 0.8 µs per item.
_Name = Annotated[str, msgspec.Meta(max_length=d.LABEL_VALUE_MAX_LENGTH)]
_Status = Literal[d.EXECUTION_STATUSES]  # type: ignore[valid-type]
_Mode = Literal[d.EXECUTION_MODES]  # type: ignore[valid-type]
_Duration = Annotated[float, msgspec.Meta(ge=0, le=MAX_EXECUTION_SECONDS)]
_Confidence = Annotated[float, msgspec.Meta(ge=0, le=1)]
_Short = Annotated[str, msgspec.Meta(max_length=128)]  # NUL and lone surrogates: the builder refuses


class ExecutionItem(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One execution as the fast path decodes it (same fields and defaults as ``ExecutionIn``)."""

    rule: _Name
    rule_version: _Name
    duration_seconds: _Duration
    event_id: uuid.UUID | None = None
    started_at: str | None = None
    status: _Status = "ok"
    outcome: _Name | None = None
    signal: float | None = None
    confidence: _Confidence | None = None
    mode: _Mode = "live"
    error_type: _Short | None = None
    backtest_run_id: uuid.UUID | None = None


class ExecutionBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    executions: list[ExecutionItem]


_decoder = msgspec.json.Decoder(ExecutionBatch)
#: The very validator of ``ExecutionIn.started_at`` (RFC 3339 with a zone), for the few items
#: that carry one: the fast path does not re-implement date parsing.
_timestamp = TypeAdapter(Timestamp)


def decode(body: bytes) -> list[ExecutionItem] | None:
    """The items of a batch body, or None when the fast path cannot vouch for it (then the
    caller validates ``body`` with the pydantic model, which accepts or answers the 422)."""
    try:
        return _decoder.decode(body).executions
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def start_time(value: str) -> float:
    """Unix seconds of an item's ``started_at`` text, validated as ``ExecutionIn.started_at``
    validates it (raises pydantic's ``ValidationError`` when that would refuse it)."""
    parsed: datetime = _timestamp.validate_python(value)
    return parsed.timestamp()


def as_dict(item: ExecutionItem) -> dict[str, Any]:
    """The item as a plain dict (tests compare it with the pydantic model's)."""
    return {f: getattr(item, f) for f in item.__struct_fields__}
