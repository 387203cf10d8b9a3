"""Dashboard 2, *Backtests* (quant): latest headline results per version (Prometheus), runs,
failures and durations, and the equity curve, drawdown and folds of one run (PostgreSQL)."""

from __future__ import annotations

from grafanalib import core as g

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import panels as p
from heurmetrics.monitoring import sqlq as q
from heurmetrics.monitoring.config import BACKTESTS_DASHBOARD_UID, MonitoringConfig
from heurmetrics.monitoring.promql import LE, RULE_VERSION_LABELS, bucket, by, counter, rx, sel, store_gauge

FILE_NAME = "backtests.json"
RATE = "[$__rate_interval]"

#: Panel titles of the latest-result gauges, keyed like ``definitions.BACKTEST_RESULT_GAUGES``.
GAUGE_TITLES = {
    "sharpe": "Sharpe ratio (latest backtest)",
    "max_drawdown": "Max drawdown (latest backtest)",
    "total_return": "Total return (latest backtest)",
    "cagr": "CAGR (latest backtest)",
}
if set(GAUGE_TITLES) != set(d.BACKTEST_RESULT_GAUGES):
    raise RuntimeError("GAUGE_TITLES must name every definitions.BACKTEST_RESULT_GAUGES entry")

_RUNS_FROM = f"FROM backtest_runs AS br\n{q.version_join('br')}"

RUNS_IN_RANGE_SQL = f"""
SELECT
  count(*) FILTER (WHERE {q.COMPLETED_RUN}) AS "completed",
  count(*) FILTER (WHERE {q.FAILED_RUN}) AS "failed"
{_RUNS_FROM}
WHERE $__timeFilter(br.finished_at) AND {q.VERSION_FILTER}
"""

RUNS_TABLE_SQL = f"""
SELECT
  br.run_id::text AS "run",
  r.name AS "rule",
  rv.version AS "version",
  br.kind AS "kind",
  br.dataset AS "dataset",
  br.status AS "status",
  br.finished_at AS "finished",
  br.duration_seconds AS "duration",
  br.sharpe AS "sharpe",
  br.total_return AS "total return",
  br.cagr AS "CAGR",
  br.max_drawdown AS "max drawdown",
  br.observations AS "observations",
  br.missing AS "missing",
  br.error_message AS "error",
  (EXTRACT(EPOCH FROM COALESCE(br.period_start, br.started_at)) * 1000)::bigint AS "period_start_ms",
  (EXTRACT(EPOCH FROM COALESCE(br.period_end, br.finished_at)) * 1000)::bigint AS "period_end_ms"
{_RUNS_FROM}
WHERE $__timeFilter(br.finished_at) AND {q.VERSION_FILTER}
ORDER BY br.finished_at DESC
LIMIT 200
"""

DURATIONS_SQL = f"""
SELECT
  br.finished_at AS "time",
  r.name || ' ' || rv.version AS "metric",
  br.duration_seconds AS "duration"
{_RUNS_FROM}
WHERE $__timeFilter(br.finished_at) AND {q.VERSION_FILTER}
ORDER BY br.finished_at
"""

SELECTED_RUN_SQL = f"""
SELECT
  br.run_id::text AS "run",
  r.name AS "rule",
  rv.version AS "version",
  rv.content_hash AS "content hash",
  br.kind AS "kind",
  br.dataset AS "dataset",
  br.dataset_hash AS "dataset hash",
  br.period_start AS "period start",
  br.period_end AS "period end",
  br.periods_per_year AS "periods / year",
  br.status AS "status",
  br.observations AS "observations",
  br.missing AS "missing",
  br.sharpe AS "sharpe",
  br.total_return AS "total return",
  br.cagr AS "CAGR",
  br.volatility AS "volatility",
  br.max_drawdown AS "max drawdown",
  br.error_message AS "error"
{_RUNS_FROM}
WHERE br.run_id = {q.SELECTED_RUN}
"""


def _curve_sql(column: str) -> str:
    return f"""
SELECT
  ep.ts AS "time",
  ep.{column} AS "{column}"
FROM equity_points AS ep
WHERE ep.run_id = {q.SELECTED_RUN} AND ep.fold_index IS NULL AND $__timeFilter(ep.ts)
ORDER BY ep.ts
"""


EQUITY_SQL = _curve_sql("equity")
DRAWDOWN_SQL = _curve_sql("drawdown")

FOLDS_SQL = "\n".join(
    [
        "SELECT",
        '  bf.fold_index AS "fold",',
        '  bf.in_sample_start AS "in-sample start",',
        '  bf.in_sample_end AS "in-sample end",',
        '  bf.out_of_sample_start AS "out-of-sample start",',
        '  bf.out_of_sample_end AS "out-of-sample end",',
        '  bf.trials AS "trials",',
        '  bf.params::text AS "parameters",',
        *(
            f'  (bf.{side}_metrics ->> {q.lit(key)})::float AS "{label} {key}",'
            for side, label in (("in_sample", "IS"), ("out_of_sample", "OOS"))
            for key in q.FOLD_METRICS
        ),
        '  bf.out_of_sample_metrics::text AS "OOS metrics"',
        "FROM backtest_folds AS bf",
        f"WHERE bf.run_id = {q.SELECTED_RUN}",
        "ORDER BY bf.fold_index",
    ]
)

FAILED_ANNOTATION_SQL = f"""
SELECT
  br.finished_at AS "time",
  r.name || ' ' || rv.version || ' backtest failed: ' || COALESCE(br.error_message, '') AS "text"
{_RUNS_FROM}
WHERE {q.FAILED_RUN} AND $__timeFilter(br.finished_at) AND {q.VERSION_FILTER}
"""

RUN_ID_VARIABLE_SQL = f"""
SELECT
  br.run_id::text AS "__value",
  r.name || ' ' || rv.version || ' | ' || br.kind || ' | ' || br.status || ' | '
    || to_char(br.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' AS "__text"
{_RUNS_FROM}
WHERE {q.VERSION_FILTER}
ORDER BY br.finished_at DESC
LIMIT 200
"""


def _run_link() -> list[dict[str, object]]:
    """Open a run: select it and set the time range to its period (equity panels use it)."""
    url = (
        f"/d/{BACKTESTS_DASHBOARD_UID}/?var-{q.RUN_ID_VAR}=${{__value.raw}}"
        "&from=${__data.fields.period_start_ms}&to=${__data.fields.period_end_ms}"
        f"&${{{p.RULE_VAR}:queryparam}}&${{{p.RULE_VERSION_VAR}:queryparam}}"
        f"&${{{p.PROMETHEUS_VAR}:queryparam}}&${{{p.POSTGRES_VAR}:queryparam}}"
    )
    return [{"title": "Open this run (time range = its period)", "url": url}]


def _percent_columns(*names: str) -> list[dict[str, object]]:
    return [p.field_override(n, unit=p.RATIO_UNIT) for n in names]


def build(cfg: MonitoringConfig) -> g.Dashboard:
    """The backtests dashboard for ``cfg``."""
    f = (cfg.selectors.series, rx(d.RULE, f"${p.RULE_VAR}"), rx(d.RULE_VERSION, f"${p.RULE_VERSION_VAR}"))
    legend = f"{{{{{d.RULE}}}}} {{{{{d.RULE_VERSION}}}}}"
    grid = p.Grid()

    grid.row("Latest completed backtest per rule version (Prometheus)")
    for key, spec in d.BACKTEST_RESULT_GAUGES.items():
        grid.add(
            p.stat(
                GAUGE_TITLES[key],
                spec.documentation,
                [p.prom(store_gauge(spec, *f), legend)],
                spec.unit,
                graph=False,
                decimals=2 if spec.unit == "none" else None,
            ),
            5,
            6,
        )
    grid.add(
        p.stat(
            "Latest backtest finished",
            d.BACKTEST_RESULT_TIMESTAMP.documentation,
            [p.prom(f"{store_gauge(d.BACKTEST_RESULT_TIMESTAMP, *f)} * 1000", legend)],
            d.BACKTEST_RESULT_TIMESTAMP.unit,
            graph=False,
        ),
        4,
        6,
    )

    grid.row("Overfitting of the latest walk-forward run (Prometheus)")
    pbo_threshold = cfg.alerts.backtest_overfitting.threshold
    for spec, title, thresholds in (
        (
            d.BACKTEST_OVERFITTING_PBO,
            "Probability of backtest overfitting",
            p.steps(("green", None), ("red", pbo_threshold)),
        ),
        (d.BACKTEST_OVERFITTING_DSR, "Deflated Sharpe ratio", p.steps(("red", None), ("green", 0.95))),
    ):
        grid.add(
            p.stat(
                title,
                spec.documentation
                + (f" Above {pbo_threshold} fires BacktestOverfitting." if spec is d.BACKTEST_OVERFITTING_PBO else ""),
                [p.prom(store_gauge(spec, *f), legend)],
                spec.unit,
                graph=False,
                thresholds=thresholds,
                decimals=2 if spec.unit == p.RATIO_UNIT else None,
            ),
            8,
            6,
        )
    lengths = [(d.BACKTEST_OVERFITTING_LENGTH, "backtest"), (d.BACKTEST_OVERFITTING_MIN_LENGTH, "minimum")]
    grid.add(
        p.stat(
            "Backtest length vs minimum backtest length",
            "Out-of-sample length of the run against the minimum for its Sharpe ratio given its trials "
            "(Bailey et al. 2014): shorter than the minimum = the Sharpe ratio is within what chance gives.",
            [
                p.prom(store_gauge(spec, *f), f"{legend} {name}", ref=ref)
                for (spec, name), ref in zip(lengths, "AB", strict=True)
            ],
            "s",
            graph=False,
            text_mode="value_and_name",
        ),
        8,
        6,
    )

    grid.row("Runs and failures")
    grid.add(
        p.stat(
            "Runs in the time range",
            "Completed and failed backtest runs that finished in the selected time range (PostgreSQL).",
            [p.sql(RUNS_IN_RANGE_SQL)],
            "short",
            graph=False,
            text_mode="value_and_name",
            overrides=[
                p.field_override(
                    "failed", thresholds={"mode": "absolute", "steps": p.steps(("green", None), ("red", 1))}
                )
            ],
        ),
        6,
        8,
    )
    runs = sel(counter(d.BACKTEST_RUNS), *f)
    grid.add(
        p.timeseries(
            "Backtest runs by status",
            "Runs that finished per interval, by final status (Prometheus).",
            [
                p.prom(
                    f"sum {by(*RULE_VERSION_LABELS, d.STATUS)} (increase({runs}{RATE}))", f"{legend} {{{{{d.STATUS}}}}}"
                )
            ],
            "short",
            draw="bars",
            stacked=True,
        ),
        9,
        8,
    )
    # The histogram is per rule (series budget): per-version durations are the SQL panel below.
    durations = sel(bucket(d.BACKTEST_DURATION), cfg.selectors.series, rx(d.RULE, f"${p.RULE_VAR}"))
    grid.add(
        p.timeseries(
            "Backtest duration p95",
            "95th percentile run duration per rule while backtests run (Prometheus histogram).",
            [p.prom(f"histogram_quantile(0.95, sum {by(d.RULE, LE)} (rate({durations}{RATE})))", f"{{{{{d.RULE}}}}}")],
            d.BACKTEST_DURATION.unit,
        ),
        9,
        8,
    )
    grid.add(
        p.table(
            "Backtest runs",
            "Runs that finished in the time range, newest first. Click a run to open it below "
            "with the time range set to its period.",
            [p.sql(RUNS_TABLE_SQL)],
            overrides=[
                p.field_override("run", links=_run_link()),
                p.field_override("duration", unit="s"),
                p.field_override("sharpe", decimals=2),
                *_percent_columns("total return", "CAGR", "max drawdown"),
                p.field_override("period_start_ms", custom__hidden=True),
                p.field_override("period_end_ms", custom__hidden=True),
            ],
        ),
        24,
        9,
    )
    grid.add(
        p.timeseries(
            "Backtest durations",
            "Duration of every run, at its finish time (PostgreSQL).",
            [p.sql(DURATIONS_SQL, fmt=g.TIME_SERIES_TARGET_FORMAT)],
            "s",
            draw="points",
        ),
        24,
        7,
    )

    grid.row(f"Selected run (${q.RUN_ID_VAR})")
    grid.add(
        p.table(
            "Selected run",
            "The run chosen in the run_id variable, whatever the time range.",
            [p.sql(SELECTED_RUN_SQL)],
            overrides=[
                p.field_override("sharpe", decimals=2),
                *_percent_columns("total return", "CAGR", "volatility", "max drawdown"),
            ],
        ),
        24,
        4,
    )
    grid.add(
        p.timeseries(
            "Equity curve",
            "Stitched (out-of-sample) equity of the selected run, anchored at 1.0. Set the time "
            "range to the run's period (the link in the runs table does).",
            [p.sql(EQUITY_SQL, fmt=g.TIME_SERIES_TARGET_FORMAT)],
            "none",
        ),
        12,
        9,
    )
    grid.add(
        p.timeseries(
            "Drawdown",
            "Drawdown of the selected run's equity curve (negative fraction).",
            [p.sql(DRAWDOWN_SQL, fmt=g.TIME_SERIES_TARGET_FORMAT)],
            p.RATIO_UNIT,
        ),
        12,
        9,
    )
    grid.add(
        p.table(
            "Walk-forward folds",
            "In-sample / out-of-sample windows of the selected run, the parameters chosen, "
            "how many candidates were tried, and the headline metrics of each side.",
            [p.sql(FOLDS_SQL)],
            overrides=[
                *_percent_columns(
                    *(f"{side} {key}" for side in ("IS", "OOS") for key in q.FOLD_METRICS if key != "sharpe")
                )
            ],
        ),
        24,
        8,
    )

    variables = [
        *q.version_variables(),
        p.query_variable(q.RUN_ID_VAR, "Run", RUN_ID_VARIABLE_SQL.strip(), p.POSTGRES_DS, multi=False),
    ]
    return p.dashboard(
        cfg,
        title="heurmetrics / Backtests",
        uid=BACKTESTS_DASHBOARD_UID,
        description="Backtest results per rule version, runs and failures, and one run's equity curve, "
        "drawdown and walk-forward folds.",
        grid=grid,
        variables=variables,
        time_from="now-30d",
        annotations=[p.sql_annotation("Backtest failed", FAILED_ANNOTATION_SQL, "red")],
    )
