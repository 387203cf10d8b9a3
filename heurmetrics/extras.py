"""Optional parts of heurmetrics and the one check that names the extra a missing part needs.

``pip install heurmetrics`` is the SDK a rule runner needs (``Recorder`` on SQLite,
``ExporterClient``, the backtest statistics). The rest comes with extras::

    pip install 'heurmetrics[server]'      # heurmetrics serve: the HTTP exporter (fastapi, uvicorn)
    pip install 'heurmetrics[monitoring]'  # dashboards and alerts generators (grafanalib, promql-parser)
    pip install 'heurmetrics[report]'      # heurmetrics report: tearsheets (matplotlib)
    pip install 'heurmetrics[postgres]'    # PostgreSQL stores (psycopg 3)
    pip install 'heurmetrics[all]'         # all of the above

Code that needs an extra calls :func:`require` first: a missing package then raises
:class:`MissingExtra`, whose message is one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
from typing import Final

from heurmetrics.errors import HeurmetricsError

#: Extra name → (what it enables, the top-level modules it installs). Mirrors pyproject.toml.
EXTRAS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "server": ("the HTTP exporter (heurmetrics serve)", ("fastapi", "uvicorn", "msgspec")),
    "monitoring": ("the dashboard and alert generators", ("grafanalib", "attr", "promql_parser")),
    "report": ("backtest tearsheets (heurmetrics report)", ("matplotlib",)),
    "postgres": ("PostgreSQL stores", ("psycopg",)),
}


class MissingExtra(HeurmetricsError, ImportError):
    """A feature needs an extra that is not installed; the message names it."""

    def __init__(self, extra: str, missing: str) -> None:
        what = EXTRAS[extra][0]
        super().__init__(
            f"{what} needs the '{extra}' extra ({missing} is not installed): pip install 'heurmetrics[{extra}]'"
        )
        self.extra = extra


def missing_module(extra: str) -> str | None:
    """The first module of ``extra`` that cannot be imported, or None when all of them can."""
    for module in EXTRAS[extra][1]:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):  # a broken or half-removed installation
            return module
    return None


def available(extra: str) -> bool:
    """Whether every package of ``extra`` is installed."""
    return missing_module(extra) is None


def require(extra: str) -> None:
    """Raise :class:`MissingExtra` naming ``extra`` unless all its packages are installed."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    missing = missing_module(extra)
    if missing is not None:
        raise MissingExtra(extra, missing)
