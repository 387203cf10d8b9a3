"""The folds progress bar (rich), optional."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

# Re-exported: the efficiency helpers live with the shared result assembly.
from heurmetrics.backtest.summary import (  # noqa: F401
    MIN_IN_SAMPLE_ANNUAL_RETURN,
    efficiency_ratio,
    fold_efficiency,
    pooled_annualized_return,
    run_summary,
    simple_annualized_return,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


@contextmanager
def _progress_bar(progress: bool | Console | Progress, total: int, description: str) -> Iterator[Callable[[], None]]:
    """Advance a folds bar: none (False), a new bar on a console (True: stderr), or a task added to
    a running ``rich.progress.Progress`` (only one live display may be active per console)."""
    if progress is False:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if isinstance(progress, Progress):
        running = progress.add_task(description, total=total)
        yield lambda: progress.advance(running)
        return
    console = progress if isinstance(progress, Console) else Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folds"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
