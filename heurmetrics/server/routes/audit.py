"""Audit and lifecycle endpoints of the exporter (``/v1/…``), as one FastAPI router.

Build it with :func:`build_router` and include it in the app::

    app.include_router(build_router(ingest, authorize))

Every route — reads included — depends on ``authorize``: when an API token is set, the audit
trail is readable only with it. Reads return the same JSON as ``heurmetrics audit … --json``.

Lifecycle writes (``POST /v1/rule-versions/{rule}/{version}/{transition}``) go through
:mod:`heurmetrics.audit.lifecycle`, so the policy is the same as in the SDK: ``409`` for a policy
violation or a transition that does not fit the version's state (the message says what clashed),
``404`` for an unknown rule or version (as on every route that references one), ``422`` for
invalid fields. Routes raise the domain errors as they come (by type: ``PolicyViolation`` →
``policy_violation``, ``LifecycleError`` → ``lifecycle_conflict``, ``UnknownRule`` → ``not_found``…);
:mod:`heurmetrics.server.errors` answers, counts and logs them. ``actor`` is whoever the client says
did it: the token authenticates the client, not the person.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from heurmetrics.audit import chain, queries
from heurmetrics.audit.model import jsonable, split_ref
from heurmetrics.errors import InvalidEvent
from heurmetrics.ingest import Ingest
from heurmetrics.metrics import definitions as d
from heurmetrics.server.fields import (
    Actor,
    CodeRef,
    JsonObject,
    LongText,
    Name,
    ParentRef,
    Reason,
    RuleRef,
    Sha256Hex,
    SourceText,
    Timestamp,
)
from heurmetrics.server.models import UNAUTHORIZED, ConflictOut, ErrorOut


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ProposeIn(_Strict):
    params: JsonObject = Field(default_factory=dict, description="Parameters; part of the content hash.")
    source: SourceText = Field("", description="Source text or spec; part of the content hash.")
    created_by: Actor = Field(description="Author of the version.")
    description: LongText | None = Field(None, description="What changed, in plain language.")
    parent: ParentRef | None = Field(None, description="Version it derives from: '1.0.0' or 'rule@1.0.0'.")
    code_ref: CodeRef | None = Field(None, description="Code reference, e.g. a git commit.")


class TransitionIn(_Strict):
    actor: Actor = Field(description="Who does it (the approver must not be the author).")
    reason: Reason = Field(description="Why; required.")


class DeployIn(TransitionIn):
    env: Name = Field(description="Environment: live, paper, … (required: a policy action names where).")


RulePath = Annotated[str, Path(max_length=64, pattern=d.LABEL_VALUE_PATTERN, description="Rule name.")]
VersionPath = Annotated[str, Path(max_length=64, pattern=d.LABEL_VALUE_PATTERN, description="Version.")]


#: Documented answers besides 200/201, 401 and 422 (see the module docstring).
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "Unknown rule or version."}}
_WRITE: dict[int | str, dict[str, Any]] = {
    **_UNKNOWN,
    409: {"model": ConflictOut, "description": "Policy violation, or a transition that does not fit the state."},
}


def build_router(ingest: Ingest, authorize: Callable[..., None]) -> APIRouter:
    """The audit reads and lifecycle writes over ``ingest``'s store, all behind ``authorize``."""
    router = APIRouter(prefix="/v1", tags=["audit"], dependencies=[Depends(authorize)], responses=UNAUTHORIZED)
    store = ingest.store

    # --- reads -------------------------------------------------------------------------------
    @router.get("/rules")
    def rules() -> Any:
        """Every rule: number of versions, latest version, active version per environment now."""
        return jsonable(queries.list_rules(store))

    @router.get("/rules/{rule}/versions", responses=_UNKNOWN)
    def versions(rule: RulePath) -> Any:
        """The versions of a rule in semantic-version order, with status, author and approvers."""
        return jsonable(queries.list_versions(store, rule))

    @router.get("/rules/{rule}/history", responses=_UNKNOWN)
    def rule_history(rule: RulePath) -> Any:
        """The lifecycle events of every version of a rule, in chain order."""
        return jsonable(queries.history(store, rule))

    @router.get("/rule-versions/{rule}/{version}", responses=_UNKNOWN)
    def show(rule: RulePath, version: VersionPath) -> Any:
        """One version: params, source, hashes, author, approvers, lifecycle, backtests, executions."""
        return jsonable(queries.show_version(store, rule, version))

    @router.get("/rule-versions/{rule}/{version}/history", responses=_UNKNOWN)
    def version_history(rule: RulePath, version: VersionPath) -> Any:
        """The lifecycle events of one version."""
        return jsonable(queries.history(store, rule, version))

    @router.get("/rule-versions/{rule}/{version}/executions", responses=_UNKNOWN)
    def executions(
        rule: RulePath,
        version: VersionPath,
        start: Timestamp | None = Query(None, alias="from", description="RFC 3339 with a zone; inclusive."),
        end: Timestamp | None = Query(None, alias="to", description="RFC 3339 with a zone; exclusive."),
        rows: int = Query(0, ge=0, le=queries.MAX_ROWS, description="Also return up to this many rows."),
    ) -> Any:
        """Counts by mode/status/outcome, flagged live executions, and optionally the rows."""
        t0 = None if start is None else _utc(start)
        t1 = None if end is None else _utc(end)
        return jsonable(queries.executions(store, rule, version, start=t0, end=t1, rows=rows))

    @router.get("/diff", responses=_UNKNOWN)
    def diff(
        old: Annotated[RuleRef, Query(description="rule@version")],
        new: Annotated[RuleRef, Query(description="rule@version")],
    ) -> Any:
        """Params diff by key path and unified source diff between two versions."""
        return jsonable(queries.diff_versions(store, _split_ref("old", old), _split_ref("new", new)))

    @router.get("/active")
    def active(
        at: Timestamp | Literal["now"] = Query("now", description="RFC 3339 with a zone, or 'now'."),
        env: Name | None = Query(None, description="Only this environment."),
    ) -> Any:
        """Which version of each rule was active at ``at`` (per environment)."""
        when = datetime.now(UTC) if isinstance(at, str) else _utc(at)
        return jsonable({"at": when, "env": env, "active": queries.active_at(store, when, env)})

    @router.get("/audit/head")
    def head() -> Any:
        """The chain head to anchor outside the database."""
        h = chain.chain_head(store)
        return jsonable(
            {
                "position": h.position,
                "row_hash": h.row_hash,
                "recorded_at": h.recorded_at,
                "table": h.table,
                "record_id": h.record_id,
            }
        )

    @router.get("/audit/verify")
    def verify(expect_head: Sha256Hex | None = Query(None, description="A previously anchored head hash.")) -> Any:
        """Recompute the chain; ``ok`` false names the first broken record (the request itself succeeds)."""
        report = chain.verify(store, expect_head=expect_head)
        return jsonable(
            {
                "ok": report.ok,
                "records": report.records,
                "versions": report.versions,
                "events": report.events,
                "head": report.head,
                "first_problem": report.first,
                "problems": report.problems,
                "anchor_found": report.anchor_found,
            }
        )

    # --- lifecycle writes --------------------------------------------------------------------
    @router.post(
        "/rule-versions/{rule}/{version}/propose",
        status_code=201,
        responses={200: {"description": "Identical version exists."}, **_WRITE},
    )
    def propose(rule: RulePath, version: VersionPath, body: ProposeIn, response: Response) -> Any:
        """Register a version as a proposal with its lineage: 201 created, 200 identical exists, 409 conflict."""
        rv, created = ingest.propose(
            rule,
            version,
            params=body.params,
            source=body.source,
            created_by=body.created_by,
            description=body.description,
            parent=body.parent,
            code_ref=body.code_ref,
        )
        response.status_code = 201 if created else 200
        return {"rule": rv.rule, "version": rv.version, "content_hash": rv.content_hash, "created": created}

    @router.post("/rule-versions/{rule}/{version}/approve", status_code=201, responses=_WRITE)
    def approve(rule: RulePath, version: VersionPath, body: TransitionIn) -> Any:
        """Approve a version (the approver must not be its author)."""
        event = ingest.approve(rule, version, actor=body.actor, reason=body.reason)
        return jsonable(event)

    @router.post("/rule-versions/{rule}/{version}/activate", status_code=201, responses=_WRITE)
    def activate(rule: RulePath, version: VersionPath, body: DeployIn) -> Any:
        """Activate a version in ``env`` (needs an approval and a completed backtest of it); ends the previous one."""
        event = ingest.activate(rule, version, env=body.env, actor=body.actor, reason=body.reason)
        return jsonable(event)

    @router.post("/rule-versions/{rule}/{version}/retire", status_code=201, responses=_WRITE)
    def retire(rule: RulePath, version: VersionPath, body: TransitionIn) -> Any:
        """Retire a version for good (it ends in every environment)."""
        event = ingest.retire(rule, version, actor=body.actor, reason=body.reason)
        return jsonable(event)

    @router.post("/rule-versions/{rule}/{version}/rollback", status_code=201, responses=_WRITE)
    def rollback(rule: RulePath, version: VersionPath, body: DeployIn) -> Any:
        """Roll the version back in ``env``; the version it replaced becomes active again."""
        events = ingest.rollback(rule, version, env=body.env, actor=body.actor, reason=body.reason)
        return jsonable(events)

    return router


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 at +23:59 has no UTC instant
        raise InvalidEvent("time", "is out of range") from None


def _split_ref(field: str, ref: str) -> tuple[str, str]:
    try:
        return split_ref(ref)
    except ValueError as exc:  # the schema's pattern makes this unreachable; answer 422 all the same
        raise InvalidEvent(field, str(exc)) from None
