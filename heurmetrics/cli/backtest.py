"""``heurmetrics backtest …``: walk-forward backtests of a rule defined in a Python module.

    heurmetrics backtest walk-forward mypkg.rules:MOMENTUM --data bars.csv \\
        --in-sample 60D --out-of-sample 14D --periods-per-year 8760

``MODULE:NAME`` names either a :class:`~heurmetrics.backtest.walkforward.WalkForwardRule` (or any
object with a ``run`` attribute and optionally ``fit``, ``grid``, ``params``, ``name``,
``version``, ``source``, ``description``, ``output``, ``warmup``) or a plain ``run`` function
(then ``--rule``, ``--version`` and optionally ``--fit`` / ``--params`` describe it). The module
must be importable (the current directory is put on ``sys.path``), and ``run`` / ``fit`` must be
module-level functions: worker processes import them by name.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from heurmetrics.cli.options import DatabaseUrl, checked_database_url, console, err_console, open_store
from heurmetrics.cli.options import fail as _fail
from heurmetrics.errors import HeurmetricsError
from heurmetrics.sdk.delivery import DEFAULT_FLUSH_TIMEOUT
from heurmetrics.store.urls import redact_url

backtest_app = typer.Typer(
    help="Backtests: walk-forward runs of rules defined in Python modules.", no_args_is_help=True
)


def load_object(reference: str) -> Any:
    """Import ``module.path:attr.path`` (the current directory is importable, like ``python -m``)."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} is not MODULE:NAME (e.g. mypkg.rules:momentum)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def load_data(source: str) -> pd.DataFrame:
    """Bars from a CSV file (first column = time), a Parquet file, or ``MODULE:FUNC`` returning a frame."""
    path = Path(source)
    if path.exists():
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, index_col=0)
            frame.index = pd.to_datetime(frame.index, utc=True)
    elif ":" in source:
        produced = load_object(source)
        frame = produced() if callable(produced) else produced
    else:
        raise ValueError(f"--data {source!r}: no such file, and not MODULE:FUNC")
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"--data {source!r} did not give a DataFrame")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError(f"--data {source!r}: the index (first column) must be timestamps")
    return frame.sort_index()


def parse_length(text: str) -> int | str:
    """``"720"`` → 720 bars; anything else is a pandas time span (``"30D"``, ``"12h"``)."""
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() else stripped


@backtest_app.command("walk-forward")
def walk_forward(
    rule_ref: Annotated[str, typer.Argument(metavar="MODULE:RULE", help="A WalkForwardRule, or a run function.")],
    data: Annotated[str, typer.Option(help="Bars: CSV (first column = time), Parquet, or MODULE:FUNC.")],
    periods_per_year: Annotated[float, typer.Option(help="Annualisation: 8760 for hourly crypto, 252 daily.")],
    in_sample: Annotated[str, typer.Option(help="In-sample length: bars (720) or a time span (30D).")],
    out_of_sample: Annotated[str, typer.Option(help="Out-of-sample length (and step): bars or a span.")],
    gap: Annotated[str, typer.Option(help="Embargo between in- and out-of-sample: bars or a span.")] = "0",
    anchored: Annotated[bool, typer.Option("--anchored/--rolling", help="Anchored (growing) in-sample.")] = False,
    rule: Annotated[str | None, typer.Option(help="Rule name (default: from the rule object).")] = None,
    version: Annotated[str | None, typer.Option(help="Rule version (default: from the rule object).")] = None,
    fit: Annotated[str | None, typer.Option(help="MODULE:FUNC fitting params in-sample.")] = None,
    params: Annotated[str | None, typer.Option(help="Fixed params as JSON (when nothing fits).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name stored with the run (default: --data).")] = None,
    output: Annotated[str | None, typer.Option(help="What run returns: returns or equity.")] = None,
    warmup: Annotated[int | None, typer.Option(help="History bars given to run before each window.")] = None,
    price_column: Annotated[str, typer.Option(help="Close-price column for the signal expectation.")] = "close",
    workers: Annotated[int, typer.Option(help="Worker processes (1 = serial in this process).")] = 0,
    database_url: DatabaseUrl = None,
) -> None:
    """Walk-forward backtest of MODULE:RULE: fit in-sample, run out-of-sample, stitch, store."""
    from heurmetrics.backtest.splits import WalkForwardSplitter
    from heurmetrics.backtest.walkforward import SerialExecutor, WalkForwardRule, default_executor
    from heurmetrics.sdk.recorder import Recorder

    url = checked_database_url(database_url)  # before any work: a bad database is the first thing to say
    open_store(url).close()  # reachable and at head
    try:
        obj = load_object(rule_ref)
        spec = _spec(obj, rule_ref, rule=rule, version=version, fit=fit, params=params)
        frame = load_data(data)
        splitter = WalkForwardSplitter(
            parse_length(in_sample), parse_length(out_of_sample), gap=parse_length(gap), anchored=anchored
        )
    except (ImportError, AttributeError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise _fail(str(exc)) from None
    assert isinstance(spec, WalkForwardRule)
    executor = SerialExecutor() if workers == 1 else default_executor(workers or None)
    try:
        with Recorder(url) as rec:
            rv = rec.register_rule_version(
                spec.name, spec.version, spec.params, spec.source_text(), description=spec.description
            )
            result = rec.walk_forward(
                rv,
                frame,
                run=spec.run,
                fit=spec.fit_for(periods_per_year),
                splitter=splitter,
                dataset=dataset or data,
                periods_per_year=periods_per_year,
                executor=executor,
                output=output or spec.output,
                warmup=spec.warmup if warmup is None else warmup,
                price_column=price_column,
                progress=err_console,
            )
            flushed = rec.flush(DEFAULT_FLUSH_TIMEOUT)
    except (HeurmetricsError, ValueError, TypeError) as exc:
        raise _fail(str(exc)) from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    console.print(_fold_table(result))
    m = result.metrics
    console.print(
        f"run {result.run_id} ({rv.key}): {len(result.folds)} folds, stitched out-of-sample "
        f"total return {_pct(m.get('total_return'))}, CAGR {_pct(m.get('cagr'))}, Sharpe {_num(m.get('sharpe'))}, "
        f"max drawdown {_pct(m.get('max_drawdown'))}; walk-forward efficiency {_num(result.efficiency)}; "
        f"{result.executions:,} executions recorded"
        + ("" if flushed.complete else f" ({flushed.pending} NOT durable: {flushed.last_error})")
        + f" → {redact_url(url)}",
        highlight=False,
    )
    console.print(f"Tearsheet: {tearsheet_command(result.run_id, database_url)}", highlight=False)


def tearsheet_command(run_id: object, database_url: str | None) -> str:
    """The report command for a run, with the --database-url this command was given (quoted)."""
    option = "" if database_url is None else f" --database-url {shlex.quote(redact_url(database_url))}"
    return f"heurmetrics report {run_id} --out walk-forward.html{option}"


def _spec(obj: Any, ref: str, *, rule: str | None, version: str | None, fit: str | None, params: str | None) -> Any:
    from heurmetrics.backtest.walkforward import WalkForwardRule

    fixed = json.loads(params) if params else None
    if fixed is not None and not isinstance(fixed, dict):
        raise ValueError("--params must be a JSON object")
    fit_fn = load_object(fit) if fit else None
    if hasattr(obj, "run"):
        name = rule or getattr(obj, "name", None)
        ver = version or getattr(obj, "version", None)
        if not name or not ver:
            raise ValueError(f"{ref}: give --rule and --version (the object has no name / version)")
        return WalkForwardRule(
            name=name,
            version=ver,
            run=obj.run,
            fit=fit_fn or getattr(obj, "fit", None),
            params=fixed if fixed is not None else dict(getattr(obj, "params", None) or {}),
            grid=getattr(obj, "grid", None),
            metric=getattr(obj, "metric", "sharpe"),
            output=getattr(obj, "output", "returns"),
            warmup=int(getattr(obj, "warmup", 0) or 0),
            source=getattr(obj, "source", None),
            description=getattr(obj, "description", None),
        )
    if not callable(obj):
        raise ValueError(f"{ref} is neither a rule object with a run attribute nor a run function")
    if not rule or not version:
        raise ValueError(f"{ref} is a run function: give --rule and --version")
    return WalkForwardRule(name=rule, version=version, run=obj, fit=fit_fn, params=fixed or {})


def _fold_table(result: Any) -> Table:
    table = Table(title="Walk-forward folds (out-of-sample windows are stitched into the result)")
    for column in ("fold", "out-of-sample", "params", "trials", "IS return", "OOS return", "OOS Sharpe", "WFE"):
        table.add_column(column, justify="left" if column in ("out-of-sample", "params") else "right")
    for f in result.folds:
        row = f.fold
        table.add_row(
            str(row.fold_index),
            f"{row.out_of_sample_start:%Y-%m-%d}…{row.out_of_sample_end:%m-%d}",
            json.dumps(row.params, sort_keys=True)[:40],
            str(row.trials),
            _pct(row.in_sample_metrics.get("total_return")),
            _pct(row.out_of_sample_metrics.get("total_return")),
            _num(row.out_of_sample_metrics.get("sharpe")),
            _num(f.efficiency),
        )
    return table


def _pct(value: object) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else "n/a"


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "n/a"
