"""Tearsheets of stored backtest runs (``heurmetrics report RUN_ID --out FILE.html|FILE.png``).

Needs the ``report`` extra (``pip install 'heurmetrics[report]'``).
"""

from heurmetrics.extras import require

require("report")  # matplotlib: one line naming heurmetrics[report] when missing

from heurmetrics.report.tearsheet import RunNotFound, RunReport, load_run, render_html, write_report  # noqa: E402

__all__ = ["RunNotFound", "RunReport", "load_run", "render_html", "write_report"]
