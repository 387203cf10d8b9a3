"""Module-level rules for walk-forward tests and benchmarks.

Worker processes receive ``fit`` and ``run`` by reference (module + name), so they must live at
module level of an importable module: lambdas and closures cannot be sent to a process pool.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from heurmetrics.backtest.walkforward import FitResult, FoldContext, WalkForwardRule


def hourly_bars(hours: int = 24 * 40, *, seed: int = 3, start: str = "2025-01-01") -> pd.DataFrame:
    """Seeded hourly closes with trending regimes (so momentum has something to find)."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.normal(0.0, 0.002, size=hours // 48 + 1), 48)[:hours]
    close = 100.0 * np.exp(np.cumsum(drift + rng.normal(0.0, 0.004, size=hours)))
    index = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    return pd.DataFrame({"close": close}, index=index)


def momentum_run(data: pd.DataFrame, params: dict[str, Any], ctx: FoldContext) -> pd.Series:
    """Long when the close is above its value ``lookback`` bars ago, short below; one recorded
    evaluation per bar. Returns per-bar returns (position decided at the previous close)."""
    close = data["close"].to_numpy()
    lookback = int(params["lookback"])
    position = np.zeros(len(close))
    for i, ts in enumerate(data.index):
        with ctx.execution(bar_time=ts) as ex:
            if i < lookback:
                ex.set_result("no_signal", 0.0, 0.0)
                continue
            move = close[i] / close[i - lookback] - 1.0
            direction = 1.0 if move > 0 else -1.0
            ex.set_result("bullish" if move > 0 else "bearish", direction, float(min(1.0, abs(move) * 20)))
            position[i] = direction
    bar_return = np.concatenate(([np.nan], close[1:] / close[:-1] - 1.0))
    held = np.concatenate(([0.0], position[:-1]))
    return pd.Series(held * bar_return, index=data.index)


def momentum_returns(data: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    """The same strategy without recording (two-argument form of ``run``)."""
    return momentum_run(data, params, FoldContext(-1, "fit", params, record=False))


def momentum_equity(data: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    """The same strategy as an equity curve starting at 1000 (for ``output="equity"``)."""
    returns = momentum_returns(data, params).fillna(0.0)
    return 1000.0 * (1.0 + returns).cumprod()


def momentum_fit(in_sample: pd.DataFrame) -> FitResult:
    """Pick the lookback with the best in-sample total return among 6, 12, 24 bars."""
    best, best_total = 6, -np.inf
    for lookback in (6, 12, 24):
        total = float(np.nansum(momentum_returns(in_sample, {"lookback": lookback}).to_numpy()))
        if total > best_total:
            best, best_total = lookback, total
    return FitResult({"lookback": best}, trials=3)


def tuple_fit(in_sample: pd.DataFrame) -> tuple[dict[str, Any], int]:
    return {"lookback": 12}, 5


def failing_run(data: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    """Fails on any window that contains 2025-01-20."""
    if (data.index.normalize() == pd.Timestamp("2025-01-20", tz="UTC")).any():
        raise RuntimeError("feed broken on 2025-01-20")
    return momentum_returns(data, params)


def busy_run(data: pd.DataFrame, params: dict[str, Any], ctx: FoldContext) -> pd.Series:
    """CPU-bound evaluation (pure Python per bar) for the parallel speed-up benchmark."""
    close = data["close"].to_numpy().tolist()
    window = int(params["window"])
    position = [0.0] * len(close)
    for i in range(len(close)):
        with ctx.execution(bar_time=data.index[i]) as ex:
            lo = max(0, i - window)
            mean = sum(close[lo : i + 1]) / (i + 1 - lo)
            var = sum((c - mean) ** 2 for c in close[lo : i + 1]) / (i + 1 - lo)
            z = (close[i] - mean) / (var**0.5 or 1.0)
            signal = -1.0 if z > 1 else (1.0 if z < -1 else 0.0)
            ex.set_result("bullish" if signal > 0 else ("bearish" if signal < 0 else "neutral"), signal, 0.5)
            position[i] = signal
    c = np.asarray(close)
    bar_return = np.concatenate(([np.nan], c[1:] / c[:-1] - 1.0))
    return pd.Series(np.concatenate(([0.0], position[:-1])) * bar_return, index=data.index)


MOMENTUM = WalkForwardRule(
    "momentum",
    "1.0.0",
    run=momentum_run,
    fit=momentum_fit,
    params={"lookback": 12},
    warmup=24,
    description="Momentum over a fitted lookback.",
)
MOMENTUM_GRID = WalkForwardRule(
    "momentum_grid", "1.0.0", run=momentum_run, grid={"lookback": [6, 12, 24]}, warmup=24, metric="total_return"
)


def exporter(url: str) -> Any:
    """A TestClient of the exporter (walk-forward routes and performance collector included)."""
    from fastapi.testclient import TestClient

    from heurmetrics.config import Settings
    from heurmetrics.exporter.live_collector import PerformanceCollector
    from heurmetrics.server.app import create_app

    app = create_app(Settings(database_url=url, api_token=None, metrics_cache_seconds=0))
    client = TestClient(app)
    if "rule_version_performance_hit_ratio" not in client.get("/metrics").text:
        app.state.registry.register(PerformanceCollector(app.state.ingest.store, ttl_seconds=0))
    return client
