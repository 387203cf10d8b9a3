"""Regenerate every committed monitoring file: the entry point of ``make generate``."""

from __future__ import annotations

from pathlib import Path

from heurmetrics.monitoring.alerts import write_rule_files
from heurmetrics.monitoring.config import MonitoringConfig
from heurmetrics.monitoring.dashboards import write_dashboards

DEFAULT_DASHBOARDS_DIR = Path("dashboards")
DEFAULT_ALERTS_DIR = Path("alerts")


def generate_all(
    config: MonitoringConfig | None = None,
    *,
    dashboards_dir: str | Path = DEFAULT_DASHBOARDS_DIR,
    alerts_dir: str | Path = DEFAULT_ALERTS_DIR,
) -> list[Path]:
    """Write dashboards, provisioning files and rule files for ``config`` (defaults when ``None``).

    Paths are relative to the current directory unless absolute; returns every path written.
    """
    cfg = config or MonitoringConfig()
    return [*write_dashboards(dashboards_dir, cfg), *write_rule_files(alerts_dir, cfg)]
