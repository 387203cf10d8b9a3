"""The ``heurmetrics`` command line: one module per command group (``db``, ``audit``, ``backtest``,
``live``, ``dashboards``/``alerts``, ``report``), the shared options and the lazy loader.

The top of the layers: it may import anything below it, and nothing imports it.
"""

from heurmetrics.cli.main import app

__all__ = ["app"]
