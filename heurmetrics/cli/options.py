"""What every ``heurmetrics`` sub-command shares: consoles, the ``--database-url`` option,
settings from options over the environment, and a uniform error exit.

Kept apart from :mod:`heurmetrics.cli.main` so the command modules (audit, backtest, …) can
import it without an import cycle through the main app that mounts them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from heurmetrics.config import Settings
from heurmetrics.errors import HeurmetricsError
from heurmetrics.store.urls import database_url_problem, redact_url

if TYPE_CHECKING:
    from heurmetrics.store.sql_store import SqlStore

#: Width of tables when output is not a terminal (CI logs, ``| tee``): wide enough that no
#: identifier is ever cut to "atr_brea…" (a terminal keeps its own width).
NON_TERMINAL_WIDTH = 1000
console = Console(soft_wrap=True)  # messages stay on one line (greppable)
err_console = Console(stderr=True, soft_wrap=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL [env: HEURMETRICS_DATABASE_URL; default sqlite:///heurmetrics.db]"
    ),
]


#: Exit code of a command that could not do its job (bad database URL, database unreachable, …).
EXIT_ERROR = 2


def settings_from(database_url: str | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with every option that was given (not None) on top."""
    values = {k: v for k, v in {"database_url": database_url, **overrides}.items() if v is not None}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:  # a bad HEURMETRICS_* variable: name it, no traceback
        first = exc.errors()[0]
        raise fail(f"HEURMETRICS_{str(first['loc'][0]).upper()}: {first['msg']}", EXIT_ERROR) from None


def checked_database_url(database_url: str | None = None, *, must_exist: bool = True) -> str:
    """The database URL from ``--database-url`` or the environment, refused (exit 2) when it is
    not a URL, names an unsupported database, or (``must_exist``) a SQLite file that is not there."""
    url = settings_from(database_url).database_url
    problem = database_url_problem(url, must_exist=must_exist)
    if problem is not None:
        raise fail(problem, EXIT_ERROR)
    return url


def open_store(database_url: str | None = None, *, must_exist: bool = True) -> SqlStore:
    """The store at the checked URL (at head), or ``error: …`` and exit 2."""
    from heurmetrics.store.sql_store import SqlStore

    url = checked_database_url(database_url, must_exist=must_exist)
    try:
        return SqlStore.open(url)
    except HeurmetricsError as exc:
        raise fail(str(exc), EXIT_ERROR) from None
    except Exception as exc:  # a driver error the store does not know: still one line, no traceback
        raise fail(f"cannot open database {redact_url(url)}: {type(exc).__name__}: {exc}", EXIT_ERROR) from None


_json_errors = False


def json_errors(enabled: bool) -> None:
    """Make :func:`fail` print ``{"error": message}`` (for commands run with ``--json``)."""
    global _json_errors
    _json_errors = enabled


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr, on one line, and return the exit to raise."""
    text = " ".join(str(message).split())
    if _json_errors:
        err_console.out(json.dumps({"error": text, "exit_code": code}), highlight=False)
        return typer.Exit(code)
    # Text, not markup: a message may hold brackets ("[key]") that markup would eat.
    err_console.print(Text.assemble(("error:", "bold red"), " ", text), highlight=False)
    return typer.Exit(code)


def new_console(**options: Any) -> Console:
    """A stdout console that never cuts tables when output is not a terminal."""
    made = Console(soft_wrap=True, **options)
    if not made.is_terminal:
        made.width = NON_TERMINAL_WIDTH
    return made


def prepare_consoles() -> None:
    """Run before every command: the shared console is as wide as the output allows."""
    json_errors(False)
    if not console.is_terminal:
        console.width = NON_TERMINAL_WIDTH
