"""heurmetrics: every rule execution and backtest, counted in Prometheus and stored versioned."""

__version__ = "0.1.0"
