"""Dashboards: lint (datasource variables, units, rate intervals, ids, schema) and consistency of
every query with the metric definitions, the recording rules, the store schema and the runbooks;
the committed generated files must equal what the generators produce now."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest
import yaml

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import alerts, dashboards
from heurmetrics.monitoring import config as c
from heurmetrics.monitoring import panels as p
from heurmetrics.monitoring.config import MonitoringConfig
from heurmetrics.store.schema import Base
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = (
    "run `heurmetrics dashboards build && heurmetrics alerts build` (or `make generate`, i.e. "
    "`python -m heurmetrics.cli.monitoring`) and commit the result"
)
#: A rate interval no query would use by accident: every range must come from $__rate_interval.
SENTINEL_INTERVAL = "7m13s"
PROMETHEUS_BUILTIN = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}
RANGE_FUNCTIONS = {"rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets"}
SAMPLE_VALUES: dict[str, list[str] | str] = {
    p.RULE_VAR: ["range_bias", "sma.cross+v2"],
    p.RULE_VERSION_VAR: ["1.0.0", "2.0.0-rc.1"],
    "run_id": "6f1c1f0e-4f5e-4c1e-9d43-0d9a4c0b2f11",
}


@pytest.fixture(scope="module")
def cfg() -> MonitoringConfig:
    return MonitoringConfig()


@pytest.fixture(scope="module")
def boards(cfg: MonitoringConfig) -> dict[str, dict[str, Any]]:
    return {name: dashboards.to_json_data(b) for name, b in dashboards.build_dashboards(cfg).items()}


def content_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (panel for panel in dashboards.iter_panels(board) if panel["type"] != "row")


def all_queries(board: dict[str, Any]) -> Iterator[dashboards.PanelQuery]:
    yield from dashboards.iter_panel_queries(board)
    yield from dashboards.iter_variable_queries(board)
    yield from dashboards.iter_annotation_queries(board)


def rendered(board: dict[str, Any], query: dashboards.PanelQuery) -> str:
    return dashboards.render_query(
        query.query,
        query.kind,
        SAMPLE_VALUES,
        multi=dashboards.multi_value_variables(board),
        rate_interval=SENTINEL_INTERVAL,
        time_from=datetime(2024, 1, 1, tzinfo=UTC),
        time_to=datetime(2024, 2, 1, tzinfo=UTC),
    )


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$", re.S)


def promql_of(board: dict[str, Any], query: dashboards.PanelQuery) -> tuple[str, set[str]]:
    """Parseable PromQL of a Prometheus query, and the labels a label_values() variable reads."""
    text = rendered(board, query)
    match = _LABEL_VALUES.match(text)
    if match:
        return match["selector"], {match["label"]}
    return text, set()


# --- PromQL analysis ------------------------------------------------------------------------------
def known_labels(cfg: MonitoringConfig) -> dict[str, set[str]]:
    """Series name -> labels it may carry: definitions, Prometheus' own, and recording rules."""
    out: dict[str, set[str]] = dict(PROMETHEUS_BUILTIN)
    for series, spec in d.by_series_name().items():
        out[series] = set(spec.labels) | TARGET_LABELS | ({"le"} if series.endswith("_bucket") else set())
    for group in alerts.recording_groups(cfg):
        for rule in group.rules:
            assert isinstance(rule, alerts.RecordingRule)
            names, _labels, _ranges = analyse(rule.expr)
            out[rule.record] = set().union(*(out[n] for n in names))
    return out


def analyse(expr: str) -> tuple[set[str], set[str], list[tuple[str, timedelta]]]:
    """Series names, label names used (matchers, by, on), and (function, range) of range vectors."""
    names: set[str] = set()
    labels: set[str] = set()
    ranges: list[tuple[str, timedelta]] = []

    def visit(node: pp.Expr) -> None:
        if isinstance(node, pp.VectorSelector):
            assert node.name, f"selector without a metric name in {expr}"
            names.add(node.name)
            labels.update(m.name for m in node.matchers.matchers)
        elif isinstance(node, pp.AggregateExpr) and node.modifier:
            labels.update(node.modifier.labels)
        elif isinstance(node, pp.BinaryExpr) and node.modifier and node.modifier.matching:
            labels.update(node.modifier.matching.labels)
        elif isinstance(node, pp.Call):
            for arg in node.args:
                if isinstance(arg, pp.MatrixSelector):
                    ranges.append((node.func.name, arg.range))

    pp.walk(pp.parse(expr), visit)
    return names, labels, ranges


def check_promql(expr: str, where: str, known: dict[str, set[str]], extra_labels: set[str] = frozenset()) -> None:
    names, labels, _ranges = analyse(expr)
    unknown = names - set(known)
    assert not unknown, f"{where}: {sorted(unknown)} is neither in definitions.by_series_name() nor a recording rule"
    allowed = set().union(*(known[n] for n in names))
    stray = (labels | extra_labels) - allowed
    assert not stray, f"{where}: labels {sorted(stray)} do not exist on {sorted(names)}"


def rule_exprs(cfg: MonitoringConfig) -> Iterator[tuple[str, str]]:
    for group in (*alerts.recording_groups(cfg), *alerts.alert_groups(cfg)):
        for rule in group.rules:
            name = rule.record if isinstance(rule, alerts.RecordingRule) else rule.alert
            yield f"{group.name}/{name}", rule.expr


# --- lint -----------------------------------------------------------------------------------------
def test_three_dashboards_with_stable_unique_uids_and_current_schema(boards: dict[str, dict[str, Any]]) -> None:
    assert set(boards) == {"heuristic-executions.json", "backtests.json", "rule-versions.json"}
    uids = [b["uid"] for b in boards.values()]
    assert uids == [c.EXECUTIONS_DASHBOARD_UID, c.BACKTESTS_DASHBOARD_UID, c.RULE_VERSIONS_DASHBOARD_UID]
    assert len(set(uids)) == len(uids)
    for board in boards.values():
        assert board["schemaVersion"] == p.SCHEMA_VERSION == 39
        assert board["timezone"] == "utc"
        assert board["id"] is None


def test_panel_ids_unique_and_grid_positions_do_not_overlap(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        panels = list(dashboards.iter_panels(board))
        ids = [panel["id"] for panel in panels]
        assert all(isinstance(i, int) and i > 0 for i in ids), name
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells: dict[tuple[int, int], str] = {}
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{name}/{panel['title']}: outside the grid"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def test_every_panel_and_target_reads_a_datasource_variable(boards: dict[str, dict[str, Any]]) -> None:
    variables = {p.PROMETHEUS_VAR: p.PROMETHEUS_TYPE, p.POSTGRES_VAR: p.POSTGRES_TYPE}
    for name, board in boards.items():
        declared = {v["name"]: v for v in board["templating"]["list"]}
        for var, plugin in variables.items():
            assert declared[var]["type"] == "datasource" and declared[var]["query"] == plugin, f"{name}: {var}"
        assert {p.RULE_VAR, p.RULE_VERSION_VAR} <= set(declared), name
        refs = [panel["datasource"] for panel in content_panels(board)]
        refs += [t["datasource"] for panel in content_panels(board) for t in panel["targets"]]
        refs += [v["datasource"] for v in declared.values() if v["type"] == "query"]
        refs += [a["datasource"] for a in board["annotations"]["list"]]
        for ref in refs:
            assert ref in (p.PROMETHEUS_DS, p.POSTGRES_DS), f"{name}: datasource {ref!r} is not a variable"
        for panel in content_panels(board):
            assert panel["targets"], f"{name}/{panel['title']}: no query"
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]


def test_every_panel_has_a_unit_title_and_description(boards: dict[str, dict[str, Any]]) -> None:
    for name, board in boards.items():
        for panel in content_panels(board):
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}/{panel['title']}: no unit"
            assert panel["title"] and panel["description"], f"{name}: panel {panel['id']} lacks title/description"


def test_stats_show_the_last_value(boards: dict[str, dict[str, Any]]) -> None:
    stats = [panel for board in boards.values() for panel in content_panels(board) if panel["type"] == "stat"]
    assert stats
    for panel in stats:
        assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"], panel["title"]


def test_every_range_uses_rate_interval(boards: dict[str, dict[str, Any]]) -> None:
    sentinel = pp.parse_duration(SENTINEL_INTERVAL)
    for name, board in boards.items():
        for query in dashboards.iter_panel_queries(board):
            if query.kind != "prometheus":
                continue
            _names, _labels, ranges = analyse(rendered(board, query))
            for function, window in ranges:
                assert function in RANGE_FUNCTIONS, f"{name}/{query.panel_title}: {function}"
                assert window == sentinel, f"{name}/{query.panel_title}: {function} over a fixed range"


def test_queries_render_without_leftover_variables(boards: dict[str, dict[str, Any]]) -> None:
    for board in boards.values():
        for query in all_queries(board):
            text = rendered(board, query)
            assert "$" not in text, f"{query.panel_title}: unrendered variable in {text}"


def test_render_query_formats_variables_like_grafana() -> None:
    values = {"rule": ["a.b", "c"], "run_id": "x'y"}
    prom = dashboards.render_query(
        'f{rule=~"$rule"}[$__rate_interval]', "prometheus", values, multi={"rule"}, rate_interval="2m"
    )
    assert prom == 'f{rule=~"(a\\\\.b|c)"}[2m]'
    sql = dashboards.render_query(
        "WHERE r.name IN ($rule) AND x = '${run_id}' AND $__timeFilter(t.ts)",
        "sql",
        values,
        multi={"rule"},
        time_from=datetime(2024, 1, 1, tzinfo=UTC),
        time_to=datetime(2024, 1, 2, tzinfo=UTC),
    )
    assert sql == (
        "WHERE r.name IN ('a.b','c') AND x = 'x''y' AND t.ts BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-02T00:00:00Z'"
    )
    with pytest.raises(KeyError, match="rule_version"):
        dashboards.render_query("$rule_version", "sql", values)


def test_iter_panel_queries_enumerates_every_target(boards: dict[str, dict[str, Any]]) -> None:
    for board in boards.values():
        targets = sum(len(panel["targets"]) for panel in content_panels(board))
        queries = list(dashboards.iter_panel_queries(board))
        assert len(queries) == targets
        assert {q.kind for q in queries} <= {"prometheus", "sql"}
    kinds = {name: {q.kind for q in dashboards.iter_panel_queries(b)} for name, b in boards.items()}
    assert kinds["heuristic-executions.json"] == kinds["backtests.json"] == kinds["rule-versions.json"]
    assert kinds["backtests.json"] == {"prometheus", "sql"}


# --- consistency ----------------------------------------------------------------------------------
def test_every_dashboard_query_reads_defined_series(cfg: MonitoringConfig, boards: dict[str, dict[str, Any]]) -> None:
    known = known_labels(cfg)
    checked = 0
    for name, board in boards.items():
        for query in all_queries(board):
            if query.kind == "prometheus":
                expr, extra = promql_of(board, query)
                check_promql(expr, f"{name}/{query.panel_title}", known, extra)
                checked += 1
    assert checked >= 30


def test_every_rule_reads_defined_series(cfg: MonitoringConfig) -> None:
    known = known_labels(cfg)
    for where, expr in rule_exprs(cfg):
        check_promql(expr, where, known)


def test_consistency_check_catches_unknown_series_and_labels(cfg: MonitoringConfig) -> None:
    known = known_labels(cfg)
    with pytest.raises(AssertionError, match="heuristic_execution_total"):
        check_promql("rate(heuristic_execution_total[5m])", "typo", known)
    with pytest.raises(AssertionError, match="rule:heuristic_executions:rate7m"):
        check_promql("rule:heuristic_executions:rate7m", "missing recording rule", known)
    with pytest.raises(AssertionError, match="rule_versoin"):
        check_promql('heuristic_executions_total{rule_versoin="1"}', "label typo", known)


def test_recording_rules_used_by_dashboards_exist(cfg: MonitoringConfig, boards: dict[str, dict[str, Any]]) -> None:
    records = alerts.recording_rule_names(cfg)
    used = {
        n
        for b in boards.values()
        for q in dashboards.iter_panel_queries(b)
        if q.kind == "prometheus"
        for n in analyse(promql_of(b, q)[0])[0]
        if ":" in n
    }
    assert used, "the burn-rate panel reads recording rules"
    assert used <= records


def test_prometheus_itself_parses_every_query(tmp_path: Path, boards: dict[str, dict[str, Any]]) -> None:
    """promtool (Prometheus' own parser) accepts every rendered dashboard and runbook query."""
    promtool = require_binary("promtool")
    exprs = [promql_of(b, q)[0] for b in boards.values() for q in all_queries(b) if q.kind == "prometheus"]
    runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    exprs += [block.strip() for block in re.findall(r"```promql\n(.*?)```", runbooks, re.S)]
    rules = [{"record": f"heurmetrics_query_check:q{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- SQL against the store schema -----------------------------------------------------------------
_SQL_KEYWORDS = {
    "on",
    "where",
    "join",
    "left",
    "right",
    "inner",
    "cross",
    "group",
    "order",
    "limit",
    "lateral",
    "as",
    "using",
    "natural",
    "full",
}


#: Set-returning SQL functions panels may read, with the table whose rows they return.
ROW_FUNCTIONS = {"execution_rollups_between": "execution_rollups"}


def sql_problems(sql: str) -> list[str]:
    """Tables and ``alias.column`` references of ``sql`` that the store schema does not have."""
    tables = Base.metadata.tables
    text = re.sub(r"'(?:[^']|'')*'", "''", sql)  # string literals
    text = re.sub(r'"(?:[^"]|"")*"', '""', text)  # quoted output names
    # Set-returning functions of the store read as the table whose row type they return.
    for function, table in ROW_FUNCTIONS.items():
        text = re.sub(rf"\b{function}\((?:[^()]|\([^()]*\))*\)", table, text)
    derived = {m.lower() for m in re.findall(r"(?:\bWITH|,)\s+(\w+)\s+AS\s*\(", text, re.I)}
    derived |= {m.lower() for m in re.findall(r"\)\s+AS\s+(\w+)", text, re.I)}
    aliases: dict[str, str] = {}
    problems = []
    # FROM inside EXTRACT(EPOCH FROM f(...)) is followed by a function call, not a table.
    for table, alias in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)(?!\w|\s*\()(?:\s+(?:AS\s+)?(\w+))?", text, re.I):
        table, alias = table.lower(), (alias or "").lower()
        if table == "lateral" or table in derived:
            continue
        if table not in tables:
            problems.append(f"unknown table {table}")
            continue
        aliases[alias if alias and alias not in _SQL_KEYWORDS else table] = table
    for alias, column in re.findall(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b", text):
        alias, column = alias.lower(), column.lower()
        if alias in derived:
            continue
        if alias not in aliases:
            problems.append(f"unknown table alias {alias} (in {alias}.{column})")
        elif column not in tables[aliases[alias]].c:
            problems.append(f"{aliases[alias]} has no column {column}")
    if not aliases:
        problems.append("no table referenced")
    return problems


def sql_queries(boards: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dashboards.PanelQuery]]:
    for name, board in boards.items():
        for query in all_queries(board):
            if query.kind == "sql":
                yield name, board, query


def test_sql_panels_reference_only_existing_tables_and_columns(boards: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, _board, query in sql_queries(boards):
        assert not sql_problems(query.query), f"{name}/{query.panel_title}: {sql_problems(query.query)}"
        checked += 1
    assert checked >= 12


def test_sql_checker_catches_mistakes() -> None:
    assert sql_problems("SELECT br.sharp FROM backtest_runs AS br") == ["backtest_runs has no column sharp"]
    assert sql_problems("SELECT x.id FROM backtest_run AS x") == [
        "unknown table backtest_run",
        "unknown table alias x (in x.id)",
        "no table referenced",
    ]
    assert sql_problems("SELECT q.id FROM rules AS r") == ["unknown table alias q (in q.id)"]
    assert sql_problems("SELECT ro.executions FROM execution_rollups_between($__timeFrom(), $__timeTo()) AS ro") == []
    assert sql_problems("SELECT ro.nope FROM execution_rollups_between($__timeFrom(), $__timeTo()) AS ro") == [
        "execution_rollups has no column nope"
    ]


def test_sql_panels_run_on_postgres(postgres_url: str, boards: dict[str, dict[str, Any]]) -> None:
    """Every SQL query (panels, variables, annotations), rendered like Grafana, runs on the schema."""
    from sqlalchemy import create_engine

    engine = create_engine(postgres_url)
    try:
        Base.metadata.create_all(engine)
        for name, board, query in sql_queries(boards):
            # Nothing selected yet (empty run_id) must not be an error either.
            empty_run = dashboards.render_query(
                query.query, "sql", {**SAMPLE_VALUES, "run_id": ""}, multi=dashboards.multi_value_variables(board)
            )
            for text in (rendered(board, query), empty_run):
                with engine.connect() as conn:
                    try:
                        conn.exec_driver_sql(text).fetchall()
                    except Exception as exc:
                        pytest.fail(f"{name}/{query.panel_title}: {exc}\n{text}")
    finally:
        engine.dispose()


# --- runbooks -------------------------------------------------------------------------------------
def runbook_anchors(text: str) -> dict[str, str]:
    """GitHub-style anchors of the ``##`` sections -> section body."""
    sections = re.split(r"^## +", text, flags=re.M)[1:]
    out = {}
    for section in sections:
        heading, _, body = section.partition("\n")
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out[anchor] = body
    return out


def test_every_runbook_url_has_a_complete_runbook_section(cfg: MonitoringConfig) -> None:
    anchors = runbook_anchors((ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8"))
    for group in alerts.alert_groups(cfg):
        for rule in group.rules:
            assert isinstance(rule, alerts.AlertingRule)
            url = rule.annotations["runbook_url"]
            assert url.startswith(cfg.runbook_base_url + "#")
            anchor = url.split("#", 1)[1]
            assert anchor in anchors, f"docs/runbooks.md has no section for {rule.alert} (#{anchor})"
            body = anchors[anchor]
            for part in ("Meaning", "Impact", "Dashboard", "Diagnosis", "Fix"):
                assert f"**{part}.**" in body, f"runbook of {rule.alert} lacks **{part}.**"
    assert c.PERFORMANCE_DRIFT.lower() in anchors, "the drift alert's future anchor is reserved"


def test_runbook_queries_read_defined_series(cfg: MonitoringConfig) -> None:
    text = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    assert len(blocks) >= 9
    known = known_labels(cfg)
    for block in blocks:
        check_promql(block.strip(), f"runbook query {block.strip()[:60]}", known)


def test_runbooks_only_mention_existing_cli_commands() -> None:
    """Every `heurmetrics …` command a runbook tells an SRE to run exists in the real CLI."""
    import click
    import typer.main

    from heurmetrics.cli import app

    text = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    spans = re.findall(r"`heurmetrics ([^`]+)`", text) + re.findall(r"^\$? ?heurmetrics (.+)$", text, re.M)
    assert spans
    root = typer.main.get_command(app)
    for span in spans:
        command: click.Command = root
        for word in span.split():
            if not isinstance(command, click.Group) or word.startswith("-"):
                break
            assert word in command.commands, f"runbook mentions `heurmetrics {span}`: no command {word!r}"
            command = command.commands[word]
        assert not isinstance(command, click.Group), f"runbook mentions `heurmetrics {span}`: incomplete"


# --- drift ----------------------------------------------------------------------------------------
def generated_files(cfg: MonitoringConfig) -> dict[str, str]:
    files = {f"dashboards/{k}": v for k, v in dashboards.dashboard_files(cfg).items()}
    files.update({f"alerts/{k}": v for k, v in alerts.rule_files(cfg).items()})
    return files


def committed_files() -> set[str]:
    patterns = (
        "dashboards/*.json",
        "dashboards/provisioning/**/*.yml",
        "dashboards/provisioning/**/*.yaml",
        "alerts/*.yml",
        "alerts/*.yaml",
    )
    return {str(path.relative_to(ROOT)) for pattern in patterns for path in ROOT.glob(pattern)}


def test_committed_dashboards_and_alerts_are_up_to_date(cfg: MonitoringConfig) -> None:
    expected = generated_files(cfg)
    problems = []
    for rel, content in sorted(expected.items()):
        path = ROOT / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{rel} differs from the generator's output")
    problems += [f"{rel} is not generated any more" for rel in sorted(committed_files() - set(expected))]
    assert not problems, "generated monitoring files are stale:\n  " + "\n  ".join(problems) + f"\n{REGENERATE}"


def test_generated_json_is_stable_text(cfg: MonitoringConfig) -> None:
    files = dashboards.dashboard_files(cfg)
    assert files == dashboards.dashboard_files(cfg)
    for name, content in files.items():
        assert content.endswith("\n") and not content.endswith("\n\n"), name
        if name.endswith(".json"):
            assert content == dashboards.render_json(json.loads(content)), f"{name}: keys not sorted"
