"""``heurmetrics dashboards …`` and ``heurmetrics alerts …`` (two Typer apps the main CLI mounts).

``python -m heurmetrics.cli.monitoring [--config FILE]`` regenerates both ``dashboards/`` and
``alerts/``; see :func:`heurmetrics.monitoring.generate.generate_all`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heurmetrics.monitoring.alerts import write_rule_files
from heurmetrics.monitoring.config import ConfigError, MonitoringConfig, load_config
from heurmetrics.monitoring.dashboards import write_dashboards
from heurmetrics.monitoring.generate import DEFAULT_ALERTS_DIR, DEFAULT_DASHBOARDS_DIR, generate_all

__all__ = ["alerts_app", "dashboards_app", "generate_all", "main"]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML overrides of the monitoring config (thresholds, windows, for, "
        "selectors, enabled: false); see heurmetrics.monitoring.config.",
        dir_okay=False,
    ),
]

dashboards_app = typer.Typer(help="Grafana dashboards and provisioning files.", no_args_is_help=True)
alerts_app = typer.Typer(help="Prometheus alerting and recording rules.", no_args_is_help=True)


@dashboards_app.callback()
def _dashboards() -> None:
    """Grafana dashboards and provisioning files, generated from the monitoring config."""


@alerts_app.callback()
def _alerts() -> None:
    """Prometheus alerting and recording rules, generated from the monitoring config."""


def _load(config: Path | None) -> MonitoringConfig:
    try:
        return load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _report(paths: list[Path]) -> None:
    for path in paths:
        typer.echo(f"wrote {path}")


@dashboards_app.command("build")
def dashboards_build(
    out: Annotated[Path, typer.Option("--out", help="Output directory.", file_okay=False)] = DEFAULT_DASHBOARDS_DIR,
    config: ConfigOption = None,
) -> None:
    """Generate dashboards/*.json and dashboards/provisioning/** (deterministic)."""
    _report(write_dashboards(out, _load(config)))


@alerts_app.command("build")
def alerts_build(
    out: Annotated[Path, typer.Option("--out", help="Output directory.", file_okay=False)] = DEFAULT_ALERTS_DIR,
    config: ConfigOption = None,
) -> None:
    """Generate alerts/*.yml: recording rules and alerts (deterministic)."""
    _report(write_rule_files(out, _load(config)))


def generate(
    config: ConfigOption = None,
    dashboards_out: Annotated[Path, typer.Option("--dashboards-out", file_okay=False)] = DEFAULT_DASHBOARDS_DIR,
    alerts_out: Annotated[Path, typer.Option("--alerts-out", file_okay=False)] = DEFAULT_ALERTS_DIR,
) -> None:
    """Regenerate dashboards/ and alerts/ from the monitoring config (defaults + --config FILE)."""
    _report(generate_all(_load(config), dashboards_dir=dashboards_out, alerts_dir=alerts_out))


def main() -> None:
    """``python -m heurmetrics.cli.monitoring [--config FILE]``: regenerate dashboards/ and alerts/."""
    typer.run(generate)


if __name__ == "__main__":
    main()
