"""``POST /v1/backtests`` (a finished run, metrics computed here) and ``POST /v1/backtests/failed``.

Both are idempotent on ``run_id``: 201 when stored, 200 when the run id was stored already.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Response

from heurmetrics.errors import InvalidEvent, UnknownRuleVersion
from heurmetrics.ingest import Ingest
from heurmetrics.metrics import definitions as d
from heurmetrics.server.models import (
    UNKNOWN_RULE_VERSION,
    BacktestFailureIn,
    BacktestIn,
    BacktestOut,
    equity_series,
    unknown_rule_version,
)


def build_router(ingest: Ingest, authorize: Callable[..., None]) -> APIRouter:
    """The backtest routes over ``ingest``, behind ``authorize``."""
    router = APIRouter(tags=["ingest"], dependencies=[Depends(authorize)])

    def known_rule_version(rule: str, version: str) -> Any:
        try:
            return ingest.rule_version(rule, version)
        except UnknownRuleVersion as exc:
            ingest.count_rejected(d.KIND_BACKTEST)
            raise unknown_rule_version("rule_version", exc) from None

    @router.post(
        "/v1/backtests",
        response_model=BacktestOut,
        status_code=201,
        responses={200: {"model": BacktestOut}, **UNKNOWN_RULE_VERSION},
    )
    def post_backtest(body: BacktestIn, response: Response) -> BacktestOut:
        """Store a finished backtest run from its equity curve; metrics are computed here."""
        rv = known_rule_version(body.rule, body.rule_version)
        try:
            equity = equity_series("equity", body.equity)
        except InvalidEvent:  # refused before it reaches ingest: counted here
            ingest.count_rejected(d.KIND_BACKTEST)
            raise
        run, created = ingest.record_backtest(  # a refusal from here on is counted by ingest
            rv,
            equity,
            dataset=body.dataset,
            periods_per_year=body.periods_per_year,
            risk_free_rate=body.risk_free_rate,
            dataset_hash=body.dataset_hash,
            started_at=body.started_at,
            finished_at=body.finished_at,
            run_id=body.run_id,
            config=body.config,
        )
        response.status_code = 201 if created else 200
        return BacktestOut(
            run_id=run.run_id, rule=rv.rule, rule_version=rv.version, created=created, metrics=run.metrics
        )

    @router.post(
        "/v1/backtests/failed",
        response_model=BacktestOut,
        status_code=201,
        responses={200: {"model": BacktestOut}, **UNKNOWN_RULE_VERSION},
    )
    def post_failed_backtest(body: BacktestFailureIn, response: Response) -> BacktestOut:
        """Record a backtest run that failed (status ``failed``, no metrics): it feeds the
        "Backtest failed" annotation and the BacktestFailed alert. 200 when the run id exists."""
        rv = known_rule_version(body.rule, body.rule_version)
        run, created = ingest.record_failed_backtest(  # a refusal is counted by ingest
            rv,
            error_message=body.error_message,
            dataset=body.dataset,
            periods_per_year=body.periods_per_year,
            kind=body.kind,
            started_at=body.started_at,
            finished_at=body.finished_at,
            run_id=body.run_id,
            config=body.config,
        )
        response.status_code = 201 if created else 200
        return BacktestOut(run_id=run.run_id, rule=rv.rule, rule_version=rv.version, created=created, metrics={})

    return router
