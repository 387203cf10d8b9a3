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

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, StringConstraints

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
#: A time with a zone (RFC 3339). Event times must also lie between 2000-01-01 and now + 5 min.
Timestamp = Annotated[AwareDatetime, Field(strict=False)]
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
