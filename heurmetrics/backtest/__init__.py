"""Backtest analytics: the performance suite (period and trade statistics of an equity curve)."""

from heurmetrics.backtest.returns import (
    TRADE_COLUMNS,
    PerformanceMetrics,
    TradeMetrics,
    compute_metrics,
    compute_metrics_from_returns,
    compute_trade_metrics,
    drawdown_series,
)

__all__ = [
    "TRADE_COLUMNS",
    "PerformanceMetrics",
    "TradeMetrics",
    "compute_metrics",
    "compute_metrics_from_returns",
    "compute_trade_metrics",
    "drawdown_series",
]
