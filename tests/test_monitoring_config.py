"""The one monitoring config: YAML overrides change the generated files; mistakes are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from heurmetrics.cli.monitoring import alerts_app, dashboards_app
from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import alerts, dashboards
from heurmetrics.monitoring import config as c
from heurmetrics.monitoring.config import ConfigError, MonitoringConfig, apply_overrides, load_config
from heurmetrics.monitoring.generate import generate_all


def write_yaml(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "monitoring.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def alert_rules(cfg: MonitoringConfig) -> dict[str, list[alerts.AlertingRule]]:
    out: dict[str, list[alerts.AlertingRule]] = {}
    for group in alerts.alert_groups(cfg):
        for rule in group.rules:
            assert isinstance(rule, alerts.AlertingRule)
            out.setdefault(rule.alert, []).append(rule)
    return out


def test_defaults_come_from_definitions() -> None:
    cfg = MonitoringConfig()
    assert cfg.alerts.latency_high.threshold_seconds == d.EXECUTION_LATENCY_BUDGET_SECONDS
    assert cfg.alerts.error_budget_burn.objective == d.EXECUTION_SUCCESS_OBJECTIVE
    rules = alert_rules(cfg)
    assert f"> {alerts.num(d.EXECUTION_LATENCY_BUDGET_SECONDS)}" in rules[c.LATENCY_HIGH][0].expr
    assert f"(1 - {alerts.num(d.EXECUTION_SUCCESS_OBJECTIVE)})" in rules[c.ERROR_BUDGET_BURN][0].expr


def test_a_threshold_override_changes_the_generated_expression(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        {
            "alerts": {
                c.LATENCY_HIGH: {"threshold_seconds": 0.5, "for": "30m"},
                c.WRITER_BACKLOG: {"threshold_events": 2500},
            }
        },
    )
    cfg = load_config(path)
    rules = alert_rules(cfg)
    assert rules[c.LATENCY_HIGH][0].expr.endswith("> 0.5")
    assert rules[c.LATENCY_HIGH][0].to_dict()["for"] == "30m"
    assert rules[c.WRITER_BACKLOG][0].expr.endswith("> 2500")
    text = alerts.rule_files(cfg)[alerts.ALERTS_FILE]
    assert "> 0.5" in text and "for: 30m" in text
    assert alerts.rule_files(cfg) != alerts.rule_files(MonitoringConfig())
    # The dashboards follow the same config: the latency stat's red threshold moves too.
    board = dashboards.to_json_data(dashboards.build_dashboards(cfg)["heuristic-executions.json"])
    latency = next(p for p in dashboards.iter_panels(board) if p["title"] == "p95 latency")
    assert latency["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 0.5


def test_burn_rate_windows_objective_and_tiers_are_configurable() -> None:
    cfg = apply_overrides(
        MonitoringConfig(),
        {
            "alerts": {
                c.ERROR_BUDGET_BURN: {
                    "objective": 0.995,
                    "page": {"for": "5m", "windows": [{"short": "10m", "long": "2h", "factor": 10}]},
                }
            }
        },
    )
    burn = alert_rules(cfg)[c.ERROR_BUDGET_BURN]
    page = next(r for r in burn if r.labels["severity"] == "critical")
    assert "ratio_rate10m > (10 * (1 - 0.995))" in page.expr
    assert "ratio_rate2h > (10 * (1 - 0.995))" in page.expr
    assert page.for_ == "5m"
    assert {alerts.error_ratio_record("10m"), alerts.error_ratio_record("2h")} <= alerts.recording_rule_names(cfg)
    assert alerts.error_ratio_record("5m") not in alerts.recording_rule_names(cfg)


def test_disabling_an_alert_removes_it(tmp_path: Path) -> None:
    cfg = load_config(
        write_yaml(
            tmp_path, {"alerts": {c.BACKTEST_STALE: {"enabled": False}, c.ERROR_BUDGET_BURN: {"enabled": False}}}
        )
    )
    names = alerts.alert_names(cfg)
    assert c.BACKTEST_STALE not in names and c.ERROR_BUDGET_BURN not in names
    assert c.BACKTEST_FAILED in names
    text = alerts.rule_files(cfg)[alerts.ALERTS_FILE]
    assert c.BACKTEST_STALE not in text and c.ERROR_BUDGET_BURN not in text
    assert alerts.alert_names(MonitoringConfig()) - names == {c.BACKTEST_STALE, c.ERROR_BUDGET_BURN}


def test_extra_labels_and_selectors_reach_the_rules() -> None:
    cfg = apply_overrides(
        MonitoringConfig(),
        {
            "selectors": {"exporter": 'job="heurmetrics-prod"', "series": 'env="prod"'},
            "alerts": {
                c.EXPORTER_DOWN: {"labels": {"team": "quant-sre"}, "severity": "warning"},
                c.EXECUTIONS_ABSENT: {"selector": 'rule!~"daily_.*"'},
            },
        },
    )
    rules = alert_rules(cfg)
    down = rules[c.EXPORTER_DOWN][0]
    assert down.expr == 'sum by (job) (up{job="heurmetrics-prod"}) == 0'
    assert down.labels == {"severity": "warning", "team": "quant-sre"}
    assert 'env="prod"' in rules[c.EXECUTIONS_ABSENT][0].expr
    assert 'rule!~"daily_.*"' in rules[c.EXECUTIONS_ABSENT][0].expr


def test_runbook_and_dashboard_urls_are_configurable() -> None:
    cfg = apply_overrides(
        MonitoringConfig(),
        {
            "runbook_base_url": "https://wiki.example.com/runbooks.md",
            "grafana_base_url": "https://grafana.example.com/",
        },
    )
    for rules in alert_rules(cfg).values():
        for rule in rules:
            assert rule.annotations["runbook_url"] == f"https://wiki.example.com/runbooks.md#{rule.alert.lower()}"
            assert rule.annotations["dashboard_url"].startswith("https://grafana.example.com/d/heurmetrics-")
    assert all("dashboard_url" not in r.annotations for rs in alert_rules(MonitoringConfig()).values() for r in rs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"alerts": {"HeuristicExecutionLatencyHihg": {"for": "5m"}}},
            r"alerts: unknown alert 'HeuristicExecutionLatencyHihg'; known alerts: HeuristicExecutionErrorBudgetBurn",
        ),
        (
            {"alerts": {c.LATENCY_HIGH: {"treshold_seconds": 1}}},
            r"alerts\.HeuristicExecutionLatencyHigh: unknown key 'treshold_seconds'; known keys: .*threshold_seconds",
        ),
        ({"alerst": {}}, r"\(top level\): unknown key 'alerst'"),
        (
            {"alerts": {c.LATENCY_HIGH: {"threshold_seconds": "slow"}}},
            r"alerts\.HeuristicExecutionLatencyHigh\.threshold_seconds: expected a number",
        ),
        ({"alerts": {c.LATENCY_HIGH: {"for": "5 minutes"}}}, r"'5 minutes' is not a Prometheus duration"),
        (
            {"alerts": {c.LATENCY_HIGH: {"severity": "page"}}},
            r"HeuristicExecutionLatencyHigh\.severity: 'page' is not one of critical, warning, info",
        ),
        ({"alerts": {c.BACKTEST_FAILED: {"enabled": "no"}}}, r"BacktestFailed\.enabled: expected true or false"),
        ({"selectors": {"exporter": "job=heurmetrics"}}, r"not a list of PromQL label matchers"),
        ({"alerts": {c.ERROR_BUDGET_BURN: {"objective": 99}}}, r"objective must be strictly between 0 and 1"),
        (
            {"alerts": {c.ERROR_BUDGET_BURN: {"page": {"windows": [{"short": "1h", "long": "5m", "factor": 2}]}}}},
            r"page\.windows\[0\]: short window 1h must be shorter than long window 5m",
        ),
        (
            {"alerts": {c.ERROR_BUDGET_BURN: {"page": {"windows": [{"short": "5m", "factor": 2}]}}}},
            r"page\.windows\[0\]: missing key\(s\) long",
        ),
        ({"alerts": {c.PERFORMANCE_DRIFT: {"window": "2d"}}}, r"window '2d' is not exported to Prometheus"),
        ({"alerts": {c.PERFORMANCE_DRIFT: {"alpha": 1.5}}}, r"alpha must be strictly between 0 and 1"),
        ({"alerts": {c.EXPORTER_DOWN: {"labels": {"severity": "page"}}}}, r"labels must not set 'severity'"),
    ],
)
def test_mistakes_raise_a_clear_error(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    path = write_yaml(tmp_path, overrides)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_unreadable_or_malformed_files_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("alerts: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(bad)
    empty = tmp_path / "empty.yml"
    empty.write_text("", encoding="utf-8")
    assert load_config(empty) == MonitoringConfig()


def test_every_key_can_be_overridden_with_its_own_default() -> None:
    """describe() lists the whole YAML surface; feeding it back changes nothing."""
    described = c.describe()
    assert set(described["alerts"]) == {
        c.ERROR_BUDGET_BURN,
        c.LATENCY_HIGH,
        c.EXECUTIONS_ABSENT,
        c.BACKTEST_FAILED,
        c.BACKTEST_STALE,
        c.PERFORMANCE_DRIFT,
        c.BACKTEST_OVERFITTING,
        c.EXPORTER_DOWN,
        c.EXPORTER_REPLICA_DOWN,
        c.STORE_WRITE_ERRORS,
        c.EVENTS_DROPPED,
        c.WRITER_BACKLOG,
    }
    assert apply_overrides(MonitoringConfig(), described) == MonitoringConfig()


def test_drift_alert_follows_its_config() -> None:
    cfg = MonitoringConfig()
    assert cfg.alerts.performance_drift.enabled is True
    assert c.PERFORMANCE_DRIFT in alerts.alert_names(cfg)
    stricter = apply_overrides(MonitoringConfig(), {"alerts": {c.PERFORMANCE_DRIFT: {"alpha": 0.001}}})
    assert "< 0.001" in "".join(alerts.rule_files(stricter).values())
    disabled = apply_overrides(MonitoringConfig(), {"alerts": {c.PERFORMANCE_DRIFT: {"enabled": False}}})
    assert c.PERFORMANCE_DRIFT not in alerts.alert_names(disabled)


def test_overfitting_alert_threshold_is_configurable() -> None:
    default = "".join(alerts.rule_files(MonitoringConfig()).values())
    assert f"{d.BACKTEST_OVERFITTING_PBO.name}) > 0.5" in default  # max by (rule, rule_version) (…) > 0.5
    stricter = apply_overrides(MonitoringConfig(), {"alerts": {c.BACKTEST_OVERFITTING: {"threshold": 0.3}}})
    assert f"{d.BACKTEST_OVERFITTING_PBO.name}) > 0.3" in "".join(alerts.rule_files(stricter).values())
    with pytest.raises(ConfigError, match="threshold"):
        apply_overrides(MonitoringConfig(), {"alerts": {c.BACKTEST_OVERFITTING: {"threshold": 1.5}}})


def test_cli_builds_with_a_config_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"alerts": {c.BACKTEST_FAILED: {"enabled": False}}})
    runner = CliRunner()
    result = runner.invoke(alerts_app, ["build", "--out", str(tmp_path / "a"), "--config", str(path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "a" / alerts.ALERTS_FILE).read_text(encoding="utf-8")
    assert c.BACKTEST_FAILED not in text and c.BACKTEST_STALE in text
    result = runner.invoke(dashboards_app, ["build", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "d" / "backtests.json").read_text(encoding="utf-8"))
    assert board["uid"] == c.BACKTESTS_DASHBOARD_UID
    assert (tmp_path / "d" / "provisioning" / "datasources" / "heurmetrics.yml").is_file()


def test_cli_reports_a_bad_config_and_exits_2(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"alerts": {"NoSuchAlert": {}}})
    result = CliRunner().invoke(alerts_app, ["build", "--out", str(tmp_path / "a"), "--config", str(path)])
    assert result.exit_code == 2
    assert "unknown alert 'NoSuchAlert'" in result.output
    assert not (tmp_path / "a").exists()


def test_generate_all_writes_both_trees(tmp_path: Path) -> None:
    written = generate_all(dashboards_dir=tmp_path / "dashboards", alerts_dir=tmp_path / "alerts")
    relative = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert "alerts/heurmetrics.alerts.yml" in relative
    assert "dashboards/heuristic-executions.json" in relative
    assert "dashboards/provisioning/dashboards/heurmetrics.yml" in relative


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # A bad key deep inside: the error names its whole path, list index included.
        (
            {"alerts": {c.ERROR_BUDGET_BURN: {"ticket": {"windows": [{"short": "5m", "long": "1h", "factr": 2}]}}}},
            r"^overrides: .*alerts\.HeuristicExecutionErrorBudgetBurn\.ticket\.windows\[0\]: unknown key 'factr'; "
            r"known keys: short, long, factor",
        ),
        (
            {"dashboards": {"prometheus": {"uid": "p", "nme": "x"}}},
            r"^overrides: dashboards\.prometheus: unknown key 'nme'; known keys: name, uid$",
        ),
        (
            {"alerts": {c.ERROR_BUDGET_BURN: {"page": {"windows": [{"short": "5m", "long": "1h", "factor": "x"}]}}}},
            r"page\.windows\[0\]\.factor: expected a number, got 'x'",
        ),
        (
            {"alerts": {c.LATENCY_HIGH: {"labels": {"team": 7}}}},
            r"HeuristicExecutionLatencyHigh\.labels\.team: expected",
        ),
        (
            {"alerts": {c.ERROR_BUDGET_BURN: {"page": "fast"}}},
            r"HeuristicExecutionErrorBudgetBurn\.page: expected a mapping",
        ),
        ({"alerts": None}, r"^overrides: alerts: expected a mapping, got None$"),
        # Two mistakes: both are named.
        (
            {"alerts": {c.LATENCY_HIGH: {"quantile": "high", "for": "soon"}}},
            r"(?=.*HeuristicExecutionLatencyHigh\.quantile: expected a number)"
            r"(?=.*HeuristicExecutionLatencyHigh\.for: 'soon' is not a Prometheus duration)",
        ),
    ],
)
def test_nested_mistakes_name_their_path(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(MonitoringConfig(), overrides)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("0h0m", 0.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("3d", 259200.0),
        ("100ms", 0.1),
        ("1y", 31536000.0),
    ],
)
def test_durations_are_read_by_the_promql_parser(text: str, seconds: float) -> None:
    assert c.duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5", "1.5h", "-5m", "5 m", "5minutes", "m5", "0", None, 5])
def test_malformed_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="is not a Prometheus duration"):
        c.duration_seconds(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("", ""),
        ('job="a"', 'job="a"'),
        (' job = "a" , env!~"prod|stage", ', 'job = "a" , env!~"prod|stage"'),
        ('rule=~"daily_.*"', 'rule=~"daily_.*"'),
    ],
)
def test_matchers_are_read_by_the_promql_parser(text: str, clean: str) -> None:
    assert c.check_matchers(text) == clean


@pytest.mark.parametrize(
    "text",
    [
        "job=heurmetrics",  # unquoted value
        'job="a"} or up{x="y"',  # a second selector smuggled in
        'job="a"} offset 5m',
        'job="a"}[5m',
        '1job="a"',
        'job~"a"',
        'job="a" env="b"',
    ],
)
def test_malformed_matchers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a list of PromQL label matchers"):
        c.check_matchers(text)
