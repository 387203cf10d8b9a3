"""Request and response bodies of the HTTP API (JSON structure and types only).

Value rules (ranges, label alphabet, enums, finiteness) are not repeated here: the handlers call
the same :mod:`heurmetrics.validation` functions as the SDK, so both paths reject the same things.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

#: Largest batch one ``POST /v1/executions`` may carry.
MAX_EXECUTIONS_PER_REQUEST = 10_000


class _Strict(BaseModel):
    """Strict types (no "1.5" for a number, no 1 for a string) and no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


# JSON has no UUID or datetime type: these two parse from strings (ISO 8601, canonical UUID).
Uuid = Annotated[uuid.UUID, Field(strict=False)]
Timestamp = Annotated[datetime, Field(strict=False)]


class RuleVersionIn(_Strict):
    rule: str = Field(description="Rule name (label-safe: letters, digits, _ . : + -, at most 64).")
    version: str = Field(description="Version string, ideally semantic (1.2.0).")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters; part of the content hash.")
    source: str = Field("", description="Source text or spec; part of the content hash.")
    created_by: str | None = Field(None, max_length=128, description="Author; defaults to 'api'.")
    description: str | None = Field(None, max_length=10_000, description="What changed, in plain language.")


class RuleVersionOut(BaseModel):
    rule: str
    version: str
    content_hash: str


class ExecutionIn(_Strict):
    event_id: Uuid | None = Field(None, description="Idempotency key; generated when absent.")
    rule: str
    rule_version: str
    started_at: Timestamp | None = Field(None, description="ISO 8601 with a zone; default now minus duration.")
    duration_seconds: float | int
    status: str = "ok"
    outcome: str | None = None
    signal: float | int | None = None
    confidence: float | int | None = None
    mode: str = "live"
    error_type: str | None = None
    backtest_run_id: Uuid | None = None


class ExecutionBatchIn(_Strict):
    executions: list[ExecutionIn] = Field(description=f"At most {MAX_EXECUTIONS_PER_REQUEST} executions.")


class ExecutionBatchOut(BaseModel):
    accepted: int = Field(description="Executions newly stored by this request.")
    duplicates: int = Field(description="Executions already stored (a re-sent batch) or repeated in it.")


class EquityIn(_Strict):
    timestamps: list[Timestamp]
    values: list[float | int | None] = Field(description="Equity per timestamp; null marks a missing point.")


class BacktestIn(_Strict):
    run_id: Uuid | None = Field(None, description="Idempotency key; generated when absent.")
    rule: str
    rule_version: str
    dataset: str
    dataset_hash: str | None = None
    periods_per_year: float | int
    risk_free_rate: float | int = 0.0
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    equity: EquityIn
    config: dict[str, Any] = Field(default_factory=dict)


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
    detail: list[FieldError] | str


#: The documented answer of every route behind the bearer token (``Settings.api_token``).
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid bearer token (only when an API token is set)."}
}
