"""grafanalib building blocks shared by the three dashboards.

Conventions enforced here, so the dashboard modules cannot forget them: every panel and target
reads a datasource *variable* (``$ds_prometheus`` / ``$ds_postgres``), every panel has a unit,
stat panels reduce with ``lastNotNull``, Prometheus and SQL targets open in code mode, and panels
get their ``gridPos`` from :class:`Grid` (grafanalib leaves layout to the caller).

Why one module of ~430 lines: the panel conventions (units, datasources, layout) are applied by
one set of small builders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attr
from grafanalib import core as g

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring.config import MonitoringConfig

#: Grafana schema version of the generated JSON (Grafana 10.4 / 11).
SCHEMA_VERSION = 39
PROMETHEUS_TYPE = "prometheus"
#: Plugin id of Grafana's PostgreSQL datasource since 10.3 (``postgres`` remains an alias).
POSTGRES_TYPE = "grafana-postgresql-datasource"
PROMETHEUS_VAR = "ds_prometheus"
POSTGRES_VAR = "ds_postgres"
RULE_VAR = d.RULE
RULE_VERSION_VAR = d.RULE_VERSION
#: Per-second rates of counters.
RATE_UNIT = "ops"
RATIO_UNIT = "percentunit"
#: Burn rates are multiples of the sustainable error rate.
BURN_UNIT = "suffix:x"
TABLE_UNIT = "none"

QueryKind = Literal["prometheus", "sql"]

PROMETHEUS_DS: dict[str, str] = {"type": PROMETHEUS_TYPE, "uid": f"${{{PROMETHEUS_VAR}}}"}
POSTGRES_DS: dict[str, str] = {"type": POSTGRES_TYPE, "uid": f"${{{POSTGRES_VAR}}}"}


# --- targets ------------------------------------------------------------------------------------
class PromTarget(g.Target):
    """A Prometheus target in code mode, reading the Prometheus datasource variable."""

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_json_data()
        data.update({"editorMode": "code", "range": not self.instant})
        return data


class PgTarget(g.SqlTarget):
    """A raw-SQL PostgreSQL target in code mode, reading the PostgreSQL datasource variable."""

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_json_data()
        data.update({"editorMode": "code"})
        return data


def prom(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, fmt: str = g.TIME_SERIES_TARGET_FORMAT
) -> PromTarget:
    """A Prometheus query target."""
    return PromTarget(
        expr=expr,
        legendFormat=legend,
        refId=ref,
        instant=instant,
        format=fmt,
        datasource=PROMETHEUS_DS,
        intervalFactor=1,
    )


def sql(raw_sql: str, *, ref: str = "A", fmt: str = g.TABLE_TARGET_FORMAT) -> PgTarget:
    """A PostgreSQL target with raw SQL (Grafana macros such as ``$__timeFilter(col)`` allowed)."""
    return PgTarget(rawSql=raw_sql.strip(), refId=ref, format=fmt, datasource=POSTGRES_DS, intervalFactor=1)


def _datasource(targets: Sequence[g.Target]) -> dict[str, str]:
    kinds = {json_kind(t.datasource) for t in targets}
    if len(kinds) != 1:
        raise ValueError("a panel reads exactly one datasource kind")
    return PROMETHEUS_DS if kinds == {"prometheus"} else POSTGRES_DS


def json_kind(datasource: object) -> QueryKind:
    """``"prometheus"`` or ``"sql"`` for a datasource reference of a panel, target or variable."""
    if isinstance(datasource, dict):
        if datasource.get("type") == PROMETHEUS_TYPE:
            return "prometheus"
        if datasource.get("type") == POSTGRES_TYPE:
            return "sql"
    raise ValueError(f"not a heurmetrics datasource reference: {datasource!r}")


def steps(*pairs: tuple[str, float | None]) -> list[dict[str, Any]]:
    """Threshold steps; the first pair's value is the base (``None``)."""
    return [{"color": color, "value": value} for color, value in pairs]


OK_STEPS = steps(("green", None))


def _with_unit(extra: dict[str, Any] | None, unit: str) -> dict[str, Any]:
    """``extraJson`` for panels whose grafanalib class has no unit field."""
    merged: dict[str, Any] = {"fieldConfig": {"defaults": {"unit": unit}}}
    merged.update(extra or {})
    return merged


# --- panels ---------------------------------------------------------------------------------------
def timeseries(
    title: str,
    description: str,
    targets: Sequence[g.Target],
    unit: str,
    *,
    thresholds: list[dict[str, Any]] | None = None,
    draw: str = "line",
    stacked: bool = False,
    overrides: list[dict[str, Any]] | None = None,
    min_value: int | None = None,
) -> g.TimeSeries:
    """A time-series panel; thresholds, when given, are drawn as lines."""
    return g.TimeSeries(
        title=title,
        description=description,
        targets=list(targets),
        dataSource=_datasource(targets),
        unit=unit,
        thresholds=thresholds or OK_STEPS,
        thresholdsStyleMode="line" if thresholds else "off",
        drawStyle=draw,
        stacking={"mode": "normal", "group": "A"} if stacked else {},
        fillOpacity=30 if stacked or draw == "bars" else 10,
        showPoints="auto" if draw != "points" else "always",
        pointSize=5 if draw != "points" else 6,
        overrides=overrides or [],
        valueMin=min_value,
        legendDisplayMode="table",
        legendPlacement="bottom",
        legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi",
        tooltipSort="desc",
        maxDataPoints=None,
    )


def stat(
    title: str,
    description: str,
    targets: Sequence[g.Target],
    unit: str,
    *,
    thresholds: list[dict[str, Any]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    graph: bool = True,
    decimals: int | None = None,
    text_mode: str = "auto",
) -> g.Stat:
    """A stat panel showing the current value (``lastNotNull``), never a mean."""
    return g.Stat(
        title=title,
        description=description,
        targets=list(targets),
        dataSource=_datasource(targets),
        format=unit,
        reduceCalc="lastNotNull",
        thresholds=thresholds or OK_STEPS,
        mappings=mappings or [],
        overrides=overrides or [],
        graphMode="area" if graph else "none",
        colorMode="value",
        color={"mode": "thresholds"},
        maxDataPoints=None,
        decimals=decimals,
        noValue="no data",
        textMode=text_mode,
    )


def table(
    title: str,
    description: str,
    targets: Sequence[g.Target],
    unit: str = TABLE_UNIT,
    *,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> g.Table:
    """A table panel; per-column units go in ``overrides``."""
    return g.Table(
        title=title,
        description=description,
        targets=list(targets),
        dataSource=_datasource(targets),
        unit=unit,
        overrides=overrides or [],
        transformations=transformations or [],
        filterable=True,
        thresholds=OK_STEPS,
        maxDataPoints=None,
    )


def heatmap(title: str, description: str, targets: Sequence[g.Target], y_unit: str) -> g.Heatmap:
    """A Grafana 10 heatmap of pre-bucketed histogram series (``format: heatmap``)."""
    options = {
        "calculate": False,
        "cellGap": 1,
        "color": {
            "mode": "scheme",
            "scheme": "Oranges",
            "exponent": 0.5,
            "fill": "dark-orange",
            "reverse": False,
            "steps": 64,
            "scale": "exponential",
        },
        "yAxis": {"axisPlacement": "left", "unit": y_unit, "reverse": False},
        "rowsFrame": {"layout": "auto"},
        "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
        "legend": {"show": True},
        "filterValues": {"le": 1e-9},
        "cellValues": {"unit": "short"},
        "showValue": "never",
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
    }
    return g.Heatmap(
        title=title,
        description=description,
        targets=list(targets),
        dataSource=_datasource(targets),
        dataFormat="tsbuckets",
        yBucketBound="upper",
        hideZeroBuckets=True,
        options=[],
        maxDataPoints=None,
        extraJson=_with_unit({"options": options}, "short"),
    )


def state_timeline(
    title: str, description: str, targets: Sequence[g.Target], unit: str, *, mappings: list[dict[str, Any]]
) -> g.StateTimeline:
    """A state timeline (e.g. which versions executed when)."""
    return g.StateTimeline(
        title=title,
        description=description,
        targets=list(targets),
        dataSource=_datasource(targets),
        mappings=mappings,
        colorMode="fixed",
        mergeValues=True,
        showValue="never",
        rowHeight=0.8,
        maxDataPoints=None,
        extraJson=_with_unit(None, unit),
    )


def value_text(mapping: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Value mappings ``{value: (text, color)}`` in Grafana 8+ form."""
    return [
        {
            "type": "value",
            "options": {
                value: {"text": text, "color": color, "index": i}
                for i, (value, (text, color)) in enumerate(mapping.items())
            },
        }
    ]


def field_override(name: str, **properties: Any) -> dict[str, Any]:
    """Override field ``name`` (table column, series): ``unit=…``, ``links=…``, ``custom.hidden=…``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key.replace("__", "."), "value": value} for key, value in properties.items()],
    }


# --- templating -----------------------------------------------------------------------------------
def _current(template: g.Template, text: str | list[str], value: str | list[str]) -> g.Template:
    template._current = {"selected": True, "text": text, "value": value}
    return template


def datasource_variables(cfg: MonitoringConfig) -> list[g.Template]:
    """The two datasource variables every dashboard reads; defaults to the provisioned ones."""
    ds = cfg.dashboards
    return [
        _current(
            g.Template(
                name=PROMETHEUS_VAR,
                label="Prometheus",
                query=PROMETHEUS_TYPE,
                type="datasource",
                default=ds.prometheus.name,
                refresh=g.REFRESH_ON_DASHBOARD_LOAD,
            ),
            ds.prometheus.name,
            ds.prometheus.uid,
        ),
        _current(
            g.Template(
                name=POSTGRES_VAR,
                label="PostgreSQL",
                query=POSTGRES_TYPE,
                type="datasource",
                default=ds.postgres.name,
                refresh=g.REFRESH_ON_DASHBOARD_LOAD,
            ),
            ds.postgres.name,
            ds.postgres.uid,
        ),
    ]


def query_variable(
    name: str, label: str, query: str | dict[str, Any], datasource: dict[str, str], *, multi: bool = True
) -> g.Template:
    """A query variable; multi-value ones default to *All* (Grafana expands it per datasource)."""
    template = g.Template(
        name=name,
        label=label,
        query=query,
        dataSource=datasource,
        multi=multi,
        includeAll=multi,
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=g.SORT_ALPHA_ASC,
    )
    if multi:
        return _current(template, ["All"], ["$__all"])
    return _current(template, "", "")


def sql_annotation(name: str, raw_sql: str, color: str) -> dict[str, Any]:
    """A dashboard annotation from PostgreSQL (columns ``time``, ``text``)."""
    return {
        "datasource": POSTGRES_DS,
        "enable": True,
        "hide": False,
        "iconColor": color,
        "name": name,
        "target": {
            "rawSql": raw_sql.strip(),
            "format": "table",
            "rawQuery": True,
            "editorMode": "code",
            "refId": "Anno",
            "datasource": POSTGRES_DS,
        },
    }


# --- layout ---------------------------------------------------------------------------------------
class Grid:
    """Places panels left to right in a 24-column grid, wrapping to a new line when full."""

    WIDTH = 24

    def __init__(self) -> None:
        self.panels: list[g.Panel] = []
        self._x = 0
        self._y = 0
        self._line_height = 0

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def row(self, title: str) -> None:
        """Start a (non-collapsed) row titled ``title`` on a new line."""
        if self._x:
            self._newline()
        self.panels.append(g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=self.WIDTH, x=0, y=self._y)))
        self._y += 1

    def add(self, panel: g.Panel, w: int, h: int) -> None:
        """Place ``panel`` with width ``w`` (of 24) and height ``h``."""
        if not 0 < w <= self.WIDTH:
            raise ValueError(f"panel width must be within 1..{self.WIDTH}")
        if self._x + w > self.WIDTH:
            self._newline()
        self.panels.append(attr.evolve(panel, gridPos=g.GridPos(h=h, w=w, x=self._x, y=self._y)))
        self._x += w
        self._line_height = max(self._line_height, h)


def dashboard(
    cfg: MonitoringConfig,
    *,
    title: str,
    uid: str,
    description: str,
    grid: Grid,
    variables: list[g.Template],
    time_from: str,
    annotations: list[dict[str, Any]] | None = None,
) -> g.Dashboard:
    """A dashboard with the shared settings (UTC, schema version, links, ids)."""
    board = g.Dashboard(
        title=title,
        uid=uid,
        description=description,
        panels=grid.panels,
        tags=["heurmetrics"],
        timezone=g.UTC,
        schemaVersion=SCHEMA_VERSION,
        refresh=cfg.dashboards.refresh,
        time=g.Time(time_from, "now"),
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        templating=g.Templating(list=[*datasource_variables(cfg), *variables]),
        annotations=g.Annotations(list=annotations or []),
        links=[
            g.DashboardLink(
                title="heurmetrics",
                tags=["heurmetrics"],
                asDropdown=True,
                includeVars=True,
                keepTime=True,
                type="dashboards",
            )
        ],
        editable=True,
    )
    return board.auto_panel_ids()
