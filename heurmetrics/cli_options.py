"""What every ``heurmetrics`` sub-command shares: consoles, the ``--database-url`` option,
settings from options over the environment, and a uniform error exit.

Kept apart from :mod:`heurmetrics.cli` so sub-apps (audit, backtest, …) can import it without an
import cycle through the main app that mounts them.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from heurmetrics.config import Settings

console = Console(soft_wrap=True)  # messages stay on one line (greppable)
err_console = Console(stderr=True, soft_wrap=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL [env: HEURMETRICS_DATABASE_URL; default sqlite:///heurmetrics.db]"
    ),
]


def settings_from(database_url: str | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with every option that was given (not None) on top."""
    values = {k: v for k, v in {"database_url": database_url, **overrides}.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)
