"""Monitoring as code: Grafana dashboards, Prometheus alerting and recording rules, runbooks.

Everything is generated from one :class:`~heurmetrics.monitoring.config.MonitoringConfig`
(defaults from :mod:`heurmetrics.metrics.definitions`, user overrides from YAML):

* :func:`heurmetrics.monitoring.dashboards.write_dashboards` -> ``dashboards/``;
* :func:`heurmetrics.monitoring.alerts.write_rule_files` -> ``alerts/``;
* :func:`generate_all` -> both (``python -m heurmetrics.cli.monitoring``, ``make generate``).

Needs the ``monitoring`` extra (``pip install 'heurmetrics[monitoring]'``).
"""

from heurmetrics.extras import require

require("monitoring")  # grafanalib, attrs, promql-parser: one line naming heurmetrics[monitoring] when missing

from heurmetrics.monitoring.config import ConfigError, MonitoringConfig, load_config  # noqa: E402
from heurmetrics.monitoring.generate import generate_all  # noqa: E402

__all__ = ["ConfigError", "MonitoringConfig", "generate_all", "load_config"]
