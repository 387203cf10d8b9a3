"""Tearsheets of stored backtest runs (``heurmetrics report RUN_ID --out FILE.html|FILE.png``)."""

from heurmetrics.report.tearsheet import RunNotFound, RunReport, load_run, render_html, write_report

__all__ = ["RunNotFound", "RunReport", "load_run", "render_html", "write_report"]
