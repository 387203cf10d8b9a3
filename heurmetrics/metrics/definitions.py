"""The one definition of every Prometheus metric heurmetrics exposes.

The exporter, the Grafana dashboards, the alert rules and ``docs/metrics.md`` all import from here:
a name, a label, a bucket boundary or a budget is written once, in this module.

Naming follows the Prometheus conventions (base units, ``_total`` only on counters, ``_ratio`` for
0-1 values, ``_timestamp_seconds`` for points in time, ``_info`` for metadata). The dotted names of
the design notes (``heuristic.execution``, ``backtest.result``, ``rule.version.performance``) map to
families here through :attr:`MetricSpec.design_name`.

Why one module of ~470 lines: it is the one source of truth for every metric name, label,
bucket and threshold; one file is the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from heurmetrics.buckets import EXECUTION_DURATION_BUCKETS

MetricKind = Literal["counter", "gauge", "histogram", "info"]

# --- label names -------------------------------------------------------------------------------
RULE: Final = "rule"
RULE_VERSION: Final = "rule_version"
MODE: Final = "mode"
STATUS: Final = "status"
OUTCOME: Final = "outcome"
CONTENT_HASH: Final = "content_hash"
KIND: Final = "kind"
RESULT: Final = "result"
OPERATION: Final = "operation"
REASON: Final = "reason"

# --- bounded label values (validated on ingest; anything else is rejected) ---------------------
EXECUTION_STATUSES: Final = ("ok", "error", "timeout")
EXECUTION_MODES: Final = ("live", "paper", "backtest")
BACKTEST_STATUSES: Final = ("completed", "failed")
#: Store write operations (label ``operation`` of the store self-monitoring metrics).
OP_REGISTER_RULE_VERSION: Final = "register_rule_version"
OP_INSERT_EXECUTIONS: Final = "insert_executions"
OP_INSERT_BACKTEST: Final = "insert_backtest"
STORE_WRITE_OPERATIONS: Final = (OP_REGISTER_RULE_VERSION, OP_INSERT_EXECUTIONS, OP_INSERT_BACKTEST)
#: Kinds and results of ``heurmetrics_ingested_events_total``.
KIND_EXECUTION: Final = "execution"
KIND_BACKTEST: Final = "backtest"
KIND_RULE_VERSION: Final = "rule_version"
KIND_LIFECYCLE: Final = "lifecycle"
KIND_RESOLUTION: Final = "resolution"
INGEST_KINDS: Final = (KIND_EXECUTION, KIND_BACKTEST, KIND_RULE_VERSION, KIND_LIFECYCLE, KIND_RESOLUTION)
INGEST_RESULTS: Final = ("accepted", "duplicate", "rejected")
#: Reasons of ``heurmetrics_rejected_requests_total``.
REJECT_REASONS: Final = ("invalid", "unauthorized", "too_large", "over_budget", "unavailable", "conflict")
#: Outcome label used when an execution produced no outcome (errors, timeouts).
NO_OUTCOME: Final = "none"
#: Outcomes the reference rules emit; any label matching ``LABEL_VALUE_PATTERN`` is accepted.
WELL_KNOWN_OUTCOMES: Final = ("bullish", "bearish", "neutral", "no_signal")
#: Rule names, versions and outcomes become label values: a bounded, exposition-safe alphabet.
LABEL_VALUE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]{0,63}$"
LABEL_VALUE_MAX_LENGTH: Final = 64

# --- buckets -----------------------------------------------------------------------------------
#: Rule latency (``EXECUTION_DURATION_BUCKETS``) lives in :mod:`heurmetrics.buckets`, imported
#: above: the store derives its rollup columns from it without importing this layer.
#: No bucket boundaries: the confidence histogram exports sum and count (``+Inf`` only); its
#: distribution is a SQL panel. 11 buckets x 3 modes were 42 series lines per rule version.
CONFIDENCE_BUCKETS: Final[tuple[float, ...]] = ()
#: Backtests take seconds to an hour.
BACKTEST_DURATION_BUCKETS: Final = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
#: Store writes: one batched statement, sub-millisecond (SQLite) to seconds (large Postgres batch).
STORE_WRITE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# --- budgets shared by the exporter and the alerts ------------------------------------------
#: p95 execution latency budget (seconds): the app's chart-analysis budget.
EXECUTION_LATENCY_BUDGET_SECONDS: Final = 0.3
#: Error-ratio SLO objective for rule executions (99 % of runs succeed).
EXECUTION_SUCCESS_OBJECTIVE: Final = 0.99


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: everything a consumer needs to know about it.

    ``name`` is the exposed family name *without* the ``_total`` suffix for counters (that is how
    prometheus_client names families); :attr:`sample_name` is what appears in PromQL.
    """

    name: str
    kind: MetricKind
    documentation: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    #: Grafana unit id for panels that show this metric.
    unit: str = "short"
    #: The dotted name of the design notes this family reports, if any.
    design_name: str | None = None
    #: Where the values come from: ``"ingest"`` (updated per event) or ``"store"`` (a collector
    #: that reads the database on scrape).
    source: Literal["ingest", "store", "process"] = "ingest"

    @property
    def sample_name(self) -> str:
        """Name of the series as it appears in PromQL (``_total`` on counters, ``_info`` kept)."""
        if self.kind == "counter":
            return f"{self.name}_total"
        if self.kind == "info":
            return f"{self.name}_info"
        return self.name

    def series_names(self) -> tuple[str, ...]:
        """Every series name this family produces in the text exposition."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        if self.kind == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        return (self.sample_name,)


_RV = (RULE, RULE_VERSION)

HEURISTIC_EXECUTIONS = MetricSpec(
    "heuristic_executions",
    "counter",
    "Rule (heuristic) executions, every single one, by outcome and status.",
    (*_RV, MODE, STATUS, OUTCOME),
    unit="short",
    design_name="heuristic.execution",
)
#: Modes whose executions the duration histogram observes (the latency SLO is about rules in use;
#: backtest-mode durations stay in the store). Series budget: see docs/metrics.md.
LATENCY_MODES: Final = ("live", "paper")
HEURISTIC_EXECUTION_DURATION = MetricSpec(
    "heuristic_execution_duration_seconds",
    "histogram",
    "Wall-clock duration of one live or paper rule execution (backtest-mode durations are in the store only).",
    _RV,
    EXECUTION_DURATION_BUCKETS,
    unit="s",
    design_name="heuristic.execution",
)
HEURISTIC_EXECUTION_CONFIDENCE = MetricSpec(
    "heuristic_execution_confidence",
    "histogram",
    "Confidence (0-1) that an execution attached to its outcome; executions without one are not observed. "
    "Sum and count only (mean confidence per mode); the distribution is read from the store.",
    (*_RV, MODE),
    CONFIDENCE_BUCKETS,
    unit="percentunit",
    design_name="heuristic.execution",
)
BACKTEST_RUNS = MetricSpec(
    "backtest_runs",
    "counter",
    "Backtest runs by final status.",
    (*_RV, STATUS),
    unit="short",
    design_name="backtest.result",
)
BACKTEST_DURATION = MetricSpec(
    "backtest_duration_seconds",
    "histogram",
    "Wall-clock duration of one backtest run, per rule (per version: the store's backtest_runs).",
    (RULE,),
    BACKTEST_DURATION_BUCKETS,
    unit="s",
    design_name="backtest.result",
)
BACKTEST_RESULT_SHARPE = MetricSpec(
    "backtest_result_sharpe_ratio",
    "gauge",
    "Annualised Sharpe ratio of the latest completed backtest of a rule version.",
    _RV,
    unit="none",
    design_name="backtest.result",
    source="store",
)
BACKTEST_RESULT_MAX_DRAWDOWN = MetricSpec(
    "backtest_result_max_drawdown_ratio",
    "gauge",
    "Maximum drawdown (negative fraction, -0.25 = 25 %) of the latest completed backtest.",
    _RV,
    unit="percentunit",
    design_name="backtest.result",
    source="store",
)
BACKTEST_RESULT_TOTAL_RETURN = MetricSpec(
    "backtest_result_total_return_ratio",
    "gauge",
    "Total return (fraction) of the latest completed backtest.",
    _RV,
    unit="percentunit",
    design_name="backtest.result",
    source="store",
)
BACKTEST_RESULT_CAGR = MetricSpec(
    "backtest_result_cagr_ratio",
    "gauge",
    "Compound annual growth rate (fraction) of the latest completed backtest.",
    _RV,
    unit="percentunit",
    design_name="backtest.result",
    source="store",
)
BACKTEST_RESULT_TIMESTAMP = MetricSpec(
    "backtest_result_timestamp_seconds",
    "gauge",
    "Unix time at which the latest completed backtest of a rule version finished.",
    _RV,
    unit="dateTimeFromNow",
    design_name="backtest.result",
    source="store",
)
#: Label ``env`` of ``rule_version_info``: the deployment environment a version is active in.
ENV: Final = "env"
#: Lifecycle statuses of a rule version (label ``status`` of ``rule_version_info``).
RULE_VERSION_STATUSES: Final = ("proposed", "approved", "active", "retired")
RULE_VERSION_INFO = MetricSpec(
    "rule_version",
    "info",
    "A registered rule version and its lifecycle status (proposed, approved, active); value 1. The content "
    "hash identifies it. An active version has one series per environment it is active in (env, e.g. live); "
    "env is empty otherwise. Retired versions have no series.",
    (*_RV, CONTENT_HASH, STATUS, ENV),
    unit="none",
    design_name="rule.version",
    source="store",
)

# --- self-monitoring: the pipeline's own health guards the 100 % promise ------------------------
INGESTED_EVENTS = MetricSpec(
    "heurmetrics_ingested_events",
    "counter",
    "Events offered to ingest, by kind (execution, backtest, rule_version, lifecycle, resolution) and result "
    "(accepted, duplicate, rejected).",
    (KIND, RESULT),
    unit="short",
    source="ingest",
)
STORE_WRITE_DURATION = MetricSpec(
    "heurmetrics_store_write_duration_seconds",
    "histogram",
    "Duration of one batched store write (one transaction).",
    (OPERATION,),
    STORE_WRITE_BUCKETS,
    unit="s",
)
STORE_WRITE_ERRORS = MetricSpec(
    "heurmetrics_store_write_errors",
    "counter",
    "Store writes that failed (each is retried; see dropped events for anything given up).",
    (OPERATION,),
    unit="short",
)
WRITER_QUEUE_EVENTS = MetricSpec(
    "heurmetrics_writer_queue_events",
    "gauge",
    "Events accepted by the SDK but not yet durable in the store.",
    (),
    unit="short",
)
DROPPED_EVENTS = MetricSpec(
    "heurmetrics_dropped_events",
    "counter",
    "Events that were accepted from a caller but will never be stored, by reason (queue_full, "
    "spool_full: only under the opt-in drop policy; rejected: the database refused the data). "
    "0 in a healthy pipeline.",
    (REASON,),
    unit="short",
)
REJECTED_REQUESTS = MetricSpec(
    "heurmetrics_rejected_requests",
    "counter",
    "HTTP requests the exporter refused, by reason (invalid, unauthorized, too_large, over_budget, "
    "unavailable, conflict).",
    (REASON,),
    unit="short",
)
BUILD_INFO = MetricSpec(
    "heurmetrics_build",
    "info",
    "heurmetrics build information; value 1.",
    ("version", "python_version"),
    unit="none",
    source="process",
)

# --- rule.version.performance: live behaviour of a version against its walk-forward expectation --
# Gauges read by heurmetrics.exporter.live_collector from the latest row of
# ``rule_version_performance`` per (version, window); see docs/live-performance.md.
WINDOW: Final = "window"
#: Look-back windows of a performance snapshot (label ``window``); each ends at the snapshot time.
PERFORMANCE_WINDOWS: Final = ("1h", "1d", "7d")
#: The windows the exporter publishes to Prometheus (the drift alert's); every window stays in the
#: store and the SQL panels. Series budget: see docs/metrics.md.
EXPORTED_PERFORMANCE_WINDOWS: Final = ("1d",)
#: Horizons after which a directional signal is resolved against the price (``execution_resolutions``).
RESOLUTION_HORIZONS: Final = ("1h", "4h", "1d")
#: The horizon whose snapshots the exporter publishes (hit ratios and drift are per horizon).
DEFAULT_PERFORMANCE_HORIZON: Final = "1h"
#: Significance level below which a version counts as drifted (Benjamini-Hochberg adjusted p-value
#: of the two-sided Fisher exact test, live hits against the walk-forward's; heurmetrics.stats).
DRIFT_ALPHA: Final = 0.01

_RVW = (RULE, RULE_VERSION, WINDOW)


def _performance(name: str, documentation: str, unit: str) -> MetricSpec:
    return MetricSpec(
        f"rule_version_performance_{name}",
        "gauge",
        documentation,
        _RVW,
        unit=unit,
        design_name="rule.version.performance",
        source="store",
    )


# Executions, error ratio, latency percentiles, signal ratio, mean confidence and the drifted flag
# of a snapshot are stored (rule_version_performance) but not exported: the ingest families give
# the same figures in PromQL, and ``drift_p_value < alpha`` is the flag (series budget).
RVP_RESOLVED = _performance(
    "resolved_signals", "Signals of the window resolved at the snapshot horizon (the sample size of the hit ratio).",
    "short",
)
RVP_HIT_RATIO = _performance(
    "hit_ratio", "Share of the window's resolved signals that were right at the horizon; NaN when none resolved.",
    "percentunit",
)
RVP_MEAN_REALIZED_RETURN = _performance(
    "mean_realized_return_ratio",
    "Mean return realised per resolved signal, signed by its direction (fraction; positive = signal was right).",
    "percentunit",
)
RVP_EXPECTED_HIT_RATIO = _performance(
    "expected_hit_ratio",
    "Hit ratio the latest walk-forward run of the version expects (its out-of-sample signals, same horizon).",
    "percentunit",
)
RVP_DRIFT_P_VALUE = _performance(
    "drift_p_value",
    "Two-sided Fisher exact p-value of the live hits against the walk-forward's out-of-sample hits; small = drift.",
    "none",
)
RVP_DRIFT_ADJUSTED_P_VALUE = _performance(
    "drift_adjusted_p_value",
    "Drift p-value adjusted by Benjamini-Hochberg across the rule versions of the window (false-discovery rate).",
    "none",
)
RVP_SNAPSHOT_TIMESTAMP = _performance(
    "snapshot_timestamp_seconds", "Unix time of the performance snapshot these values come from.", "dateTimeFromNow"
)

# --- backtest.result: overfitting statistics of the latest walk-forward run per version --------
# Read by heurmetrics.exporter.live_collector from ``backtest_overfitting``; see
# docs/walk-forward.md (Deflated Sharpe Ratio, PBO by CSCV, minimum backtest length).
SECONDS_PER_YEAR: Final = 365.25 * 86400


def _overfitting(name: str, documentation: str, unit: str) -> MetricSpec:
    return MetricSpec(
        f"backtest_overfitting_{name}", "gauge", documentation, _RV, unit=unit, design_name="backtest.result",
        source="store",
    )  # fmt: skip


BACKTEST_OVERFITTING_DSR = _overfitting(
    "deflated_sharpe_ratio",
    "Deflated Sharpe Ratio (0-1) of the latest walk-forward run: P(true Sharpe > 0) given the trials tried.",
    "percentunit",
)
BACKTEST_OVERFITTING_PBO = _overfitting(
    "pbo_ratio",
    "Probability of backtest overfitting (CSCV) of the latest walk-forward run; NaN without a trial matrix.",
    "percentunit",
)
BACKTEST_OVERFITTING_MIN_LENGTH = _overfitting(
    "min_backtest_length_seconds",
    "Minimum backtest length for the run's Sharpe ratio given its trials (NaN when the Sharpe ratio is <= 0).",
    "s",
)
BACKTEST_OVERFITTING_LENGTH = _overfitting(
    "backtest_length_seconds", "Length of the latest walk-forward run's stitched out-of-sample returns.", "s"
)

# --- self-monitoring of delivery: SDK writer, local spool, HTTP client (heurmetrics.sdk) ----------
#: Why events were given up (label ``reason`` of ``heurmetrics_dropped_events_total``): the in-memory
#: queue or the spool was full (full_policy "drop", or "block" past its timeout), or the target
#: refused a batch for good (e.g. a spooled event of a rule version the database does not know).
DROP_REASONS: Final = ("queue_full", "spool_full", "rejected")
SPOOL_EVENTS = MetricSpec(
    "heurmetrics_spool_events",
    "gauge",
    "Events in the SDK's local spool: durable on disk, not yet in the store or exporter (0 in the exporter).",
    (),
    unit="short",
)
SPOOL_BYTES = MetricSpec(
    "heurmetrics_spool_bytes",
    "gauge",
    "Size of the SDK's local spool files on disk (0 in the exporter).",
    (),
    unit="bytes",
)
DELIVERY_RETRIES = MetricSpec(
    "heurmetrics_retries",
    "counter",
    "Failed delivery attempts of the SDK (store writes, HTTP posts, spool replays); each is retried or spooled.",
    (),
    unit="short",
)

ALL_METRICS: Final[tuple[MetricSpec, ...]] = (
    HEURISTIC_EXECUTIONS,
    HEURISTIC_EXECUTION_DURATION,
    HEURISTIC_EXECUTION_CONFIDENCE,
    BACKTEST_RUNS,
    BACKTEST_DURATION,
    BACKTEST_RESULT_SHARPE,
    BACKTEST_RESULT_MAX_DRAWDOWN,
    BACKTEST_RESULT_TOTAL_RETURN,
    BACKTEST_RESULT_CAGR,
    BACKTEST_RESULT_TIMESTAMP,
    RULE_VERSION_INFO,
    INGESTED_EVENTS,
    STORE_WRITE_DURATION,
    STORE_WRITE_ERRORS,
    WRITER_QUEUE_EVENTS,
    DROPPED_EVENTS,
    REJECTED_REQUESTS,
    BUILD_INFO,
    RVP_RESOLVED,
    RVP_HIT_RATIO,
    RVP_MEAN_REALIZED_RETURN,
    RVP_EXPECTED_HIT_RATIO,
    RVP_DRIFT_P_VALUE,
    RVP_DRIFT_ADJUSTED_P_VALUE,
    RVP_SNAPSHOT_TIMESTAMP,
    BACKTEST_OVERFITTING_DSR,
    BACKTEST_OVERFITTING_PBO,
    BACKTEST_OVERFITTING_MIN_LENGTH,
    BACKTEST_OVERFITTING_LENGTH,
    SPOOL_EVENTS,
    SPOOL_BYTES,
    DELIVERY_RETRIES,
)

#: Latest-backtest gauges, keyed by the headline metric they export.
BACKTEST_RESULT_GAUGES: Final = {
    "sharpe": BACKTEST_RESULT_SHARPE,
    "max_drawdown": BACKTEST_RESULT_MAX_DRAWDOWN,
    "total_return": BACKTEST_RESULT_TOTAL_RETURN,
    "cagr": BACKTEST_RESULT_CAGR,
}


def by_series_name() -> dict[str, MetricSpec]:
    """Map every exposed series name (``_bucket``, ``_total``, ...) to its family."""
    return {series: spec for spec in ALL_METRICS for series in spec.series_names()}


#: Performance gauges, keyed by the ``rule_version_performance`` column they export.
PERFORMANCE_GAUGES: Final = {
    "resolved": RVP_RESOLVED,
    "hit_ratio": RVP_HIT_RATIO,
    "mean_realized_return": RVP_MEAN_REALIZED_RETURN,
    "expected_hit_ratio": RVP_EXPECTED_HIT_RATIO,
    "drift_p_value": RVP_DRIFT_P_VALUE,
    "drift_adjusted_p_value": RVP_DRIFT_ADJUSTED_P_VALUE,
}

#: Overfitting gauges, keyed by the ``backtest_overfitting`` column they export, with the factor
#: to base units (years -> seconds).
OVERFITTING_GAUGES: Final = {
    "deflated_sharpe_ratio": (BACKTEST_OVERFITTING_DSR, 1.0),
    "pbo": (BACKTEST_OVERFITTING_PBO, 1.0),
    "min_backtest_years": (BACKTEST_OVERFITTING_MIN_LENGTH, SECONDS_PER_YEAR),
    "backtest_years": (BACKTEST_OVERFITTING_LENGTH, SECONDS_PER_YEAR),
}
