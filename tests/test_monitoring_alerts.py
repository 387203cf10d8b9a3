"""Generated Prometheus rules, checked and unit-tested by promtool.

For every alert there is a case that must NOT fire one evaluation before its ``for:`` boundary and
one where it fires, with full labels and annotations (runbook_url included). The promtool test file
is generated here from the same config as the rules: ``for:`` durations, windows and thresholds are
read from it, never repeated. Expected texts are literal English so a broken template fails.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import alerts
from heurmetrics.monitoring import config as c
from heurmetrics.monitoring.config import MonitoringConfig, duration_seconds
from tests.conftest import require_binary

INTERVAL_MINUTES = 1


def minutes(duration: str) -> int:
    seconds = duration_seconds(duration)
    assert seconds % 60 == 0, f"{duration} is not a whole number of minutes: the test grid is 1m"
    return int(seconds // 60)


def humanize_duration(seconds: float) -> str:
    """Prometheus' ``humanizeDuration`` for values >= 1 s."""
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {mins}m {secs}s"
    if hours:
        return f"{hours}h {mins}m {secs}s"
    if mins:
        return f"{mins}m {secs}s"
    return f"{secs}s"


# --- series helpers ---------------------------------------------------------------------------
RULE, VERSION = "range_bias", "1.2.0"
JOB, INSTANCE = "heurmetrics", "exporter:9464"
#: A second exporter replica of the same job.
REPLICA_B = "exporter-b:9464"
RV = {d.RULE: RULE, d.RULE_VERSION: VERSION}


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def executions(values: str, status: str = "ok", mode: str = "live", **labels: str) -> dict[str, str]:
    outcome = "bullish" if status == "ok" else d.NO_OUTCOME
    return series(
        d.HEURISTIC_EXECUTIONS.sample_name, {**RV, d.MODE: mode, d.STATUS: status, d.OUTCOME: outcome, **labels}, values
    )


def info(status: str, minutes_: int) -> dict[str, str]:
    """``rule_version_info`` of the test version, with the labels the definitions give it."""
    labels = {**RV, d.CONTENT_HASH: "ab12"}
    if d.STATUS in d.RULE_VERSION_INFO.labels:  # the lifecycle status label (note A)
        labels[d.STATUS] = status
    return series(d.RULE_VERSION_INFO.sample_name, labels, f"1x{minutes_}")


def lifecycle_aware(cfg: MonitoringConfig) -> bool:
    """Whether the config restricts alerts to active versions (rule_version_info{status=…})."""
    return bool(cfg.lifecycle.active_version_matchers)


def exporter_labels(**extra: str) -> dict[str, str]:
    return {"job": JOB, "instance": INSTANCE, **extra}


@dataclass
class Case:
    """One alert scenario on the 1-minute grid.

    The alert condition first holds at ``first_true`` minutes; with ``for_`` the alert must not be
    firing at ``first_true + for - 1`` and must be firing at ``first_true + for``.
    """

    alert: str
    input_series: list[dict[str, str]]
    first_true: int
    for_: str
    fired: list[dict[str, Any]]
    #: Alerts of the same name already firing just before the boundary (other severity tiers).
    before: list[dict[str, Any]] = field(default_factory=list)

    def to_promtool(self) -> dict[str, Any]:
        boundary = self.first_true + minutes(self.for_)
        before = boundary - INTERVAL_MINUTES
        assert before >= 0
        return {
            "interval": f"{INTERVAL_MINUTES}m",
            "input_series": self.input_series,
            "alert_rule_test": [
                {"eval_time": f"{before}m", "alertname": self.alert, "exp_alerts": self.before},
                {"eval_time": f"{boundary}m", "alertname": self.alert, "exp_alerts": self.fired},
            ],
        }


@dataclass
class Quiet:
    """A scenario in which the alert must not fire at all at ``at`` minutes."""

    alert: str
    input_series: list[dict[str, str]]
    at: int

    def to_promtool(self) -> dict[str, Any]:
        return {
            "interval": f"{INTERVAL_MINUTES}m",
            "input_series": self.input_series,
            "alert_rule_test": [{"eval_time": f"{self.at}m", "alertname": self.alert, "exp_alerts": []}],
        }


def fired(cfg: MonitoringConfig, alert: str, labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {
        "exp_labels": labels,
        "exp_annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{cfg.runbook_base_url}#{alert.lower()}",
        },
    }


# --- the scenarios ------------------------------------------------------------------------------
def burn_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    burn = cfg.alerts.error_budget_burn
    alert = c.ERROR_BUDGET_BURN
    # Every execution fails from t=0 (60 per minute): every window's ratio is 1 from the first
    # minute that has two samples, and every long window holds >= min_executions by then.
    assert burn.min_executions <= 60
    failing = [executions(f"0+60x{24 * 60}", status="error")]
    objective = f"{burn.objective * 100:.6g}%"

    def expected(tier: str, t: c.BurnTier) -> dict[str, Any]:
        pairs = ", or ".join(f"{p.short} and {p.long} above {alerts.num(p.factor)}x" for p in t.windows)
        return fired(
            cfg,
            alert,
            {d.RULE: RULE, "severity": t.severity},
            "A rule is burning its execution error budget too fast.",
            f"Rule {RULE}: 100% of its executions failed over the short window. The error budget "
            f"of the {objective} success objective burns too fast for the {tier} tier ({pairs}).",
        )

    page, ticket = expected("page", burn.page), expected("ticket", burn.ticket)
    assert minutes(burn.page.for_) < minutes(burn.ticket.for_)
    # 0.5 % of executions fail: under the budget of a 99 % objective, nothing may fire.
    assert 1 - burn.objective > 0.005
    healthy = [executions("0+199x600", status="ok"), executions("0+1x600", status="error")]
    # One failing execution every 10 minutes: ratios are 100 % but the long windows hold fewer
    # than min_executions, so the traffic guard keeps every tier quiet.
    sparse_minutes = int(burn.min_executions * 10) - 10
    sparse = [executions(f"0+0.1x{sparse_minutes}", status="error")]
    return [
        Case(alert, failing, 1, burn.page.for_, [page]),
        Case(alert, failing, 1, burn.ticket.for_, [page, ticket], before=[page]),
        Quiet(alert, healthy, 600),
        Quiet(alert, sparse, sparse_minutes),
    ]


def latency_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    a = cfg.alerts.latency_high
    budget = a.threshold_seconds
    edges = d.EXECUTION_DURATION_BUCKETS
    assert budget in edges, "the latency budget must be a bucket edge"
    slow_edge = edges[edges.index(budget) + 1]

    def histogram(duration_edge: float) -> list[dict[str, str]]:
        # 60 executions per minute, every one in the bucket that ends at ``duration_edge``.
        out = []
        for le in [*(f"{e}" for e in edges), "+Inf"]:
            per_minute = 60 if le == "+Inf" or float(le) >= duration_edge else 0
            out.append(
                series(
                    f"{d.HEURISTIC_EXECUTION_DURATION.name}_bucket",
                    {**RV, d.MODE: "live", "le": le},
                    f"0+{per_minute}x120",
                )
            )
        return out

    p = budget + (slow_edge - budget) * a.quantile
    value = f"{p * 1000:.4g}ms" if p < 1 else humanize_duration(p)
    expected = fired(
        cfg,
        c.LATENCY_HIGH,
        {**RV, "severity": "warning"},
        "Rule executions are slower than the latency budget.",
        f"The p{a.quantile * 100:.6g} execution latency of rule {RULE} version {VERSION} is {value} "
        f"over the last {a.window}, above the {alerts.num(budget)}s budget.",
    )
    return [
        Case(c.LATENCY_HIGH, histogram(slow_edge), 1, a.for_, [expected]),
        Quiet(c.LATENCY_HIGH, histogram(budget), 100),
    ]


def absent_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    a = cfg.alerts.executions_absent
    quiet, lookback = minutes(a.quiet), minutes(a.lookback)
    assert a.min_executions <= 60
    # One execution per minute for an hour, then none: quiet from minute 60 + quiet on.
    stops = [executions(f"0+1x60 60x{quiet + 120}")]
    expected = fired(
        cfg,
        c.EXECUTIONS_ABSENT,
        {**RV, "severity": "warning"},
        "A rule version stopped executing.",
        f"Rule {RULE} version {VERSION} executed 60 times in the last {a.lookback} but not once in the last {a.quiet}.",
    )
    # A slow rule (one execution per quiet window) never reaches min_executions in the lookback.
    slow_values = " ".join(f"{i}x{quiet - 1}" for i in range(2 * lookback // quiet + 1))
    assert (lookback // quiet) < a.min_executions
    horizon = 2 * lookback + 10
    cases: list[Case | Quiet] = [
        Case(c.EXECUTIONS_ABSENT, [*stops, info("active", horizon)], 60 + quiet, a.for_, [expected]),
        Quiet(c.EXECUTIONS_ABSENT, [executions(slow_values), info("active", horizon)], 2 * lookback),
    ]
    if lifecycle_aware(cfg):
        # A version that is not active (approved only) stopping is not an incident.
        boundary = 60 + quiet + minutes(a.for_)
        cases.append(Quiet(c.EXECUTIONS_ABSENT, [*stops, info("approved", horizon)], boundary))
    return cases


def backtest_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    failed, stale = cfg.alerts.backtest_failed, cfg.alerts.backtest_stale
    runs = d.BACKTEST_RUNS.sample_name
    window = minutes(failed.window)

    def failed_expected(count: int) -> dict[str, Any]:
        return fired(
            cfg,
            c.BACKTEST_FAILED,
            {**RV, "severity": "warning"},
            "A backtest run failed.",
            f"{count} backtest run(s) of rule {RULE} version {VERSION} failed in the last {failed.window}.",
        )

    max_age = int(duration_seconds(stale.max_age))
    finished = -max_age + 600  # older than max_age from t = 600 s on, i.e. from minute 11
    stale_at = 11 + minutes(stale.for_)
    in_use = executions(f"0+1x{stale_at + 10}")
    ts_series = series(d.BACKTEST_RESULT_TIMESTAMP.name, RV, f"{finished}x{stale_at + 10}")
    stale_expected = fired(
        cfg,
        c.BACKTEST_STALE,
        {**RV, "severity": "warning"},
        "A rule version in use has no recent backtest.",
        f"The latest completed backtest of rule {RULE} version {VERSION} finished "
        f"{humanize_duration(stale_at * 60 - finished)} ago (more than {stale.max_age}), yet the version "
        f"executed in the last {cfg.lifecycle.in_use_lookback}.",
    )
    return [
        # A version whose failed-runs counter exists for longer than the window: 0 -> 1 at W + 11.
        Case(
            c.BACKTEST_FAILED,
            [series(runs, {**RV, d.STATUS: "failed"}, f"0x{window + 10} 1x20")],
            window + 11,
            failed.for_,
            [failed_expected(1)],
        ),
        # A version whose first run fails: the series is born at 2 (two failures) at minute 11.
        Case(
            c.BACKTEST_FAILED,
            [series(runs, {**RV, d.STATUS: "failed"}, "_x11 2x20")],
            11,
            failed.for_,
            [failed_expected(2)],
        ),
        # Completed runs only: nothing fires.
        Quiet(c.BACKTEST_FAILED, [series(runs, {**RV, d.STATUS: "completed"}, "_x11 1+1x20")], 30),
        Case(c.BACKTEST_STALE, [in_use, ts_series, info("active", stale_at + 10)], 11, stale.for_, [stale_expected]),
        # Same stale backtest, but the version is not in use: nothing fires.
        Quiet(c.BACKTEST_STALE, [ts_series, info("active", stale_at + 10)], stale_at),
        *(
            # In use but not active (approved only): not this alert's business.
            [Quiet(c.BACKTEST_STALE, [in_use, ts_series, info("approved", stale_at + 10)], stale_at)]
            if lifecycle_aware(cfg)
            else []
        ),
    ]


def exporter_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    a = cfg.alerts
    labels = exporter_labels()
    replica_b = exporter_labels(instance=REPLICA_B)
    backlog = int(a.writer_backlog.threshold_events * 2)
    write_errors_at = 11 + minutes(a.store_write_errors.for_)
    window = minutes(a.store_write_errors.window)
    return [
        # The only replica goes down: every replica of the job is down, one alert per job.
        Case(
            c.EXPORTER_DOWN,
            [series("up", labels, "1x10 0x30")],
            11,
            a.exporter_down.for_,
            [
                fired(
                    cfg,
                    c.EXPORTER_DOWN,
                    {"job": JOB, "severity": "critical"},
                    "No heurmetrics exporter replica can be scraped.",
                    f"Prometheus cannot scrape any replica of the heurmetrics exporter job {JOB}: executions and "
                    "backtests are not being counted.",
                )
            ],
        ),
        # Two replicas, both go down: still one page for the job, and no replica ticket.
        Case(
            c.EXPORTER_DOWN,
            [series("up", labels, "1x10 0x30"), series("up", replica_b, "1x10 0x30")],
            11,
            a.exporter_down.for_,
            [
                fired(
                    cfg,
                    c.EXPORTER_DOWN,
                    {"job": JOB, "severity": "critical"},
                    "No heurmetrics exporter replica can be scraped.",
                    f"Prometheus cannot scrape any replica of the heurmetrics exporter job {JOB}: executions and "
                    "backtests are not being counted.",
                )
            ],
        ),
        Quiet(c.EXPORTER_REPLICA_DOWN, [series("up", labels, "1x10 0x30"), series("up", replica_b, "1x10 0x30")], 30),
        # One of two replicas goes down: a ticket naming it, no page.
        Case(
            c.EXPORTER_REPLICA_DOWN,
            [series("up", labels, "1x40"), series("up", replica_b, "1x10 0x30")],
            11,
            a.exporter_replica_down.for_,
            [
                fired(
                    cfg,
                    c.EXPORTER_REPLICA_DOWN,
                    {**replica_b, "severity": "warning"},
                    "One heurmetrics exporter replica cannot be scraped; others are up.",
                    f"Prometheus cannot scrape exporter replica {REPLICA_B} of job {JOB}; other replicas are up "
                    "and clients with several URLs fail over to them. What this replica counted since its last "
                    "scrape is missing from Prometheus (the store has every row).",
                )
            ],
        ),
        Quiet(c.EXPORTER_DOWN, [series("up", labels, "1x40"), series("up", replica_b, "1x10 0x30")], 30),
        Case(
            c.STORE_WRITE_ERRORS,
            [series(d.STORE_WRITE_ERRORS.sample_name, exporter_labels(operation="executions"), "0x10 1+1x40")],
            11,
            a.store_write_errors.for_,
            [
                fired(
                    cfg,
                    c.STORE_WRITE_ERRORS,
                    {**labels, d.OPERATION: "executions", "severity": "warning"},
                    "The heurmetrics exporter fails to write to its store.",
                    f"{min(window, write_errors_at - 10)} store write(s) (executions) of {INSTANCE} failed in "
                    f"the last {a.store_write_errors.window}; they are retried, events pile up in the writer "
                    "queue meanwhile.",
                )
            ],
        ),
        Case(
            c.EVENTS_DROPPED,
            [series(d.DROPPED_EVENTS.sample_name, exporter_labels(reason="queue_full"), "_x11 3x20")],
            11,
            a.events_dropped.for_,
            [
                fired(
                    cfg,
                    c.EVENTS_DROPPED,
                    {**labels, d.REASON: "queue_full", "severity": "critical"},
                    "The heurmetrics exporter dropped acknowledged events.",
                    f"3 acknowledged event(s) were dropped by {INSTANCE} in the last {a.events_dropped.window} "
                    "(reason queue_full): they are lost from the store, the no-sampling guarantee is "
                    "broken.",
                )
            ],
        ),
        Case(
            c.WRITER_BACKLOG,
            [series(d.WRITER_QUEUE_EVENTS.name, labels, f"0x10 {backlog}x40")],
            11,
            a.writer_backlog.for_,
            [
                fired(
                    cfg,
                    c.WRITER_BACKLOG,
                    {**labels, "severity": "warning"},
                    "The heurmetrics writer queue is backing up.",
                    f"{backlog // 1000}k events of {INSTANCE} wait to be written to the store (threshold "
                    f"{alerts.num(a.writer_backlog.threshold_events)}): the store is slow or failing.",
                )
            ],
        ),
        # A healthy exporter: no alert of this group fires.
        *(
            Quiet(
                name,
                [
                    series("up", labels, "1x30"),
                    series(d.STORE_WRITE_ERRORS.sample_name, exporter_labels(operation="executions"), "0x30"),
                    series(d.WRITER_QUEUE_EVENTS.name, labels, "5x30"),
                ],
                30,
            )
            for name in (
                c.EXPORTER_DOWN,
                c.EXPORTER_REPLICA_DOWN,
                c.STORE_WRITE_ERRORS,
                c.EVENTS_DROPPED,
                c.WRITER_BACKLOG,
            )
        ),
    ]


def drift_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    drift = cfg.alerts.performance_drift
    window = {d.WINDOW: drift.window}
    p_value = d.RVP_DRIFT_ADJUSTED_P_VALUE.name
    low = drift.alpha / 10
    expected = fired(
        cfg,
        c.PERFORMANCE_DRIFT,
        {**RV, **window, "severity": "warning"},
        "A rule version performs live unlike its walk-forward backtest.",
        f"Rule {RULE} version {VERSION}: over the last {drift.window} its live hit ratio differs from the "
        f"walk-forward expectation (Fisher exact test, BH-adjusted p = {low:.4f} < {alerts.num(drift.alpha)}).",
    )
    end = 11 + minutes(drift.for_) + 10
    return [
        # The snapshot's p-value drops below alpha at minute 11 and stays there.
        Case(
            c.PERFORMANCE_DRIFT, [series(p_value, {**RV, **window}, f"0.5x10 {low}x{end}")], 11, drift.for_, [expected]
        ),
        # Two exporter replicas export the same snapshot: one alert, without target labels.
        Case(
            c.PERFORMANCE_DRIFT,
            [
                series(p_value, {**exporter_labels(), **RV, **window}, f"0.5x10 {low}x{end}"),
                series(p_value, {**exporter_labels(instance=REPLICA_B), **RV, **window}, f"0.5x10 {low}x{end}"),
            ],
            11,
            drift.for_,
            [expected],
        ),
        # A p-value at alpha is not drift; neither is a small p-value of another window.
        Quiet(c.PERFORMANCE_DRIFT, [series(p_value, {**RV, **window}, f"{drift.alpha}x{end}")], end),
        Quiet(
            c.PERFORMANCE_DRIFT,
            [series(p_value, {**RV, d.WINDOW: "1h" if drift.window != "1h" else "7d"}, f"{low}x{end}")],
            end,
        ),
        # A small raw p-value that the FDR adjustment lifts above alpha is not drift either.
        Quiet(
            c.PERFORMANCE_DRIFT,
            [
                series(d.RVP_DRIFT_P_VALUE.name, {**RV, **window}, f"{low}x{end}"),
                series(p_value, {**RV, **window}, f"{drift.alpha * 3}x{end}"),
            ],
            end,
        ),
    ]


def overfitting_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    a = cfg.alerts.backtest_overfitting
    pbo = d.BACKTEST_OVERFITTING_PBO.name
    high = (1 + a.threshold) / 2
    expected = fired(
        cfg,
        c.BACKTEST_OVERFITTING,
        {**RV, "severity": "warning"},
        "The latest walk-forward run of a rule version is probably overfit.",
        f"Rule {RULE} version {VERSION}: probability of backtest overfitting {high * 100:.4g}% (above "
        f"{alerts.num(a.threshold)}) in its latest walk-forward run: the in-sample winner often ranks below "
        "the median out of sample.",
    )
    end = 11 + minutes(a.for_) + 10
    return [
        # A new walk-forward run with a high PBO is stored at minute 11.
        Case(c.BACKTEST_OVERFITTING, [series(pbo, RV, f"0.1x10 {high}x{end}")], 11, a.for_, [expected]),
        # PBO at the threshold is not above it; NaN (no trial matrix) never fires.
        Quiet(c.BACKTEST_OVERFITTING, [series(pbo, RV, f"{a.threshold}x{end}")], end),
        Quiet(c.BACKTEST_OVERFITTING, [series(pbo, RV, " ".join(["NaN"] * (end + 1)))], end),
    ]


def all_cases(cfg: MonitoringConfig) -> list[Case | Quiet]:
    return [
        *burn_cases(cfg),
        *latency_cases(cfg),
        *absent_cases(cfg),
        *backtest_cases(cfg),
        *drift_cases(cfg),
        *overfitting_cases(cfg),
        *exporter_cases(cfg),
    ]


def write_promtool_suite(tmp_path: Path, cfg: MonitoringConfig, cases: list[Case | Quiet]) -> Path:
    """Rule files plus a promtool test file for ``cases``; returns the test file."""
    written = alerts.write_rule_files(tmp_path, cfg)
    order = [g.name for g in (*alerts.recording_groups(cfg), *alerts.alert_groups(cfg))]
    doc = {
        "rule_files": [p.name for p in written],
        "evaluation_interval": f"{INTERVAL_MINUTES}m",
        # Recording rules first, so alerts read values recorded at the same evaluation.
        "group_eval_order": order,
        "tests": [case.to_promtool() for case in cases],
    }
    test_file = tmp_path / "heurmetrics.test.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False, width=4096), encoding="utf-8")
    return test_file


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=240, check=False)


# --- tests ----------------------------------------------------------------------------------------
def test_every_generated_alert_has_a_firing_case() -> None:
    cfg = MonitoringConfig()
    tested = {case.alert for case in all_cases(cfg) if isinstance(case, Case)}
    assert tested == set(alerts.alert_names(cfg))


def test_promtool_check_rules_on_generated_files(tmp_path: Path) -> None:
    written = alerts.write_rule_files(tmp_path, MonitoringConfig())
    result = run_promtool("check", "rules", *map(str, written))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules_on_committed_files() -> None:
    root = Path(__file__).resolve().parent.parent / "alerts"
    files = sorted(root.glob("*.yml"))
    assert files, "alerts/ holds no rule file: run `heurmetrics alerts build`"
    result = run_promtool("check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_every_alert(tmp_path: Path) -> None:
    cfg = MonitoringConfig()
    test_file = write_promtool_suite(tmp_path, cfg, all_cases(cfg))
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The suite's assertions bite: a wrong severity, a wrong runbook or a late boundary fails."""
    cfg = MonitoringConfig()
    case = next(x for x in exporter_cases(cfg) if isinstance(x, Case) and x.alert == c.EXPORTER_DOWN)
    wrong_label = Case(
        case.alert,
        case.input_series,
        case.first_true,
        case.for_,
        [{**case.fired[0], "exp_labels": {**case.fired[0]["exp_labels"], "severity": "warning"}}],
    )
    annotations = {**case.fired[0]["exp_annotations"], "runbook_url": "https://example.invalid/#nope"}
    wrong_runbook = Case(
        case.alert, case.input_series, case.first_true, case.for_, [{**case.fired[0], "exp_annotations": annotations}]
    )
    early = Case(case.alert, case.input_series, case.first_true - 1, case.for_, case.fired)
    for broken in (wrong_label, wrong_runbook, early):
        test_file = write_promtool_suite(tmp_path, cfg, [broken])
        result = run_promtool("test", "rules", str(test_file))
        assert result.returncode != 0, f"promtool accepted a wrong expectation:\n{result.stdout}"


def test_active_version_matchers_restrict_alerts_to_active_versions(tmp_path: Path) -> None:
    """Note A: once rule_version_info carries a status, one config value restricts the alerts."""
    cfg = c.apply_overrides(MonitoringConfig(), {"lifecycle": {"active_version_matchers": 'status="active"'}})
    info = d.RULE_VERSION_INFO.sample_name
    absent = cfg.alerts.executions_absent
    quiet = minutes(absent.quiet)
    stops = executions(f"0+1x60 60x{quiet + 120}")
    expected = fired(
        cfg,
        c.EXECUTIONS_ABSENT,
        {**RV, "severity": "warning"},
        "A rule version stopped executing.",
        f"Rule {RULE} version {VERSION} executed 60 times in the last {absent.lookback} "
        f"but not once in the last {absent.quiet}.",
    )
    boundary = 60 + quiet + minutes(absent.for_)
    active = series(info, {**RV, d.CONTENT_HASH: "ab12", "status": "active"}, f"1x{boundary + 5}")
    retired = series(info, {**RV, d.CONTENT_HASH: "ab12", "status": "retired"}, f"1x{boundary + 5}")
    cases: list[Case | Quiet] = [
        Case(c.EXECUTIONS_ABSENT, [stops, active], 60 + quiet, absent.for_, [expected]),
        Quiet(c.EXECUTIONS_ABSENT, [stops, retired], boundary),
    ]
    test_file = write_promtool_suite(tmp_path, cfg, cases)
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_active_versions_default_follows_the_definitions() -> None:
    """Note A: once rule_version_info has the status label, alerts only concern active versions."""
    matchers = MonitoringConfig().lifecycle.active_version_matchers
    if d.STATUS in d.RULE_VERSION_INFO.labels:
        assert matchers == f'{d.STATUS}="active"'
        assert f"{d.RULE_VERSION_INFO.sample_name}{{{matchers}}}" in alerts.active_filter(MonitoringConfig())
    else:
        assert matchers == "" and alerts.active_filter(MonitoringConfig()) == ""


def test_default_severities_page_only_for_data_loss_and_fast_burn() -> None:
    cfg = MonitoringConfig()
    by_alert: dict[str, set[str]] = {}
    for group in alerts.alert_groups(cfg):
        for rule in group.rules:
            assert isinstance(rule, alerts.AlertingRule)
            by_alert.setdefault(rule.alert, set()).add(rule.labels["severity"])
    critical = {name for name, sev in by_alert.items() if "critical" in sev}
    assert critical == {c.ERROR_BUDGET_BURN, c.EXPORTER_DOWN, c.EVENTS_DROPPED}
    assert by_alert[c.ERROR_BUDGET_BURN] == {"critical", "warning"}


def test_rule_files_follow_the_conventions() -> None:
    cfg = MonitoringConfig()
    for group in alerts.recording_groups(cfg):
        for rule in group.rules:
            assert isinstance(rule, alerts.RecordingRule)
            assert len(rule.record.split(":")) == 3, rule.record
    for group in alerts.alert_groups(cfg):
        for rule in group.rules:
            assert isinstance(rule, alerts.AlertingRule)
            assert rule.alert[0].isupper() and "_" not in rule.alert
            assert rule.labels["severity"] in c.SEVERITIES
            assert rule.annotations["summary"].endswith(".")
            assert "{{" in rule.annotations["description"], f"{rule.alert}: description is not templated"
            assert rule.annotations["runbook_url"].endswith(f"#{rule.alert.lower()}")


def test_generation_is_deterministic() -> None:
    assert alerts.rule_files(MonitoringConfig()) == alerts.rule_files(MonitoringConfig())
