"""``POST /v1/executions``: a batch of executions, acknowledged (202) only after commit.

Re-sending a batch (same event ids, same ``Idempotency-Key``) stores and counts nothing twice.
Any invalid item refuses the whole batch naming it (``executions[3].confidence``); nothing is
written, and every execution of the batch counts as rejected.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.errors import HeurmetricsError, InvalidEvent, UnknownRuleVersion
from heurmetrics.execution_builder import build_execution
from heurmetrics.idempotency import IDEMPOTENCY_HEADER, idempotency_key
from heurmetrics.ids import uuid7
from heurmetrics.ingest import Ingest
from heurmetrics.metrics import definitions as d
from heurmetrics.server import execution_decoder as decoder
from heurmetrics.server.errors import Refusal, field_error
from heurmetrics.server.models import (
    MAX_EXECUTIONS_PER_REQUEST,
    UNKNOWN_RULE_VERSION,
    ExecutionBatchIn,
    ExecutionBatchOut,
    unknown_rule_version,
)
from heurmetrics.server.openapi import json_request_body
from heurmetrics.validation import check_label_value


def build_router(ingest: Ingest, authorize: Callable[..., None]) -> APIRouter:
    """The execution route over ``ingest``, behind ``authorize``."""
    router = APIRouter(tags=["ingest"], dependencies=[Depends(authorize)])

    @router.post(
        "/v1/executions",
        response_model=ExecutionBatchOut,
        status_code=202,
        responses=UNKNOWN_RULE_VERSION,
        openapi_extra=json_request_body(ExecutionBatchIn),
    )
    async def post_executions(request: Request) -> ExecutionBatchOut:
        """Store a batch of executions; 202 only after the rows are committed.

        Re-sending a batch (same event ids) stores and counts nothing twice. Any invalid item
        rejects the whole batch with 422 naming it; nothing is written.
        """
        # The hottest endpoint decodes its raw body in one pass into untracked msgspec structs
        # (heurmetrics.server.execution_decoder). Whatever that fast path cannot vouch for is
        # validated by the pydantic model instead, which answers exactly as it always did.
        body = await request.body()
        items = decoder.decode(body)
        try:
            delivery_id = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
        except ValueError as exc:
            parse(body)  # a body error is answered first, as on the pydantic path
            raise Refusal("invalid", field_error(f"headers.{IDEMPOTENCY_HEADER}", str(exc))) from None
        if items is None:
            return await run_in_threadpool(ingest_batch, parse(body), delivery_id)
        return await run_in_threadpool(ingest_fast, items, body, delivery_id)

    def parse(body: bytes) -> ExecutionBatchIn:
        """The pydantic path: the documented model validates the body (422 naming the field)."""
        try:
            return ExecutionBatchIn.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None

    def ingest_fast(
        items: list[decoder.ExecutionItem], body: bytes, delivery_id: uuid.UUID | None
    ) -> ExecutionBatchOut:
        """Build the events of decoded items; on any refusal, redo the batch on the pydantic path
        (which then counts and answers it: nothing is counted here before the write)."""
        events = fast_events(items)
        if events is None:
            return ingest_batch(parse(body), delivery_id)
        result = ingest.write_executions(events, delivery_id=delivery_id)
        return ExecutionBatchOut(accepted=result.accepted, duplicates=result.duplicates)

    def fast_events(items: list[decoder.ExecutionItem]) -> list[ExecutionEvent] | None:
        """The events of a batch the fast path decoded, or None when any item would be refused."""
        if len(items) > MAX_EXECUTIONS_PER_REQUEST:
            return None
        events: list[ExecutionEvent] = []
        append = events.append
        versions: dict[tuple[str, str], RuleVersion] = {}
        new_id = uuid7
        try:
            for item in items:
                key = (item.rule, item.rule_version)
                rv = versions.get(key)
                if rv is None:
                    check_label_value("rule", item.rule)  # the pattern msgspec did not check
                    check_label_value("rule_version", item.rule_version)
                    rv = versions[key] = ingest.rule_version(item.rule, item.rule_version, admit=False)
                started_at = item.started_at
                append(
                    build_execution(
                        rv, item.duration_seconds, item.status, item.outcome, item.signal, item.confidence,
                        item.mode, None if started_at is None else decoder.start_time(started_at),
                        item.error_type, item.event_id, item.backtest_run_id, new_id,
                    )
                )  # fmt: skip
            # Series only for a batch that will be written: a refused one admits no version.
            for rv in versions.values():
                ingest.admit(rv)
        except (HeurmetricsError, ValidationError):
            return None
        return events

    def ingest_batch(body: ExecutionBatchIn, delivery_id: uuid.UUID | None = None) -> ExecutionBatchOut:
        items = body.executions
        if len(items) > MAX_EXECUTIONS_PER_REQUEST:
            ingest.count_rejected(d.KIND_EXECUTION, len(items))
            raise Refusal(
                "too_large",
                f"batch of {len(items)} executions exceeds the limit of "
                f"{MAX_EXECUTIONS_PER_REQUEST} per request; split it",
            )
        events: list[ExecutionEvent] = []
        append = events.append
        versions: dict[tuple[str, str], RuleVersion] = {}  # a batch names a handful of versions: look each up once
        new_id = uuid7  # ids the exporter gives items sent without one: time-ordered, as the SDK's
        for i, item in enumerate(items):
            key = (item.rule, item.rule_version)
            rv = versions.get(key)
            if rv is None:
                try:
                    rv = versions[key] = ingest.rule_version(item.rule, item.rule_version, admit=False)
                except UnknownRuleVersion as exc:
                    ingest.count_rejected(d.KIND_EXECUTION, len(items))
                    raise unknown_rule_version(f"executions[{i}].rule_version", exc) from None
            started_at = item.started_at
            try:
                # The one builder, called positionally (this loop runs once per execution).
                append(
                    build_execution(
                        rv, item.duration_seconds, item.status, item.outcome, item.signal, item.confidence,
                        item.mode, None if started_at is None else started_at.timestamp(), item.error_type,
                        item.event_id, item.backtest_run_id, new_id,
                    )
                )  # fmt: skip
            except InvalidEvent as exc:
                ingest.count_rejected(d.KIND_EXECUTION, len(items))
                raise exc.at(f"executions[{i}]") from None
        for rv in versions.values():  # the whole batch is valid: now its versions get their series
            ingest.admit(rv)
        result = ingest.write_executions(events, delivery_id=delivery_id)
        return ExecutionBatchOut(accepted=result.accepted, duplicates=result.duplicates)

    return router
