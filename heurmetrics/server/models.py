"""Request and response bodies of the HTTP API.

Every value rule a handler enforces is stated here too (through :mod:`heurmetrics.server.fields`),
so the OpenAPI schema tells the truth; the handlers still call the same
:mod:`heurmetrics.validation` functions as the SDK, so both paths reject the same things.
"""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from heurmetrics.backtest.record import check_equity
from heurmetrics.errors import InvalidEvent
from heurmetrics.server.errors import ErrorCode, Refusal, field_error
from heurmetrics.server.fields import (
    Dataset,
    DatasetHash,
    EquityValue,
    JsonObject,
    LongText,
    Mode,
    Name,
    ShortText,
    SourceText,
    Status,
    Timestamp,
)
from heurmetrics.validation import MAX_EXECUTION_SECONDS, NON_BLANK_PATTERN

#: Largest batch one ``POST /v1/executions`` may carry.
MAX_EXECUTIONS_PER_REQUEST = 10_000


class _Strict(BaseModel):
    """Strict types (no "1.5" for a number, no 1 for a string), no unknown fields, no NaN/inf."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# JSON has no UUID type: it parses from a string (canonical UUID); Timestamp likewise (RFC 3339).
Uuid = Annotated[uuid.UUID, Field(strict=False)]
__all__ = ["Timestamp", "Uuid"]


class RuleVersionIn(_Strict):
    rule: Name = Field(description="Rule name (label-safe: letters, digits, _ . : + -, at most 64).")
    version: Name = Field(description="Version string, ideally semantic (1.2.0).")
    params: JsonObject = Field(default_factory=dict, description="Parameters; part of the content hash.")
    source: SourceText = Field("", description="Source text or spec; part of the content hash.")
    created_by: ShortText | None = Field(None, description="Author; defaults to 'api'.")
    description: LongText | None = Field(None, description="What changed, in plain language.")


class RuleVersionOut(BaseModel):
    rule: str
    version: str
    content_hash: str


class ExecutionIn(_Strict):
    event_id: Uuid | None = Field(None, description="Idempotency key; generated when absent.")
    rule: Name
    rule_version: Name
    started_at: Timestamp | None = Field(
        None, description="RFC 3339 with a zone, from 2000-01-01 to now + 5 minutes; default now minus duration."
    )
    duration_seconds: Annotated[float, Field(ge=0, le=MAX_EXECUTION_SECONDS)] = Field(
        description=f"0 to {MAX_EXECUTION_SECONDS:.0f} seconds."
    )
    status: Status = "ok"
    outcome: Name | None = None
    signal: float | None = None
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    mode: Mode = "live"
    error_type: ShortText | None = None
    backtest_run_id: Uuid | None = None


class ExecutionBatchIn(_Strict):
    executions: list[ExecutionIn] = Field(description=f"At most {MAX_EXECUTIONS_PER_REQUEST} executions.")


class ExecutionBatchOut(BaseModel):
    accepted: int = Field(description="Executions newly stored by this request.")
    duplicates: int = Field(description="Executions already stored (a re-sent batch) or repeated in it.")


class EquityIn(_Strict):
    timestamps: list[Timestamp] = Field(min_length=1, description="Strictly increasing, RFC 3339 with a zone.")
    values: list[EquityValue | None] = Field(
        min_length=1,
        description="Equity per timestamp (as many as timestamps), finite and > 0; null marks a missing point.",
    )


class BacktestIn(_Strict):
    run_id: Uuid | None = Field(None, description="Idempotency key; generated when absent.")
    rule: Name
    rule_version: Name
    dataset: Dataset
    dataset_hash: DatasetHash | None = None
    periods_per_year: Annotated[float, Field(ge=1e-9)]
    risk_free_rate: Annotated[float, Field(ge=-1)] = 0.0
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    equity: EquityIn
    config: JsonObject = Field(default_factory=dict)


class BacktestFailureIn(_Strict):
    run_id: Uuid | None = Field(None, description="Idempotency key; generated when absent.")
    rule: Name
    rule_version: Name
    kind: Literal["single", "walk_forward"] = "single"
    dataset: Dataset
    periods_per_year: Annotated[float, Field(ge=1e-9)]
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = Field(None, description="Default: now.")
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NON_BLANK_PATTERN)] = Field(
        description="What went wrong (shown on the backtests dashboard and in the BacktestFailed alert)."
    )
    config: JsonObject = Field(default_factory=dict)


class BacktestOut(BaseModel):
    run_id: uuid.UUID
    rule: str
    rule_version: str
    created: bool
    metrics: dict[str, Any]


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """The body of every refusal (see :mod:`heurmetrics.server.errors`)."""

    error: ErrorCode = Field(description="What kind of refusal: stable, branch on this (never on the text).")
    detail: list[FieldError] | str = Field(description="What is wrong: a message, or the fields to fix.")


class ConflictOut(ErrorOut):
    """A ``409``: the request clashes with what is stored; nothing was written."""

    existing_content_hash: str | None = Field(
        None, description="version_conflict: the content hash stored under this rule version."
    )


#: The documented answer of every route behind the bearer token (``Settings.api_token``).
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid bearer token (only when an API token is set)."}
}

#: The documented answer of every route that references a rule version which does not exist.
UNKNOWN_RULE_VERSION: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "The referenced rule or rule version does not exist."}
}
#: The documented answer of a write that can clash with what is stored.
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ConflictOut, "description": "Conflicts with what is stored; nothing was written."}
}


def unknown_rule_version(field: str, exc: Exception) -> Refusal:
    """The one answer to "the referenced rule version does not exist": 404 naming the field."""
    return Refusal("not_found", field_error(field, str(exc)))


def equity_series(field: str, body: EquityIn) -> pd.Series:
    """The equity curve of a request as a Series; :class:`InvalidEvent` names what is wrong."""
    if len(body.timestamps) != len(body.values):
        raise InvalidEvent(f"{field}.values", f"has {len(body.values)} values for {len(body.timestamps)} timestamps")
    values = [math.nan if v is None else v for v in body.values]
    try:
        # utc=True: timestamps with different offsets are one instant each (a plain DatetimeIndex raises).
        index = pd.to_datetime(body.timestamps, utc=True)
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        raise InvalidEvent(f"{field}.timestamps", "must lie between 1678 and 2261") from None
    return check_equity(field, pd.Series(values, index=index, dtype="float64"))
