"""``POST /v1/resolutions``: outcome resolutions of executions, appended (202 after commit).

An ``(event_id, horizon)`` already resolved is a duplicate: skipped, never overwritten. Any invalid
item refuses the whole batch naming it (``resolutions[3].horizon``); nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from heurmetrics.errors import InvalidEvent
from heurmetrics.ingest import Ingest
from heurmetrics.live.resolution import make_resolution
from heurmetrics.metrics import definitions as d
from heurmetrics.server.errors import Refusal
from heurmetrics.server.fields import Horizon, Timestamp
from heurmetrics.server.models import UNAUTHORIZED, ErrorOut, Uuid

#: Largest number of resolutions one request may carry.
MAX_RESOLUTIONS_PER_REQUEST = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ResolutionIn(_Strict):
    """One resolution: ``realized_return``, ``correct`` or both must be given (not null)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["realized_return"], "properties": {"realized_return": {"type": "number"}}},
                {"required": ["correct"], "properties": {"correct": {"type": "boolean"}}},
            ]
        }
    )
    event_id: Uuid
    horizon: Horizon = Field("1h", description=f"One of {', '.join(d.RESOLUTION_HORIZONS)}.")
    realized_return: Annotated[float, Field(ge=-1e6, le=1e6)] | None = Field(
        None, description="Direction-signed return (positive = right)."
    )
    correct: bool | None = Field(None, description="Default: realized_return > 0.")
    resolved_at: Timestamp | None = None


class ResolutionBatchIn(_Strict):
    resolutions: list[ResolutionIn] = Field(description=f"At most {MAX_RESOLUTIONS_PER_REQUEST}.")


class ResolutionBatchOut(BaseModel):
    accepted: int = Field(description="Resolutions newly stored.")
    duplicates: int = Field(description="(event, horizon) pairs already resolved: skipped, never overwritten.")


def _aware(field: str, ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise InvalidEvent(field, "needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    return ts


def build_router(ingest: Ingest, authorize: Callable[..., None]) -> APIRouter:
    """The resolution route over ``ingest``'s store, behind ``authorize``."""
    router = APIRouter(
        tags=["ingest"], dependencies=[Depends(authorize)], responses={422: {"model": ErrorOut}, **UNAUTHORIZED}
    )

    @router.post(
        "/v1/resolutions", response_model=ResolutionBatchOut, status_code=202, responses={413: {"model": ErrorOut}}
    )
    def post_resolutions(body: ResolutionBatchIn) -> ResolutionBatchOut:
        """Append outcome resolutions; 202 after commit. An (event_id, horizon) already resolved
        is a duplicate: skipped, never overwritten. Any invalid item rejects the batch."""
        if len(body.resolutions) > MAX_RESOLUTIONS_PER_REQUEST:
            ingest.count_rejected(d.KIND_RESOLUTION, len(body.resolutions))  # refused before ingest
            raise Refusal(
                "too_large",
                f"batch of {len(body.resolutions)} resolutions exceeds the limit of "
                f"{MAX_RESOLUTIONS_PER_REQUEST} per request; split it",
            )
        items = []
        for i, item in enumerate(body.resolutions):
            try:
                resolved_at = None if item.resolved_at is None else _aware("resolved_at", item.resolved_at)
                items.append(
                    make_resolution(
                        item.event_id,
                        horizon=item.horizon,
                        realized_return=item.realized_return,
                        correct=item.correct,
                        resolved_at=resolved_at,
                    )
                )
            except InvalidEvent as exc:  # the whole batch is refused, before ingest: counted here
                ingest.count_rejected(d.KIND_RESOLUTION, len(body.resolutions))
                raise exc.at(f"resolutions[{i}]") from None
        result = ingest.resolve(items)  # stored and counted (kind "resolution") by ingest
        return ResolutionBatchOut(accepted=result.accepted, duplicates=result.duplicates)

    return router
