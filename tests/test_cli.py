"""The command line in-process: db upgrade/current, demo, serve's refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from heurmetrics.cli import app
from heurmetrics.store.sql_store import SqlStore

runner = CliRunner()


def test_db_upgrade_then_current(database_url: str) -> None:
    before = runner.invoke(app, ["db", "current", "--database-url", database_url])
    if database_url.startswith("sqlite"):  # reading never creates the file
        assert before.exit_code == 2 and "no such database file" in before.stderr
    else:
        assert before.exit_code == 1 and "NOT at head" in before.output
    first = runner.invoke(app, ["db", "upgrade", "--database-url", database_url])
    assert first.exit_code == 0, first.output
    assert "upgraded from empty" in first.output
    again = runner.invoke(app, ["db", "upgrade", "--database-url", database_url])
    assert again.exit_code == 0 and "already at head" in again.output
    after = runner.invoke(app, ["db", "current", "--database-url", database_url])
    assert after.exit_code == 0 and "at head" in after.output


def test_password_never_printed_on_failure() -> None:
    result = runner.invoke(
        app, ["db", "upgrade", "--database-url", "postgresql+psycopg://user:hunter2@127.0.0.1:1/nowhere"]
    )
    assert result.exit_code == 2
    assert "hunter2" not in result.output and "***" in result.output


def test_serve_refuses_public_bind_without_token_and_a_missing_database(sqlite_url: str) -> None:
    missing = runner.invoke(app, ["serve", "--database-url", sqlite_url])
    assert missing.exit_code == 2 and "no such database file" in missing.output
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
    Path(sqlite_url.removeprefix("sqlite:///")).write_bytes(b"")  # the token check comes next
    public = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--database-url", sqlite_url], env={})
    assert public.exit_code == 1 and "API token" in public.output


def test_demo_writes_every_execution_and_prints_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "heurmetrics-demo.db").write_text("stale file from an earlier run")
    result = runner.invoke(app, ["demo", "--days", "60"], env={"COLUMNS": None})  # not a terminal: no "…"
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for key in ("sma_cross@1.0.0", "atr_breakout@1.1.0", "range_bias@2.0.0", "Sharpe", "drift", "heurmetrics serve"):
        assert key in result.output
    store = SqlStore.open(f"sqlite:///{tmp_path / 'heurmetrics-demo.db'}")
    counts = store.table_counts()
    with store.engine.connect() as conn:
        per_single_run = dict(
            conn.execute(
                text(
                    "SELECT r.name || '@' || v.version, count(*) FROM heuristic_executions e "
                    "JOIN backtest_runs b ON b.run_id = e.backtest_run_id AND b.kind = 'single' "
                    "JOIN rule_versions v ON v.id = e.rule_version_id JOIN rules r ON r.id = v.rule_id GROUP BY 1"
                )
            ).all()
        )
        events = conn.execute(text("SELECT count(*) FROM rule_version_events")).scalar_one()
    store.close()
    # Every bar of the backtest segment after each rule's lookback is one execution of its run:
    # nothing sampled, nothing lost.
    split = int(60 * 24 * 0.8)
    lookbacks = {"sma_cross": 201, "atr_breakout": 16, "range_bias": 48}
    assert per_single_run == {
        f"{rule}@{version}": split - lookbacks[rule]
        for rule, version in (
            ("sma_cross", "1.0.0"),
            ("sma_cross", "1.1.0"),
            ("atr_breakout", "1.0.0"),
            ("atr_breakout", "1.1.0"),
            ("range_bias", "1.0.0"),
            ("range_bias", "2.0.0"),
        )
    }
    assert (counts["rules"], counts["rule_versions"]) == (3, 6)
    assert counts["backtest_runs"] == 12  # one single and one walk-forward run per version
    assert events > 6  # proposals plus approvals, activations, a rollback, a retirement
    # The demo's own registry counted exactly the rows it stored.
    assert f"Stored {counts['heuristic_executions']:,} executions" in result.output
    assert f"Prometheus counted {counts['heuristic_executions']:,}" in result.output
    assert "heurmetrics serve --port 9464 --database-url sqlite:///heurmetrics-demo.db" in result.output
    # Again into the same database: refused before writing anything (it cannot re-approve a retired version).
    again = runner.invoke(app, ["demo", "--days", "60", "--database-url", "sqlite:///heurmetrics-demo.db"])
    assert again.exit_code == 2 and "already holds the demo's rule versions" in again.stderr
    reopened = SqlStore.open(f"sqlite:///{tmp_path / 'heurmetrics-demo.db'}")
    assert reopened.table_counts() == counts
    reopened.close()


def test_old_performance_command_name_still_runs_the_live_commands() -> None:
    """`heurmetrics performance …` was renamed `heurmetrics live …`; the old name stays (hidden)."""
    live = runner.invoke(app, ["live", "--help"], env={"COLUMNS": "200"})
    old = runner.invoke(app, ["performance", "--help"], env={"COLUMNS": "200"})
    assert live.exit_code == 0 and old.exit_code == 0, (live.output, old.output)
    for command in ("resolve", "snapshot", "show"):
        assert command in live.output and command in old.output
    listing = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "│ live " in listing and "│ performance " not in listing  # hidden from the listing


def test_serving_freezes_the_start_up_heap_and_collects_young_objects_less_often() -> None:
    # In a child interpreter: freezing is process-wide, and this test process must keep its defaults.
    code = (
        "import gc; from heurmetrics.cli.main import SERVING_GC_THRESHOLD0, tune_gc_for_serving\n"
        "before = gc.get_threshold()\n"
        "tune_gc_for_serving()\n"
        "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()\n"
        "assert gc.get_threshold() == (SERVING_GC_THRESHOLD0, *before[1:]), gc.get_threshold()\n"
        "assert gc.isenabled()\n"
        "x = []; x.append(x); del x\n"  # cyclic garbage made after start-up is still collected
        "assert gc.collect() >= 1\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
