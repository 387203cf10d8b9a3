"""``heurmetrics audit …`` in-process on a reference history (SQLite and PostgreSQL): JSON and tables."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from heurmetrics.audit import chain
from heurmetrics.cli.audit import audit_app
from heurmetrics.store.sql_store import SqlStore
from tests.audit_support import History, build_history, migrate, scratch_postgres

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def audited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """The reference history, built once per dialect; the tests here only read it."""
    if request.param == "sqlite":
        yield build_history(migrate(f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}"))
        return
    with scratch_postgres(request.getfixturevalue("postgres_server_url")) as url:
        yield build_history(migrate(url))


def run(history: History, *args: str, code: int = 0) -> Any:
    result = runner.invoke(audit_app, [*args, "--database-url", history.url], env=WIDE)
    assert result.exit_code == code, result.output
    return result


def run_json(history: History, *args: str) -> Any:
    return json.loads(run(history, *args, "--json").stdout)


def test_rules(audited: History) -> None:
    rules = {r["rule"]: r for r in run_json(audited, "rules")}
    assert rules["sma_cross"] == {**rules["sma_cross"], "versions": 2, "latest_version": "1.1.0",
                                  "active": {"live": "1.0.0", "paper": "1.0.0"}}
    assert rules["range_bias"]["active"] == {} and rules["range_bias"]["versions"] == 3
    out = run(audited, "rules").stdout
    assert "sma_cross" in out and "live=1.0.0, paper=1.0.0" in out


def test_versions(audited: History) -> None:
    versions = run_json(audited, "versions", "range_bias")
    assert [(v["version"], v["status"]) for v in versions] == [
        ("2.0.0", "retired"), ("10.0.0", "proposed"), ("nightly", "proposed"),
    ]
    assert versions[1]["parent"] == "2.0.0"
    out = run(audited, "versions", "sma_cross").stdout
    for text in ("1.0.0", "active (live, paper)", "1.1.0", "approved", "Bob", "faster EMA leg, ATR filter"):
        assert text in out


def test_show(audited: History) -> None:
    detail = run_json(audited, "show", "sma_cross@1.1.0")
    summary = detail["summary"]
    assert (summary["created_by"], summary["approved_by"], summary["parent"], summary["code_ref"]) == (
        "alice", ["Bob"], "1.0.0", "git:3f2a9c1")
    assert detail["params"] == {"fast": 20, "slow": 200, "filter": {"atr": 14}}
    assert "ema(bars" in detail["source"] and len(summary["content_hash"]) == 64
    assert [e["event"] for e in detail["events"]] == ["proposed", "approved", "activated", "rolled_back"]
    assert [b["run_id"] for b in detail["backtests"]] == [str(audited.run_ids["sma2"])]
    assert detail["executions_total"] == 2 and detail["flagged_live_executions"] == 1
    out = run(audited, "show", "sma_cross@1.1.0").stdout
    for text in (str(audited.run_ids["sma2"]), "git:3f2a9c1", "approved by:      Bob", "rolled_back (restores 1.0.0)",
                 "too many flips live", '"atr": 14', "flagged live: 1"):
        assert text in out, text


def test_diff(audited: History) -> None:
    diff = run_json(audited, "diff", "sma_cross@1.0.0", "sma_cross@1.1.0")
    assert diff["params"] == [
        {"path": "fast", "change": "changed", "old": 50, "new": 20},
        {"path": "filter", "change": "added", "old": None, "new": {"atr": 14}},
    ]
    out = run(audited, "diff", "sma_cross@1.0.0", "sma_cross@1.1.0").stdout
    assert "+    fast = ema(bars, p['fast'])" in out and "-    fast = sma(bars, p['fast'])" in out
    assert "fast" in out and "changed" in out


def test_active_at_event_boundaries(audited: History) -> None:
    e = audited.events
    t2 = chain.format_time(e["sma2_live"].occurred_at)
    answer = run_json(audited, "active", "--at", t2, "--env", "live")
    assert [(a["rule"], a["version"], a["activated_by"]) for a in answer["active"]] == [("sma_cross", "1.1.0", "carol")]
    before = (e["sma2_live"].occurred_at.timestamp() * 1e6 - 1) / 1e6
    earlier = run_json(audited, "active", "--at", pd.Timestamp(before, unit="s", tz="UTC").isoformat())
    assert {(a["rule"], a["env"], a["version"]) for a in earlier["active"]} == {("sma_cross", "live", "1.0.0")}
    out = run(audited, "active", "--at", t2).stdout
    assert "sma_cross" in out and "1.1.0" in out and "promote 1.1.0" in out
    assert "No version was active then." in run(audited, "active", "--at", "2001-01-01T00:00:00Z").stdout


def test_history(audited: History) -> None:
    events = run_json(audited, "history", "sma_cross")
    assert [(ev["version"], ev["event"], ev["env"]) for ev in events] == [
        ("1.0.0", "proposed", None), ("1.1.0", "proposed", None), ("1.0.0", "approved", None),
        ("1.0.0", "activated", "live"), ("1.1.0", "approved", None), ("1.1.0", "activated", "live"),
        ("1.0.0", "activated", "paper"), ("1.1.0", "rolled_back", "live"), ("1.0.0", "activated", "live"),
    ]
    one = run_json(audited, "history", "range_bias@2.0.0")
    assert [(ev["event"], ev["actor"], ev["reason"]) for ev in one][-1] == ("retired", "dave", "market regime changed")
    out = run(audited, "history", "sma_cross").stdout
    assert "activated (replaces 1.0.0)" in out and "rollback of sma_cross@1.1.0: too many flips live" in out


def test_executions(audited: History) -> None:
    report = run_json(audited, "executions", "sma_cross@1.0.0", "--rows", "10")
    assert (report["total"], report["live"], report["flagged_live"]) == (5, 4, 2)
    flagged = {r["event_id"] for r in report["rows"] if r["flagged"]}
    assert flagged == {str(audited.executions[n][0]) for n in ("sma1_before_live", "sma1_at_replaced")}
    counts = {(c["mode"], c["status"]): c["count"] for c in report["counts"]}
    assert counts == {("live", "ok"): 4, ("paper", "ok"): 1}
    t1 = chain.format_time(audited.events["sma1_live"].occurred_at)
    t2 = chain.format_time(audited.events["sma2_live"].occurred_at)
    window = run_json(audited, "executions", "sma_cross@1.0.0", "--from", t1, "--to", t2)
    assert (window["total"], window["flagged_live"], window["rows"]) == (2, 0, [])
    out = run(audited, "executions", "sma_cross@1.0.0", "--rows", "5").stdout
    assert "flagged live (version not active in live then): 2" in out and "FLAGGED" in out


def test_errors_exit_2_with_the_reason(audited: History, sqlite_url: str) -> None:
    assert "unknown rule version sma_cross@9.9.9" in run(audited, "show", "sma_cross@9.9.9", code=2).output
    assert "not a rule version reference" in run(audited, "show", "sma_cross", code=2).output
    assert "has no time zone" in run(audited, "active", "--at", "2026-01-01T00:00:00", code=2).output
    assert "unknown rule 'nope'" in run(audited, "versions", "nope", code=2).output
    unmigrated = runner.invoke(audit_app, ["rules", "--database-url", sqlite_url])
    assert unmigrated.exit_code == 2 and "heurmetrics db upgrade" in unmigrated.output


def test_head_and_verify(audited: History) -> None:
    head = run_json(audited, "head")
    assert head["position"] == 20 and head["table"] == "rule_version_events" and len(head["row_hash"]) == 64
    assert run(audited, "head").stdout.startswith(f"position 20  hash {head['row_hash']}  at ")
    report = run_json(audited, "verify", "--expect-head", head["row_hash"])
    assert report["ok"] and report["records"] == 20 and report["anchor_found"] is True
    assert "chain OK: 20 records (5 versions, 15 events)" in run(audited, "verify").stdout
    missing = run(audited, "verify", "--expect-head", "0" * 64, code=1)
    assert "is not in the chain" in missing.stdout


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_is_readable_by_pandas(audited: History, tmp_path: Path, fmt: str) -> None:
    result = run_json(audited, "export", "--out", str(tmp_path), "--format", fmt)
    assert result["chain_ok"]
    read = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[fmt]
    frames = {f["table"]: read(Path(f["path"])) for f in result["files"]}
    expected = {"rules": 2, "rule_versions": 5, "rule_version_events": 15, "backtest_runs": 3,
                "heuristic_executions": len(audited.executions)}
    assert {t: len(df) for t, df in frames.items()} == expected
    executions = frames["heuristic_executions"].set_index("event_id")
    assert {str(i): bool(f) for i, f in executions["flagged_live"].items()} == {
        str(event_id): flagged for event_id, flagged in audited.executions.values()
    }
    versions = frames["rule_versions"].set_index("version")
    assert versions.loc["1.1.0", "parent_version"] == "1.0.0" and versions.loc["1.1.0", "code_ref"] == "git:3f2a9c1"
    params = versions.loc["1.1.0", "params"]
    assert (params if isinstance(params, dict) else json.loads(params))["filter"] == {"atr": 14}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["chain"]["ok"] and manifest["chain"]["head_position"] == 20
    for f in manifest["files"]:
        assert hashlib.sha256((tmp_path / f["file"]).read_bytes()).hexdigest() == f["sha256"]
    if fmt == "parquet":
        assert str(frames["rule_version_events"]["occurred_at"].dtype).startswith("datetime64")


def test_export_window_and_bad_format(audited: History, tmp_path: Path) -> None:
    t1 = chain.format_time(audited.events["sma1_live"].occurred_at)
    result = run_json(audited, "export", "--out", str(tmp_path), "--format", "csv", "--to", t1)
    rows = {f["table"]: f["rows"] for f in result["files"]}
    assert rows["heuristic_executions"] == 1 and rows["rule_versions"] == 5  # only sma1_before_live starts before t1
    assert "use one of csv, parquet, jsonl" in run(audited, "export", "--out", str(tmp_path), "--format", "xlsx",
                                                    code=2).output


def test_parquet_without_pyarrow_says_so(audited: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    out = run(audited, "export", "--out", str(tmp_path), "--format", "parquet", code=2).output
    assert "needs the pyarrow package" in out and "pip install pyarrow" in out


def test_verify_on_a_tampered_database_names_the_record(migrated_url: str) -> None:
    from tests.test_audit_chain import _tamper

    history = build_history(migrated_url)
    _tamper(migrated_url, "rule_versions", "UPDATE rule_versions SET params = '{\"fast\": 5, \"slow\": 200}' "
            "WHERE version = '1.0.0'")
    result = runner.invoke(audit_app, ["verify", "--database-url", history.url], env=WIDE)
    assert result.exit_code == 1
    assert "BROKEN at position 1 (content_hash): rule_versions id 1 (sma_cross@1.0.0, position 1)" in result.stdout
    report = json.loads(runner.invoke(audit_app, ["verify", "--json", "--database-url", history.url]).stdout)
    assert report["ok"] is False and report["first_problem"]["ref"] == "sma_cross@1.0.0"
    store = SqlStore.open(migrated_url)
    assert not chain.verify(store).ok
    store.close()


def test_usage_errors_are_exit_2_one_line_and_json_with_json(audited: History, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("an existing file")
    exported = runner.invoke(audit_app, ["export", "--out", str(taken), "--database-url", audited.url])
    assert exported.exit_code == 2 and "is a file" in exported.stderr, exported.output
    assert isinstance(exported.exception, SystemExit) and taken.read_text() == "an existing file"
    bad_head = runner.invoke(audit_app, ["verify", "--expect-head", "deadbeef", "--database-url", audited.url])
    assert bad_head.exit_code == 2 and "not a head hash" in bad_head.stderr  # a usage error, not "tampered"
    as_json = runner.invoke(audit_app, ["show", "nope@1.0.0", "--json", "--database-url", audited.url])
    payload = json.loads(as_json.stderr)  # with --json, the error is JSON too
    assert as_json.exit_code == 2 and payload["exit_code"] == 2
    assert payload["error"].startswith("unknown rule version nope@1.0.0")


def test_tables_are_never_cut_when_output_is_not_a_terminal(audited: History) -> None:
    result = runner.invoke(audit_app, ["versions", "sma_cross", "--database-url", audited.url], env={"COLUMNS": None})
    assert result.exit_code == 0
    assert "…" not in result.stdout and "faster EMA leg, ATR filter" in result.stdout
