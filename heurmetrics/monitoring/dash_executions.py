"""Dashboard 1, *Heuristic executions* (SRE): traffic, errors and error budget, latency,
confidence, executions of versions that are not active, and the exporter's own health."""

from __future__ import annotations

from grafanalib import core as g

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import alerts
from heurmetrics.monitoring import panels as p
from heurmetrics.monitoring import sqlq as q
from heurmetrics.monitoring.config import EXECUTIONS_DASHBOARD_UID, MonitoringConfig
from heurmetrics.monitoring.promql import (
    INSTANCE,
    LE,
    RULE_VERSION_LABELS,
    STATUS_OK,
    UP,
    bucket,
    by,
    counter,
    gauge,
    hist_count,
    hist_sum,
    ne,
    on,
    rx,
    sel,
)

FILE_NAME = "heuristic-executions.json"
#: Confidence deciles of the selected versions' live executions in the time range.
CONFIDENCE_SQL = f"""
SELECT
  least(floor(he.confidence * 10), 9) / 10 AS "confidence from",
  count(*) AS "executions"
FROM heuristic_executions AS he
{q.version_join("he")}
WHERE $__timeFilter(he.started_at) AND {q.VERSION_FILTER} AND {q.live("he")} AND he.confidence IS NOT NULL
GROUP BY 1
ORDER BY 1
"""
RATE = "[$__rate_interval]"
LATENCY_QUANTILES = (0.5, 0.95, 0.99)


def _filters(cfg: MonitoringConfig) -> tuple[str, ...]:
    return (cfg.selectors.series, rx(d.RULE, f"${p.RULE_VAR}"), rx(d.RULE_VERSION, f"${p.RULE_VERSION_VAR}"))


def not_active_executions(cfg: MonitoringConfig) -> str:
    """Per-version live execution rate of versions outside the active set (note A).

    Active = ``rule_version_info{<active_version_matchers>}``; with no matchers (today) the query
    shows executions of versions that have no ``rule_version_info`` series at all (unregistered).
    """
    executions = sel(counter(d.HEURISTIC_EXECUTIONS), *_filters(cfg), cfg.selectors.live_executions)
    info = sel(gauge(d.RULE_VERSION_INFO), cfg.selectors.series, cfg.lifecycle.active_version_matchers)
    return (
        f"sum {by(*RULE_VERSION_LABELS, d.MODE)} (rate({executions}{RATE}))\nunless {on(*RULE_VERSION_LABELS)} {info}"
    )


def active_set_text(cfg: MonitoringConfig) -> str:
    """Panel description of what "not active" means under ``cfg`` (note A)."""
    matchers = cfg.lifecycle.active_version_matchers
    if matchers:
        return f"Live executions of versions without a {gauge(d.RULE_VERSION_INFO)}{{{matchers}}} series."
    return f"Live executions of versions without any {gauge(d.RULE_VERSION_INFO)} series (unregistered)."


def build(cfg: MonitoringConfig) -> g.Dashboard:
    """The executions dashboard for ``cfg``."""
    f = _filters(cfg)
    live = cfg.selectors.live_executions
    exporter = cfg.selectors.exporter
    burn = cfg.alerts.error_budget_burn
    budget = round(1 - burn.objective, 12)
    latency_budget = cfg.alerts.latency_high.threshold_seconds
    executions = counter(d.HEURISTIC_EXECUTIONS)
    all_live = sel(executions, *f, live)
    failed_live = sel(executions, *f, live, ne(d.STATUS, STATUS_OK))
    # Live and paper durations only (definitions.LATENCY_MODES): the histogram has no mode label.
    duration = sel(bucket(d.HEURISTIC_EXECUTION_DURATION), *f)
    grid = p.Grid()

    grid.row("Overview (live executions)")
    grid.add(
        p.stat(
            "Executions / s",
            "Rate of live (non-backtest) executions of the selected rules.",
            [p.prom(f"sum(rate({all_live}{RATE}))")],
            p.RATE_UNIT,
        ),
        4,
        4,
    )
    grid.add(
        p.stat(
            "Error ratio",
            f"Share of live executions whose status is not ok; red above the error budget ({budget:.2%}).",
            [p.prom(f"sum(rate({failed_live}{RATE})) / sum(rate({all_live}{RATE}))")],
            p.RATIO_UNIT,
            thresholds=p.steps(("green", None), ("red", budget)),
        ),
        4,
        4,
    )
    grid.add(
        p.stat(
            "p95 latency",
            "95th percentile duration of live executions (from the histogram).",
            [p.prom(f"histogram_quantile(0.95, sum {by(LE)} (rate({duration}{RATE})))")],
            "s",
            thresholds=p.steps(("green", None), ("red", latency_budget)),
        ),
        4,
        4,
    )
    grid.add(
        p.stat(
            "Not-active version executions / s",
            f"{active_set_text(cfg)} Must read 0.",
            [p.prom(f"sum({not_active_executions(cfg)}) or vector(0)")],
            p.RATE_UNIT,
            thresholds=p.steps(("green", None), ("red", 1e-9)),
        ),
        4,
        4,
    )
    grid.add(
        p.stat(
            "Dropped events",
            "Acknowledged events the exporter could not store, since it started. Must read 0.",
            [p.prom(f"sum({sel(counter(d.DROPPED_EVENTS), exporter)}) or vector(0)")],
            "short",
            thresholds=p.steps(("green", None), ("red", 1)),
            graph=False,
        ),
        4,
        4,
    )
    grid.add(
        p.stat(
            "Exporter replicas up",
            "How many heurmetrics exporter replicas Prometheus can scrape (0: none, nothing is counted; "
            "row Exporter health shows which one is down).",
            [p.prom(f"sum({sel(UP, exporter)})")],
            "none",
            graph=False,
            thresholds=p.steps(("red", None), ("green", 1)),
            mappings=p.value_text({"0": ("DOWN", "red")}),
        ),
        4,
        4,
    )

    grid.row("Traffic")
    grid.add(
        p.timeseries(
            "Execution rate by rule / version / mode / outcome",
            "Every execution, all modes, by outcome.",
            [
                p.prom(
                    f"sum {by(*RULE_VERSION_LABELS, d.MODE, d.OUTCOME)} (rate({sel(executions, *f)}{RATE}))",
                    f"{{{{{d.RULE}}}}} {{{{{d.RULE_VERSION}}}}} {{{{{d.MODE}}}}} {{{{{d.OUTCOME}}}}}",
                )
            ],
            p.RATE_UNIT,
            stacked=True,
        ),
        12,
        8,
    )
    grid.add(
        p.timeseries(
            "Live execution rate by status",
            "Live executions by status (ok, error, timeout).",
            [p.prom(f"sum {by(d.RULE, d.STATUS)} (rate({all_live}{RATE}))", f"{{{{{d.RULE}}}}} {{{{{d.STATUS}}}}}")],
            p.RATE_UNIT,
            stacked=True,
        ),
        12,
        8,
    )

    grid.row("Errors and error budget")
    grid.add(
        p.timeseries(
            "Error ratio by rule",
            f"Failed share of live executions per rule; the line is the error budget "
            f"({budget:.2%}) of the {burn.objective:.2%} success objective.",
            [
                p.prom(
                    f"sum {by(d.RULE)} (rate({failed_live}{RATE}))\n/\nsum {by(d.RULE)} (rate({all_live}{RATE}))",
                    f"{{{{{d.RULE}}}}}",
                )
            ],
            p.RATIO_UNIT,
            thresholds=p.steps(("green", None), ("red", budget)),
            min_value=0,
        ),
        12,
        8,
    )
    rule_filter = rx(d.RULE, f"${p.RULE_VAR}")
    burn_targets = [
        p.prom(
            f"{sel(alerts.error_ratio_record(w), rule_filter)} / (1 - {alerts.num(burn.objective)})",
            f"{{{{{d.RULE}}}}} {w}",
            ref=chr(ord("A") + i),
        )
        for i, w in enumerate(burn.windows())
    ]
    factors = sorted({pair.factor for _, tier in burn.tiers() for pair in tier.windows})
    grid.add(
        p.timeseries(
            "Error-budget burn rate by rule",
            "Error ratio divided by the error budget, per window of the burn-rate "
            "alerts (recording rules of alerts/heurmetrics.rules.yml). 1x spends the budget exactly over the "
            f"SLO period; the page tier fires above {alerts.num(factors[-1])}x.",
            burn_targets,
            p.BURN_UNIT,
            thresholds=p.steps(("green", None), ("orange", factors[0]), ("red", factors[-1])),
            min_value=0,
        ),
        12,
        8,
    )

    grid.row("Latency and confidence")
    grid.add(
        p.timeseries(
            "Execution latency p50 / p95 / p99",
            f"Quantiles of live execution duration; the line is the {alerts.num(latency_budget)}s budget.",
            [
                p.prom(
                    f"histogram_quantile({q}, sum {by(*RULE_VERSION_LABELS, LE)} (rate({duration}{RATE})))",
                    f"p{q * 100:g} {{{{{d.RULE}}}}} {{{{{d.RULE_VERSION}}}}}",
                    ref=chr(ord("A") + i),
                )
                for i, q in enumerate(LATENCY_QUANTILES)
            ],
            "s",
            thresholds=p.steps(("green", None), ("red", latency_budget)),
        ),
        12,
        8,
    )
    grid.add(
        p.table(
            "Confidence distribution",
            "How many live executions in the time range reported each confidence (0-1) decile "
            "(from the store's raw rows: the Prometheus histogram keeps only sum and count, see the series "
            "budget; empty for ranges whose raw rows retention dropped).",
            [p.sql(CONFIDENCE_SQL)],
            "short",
        ),
        12,
        8,
    )
    conf_sum, conf_count = (
        sel(series, *f)
        for series in (hist_sum(d.HEURISTIC_EXECUTION_CONFIDENCE), hist_count(d.HEURISTIC_EXECUTION_CONFIDENCE))
    )
    grouping = by(*RULE_VERSION_LABELS, d.MODE)
    grid.add(
        p.timeseries(
            "Mean confidence by version and mode",
            "Average confidence of executions that reported one.",
            [
                p.prom(
                    f"sum {grouping} (rate({conf_sum}{RATE}))\n/\nsum {grouping} (rate({conf_count}{RATE}))",
                    f"{{{{{d.RULE}}}}} {{{{{d.RULE_VERSION}}}}} {{{{{d.MODE}}}}}",
                )
            ],
            p.RATIO_UNIT,
            min_value=0,
        ),
        12,
        8,
    )
    grid.add(
        p.timeseries(
            "Executions of versions that are not active",
            f"{active_set_text(cfg)} Must stay empty (lifecycle.active_version_matchers, docs/dashboards.md).",
            [p.prom(not_active_executions(cfg), f"{{{{{d.RULE}}}}} {{{{{d.RULE_VERSION}}}}} {{{{{d.MODE}}}}}")],
            p.RATE_UNIT,
            thresholds=p.steps(("green", None), ("red", 1e-9)),
        ),
        12,
        8,
    )

    grid.row("Exporter health")
    ingested = sel(counter(d.INGESTED_EVENTS), exporter)
    grid.add(
        p.timeseries(
            "Ingested events by kind and result",
            "Events offered to ingest: accepted, duplicate or rejected.",
            [p.prom(f"sum {by(d.KIND, d.RESULT)} (rate({ingested}{RATE}))", f"{{{{{d.KIND}}}}} {{{{{d.RESULT}}}}}")],
            p.RATE_UNIT,
            stacked=True,
        ),
        8,
        8,
    )
    grid.add(
        p.timeseries(
            "Writer queue",
            "Events accepted but not yet durable in the store; the line is the backlog alert.",
            [p.prom(f"sum {by(INSTANCE)} ({sel(gauge(d.WRITER_QUEUE_EVENTS), exporter)})", f"{{{{{INSTANCE}}}}}")],
            d.WRITER_QUEUE_EVENTS.unit,
            thresholds=p.steps(("green", None), ("red", cfg.alerts.writer_backlog.threshold_events)),
        ),
        8,
        8,
    )
    write_duration = sel(bucket(d.STORE_WRITE_DURATION), exporter)
    grid.add(
        p.timeseries(
            "Store write latency p95",
            "95th percentile duration of one batched store write.",
            [
                p.prom(
                    f"histogram_quantile(0.95, sum {by(d.OPERATION, LE)} (rate({write_duration}{RATE})))",
                    f"{{{{{d.OPERATION}}}}}",
                )
            ],
            d.STORE_WRITE_DURATION.unit,
        ),
        8,
        8,
    )
    grid.add(
        p.timeseries(
            "Store write errors / s",
            "Failed store writes (each is retried).",
            [
                p.prom(
                    f"sum {by(d.OPERATION)} (rate({sel(counter(d.STORE_WRITE_ERRORS), exporter)}{RATE}))",
                    f"{{{{{d.OPERATION}}}}}",
                )
            ],
            p.RATE_UNIT,
            thresholds=p.steps(("green", None), ("red", 1e-9)),
        ),
        8,
        8,
    )
    grid.add(
        p.timeseries(
            "Dropped events / s",
            "Acknowledged events given up. Must stay empty.",
            [
                p.prom(
                    f"sum {by(d.REASON)} (rate({sel(counter(d.DROPPED_EVENTS), exporter)}{RATE}))",
                    f"{{{{{d.REASON}}}}}",
                )
            ],
            p.RATE_UNIT,
            thresholds=p.steps(("green", None), ("red", 1e-9)),
        ),
        8,
        8,
    )
    grid.add(
        p.timeseries(
            "Scrape health",
            "up per exporter instance (1 = scraped).",
            [p.prom(sel(UP, exporter), f"{{{{{INSTANCE}}}}}")],
            "none",
            thresholds=p.steps(("red", None), ("green", 1)),
            min_value=0,
        ),
        8,
        8,
    )

    rule_variable = sel(executions, cfg.selectors.series)
    versions_variable = sel(executions, cfg.selectors.series, rx(d.RULE, f"${p.RULE_VAR}"))
    variables = [
        p.query_variable(p.RULE_VAR, "Rule", f"label_values({rule_variable}, {d.RULE})", p.PROMETHEUS_DS),
        p.query_variable(
            p.RULE_VERSION_VAR, "Rule version", f"label_values({versions_variable}, {d.RULE_VERSION})", p.PROMETHEUS_DS
        ),
    ]
    return p.dashboard(
        cfg,
        title="heurmetrics / Heuristic executions",
        uid=EXECUTIONS_DASHBOARD_UID,
        description="Rule executions (every one of them): rate, errors and error budget, latency, confidence, "
        "and the exporter's own health.",
        grid=grid,
        variables=variables,
        time_from="now-6h",
    )
