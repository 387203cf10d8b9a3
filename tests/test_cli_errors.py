"""Every command against every bad database (issue 13): one line on stderr, exit 2, no traceback,
no file created — from ``--database-url`` and from ``HEURMETRICS_DATABASE_URL`` alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heurmetrics.cli import app

runner = CliRunner()
RUN_ID = "00000000-0000-0000-0000-000000000000"

BAD_URLS = {
    "mysql": ("mysql://user:hunter2@db.example/x", "unsupported database 'mysql'"),
    "not-a-url": ("not a url", "not a valid URL"),
    "bad-port": ("postgresql+psycopg://user:hunter2@127.0.0.1:notaport/x", "not a valid URL"),
    "missing-sqlite-file": ("sqlite:///missing.db", "no such database file: missing.db"),
    "unreachable-host": ("postgresql+psycopg://user:hunter2@127.0.0.1:1/x", "cannot reach database"),
}

#: Every command that opens a database, with the arguments it needs to get that far.
COMMANDS: dict[str, list[str]] = {
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
    "db partitions": ["db", "partitions"],
    "db retention": ["db", "retention", "--dry-run"],
    "db rollup": ["db", "rollup"],
    "serve": ["serve"],
    "demo": ["demo", "--days", "60"],
    "audit rules": ["audit", "rules"],
    "audit versions": ["audit", "versions", "r"],
    "audit show": ["audit", "show", "r@1"],
    "audit diff": ["audit", "diff", "r@1", "r@2"],
    "audit active": ["audit", "active"],
    "audit history": ["audit", "history", "r"],
    "audit executions": ["audit", "executions", "r@1"],
    "audit export": ["audit", "export", "--out", "export"],
    "audit verify": ["audit", "verify"],
    "audit head": ["audit", "head"],
    "backtest walk-forward": [
        "backtest", "walk-forward", "mod:rule", "--data", "bars.csv", "--periods-per-year", "8760",
        "--in-sample", "10", "--out-of-sample", "5",
    ],
    "live snapshot": ["live", "snapshot"],
    "live show": ["live", "show"],
    "live resolve": ["live", "resolve", "--prices", "prices.csv"],
    "report": ["report", RUN_ID, "--out", "tearsheet.html"],
}  # fmt: skip
#: Commands whose job is to create the database: a missing SQLite file is fine for them.
CREATORS = {"db upgrade", "demo"}

CASES = [
    (command, kind, source)
    for command in COMMANDS
    for kind in BAD_URLS
    for source in ("option", "environment")
    if not (kind == "missing-sqlite-file" and command in CREATORS)
]


@pytest.mark.parametrize(("command", "kind", "source"), CASES)
def test_bad_database_is_one_line_exit_2_nothing_created(
    command: str, kind: str, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url, expected = BAD_URLS[kind]
    args = list(COMMANDS[command])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEURMETRICS_")}
    if source == "option":
        args += ["--database-url", url]
    else:
        env["HEURMETRICS_DATABASE_URL"] = url
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert list(tmp_path.iterdir()) == []  # no database file, no export directory, nothing


def test_read_only_commands_never_create_the_default_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEURMETRICS_")}
    result = runner.invoke(app, ["report", RUN_ID, "--out", "x.html"], env=env)
    assert result.exit_code == 2 and "no such database file: heurmetrics.db" in result.stderr
    assert list(tmp_path.iterdir()) == []
