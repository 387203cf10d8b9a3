"""Field types of the HTTP API: every constraint the server enforces on a value, stated once.

Each type is a pydantic ``Annotated`` type whose constraints (pattern, length, bounds, enum) are
enforced by pydantic-core *and* written into the OpenAPI schema, so a generated client or a
fuzzer knows exactly what is accepted. The limits are the ones :mod:`heurmetrics.validation`
and :mod:`heurmetrics.audit.lifecycle` apply on the SDK path; the handlers still call those
checks, so both paths refuse the same values. Messages never echo the value (a 100 kB name
answers with a 100-byte error).

Constraints one value cannot express (equal lengths of ``timestamps`` and ``values``, fold
order, times relative to *now*) are stated in the field descriptions and answered with a
``422`` naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, StringConstraints
from typing_extensions import TypeAliasType

from heurmetrics.metrics import definitions as d
from heurmetrics.validation import MAX_SOURCE_LENGTH, NAME_BODY, NO_NUL_PATTERN, NON_BLANK_PATTERN

#: Rule, version, outcome and environment names: they become Prometheus label values.
Name = Annotated[
    str,
    StringConstraints(max_length=d.LABEL_VALUE_MAX_LENGTH, pattern=d.LABEL_VALUE_PATTERN),
    Field(description="Letters, digits and _ . : + -, starting with a letter or digit; at most 64."),
]
#: ``rule@version``.
RuleRef = Annotated[
    str,
    StringConstraints(max_length=2 * d.LABEL_VALUE_MAX_LENGTH + 1, pattern=f"^{NAME_BODY}@{NAME_BODY}$"),
    Field(description="RULE@VERSION, e.g. range_bias@1.0.0."),
]
#: A SHA-256 hex digest (chain heads, content hashes).
Sha256Hex = Annotated[str, StringConstraints(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]

Status = Literal[d.EXECUTION_STATUSES]  # type: ignore[valid-type]
Mode = Literal[d.EXECUTION_MODES]  # type: ignore[valid-type]
Horizon = Literal[d.RESOLUTION_HORIZONS]  # type: ignore[valid-type]


def integral(value: object) -> object:
    """JSON Schema counts 3.0 as an integer; so does the API (strict mode would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: A non-negative integer that fits every database's INTEGER column.
Count = Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(integral)]
#: A number of candidates tried (>= 1), as an INTEGER column holds it.
Trials = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(integral)]
#: A simple return of one period: finite, bounded so squares and sums cannot overflow.
ReturnValue = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
#: A variance of annualised Sharpe ratios: finite and >= 0.
SharpeVariance = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: object) -> object:
    """Only what ``format: date-time`` promises: an RFC 3339 string (pydantic alone would also
    take a number of seconds, a date, or a space instead of the T)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 time with a zone, e.g. 2026-01-01T00:00:00Z")
    return value


#: A time with a zone (RFC 3339). Event times must also lie between 2000-01-01 and now + 5 min.
Timestamp = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339)]
Time = datetime  # re-exported for annotations of response models


#: Free text without NUL (PostgreSQL text cannot hold it), by length.
ShortText = Annotated[str, StringConstraints(max_length=128, pattern=NO_NUL_PATTERN)]
LongText = Annotated[str, StringConstraints(max_length=10_000, pattern=NO_NUL_PATTERN)]
SourceText = Annotated[str, StringConstraints(max_length=MAX_SOURCE_LENGTH, pattern=NO_NUL_PATTERN)]
Dataset = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL_PATTERN)]
DatasetHash = Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL_PATTERN)]
CodeRef = Annotated[str, StringConstraints(max_length=256, pattern=NO_NUL_PATTERN)]
#: Free text that is not empty or only ASCII whitespace (who did it, and why).
Actor = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NON_BLANK_PATTERN)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=10_000, pattern=NON_BLANK_PATTERN)]
#: A version, or ``rule@version``.
ParentRef = Annotated[
    str, StringConstraints(max_length=2 * d.LABEL_VALUE_MAX_LENGTH + 1, pattern=f"^({NAME_BODY}@)?{NAME_BODY}$")
]
#: An equity value: finite and above zero (null marks a missing point where the type allows it).
EquityValue = Annotated[float, Field(gt=0, allow_inf_nan=False)]


#: Free-form JSON (params, config, metrics) as the store can hold it everywhere: every string —
#: keys included, at any depth — without NUL (PostgreSQL's JSONB refuses ``\u0000``).
JsonText = Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN)]


def _key_names(schema: dict[str, Any]) -> None:
    """State the key rule as ``propertyNames`` (pydantic writes ``patternProperties``, which lets
    any other key through in JSON Schema)."""
    values = schema.pop("patternProperties", {})
    if values:
        schema["additionalProperties"] = next(iter(values.values()))
    schema["propertyNames"] = {"pattern": NO_NUL_PATTERN}


JsonValue = TypeAliasType(
    "JsonValue",
    "JsonText | int | float | bool | list[JsonValue] "
    "| Annotated[dict[JsonText, JsonValue], Field(json_schema_extra=_key_names)] | None",
)
JsonObject = Annotated[dict[JsonText, JsonValue], Field(json_schema_extra=_key_names)]
