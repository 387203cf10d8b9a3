"""heurmetrics: every rule execution and backtest, counted in Prometheus and stored versioned.

Public API::

    from heurmetrics import Recorder
    with Recorder() as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0", params={"window_hours": 24}, source=src)
        with rec.execution(rv, mode="live") as ex:
            ex.set_result(outcome="bullish", signal=1.0, confidence=0.72)
"""

from heurmetrics.domain import BacktestRun, RuleVersion
from heurmetrics.errors import (
    HeurmetricsError,
    InvalidEvent,
    SchemaNotAtHead,
    StoreUnavailable,
    UnknownRuleVersion,
    VersionConflict,
)
from heurmetrics.sdk.delivery import FlushResult
from heurmetrics.sdk.http_client import ExporterClient
from heurmetrics.sdk.recorder import ExecutionContext, Recorder
from heurmetrics.version import __version__

__all__ = [
    "BacktestRun",
    "ExecutionContext",
    "ExporterClient",
    "FlushResult",
    "HeurmetricsError",
    "InvalidEvent",
    "Recorder",
    "RuleVersion",
    "SchemaNotAtHead",
    "StoreUnavailable",
    "UnknownRuleVersion",
    "VersionConflict",
    "__version__",
]
