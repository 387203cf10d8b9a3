"""The ``heurmetrics report`` command (a Typer command function the main app mounts)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from heurmetrics.cli.options import DatabaseUrl, console, fail, open_store
from heurmetrics.errors import HeurmetricsError
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
        raise fail(f"{run_id!r} is not a run id (UUID)") from None
    if out.suffix.lower() not in (".html", ".htm", ".png"):
        raise fail("--out must end in .html or .png")
    store = open_store(database_url)
    try:
        path = write_report(store, rid, out)
    except (RunNotFound, ValueError, HeurmetricsError) as exc:  # HeurmetricsError: the store went away
        raise fail(str(exc)) from None
    except OSError as exc:  # --out not writable
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        store.close()
    console.print(f"Wrote {path} (run {rid}).")
