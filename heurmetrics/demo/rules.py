"""Three rules modelled on the app's real heuristics, each evaluated bar by bar.

A rule sees the bars up to and including the current one (no look-ahead) and returns
``(outcome, signal, confidence)``: outcome ∈ bullish/bearish/neutral/no_signal, signal in
[-1, 1] (the position it asks for), confidence in [0, 1].
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Result = tuple[str, float, float]


class DataGap(RuntimeError):
    """The bars a rule needs are incomplete (the demo injects a few, like a flaky feed)."""


@dataclass(frozen=True)
class DemoRule:
    name: str
    version: str
    params: dict[str, Any]
    evaluate: Callable[[dict[str, np.ndarray], dict[str, Any]], Result]
    lookback: int
    description: str = ""
    summary: str = field(default="")

    @property
    def source(self) -> str:
        return inspect.getsource(self.evaluate)


def sma_cross(bars: dict[str, np.ndarray], p: dict[str, Any]) -> Result:
    """SMA fast/slow golden (bullish) or death (bearish) cross on the current bar."""
    close = bars["close"]
    fast, slow = p["fast"], p["slow"]
    f_now, f_prev = close[-fast:].mean(), close[-fast - 1 : -1].mean()
    s_now, s_prev = close[-slow:].mean(), close[-slow - 1 : -1].mean()
    gap = (f_now - s_now) / s_now
    confidence = float(min(1.0, abs(gap) * p["confidence_scale"]))
    if f_prev <= s_prev and f_now > s_now:
        return "bullish", 1.0, confidence
    if f_prev >= s_prev and f_now < s_now:
        return "bearish", -1.0, confidence
    return ("neutral", 1.0 if gap > 0 else -1.0, confidence)


def atr_breakout(bars: dict[str, np.ndarray], p: dict[str, Any]) -> Result:
    """Close moves more than k x ATR(period) away from the previous close."""
    high, low, close = bars["high"], bars["low"], bars["close"]
    n = p["period"]
    prev_close = close[-n - 1 : -1]
    true_range = np.maximum(high[-n:] - low[-n:], np.maximum(abs(high[-n:] - prev_close), abs(low[-n:] - prev_close)))
    atr = true_range.mean()
    move = close[-1] - close[-2]
    strength = abs(move) / (p["k"] * atr)
    if strength < 1.0:
        return "no_signal", 0.0, float(strength)
    confidence = float(min(1.0, 0.5 + (strength - 1.0)))
    return ("bullish", 1.0, confidence) if move > 0 else ("bearish", -1.0, confidence)


def range_bias(bars: dict[str, np.ndarray], p: dict[str, Any]) -> Result:
    """Range low/high/mid over a window; bias around mid +/- band (the chart 'heuristic')."""
    window = p["window_hours"]
    high, low, close = bars["high"][-window:], bars["low"][-window:], bars["close"][-1]
    if not np.isfinite(close):
        raise DataGap("missing close")
    lo, hi = low.min(), high.max()
    mid = (lo + hi) / 2
    band = p["band"]
    distance = (close - mid) / mid
    confidence = float(min(1.0, abs(distance) / (2 * band)))
    if distance > band:
        return "bullish", 1.0, confidence
    if distance < -band:
        return "bearish", -1.0, confidence
    return "neutral", 0.0, confidence


DEMO_RULES: tuple[DemoRule, ...] = (
    DemoRule(
        "sma_cross",
        "1.0.0",
        {"fast": 50, "slow": 200, "confidence_scale": 20.0},
        sma_cross,
        201,
        "SMA 50/200 golden/death cross.",
    ),
    DemoRule(
        "sma_cross",
        "1.1.0",
        {"fast": 20, "slow": 100, "confidence_scale": 25.0},
        sma_cross,
        201,
        "Faster averages (20/100): reacts earlier to regime changes.",
    ),
    DemoRule(
        "atr_breakout",
        "1.0.0",
        {"period": 14, "k": 1.5},
        atr_breakout,
        16,
        "Breakout when the close moves 1.5 ATR(14).",
    ),
    DemoRule(
        "atr_breakout",
        "1.1.0",
        {"period": 14, "k": 2.0},
        atr_breakout,
        16,
        "Stricter breakout threshold (2.0 ATR) to cut false signals.",
    ),
    DemoRule(
        "range_bias",
        "1.0.0",
        {"window_hours": 24, "band": 0.02},
        range_bias,
        48,
        "24 h range, bias outside mid +/- 2 %.",
    ),
    DemoRule(
        "range_bias",
        "2.0.0",
        {"window_hours": 48, "band": 0.015},
        range_bias,
        48,
        "48 h range with a tighter 1.5 % band.",
    ),
)
