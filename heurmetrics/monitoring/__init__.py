"""Monitoring as code: Grafana dashboards, Prometheus alerting and recording rules, runbooks.

Everything is generated from one :class:`~heurmetrics.monitoring.config.MonitoringConfig`
(defaults from :mod:`heurmetrics.metrics.definitions`, user overrides from YAML):

* :func:`heurmetrics.monitoring.dashboards.write_dashboards` -> ``dashboards/``;
* :func:`heurmetrics.monitoring.alerts.write_rule_files` -> ``alerts/``;
* :func:`generate_all` -> both (``python -m heurmetrics.monitoring.cli``, ``make generate``).
"""

from heurmetrics.monitoring.config import ConfigError, MonitoringConfig, load_config
from heurmetrics.monitoring.generate import generate_all

__all__ = ["ConfigError", "MonitoringConfig", "generate_all", "load_config"]
