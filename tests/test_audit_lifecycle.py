"""Rule-version lifecycle on real SQLite and PostgreSQL: registration, policy, point in time, flags."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from heurmetrics import Recorder, VersionConflict
from heurmetrics.audit import chain, lifecycle, queries
from heurmetrics.audit.errors import LifecycleError, PolicyViolation
from heurmetrics.errors import InvalidEvent, UnknownRuleVersion
from heurmetrics.store.schema import ExecutionRow
from heurmetrics.store.sql_store import SqlStore
from tests.audit_support import US, History, build_history, equity, migrate


@pytest.fixture
def rec(migrated_url: str) -> Iterator[Recorder]:
    with Recorder(migrated_url, created_by="alice") as recorder:
        yield recorder


@pytest.fixture
def history(migrated_url: str) -> History:
    return build_history(migrated_url)


def test_registration_appends_version_and_proposed_event_to_the_chain(store: SqlStore) -> None:
    rv, created = store.register_rule_version("r", "1.0.0", params={"a": 1}, source="x", created_by="alice",
                                              description="first cut")
    again, created_again = store.register_rule_version("r", "1.0.0", params={"a": 1}, source="x", created_by="bob",
                                                       description="ignored: identical content is a no-op")
    assert created and not created_again and again == rv
    [proposed] = queries.history(store, "r")
    assert (proposed.event, proposed.actor, proposed.reason, proposed.position) == ("proposed", "alice", "first cut", 2)
    assert proposed.details == {"content_hash": rv.content_hash}
    head = chain.chain_head(store)
    assert (head.position, head.row_hash, head.table) == (2, proposed.row_hash, "rule_version_events")
    assert chain.verify(store).ok


def test_conflict_writes_nothing_not_even_an_event(store: SqlStore) -> None:
    store.register_rule_version("r", "1.0.0", params={"a": 1}, source="x", created_by="alice")
    before = chain.chain_head(store)
    with pytest.raises(VersionConflict, match=r"r@1.0.0 already exists with content hash"):
        store.register_rule_version("r", "1.0.0", params={"a": 2}, source="x", created_by="alice")
    assert chain.chain_head(store) == before
    assert len(queries.history(store, "r")) == 1


def test_lineage_parent_and_code_ref(rec: Recorder) -> None:
    rec.propose("r", "1.0.0", {"a": 1}, "x")
    child = rec.propose("r", "1.1.0", {"a": 2}, "y", description="raise a", parent="1.0.0", code_ref="git:abc")
    assert child.description == "raise a"
    detail = queries.show_version(rec.store, "r", "1.1.0")
    assert (detail.summary.parent, detail.summary.code_ref) == ("1.0.0", "git:abc")
    assert queries.show_version(rec.store, "r", "1.0.0").children == ["1.1.0"]
    with pytest.raises(UnknownRuleVersion, match=r"unknown rule version r@0\.9\.0"):
        rec.propose("r", "1.2.0", {}, "z", parent="0.9.0")
    with pytest.raises(InvalidEvent, match="its own parent"):
        rec.propose("r", "1.3.0", {}, "z", parent="1.3.0")
    assert [v.version for v in queries.list_versions(rec.store, "r")] == ["1.0.0", "1.1.0"]


def test_params_the_database_would_change_are_refused(postgres_url: str) -> None:
    """What is hashed must be what is stored: Postgres jsonb turns 1e+20 into an integer."""
    with Recorder(migrate(postgres_url), created_by="alice") as rec:
        with pytest.raises(InvalidEvent, match=r"params: the database stores"):
            rec.propose("r", "1.0.0", {"big": 1e20}, "x")
        assert rec.store.list_rule_versions() == []
        assert chain.chain_head(rec.store).position == 0


def test_self_approval_is_refused_case_insensitively(rec: Recorder) -> None:
    rv = rec.propose("r", "1.0.0", {}, "x")
    for approver in ("alice", " Alice "):
        with pytest.raises(PolicyViolation, match=r"cannot approve r@1.0.0: they are its author"):
            rec.approve(rv, actor=approver, reason="looks fine to me")
    with pytest.raises(PolicyViolation):
        rec.approve(rv, reason="default actor is the recorder's user, the author")
    assert [e.event for e in queries.history(rec.store, "r")] == ["proposed"]


def test_activation_needs_an_approval_and_a_backtest_of_that_exact_version(rec: Recorder) -> None:
    rv = rec.propose("r", "1.0.0", {}, "x")
    other = rec.propose("r", "1.0.1", {}, "x2")
    rec.record_backtest(other, equity(), dataset="d", periods_per_year=8760)  # evidence of another version
    with pytest.raises(PolicyViolation, match=r"cannot activate r@1.0.0 in live: it has no approval on record"):
        rec.activate(rv, actor="carol", reason="go")
    rec.approve(rv, actor="bob", reason="ok")
    with pytest.raises(PolicyViolation, match=r"no completed backtest run of this exact version"):
        rec.activate(rv, actor="carol", reason="go")
    run = rec.record_backtest(rv, equity(), dataset="d", periods_per_year=8760)
    event = rec.activate(rv, actor="carol", reason="go")
    assert event.details == {
        "approved_by": "bob", "approval_position": 5, "replaces": None, "backtest_run_id": str(run.run_id),
        "policy": {"require_backtest": True},
    }


def test_relaxed_policy_is_recorded_in_the_event(rec: Recorder) -> None:
    rv = rec.propose("r", "1.0.0", {}, "x")
    rec.approve(rv, actor="bob", reason="ok")
    event = rec.activate(rv, "paper", actor="carol", reason="paper only, no backtest yet", require_backtest=False)
    assert event.details["policy"] == {"require_backtest": False} and event.details["backtest_run_id"] is None


def test_transitions_that_do_not_fit_the_state(rec: Recorder) -> None:
    rv = rec.propose("r", "1.0.0", {}, "x")
    rec.record_backtest(rv, equity(), dataset="d", periods_per_year=8760)
    rec.approve(rv, actor="bob", reason="ok")
    with pytest.raises(LifecycleError, match=r"r@1.0.0 is already approved \(by bob"):
        rec.approve(rv, actor="erin", reason="again")
    rec.activate(rv, actor="carol", reason="go")
    with pytest.raises(LifecycleError, match=r"already active in live"):
        rec.activate(rv, actor="carol", reason="go again")
    with pytest.raises(LifecycleError, match=r"cannot roll back r@1.0.0 in paper: it is not active there"):
        rec.rollback(rv, "paper", actor="carol", reason="?")
    with pytest.raises(InvalidEvent, match="reason"):
        rec.retire(rv, actor="dave", reason=" ")
    with pytest.raises(InvalidEvent, match="env"):
        rec.activate(rv, 'li"ve', actor="carol", reason="bad env")
    with pytest.raises(UnknownRuleVersion):
        rec.approve("r@9.9.9", actor="bob", reason="?")
    with pytest.raises(InvalidEvent, match="RULE@VERSION"):
        rec.approve("r-1.0.0", actor="bob", reason="?")
    retired = rec.retire(rv, actor="dave", reason="done")
    assert retired.details == {"ended_in": ["live"]}
    for action in (lambda: rec.activate(rv, "paper", actor="carol", reason="x"),
                   lambda: rec.retire(rv, actor="dave", reason="x")):
        with pytest.raises(LifecycleError, match=r"it was retired by dave"):
            action()
    assert queries.active_at(rec.store, queries.parse_time("now")) == []
    assert chain.verify(rec.store).ok


def test_statuses_versions_order_and_rules(history: History) -> None:
    store = SqlStore.open(history.url)
    versions = {v.version: v for v in queries.list_versions(store, "sma_cross")}
    assert (versions["1.0.0"].status, versions["1.0.0"].active_envs) == ("active", ["live", "paper"])
    assert (versions["1.1.0"].status, versions["1.1.0"].approved_by) == ("approved", ["Bob"])
    assert [v.version for v in queries.list_versions(store, "range_bias")] == ["2.0.0", "10.0.0", "nightly"]
    assert [v.status for v in queries.list_versions(store, "range_bias")] == ["retired", "proposed", "proposed"]
    rules = {r.rule: r for r in queries.list_rules(store)}
    assert rules["sma_cross"].active == {"live": "1.0.0", "paper": "1.0.0"}
    assert rules["range_bias"].active == {} and rules["range_bias"].latest_version == "nightly"
    store.close()


def test_point_in_time_exactly_at_event_boundaries(history: History) -> None:
    store = SqlStore.open(history.url)
    e = history.events

    def live(at: object) -> dict[str, str]:
        return {a.rule: a.version for a in queries.active_at(store, at, "live")}  # type: ignore[arg-type]

    t1, t2, tr = e["sma1_live"].occurred_at, e["sma2_live"].occurred_at, e["rollback"].occurred_at
    assert live(t1 - US) == {}
    assert live(t1) == {"sma_cross": "1.0.0"}  # an activation counts from its own instant
    assert live(t2 - US) == {"sma_cross": "1.0.0"}
    assert live(t2) == {"sma_cross": "1.1.0"}  # ... and ends the previous version at that instant
    assert live(tr - US) == {"sma_cross": "1.1.0"}
    assert live(tr) == {"sma_cross": "1.0.0"}  # rollback and restore share one instant
    assert e["restored"].occurred_at == tr and e["restored"].details["rollback_of"] == "1.1.0"
    rb_live, rb_retired = e["rb2_live"].occurred_at, e["rb2_retired"].occurred_at
    assert live(rb_live)["range_bias"] == "2.0.0"
    assert live(rb_retired - US)["range_bias"] == "2.0.0"
    assert "range_bias" not in live(rb_retired)
    paper = queries.active_at(store, e["sma1_paper"].occurred_at, "paper")
    assert [(a.rule, a.version, a.activated_by) for a in paper] == [("sma_cross", "1.0.0", "carol")]
    assert {(a.rule, a.env) for a in queries.active_at(store, tr)} == {("sma_cross", "live"), ("sma_cross", "paper")}
    store.close()


def test_live_executions_of_inactive_versions_are_flagged_not_dropped(history: History) -> None:
    store = SqlStore.open(history.url)
    with store.engine.connect() as conn:
        rows = conn.execute(select(ExecutionRow.event_id, ExecutionRow.started_at)).all()
    stored = {r.event_id: r.started_at for r in rows}
    assert len(stored) == len(history.executions)  # every execution is stored, flagged or not
    assert stored[history.executions["sma1_at_live"][0]] == history.events["sma1_live"].occurred_at  # exact µs
    flags: dict[uuid.UUID, bool] = {}
    for rule, version in (("sma_cross", "1.0.0"), ("sma_cross", "1.1.0"), ("range_bias", "2.0.0")):
        report = queries.executions(store, rule, version, rows=100)
        flags.update({r.event_id: r.flagged for r in report.rows})
        assert report.flagged_live == sum(r.flagged for r in report.rows)
    assert flags == {event_id: flagged for event_id, flagged in history.executions.values()}
    sma1 = queries.executions(store, "sma_cross", "1.0.0")
    assert (sma1.total, sma1.live, sma1.flagged_live) == (5, 4, 2)
    assert [(p.start, p.end) for p in sma1.live_periods] == [
        (history.events["sma1_live"].occurred_at, history.events["sma2_live"].occurred_at),
        (history.events["rollback"].occurred_at, None),
    ]
    window = queries.executions(store, "sma_cross", "1.0.0", start=history.events["sma1_live"].occurred_at,
                                end=history.events["sma2_live"].occurred_at)
    assert (window.total, window.flagged_live) == (2, 0)  # at_live (live) and the paper run, both fine
    assert queries.show_version(store, "sma_cross", "1.0.0").flagged_live_executions == 2
    assert queries.flagged_live_counts(store) == {
        ("sma_cross", "1.0.0"): 2, ("sma_cross", "1.1.0"): 1, ("range_bias", "2.0.0"): 1,
    }
    store.close()


def test_show_and_diff(history: History) -> None:
    store = SqlStore.open(history.url)
    detail = queries.show_version(store, "sma_cross", "1.1.0")
    assert [e.event for e in detail.events] == ["proposed", "approved", "activated", "rolled_back"]
    assert [b.run_id for b in detail.backtests] == [history.run_ids["sma2"]]
    assert detail.backtests[0].sharpe is not None and detail.summary.approved_by == ["Bob"]
    diff = queries.diff_versions(store, ("sma_cross", "1.0.0"), ("sma_cross", "1.1.0"))
    assert [(p.path, p.change, p.old, p.new) for p in diff.params] == [
        ("fast", "changed", 50, 20), ("filter", "added", None, {"atr": 14}),
    ]
    assert "-    fast = sma(bars, p['fast'])\n+    fast = ema(bars, p['fast'])\n" in diff.source_diff
    assert diff.source_diff.startswith("--- sma_cross@1.0.0\n+++ sma_cross@1.1.0\n")
    same = queries.diff_versions(store, ("sma_cross", "1.0.0"), ("sma_cross", "1.0.0"))
    assert same.identical and same.params == [] and same.source_diff == ""
    store.close()


def test_seed_demo_lifecycle(migrated_url: str) -> None:
    with Recorder(migrated_url, created_by="demo") as demo:
        for rule in ("sma_cross", "atr_breakout", "range_bias"):
            for version in ("1.0.0", "1.1.0"):
                rv = demo.register_rule_version(rule, version, {"v": version}, rule)
                demo.record_backtest(rv, equity(), dataset="d", periods_per_year=8760)
        events = lifecycle.seed_demo_lifecycle(demo.store)
        store = demo.store
        assert {e.event for e in events} == {"approved", "activated", "rolled_back", "retired"}
        assert all(e.actor != "demo" for e in events)
        now = {(a.rule, a.env): a.version for a in queries.active_at(store, queries.parse_time("now"))}
        assert now == {("sma_cross", "live"): "1.1.0", ("sma_cross", "paper"): "1.0.0",
                       ("atr_breakout", "live"): "1.1.0", ("range_bias", "live"): "1.0.0",
                       ("range_bias", "paper"): "1.0.0"}
        assert [v.status for v in queries.list_versions(store, "atr_breakout")] == ["retired", "active"]
        assert chain.verify(store).ok
