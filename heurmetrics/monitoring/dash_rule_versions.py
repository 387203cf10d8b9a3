"""Dashboard 3, *Rule versions* (quant, auditor): versions and their status, a lifecycle
timeline, live-vs-backtest behaviour and drift per version, and executions per version.

Note A: there is no lifecycle status yet. The status column is derived from executions
("in use" = executed live within ``lifecycle.in_use_lookback``); when the lifecycle issue lands,
its events table replaces that derivation and ``rule_version_info`` shows the status label
(the Prometheus table below displays every label as it comes).
"""

from __future__ import annotations

from grafanalib import core as g

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import panels as p
from heurmetrics.monitoring import sqlq as q
from heurmetrics.monitoring.config import RULE_VERSIONS_DASHBOARD_UID, MonitoringConfig, duration_seconds
from heurmetrics.monitoring.promql import (
    RULE_VERSION_LABELS,
    STATUS_OK,
    by,
    counter,
    hist_count,
    hist_sum,
    ne,
    rx,
    sel,
    store_gauge,
)

FILE_NAME = "rule-versions.json"
RATE = "[$__rate_interval]"


def versions_sql(cfg: MonitoringConfig) -> str:
    """Every selected version with its derived status, last live execution and last backtest."""
    lookback = int(duration_seconds(cfg.lifecycle.in_use_lookback))
    return f"""
SELECT
  r.name AS "rule",
  rv.version AS "version",
  CASE
    WHEN last_live.started_at IS NULL THEN 'never executed live'
    WHEN last_live.started_at >= now() - make_interval(secs => {lookback}) THEN 'in use'
    ELSE 'idle'
  END AS "status",
  rv.content_hash AS "content hash",
  rv.created_at AS "registered",
  rv.created_by AS "registered by",
  last_live.started_at AS "last live execution (minute)",
  last_backtest.finished_at AS "last completed backtest",
  rv.description AS "description"
FROM rule_versions AS rv
JOIN rules AS r ON r.id = rv.rule_id
LEFT JOIN LATERAL (
  SELECT {q.last_execution("rv.id", q.LIVE_MODES)} AS started_at
) AS last_live ON true
LEFT JOIN LATERAL (
  SELECT br.finished_at
  FROM backtest_runs AS br
  WHERE br.rule_version_id = rv.id AND {q.COMPLETED_RUN}
  ORDER BY br.finished_at DESC
  LIMIT 1
) AS last_backtest ON true
WHERE {q.VERSION_FILTER}
ORDER BY r.name, rv.created_at DESC
"""


LIVE_VS_BACKTEST_SQL = f"""
WITH stats AS (
  SELECT
    ro.rule_version_id AS rule_version_id,
    {q.executions_where(q.LIVE)} AS live_n,
    {q.executions_where(q.BACKTEST_MODE)} AS backtest_n,
    {q.share(q.FAILED_EXECUTION, q.LIVE)} AS live_error_ratio,
    {q.share(q.FAILED_EXECUTION, q.BACKTEST_MODE)} AS backtest_error_ratio,
    sum(ro.confidence_sum) FILTER (WHERE {q.LIVE}) / NULLIF(sum(ro.confidence_count) FILTER (WHERE {q.LIVE}), 0)
      AS live_confidence,
    sum(ro.confidence_sum) FILTER (WHERE {q.BACKTEST_MODE})
      / NULLIF(sum(ro.confidence_count) FILTER (WHERE {q.BACKTEST_MODE}), 0) AS backtest_confidence,
    {q.share(q.SIGNAL, f"{q.LIVE} AND {q.OK_EXECUTION}")} AS live_signal_share,
    {q.share(q.SIGNAL, f"{q.BACKTEST_MODE} AND {q.OK_EXECUTION}")} AS backtest_signal_share
  FROM {q.ROLLUPS_IN_RANGE} AS ro
  {q.version_join("ro").replace(chr(10), chr(10) + "  ")}
  WHERE {q.VERSION_FILTER}
  GROUP BY ro.rule_version_id
), latest AS (
  SELECT DISTINCT ON (br.rule_version_id)
    br.rule_version_id AS rule_version_id, br.sharpe AS sharpe, br.total_return AS total_return,
    br.max_drawdown AS max_drawdown
  FROM backtest_runs AS br
  WHERE {q.COMPLETED_RUN}
  ORDER BY br.rule_version_id, br.finished_at DESC
)
SELECT
  r.name AS "rule",
  rv.version AS "version",
  stats.live_n AS "live executions",
  stats.backtest_n AS "backtest executions",
  stats.live_error_ratio AS "live error ratio",
  stats.backtest_error_ratio AS "backtest error ratio",
  stats.live_confidence AS "live mean confidence",
  stats.backtest_confidence AS "backtest mean confidence",
  stats.live_confidence - stats.backtest_confidence AS "confidence drift",
  stats.live_signal_share AS "live signal share",
  stats.backtest_signal_share AS "backtest signal share",
  stats.live_signal_share - stats.backtest_signal_share AS "signal-share drift",
  latest.sharpe AS "latest backtest sharpe",
  latest.total_return AS "latest backtest total return",
  latest.max_drawdown AS "latest backtest max drawdown"
FROM rule_versions AS rv
JOIN rules AS r ON r.id = rv.rule_id
LEFT JOIN stats ON stats.rule_version_id = rv.id
LEFT JOIN latest ON latest.rule_version_id = rv.id
WHERE {q.VERSION_FILTER}
ORDER BY r.name, rv.version
"""

def _minute_probe(fn: str) -> str:
    """First or last minute of a (version, mode) in the range: one probe of the minute level's key."""
    return (f"(SELECT {fn}(ro.bucket_start) FROM execution_rollups AS ro WHERE ro.rule_version_id = t.rule_version_id "
            f"AND ro.mode = t.mode AND {q.MINUTE_IN_RANGE})")


EXECUTIONS_PER_VERSION_SQL = f"""
SELECT
  r.name AS "rule",
  rv.version AS "version",
  m.name AS "mode",
  t.executions AS "executions",
  t.failed AS "failed",
  {_minute_probe("min")} AS "first (minute)",
  {_minute_probe("max")} AS "last (minute)"
FROM (
  SELECT ro.rule_version_id AS rule_version_id, ro.mode AS mode, sum(ro.executions) AS executions,
    {q.executions_where(q.FAILED_EXECUTION)} AS failed
  FROM {q.ROLLUPS_IN_RANGE} AS ro
  GROUP BY ro.rule_version_id, ro.mode
) AS t
JOIN rule_versions AS rv ON rv.id = t.rule_version_id
JOIN rules AS r ON r.id = rv.rule_id
JOIN execution_modes AS m ON m.code = t.mode
WHERE {q.VERSION_FILTER}
ORDER BY r.name, rv.version, m.name
"""

REGISTERED_ANNOTATION_SQL = f"""
SELECT
  rv.created_at AS "time",
  r.name || ' ' || rv.version || ' registered by ' || rv.created_by AS "text"
FROM rule_versions AS rv
JOIN rules AS r ON r.id = rv.rule_id
WHERE $__timeFilter(rv.created_at) AND {q.VERSION_FILTER}
"""


def build(cfg: MonitoringConfig) -> g.Dashboard:
    """The rule-versions dashboard for ``cfg``."""
    f = (cfg.selectors.series, rx(d.RULE, f"${p.RULE_VAR}"), rx(d.RULE_VERSION, f"${p.RULE_VERSION_VAR}"))
    live = cfg.selectors.live_executions
    legend = f"{{{{{d.RULE}}}}} {{{{{d.RULE_VERSION}}}}}"
    executions = counter(d.HEURISTIC_EXECUTIONS)
    ratio_columns = (
        "live error ratio",
        "backtest error ratio",
        "live mean confidence",
        "backtest mean confidence",
        "confidence drift",
        "live signal share",
        "backtest signal share",
        "signal-share drift",
        "latest backtest total return",
        "latest backtest max drawdown",
    )
    grid = p.Grid()

    grid.row("Versions")
    grid.add(
        p.table(
            "Rule versions and status",
            "Registered versions (PostgreSQL). Status is derived until lifecycle events "
            f"exist: 'in use' = executed live within {cfg.lifecycle.in_use_lookback}.",
            [p.sql(versions_sql(cfg))],
        ),
        24,
        9,
    )
    grid.add(
        p.table(
            "Versions exported to Prometheus",
            "rule_version_info series: the versions within the exporter's label "
            "budget, with every label (a status label appears here once it exists).",
            [p.prom(store_gauge(d.RULE_VERSION_INFO, *f), instant=True, fmt=g.TABLE_TARGET_FORMAT)],
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}],
        ),
        12,
        8,
    )
    grid.add(
        p.state_timeline(
            "Lifecycle timeline (live executions)",
            "When each version executed live (or paper): a version's active periods as seen by Prometheus.",
            [p.prom(f"sum {by(*RULE_VERSION_LABELS)} (rate({sel(executions, *f, live)}{RATE})) > bool 0", legend)],
            "none",
            mappings=p.value_text({"0": ("idle", "transparent"), "1": ("executing", "green")}),
        ),
        12,
        8,
    )

    grid.row("Live vs backtest")
    grid.add(
        p.table(
            "Live vs backtest per version",
            "Executions in the time range by mode: error ratio, mean confidence, "
            "signal share, the live-minus-backtest drift of each, and the latest completed backtest (PostgreSQL).",
            [p.sql(LIVE_VS_BACKTEST_SQL)],
            overrides=[
                *(p.field_override(n, unit=p.RATIO_UNIT) for n in ratio_columns),
                p.field_override("latest backtest sharpe", decimals=2),
            ],
        ),
        24,
        9,
    )
    conf_sum, conf_count = (
        sel(s, *f) for s in (hist_sum(d.HEURISTIC_EXECUTION_CONFIDENCE), hist_count(d.HEURISTIC_EXECUTION_CONFIDENCE))
    )
    grouping = by(*RULE_VERSION_LABELS, d.MODE)
    mode_legend = f"{legend} {{{{{d.MODE}}}}}"
    grid.add(
        p.timeseries(
            "Mean confidence: live vs backtest",
            "Average confidence per version and mode.",
            [
                p.prom(
                    f"sum {grouping} (rate({conf_sum}{RATE}))\n/\nsum {grouping} (rate({conf_count}{RATE}))",
                    mode_legend,
                )
            ],
            p.RATIO_UNIT,
            min_value=0,
        ),
        12,
        8,
    )
    failed = sel(executions, *f, ne(d.STATUS, STATUS_OK))
    grid.add(
        p.timeseries(
            "Error ratio by version and mode",
            "Failed share of executions per version and mode.",
            [
                p.prom(
                    f"sum {grouping} (rate({failed}{RATE}))\n/\nsum {grouping} (rate({sel(executions, *f)}{RATE}))",
                    mode_legend,
                )
            ],
            p.RATIO_UNIT,
            min_value=0,
        ),
        12,
        8,
    )

    drift = cfg.alerts.performance_drift
    window = f'{d.WINDOW}="{drift.window}"'
    grid.add(
        p.timeseries(
            f"Live hit ratio vs walk-forward expectation ({drift.window})",
            "Share of resolved live signals that were right, and the hit ratio the latest walk-forward run "
            "expects, from the latest rule_version_performance snapshot.",
            [
                p.prom(store_gauge(d.RVP_HIT_RATIO, *f, window), f"{legend} live"),
                p.prom(store_gauge(d.RVP_EXPECTED_HIT_RATIO, *f, window), f"{legend} expected", ref="B"),
            ],
            p.RATIO_UNIT,
            min_value=0,
        ),
        12,
        8,
    )
    grid.add(
        p.timeseries(
            f"Drift p-value, FDR-adjusted ({drift.window})",
            "Fisher's exact test of the live hits against the walk-forward's, Benjamini-Hochberg adjusted "
            f"across versions; below the line (alpha {drift.alpha}) for {drift.for_} fires "
            "RuleVersionPerformanceDrift.",
            [p.prom(store_gauge(d.RVP_DRIFT_ADJUSTED_P_VALUE, *f, window), legend)],
            "none",
            thresholds=p.steps(("red", None), ("green", drift.alpha)),
            min_value=0,
        ),
        12,
        8,
    )

    grid.row("Executions per version")
    grid.add(
        p.timeseries(
            "Executions per version",
            "Execution rate per version and mode (Prometheus).",
            [p.prom(f"sum {grouping} (rate({sel(executions, *f)}{RATE}))", mode_legend)],
            p.RATE_UNIT,
            stacked=True,
        ),
        12,
        8,
    )
    grid.add(
        p.table(
            "Executions per version in the time range",
            "Stored executions per version and mode (PostgreSQL).",
            [p.sql(EXECUTIONS_PER_VERSION_SQL)],
            "short",
        ),
        12,
        8,
    )

    return p.dashboard(
        cfg,
        title="heurmetrics / Rule versions",
        uid=RULE_VERSIONS_DASHBOARD_UID,
        description="Rule versions and their status, lifecycle timeline, live vs backtest behaviour and drift, "
        "executions per version.",
        grid=grid,
        variables=q.version_variables(),
        time_from="now-7d",
        annotations=[p.sql_annotation("Version registered", REGISTERED_ANNOTATION_SQL, "blue")],
    )
