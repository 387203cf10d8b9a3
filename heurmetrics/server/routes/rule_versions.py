"""``POST /v1/rule-versions``: register a rule version (201 created, 200 identical, 409 conflict).

A conflict (same rule and version, other content) answers ``409`` with
``{"error": "version_conflict", "detail": …, "existing_content_hash": …}``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Response

from heurmetrics.ingest import Ingest
from heurmetrics.server.models import CONFLICT, RuleVersionIn, RuleVersionOut


def build_router(ingest: Ingest, authorize: Callable[..., None]) -> APIRouter:
    """The registration route over ``ingest``, behind ``authorize``."""
    router = APIRouter(tags=["ingest"], dependencies=[Depends(authorize)])

    @router.post(
        "/v1/rule-versions",
        response_model=RuleVersionOut,
        status_code=201,
        responses={200: {"model": RuleVersionOut}, **CONFLICT},
    )
    def register_rule_version(body: RuleVersionIn, response: Response) -> RuleVersionOut:
        """Register a rule version: 201 created, 200 identical content exists, 409 conflict."""
        rv, created = ingest.register_rule_version(  # a refusal is counted by ingest
            body.rule,
            body.version,
            params=body.params,
            source=body.source,
            created_by=body.created_by or "api",
            description=body.description,
        )
        response.status_code = 201 if created else 200
        return RuleVersionOut(rule=rv.rule, version=rv.version, content_hash=rv.content_hash)

    return router
