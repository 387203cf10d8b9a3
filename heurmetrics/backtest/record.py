"""Turn a runner's equity curve into a stored ``backtest.result``: run, metrics, equity points."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from heurmetrics.domain import BacktestRun, EquityPoint, RuleVersion
from heurmetrics.errors import InvalidEvent
from heurmetrics.validation import check_finite, check_json_object, check_text


def json_safe(value: Any) -> Any:
    """A metric value JSON (and Postgres JSONB) accepts: NaN → null, ±inf → "Infinity"/"-Infinity"."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return value


def equity_points(equity: pd.Series, fold_index: int | None = None) -> list[EquityPoint]:
    """Equity points with their drawdown; NaN values are not stored (nothing is imputed)."""
    from heurmetrics.backtest import drawdown_series

    drawdown = drawdown_series(equity)
    valid = equity.notna().to_numpy()
    index = pd.DatetimeIndex(equity.index)
    if index.tz is None:
        index = index.tz_localize("UTC")
    # Whole-array conversions (one call each), not a pandas Timestamp per point: this runs on the
    # walk-forward's serial tail, for every stitched and per-fold point.
    times = index[valid].to_pydatetime()
    values = [float(v) for v in equity.to_numpy()[valid]]
    drawdowns = np.asarray(drawdown.to_numpy()[valid], dtype=np.float64).tolist()
    return [
        EquityPoint(ts, value, dd if dd == dd else 0.0, fold_index)
        for ts, value, dd in zip(times, values, drawdowns, strict=True)
    ]


def check_equity(field: str, equity: object) -> pd.Series:
    """A float Series indexed by time, with at least one value: what a backtest stores."""
    if not isinstance(equity, pd.Series):
        raise InvalidEvent(field, f"must be a pandas Series, got {type(equity).__name__}")
    if equity.empty:
        raise InvalidEvent(field, "is empty: a backtest needs at least one equity point")
    if not isinstance(equity.index, pd.DatetimeIndex):
        raise InvalidEvent(field, "must be indexed by time (a DatetimeIndex)")
    if not equity.index.is_monotonic_increasing or equity.index.has_duplicates:
        raise InvalidEvent(field, "timestamps must be strictly increasing")
    try:
        values = equity.astype("float64")
    except (TypeError, ValueError):
        raise InvalidEvent(field, "values must be numbers") from None
    # Equity is wealth: a value <= 0 or infinite makes every return meaningless. NaN marks a
    # missing point (nothing is imputed).
    bad = values.notna().to_numpy() & ~((values > 0) & (values < math.inf)).to_numpy()
    if bad.any():
        i = int(bad.argmax())
        message = f"must be finite and > 0 (NaN marks a missing point), got {values.iloc[i]!r}"
        raise InvalidEvent(f"{field}[{i}]", message)
    return values


def build_backtest(
    rv: RuleVersion,
    equity: pd.Series,
    *,
    dataset: str,
    periods_per_year: float,
    risk_free_rate: float,
    trades: pd.DataFrame | None,
    dataset_hash: str | None,
    started_at: datetime | None,
    finished_at: datetime,
    run_id: uuid.UUID,
    config: dict[str, Any],
    kind: str,
    fold_equity: dict[int, pd.Series] | None = None,
) -> tuple[BacktestRun, list[EquityPoint]]:
    """Validate the inputs, compute every metric, and build the run and its points."""
    from heurmetrics.backtest import compute_metrics

    equity = check_equity("equity", equity)
    for name, value in (("started_at", started_at), ("finished_at", finished_at)):
        if value is not None and value.tzinfo is None:
            raise InvalidEvent(name, "naive datetime: pass a timezone-aware time (e.g. UTC)")
    periods_per_year = check_finite("periods_per_year", periods_per_year, low=1e-9)
    check_finite("risk_free_rate", risk_free_rate, low=-1.0)
    if not check_text("dataset", dataset, 256):
        raise InvalidEvent("dataset", "must not be empty")
    if dataset_hash is not None:
        check_text("dataset_hash", dataset_hash, 64)
    check_json_object("config", config)
    metrics = compute_metrics(equity, trades, periods_per_year=periods_per_year, risk_free_rate=risk_free_rate)
    points = equity_points(equity)
    for fold, curve in sorted((fold_equity or {}).items()):
        points.extend(equity_points(check_equity(f"fold_equity[{fold}]", curve), fold))
    index = pd.DatetimeIndex(equity.index)
    period = index.tz_localize("UTC") if index.tz is None else index
    run = BacktestRun(
        run_id=run_id,
        rule_version=rv,
        kind=kind,
        dataset=dataset,
        dataset_hash=dataset_hash,
        period_start=period[0].to_pydatetime(),
        period_end=period[-1].to_pydatetime(),
        periods_per_year=periods_per_year,
        status="completed",
        started_at=started_at or finished_at,
        finished_at=finished_at,
        metrics={k: json_safe(v) for k, v in metrics.as_dict().items()},
        config={**config, "risk_free_rate": risk_free_rate},
        error_message=None,
    )
    return run, points
