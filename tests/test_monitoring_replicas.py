"""N exporter replicas: no dashboard panel, recording rule or alert counts a store-derived gauge twice.

Every replica reads the same store and exports the same store-derived gauges under its own
target labels (``instance``, ``pod``). A query that reads such a gauge must de-duplicate it
(``max by (the family's labels)``) or use it only as the right side of a set operation
(``and on``/``unless on``), where duplicates do not matter. Counters and histograms differ per
replica; the queries must aggregate them (``sum``), which the promtool suite checks by value.
"""

from __future__ import annotations

from typing import Any

import promql_parser as pp
import pytest

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import alerts, dashboards
from heurmetrics.monitoring.config import MonitoringConfig
from heurmetrics.monitoring.promql import store_gauge

STORE_GAUGES = {spec.sample_name: spec for spec in d.ALL_METRICS if spec.source == "store"}
_SET_OPS = {"and", "unless", "or"}


def _children(node: Any) -> list[tuple[str, Any]]:
    out = []
    for attr in ("expr", "lhs", "rhs", "vector_selector"):
        child = getattr(node, attr, None)
        if isinstance(child, pp.Expr):
            out.append((attr, child))
    out += [("arg", a) for a in getattr(node, "args", None) or [] if isinstance(a, pp.Expr)]
    return out


def undeduplicated(expr: str) -> list[str]:
    """Store-gauge selectors of ``expr`` that are neither de-duplicated nor a set operand."""
    bad: list[str] = []

    def visit(node: Any, safe: bool) -> None:
        if isinstance(node, pp.VectorSelector):
            if node.name in STORE_GAUGES and not safe:
                bad.append(node.name)
            return
        for attr, child in _children(node):
            child_safe = safe
            if isinstance(node, pp.AggregateExpr):
                by_labels = node.modifier is not None and node.modifier.type == pp.AggModifierType.By
                child_safe = str(node.op) == "max" and by_labels
            elif isinstance(node, pp.BinaryExpr):
                child_safe = (str(node.op) in _SET_OPS and attr == "rhs") or safe
            visit(child, child_safe)

    visit(pp.parse(expr), False)
    return bad


def all_exprs(cfg: MonitoringConfig) -> list[tuple[str, str]]:
    out = []
    for name, board in dashboards.build_dashboards(cfg).items():
        data = dashboards.to_json_data(board)
        for q in dashboards.iter_panel_queries(data):
            if q.kind == "prometheus":
                text = dashboards.render_query(
                    q.query, "prometheus", {"rule": "r", "rule_version": "v", "ds_prometheus": "p", "ds_postgres": "s"}
                )
                out.append((f"{name} panel {q.panel_title}", text))
    for group in (*alerts.recording_groups(cfg), *alerts.alert_groups(cfg)):
        for rule in group.rules:
            name = getattr(rule, "alert", None) or getattr(rule, "record", "")
            out.append((f"rule {name}", rule.expr))
    return out


def test_the_checker_catches_a_duplicated_gauge() -> None:
    gauge = d.RVP_DRIFT_P_VALUE.sample_name
    assert undeduplicated(f"{gauge} < 0.01") == [gauge]
    assert undeduplicated(f"sum({gauge})") == [gauge]
    assert undeduplicated(f"{store_gauge(d.RVP_DRIFT_P_VALUE)} < 0.01") == []
    assert undeduplicated(f"up unless on (rule) {gauge}") == []


def test_store_gauge_refuses_families_that_differ_per_replica() -> None:
    with pytest.raises(ValueError, match="not a store-derived gauge"):
        store_gauge(d.HEURISTIC_EXECUTIONS)
    assert store_gauge(d.RULE_VERSION_INFO).startswith("max by (rule, rule_version, content_hash, status, env) (")


def test_no_rule_or_panel_counts_a_store_gauge_once_per_replica() -> None:
    cfg = MonitoringConfig()
    exprs = all_exprs(cfg)
    assert any(d.RVP_DRIFT_ADJUSTED_P_VALUE.name in e for _w, e in exprs)
    assert any(d.BACKTEST_OVERFITTING_PBO.name in e for _w, e in exprs)
    for where, expr in exprs:
        assert not undeduplicated(expr), f"{where} reads {undeduplicated(expr)} once per exporter replica"
