"""The ``heurmetrics report`` command (a Typer command function the main app mounts)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from heurmetrics.cli.options import DatabaseUrl, console, err_console, open_store
from heurmetrics.extras import require

# The main app imports this module only when `report` runs: without matplotlib that is the one
# line naming heurmetrics[report], before any argument is read.
require("report")


def report(
    run_id: Annotated[str, typer.Argument(help="Backtest run id (a UUID).")],
    out: Annotated[Path, typer.Option("--out", help="Output file: FILE.html (self-contained) or FILE.png.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Tearsheet of a stored backtest run: equity with fold boundaries, drawdown, folds, metrics."""
    from heurmetrics.report.tearsheet import RunNotFound, write_report

    try:
        rid = uuid.UUID(run_id)
    except ValueError:
        err_console.print(f"[bold red]error:[/] {run_id!r} is not a run id (UUID)", highlight=False)
        raise typer.Exit(1) from None
    if out.suffix.lower() not in (".html", ".htm", ".png"):
        err_console.print("[bold red]error:[/] --out must end in .html or .png", highlight=False)
        raise typer.Exit(1)
    store = open_store(database_url)
    try:
        path = write_report(store, rid, out)
    except (RunNotFound, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        store.close()
    console.print(f"Wrote {path} (run {rid}).")
