"""Grafana dashboards (grafanalib), generated from one :class:`MonitoringConfig`.

``heurmetrics dashboards build`` writes, under the output directory (default ``dashboards/``):

* ``heuristic-executions.json``, ``backtests.json``, ``rule-versions.json``;
* ``provisioning/datasources/heurmetrics.yml`` and ``provisioning/dashboards/heurmetrics.yml``.

The JSON is deterministic (sorted keys, stable uids and panel ids, two-space indent, trailing
newline). Tests and the end-to-end check enumerate every query with :func:`iter_panel_queries`,
:func:`iter_variable_queries` and :func:`iter_annotation_queries`, and substitute Grafana
variables and macros with :func:`render_query`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from heurmetrics.monitoring import dash_backtests, dash_executions, dash_rule_versions
from heurmetrics.monitoring.config import MonitoringConfig
from heurmetrics.monitoring.panels import QueryKind, json_kind
from heurmetrics.monitoring.provisioning import provisioning_files

#: File name -> builder of every generated dashboard.
BUILDERS: dict[str, Callable[[MonitoringConfig], g.Dashboard]] = {
    dash_executions.FILE_NAME: dash_executions.build,
    dash_backtests.FILE_NAME: dash_backtests.build,
    dash_rule_versions.FILE_NAME: dash_rule_versions.build,
}


class PanelQuery(NamedTuple):
    """One query of a dashboard: where it is shown, which datasource kind runs it, its raw text."""

    panel_title: str
    kind: QueryKind
    query: str


def build_dashboards(cfg: MonitoringConfig) -> dict[str, g.Dashboard]:
    """File name -> grafanalib dashboard."""
    return {name: build(cfg) for name, build in BUILDERS.items()}


def to_json_data(dashboard: g.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data (what Grafana imports)."""
    data: dict[str, Any] = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    return data


def render_json(data: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def dashboard_files(cfg: MonitoringConfig) -> dict[str, str]:
    """Relative path -> content of every file ``heurmetrics dashboards build`` writes."""
    files = {name: render_json(to_json_data(board)) for name, board in build_dashboards(cfg).items()}
    files.update(provisioning_files(cfg))
    return files


def write_dashboards(out_dir: str | Path, cfg: MonitoringConfig) -> list[Path]:
    """Write :func:`dashboard_files` under ``out_dir`` (created if needed); return the paths written."""
    out = Path(out_dir)
    written = []
    for name, content in dashboard_files(cfg).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


# --- enumeration ----------------------------------------------------------------------------------
def iter_panels(dashboard_json: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including panels nested in collapsed rows; row panels themselves included."""
    for panel in dashboard_json.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _target_query(target: Mapping[str, Any], kind: QueryKind) -> str:
    return str(target["rawSql"] if kind == "sql" else target["expr"])


def iter_panel_queries(dashboard_json: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """``(panel title, "prometheus" | "sql", raw query)`` for every target of every panel."""
    for panel in iter_panels(dashboard_json):
        for target in panel.get("targets", []):
            kind = json_kind(target.get("datasource") or panel.get("datasource"))
            yield PanelQuery(panel["title"], kind, _target_query(target, kind))


def iter_variable_queries(dashboard_json: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """Query variables as ``("variable <name>", kind, query)``; Prometheus ones are ``label_values(…)``."""
    for variable in dashboard_json.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, Mapping) else query
            yield PanelQuery(f"variable {variable['name']}", json_kind(variable["datasource"]), str(text))


def iter_annotation_queries(dashboard_json: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """Annotation queries as ``("annotation <name>", kind, query)``."""
    for annotation in dashboard_json.get("annotations", {}).get("list", []):
        kind = json_kind(annotation["datasource"])
        yield PanelQuery(f"annotation {annotation['name']}", kind, _target_query(annotation["target"], kind))


def multi_value_variables(dashboard_json: Mapping[str, Any]) -> frozenset[str]:
    """Names of the variables Grafana formats as lists (multi-value or with *All*)."""
    return frozenset(
        v["name"] for v in dashboard_json.get("templating", {}).get("list", []) if v.get("multi") or v.get("includeAll")
    )


# --- variable substitution (what Grafana does before sending a query) ----------------------------
_MACRO_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_PROM_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|\\]")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prometheus_value(values: Sequence[str], multi: bool) -> str:
    if not multi:
        return values[0].replace("\\", "\\\\").replace('"', '\\"')
    # Grafana escapes regex characters, doubled for the PromQL string literal.
    escaped = [_PROM_REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _sql_value(values: Sequence[str], multi: bool) -> str:
    quoted = ["'" + v.replace("'", "''") + "'" for v in values]
    return ",".join(quoted) if multi else values[0].replace("'", "''")


def render_query(
    query: str,
    kind: QueryKind,
    values: Mapping[str, str | Sequence[str]],
    *,
    multi: Collection[str] = (),
    rate_interval: str = "1m",
    time_from: datetime | None = None,
    time_to: datetime | None = None,
) -> str:
    """Substitute Grafana variables and macros the way Grafana does for ``kind``.

    ``values`` maps variable names to one value or a list; ``multi`` names the variables Grafana
    formats as lists (see :func:`multi_value_variables`). Prometheus: ``$__rate_interval`` becomes
    ``rate_interval`` and list values a regex alternation. SQL: ``$__timeFilter(col)``,
    ``$__timeFrom()``, ``$__timeTo()`` use the UTC time range; list values become quoted lists.
    A variable without a value raises :class:`KeyError`, so an unrendered query never reaches a
    server.
    """
    now = datetime.now(UTC)
    start, end = time_from or datetime(1970, 1, 1, tzinfo=UTC), time_to or now
    text = query
    if kind == "prometheus":
        text = text.replace("${__rate_interval}", rate_interval).replace("$__rate_interval", rate_interval)
    else:
        text = _MACRO_TIME_FILTER.sub(lambda m: f"{m.group(1).strip()} BETWEEN '{_iso(start)}' AND '{_iso(end)}'", text)
        text = text.replace("$__timeFrom()", f"'{_iso(start)}'").replace("$__timeTo()", f"'{_iso(end)}'")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in: {query}")
        raw = values[name]
        items = [raw] if isinstance(raw, str) else list(raw)
        if not items:
            raise KeyError(f"empty value for Grafana variable ${name}")
        is_multi = name in multi
        return _prometheus_value(items, is_multi) if kind == "prometheus" else _sql_value(items, is_multi)

    return _VARIABLE.sub(substitute, text)
