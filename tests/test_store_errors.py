"""The store translates driver errors into domain errors: callers above it catch only those.

A database that is down (nothing listening, a SQLite file that cannot be opened, a connection cut
by a proxy) gives :class:`StoreUnavailable` naming what failed and why, from every part of the
store API; rows the database refuses give :class:`StoreRejectedData`. Never a SQLAlchemy or
psycopg exception.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc

from heurmetrics.domain import BacktestRun, ExecutionEvent, RuleVersion
from heurmetrics.errors import StoreError, StoreRejectedData, StoreUnavailable
from heurmetrics.live.resolution import make_resolution
from heurmetrics.metrics import definitions as d
from heurmetrics.store.sql_store import SqlStore
from tests.conftest import free_port
from tests.test_faults_proxy import proxied_database, short_timeouts  # noqa: F401  (fixture)

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
#: What a stand-in version looks like to the store (the database is down: nothing is stored).
RV = RuleVersion(1, "r", "1.0.0", "0" * 64, {}, "", NOW, "ana")


def _event(rv: RuleVersion = RV, **overrides: Any) -> ExecutionEvent:
    values: dict[str, Any] = {
        "event_id": uuid.uuid4(), "rule_version": rv, "started_at": time.time() - 1.0, "duration_seconds": 0.004,
        "status": "ok", "outcome": "bullish", "signal": 1.0, "confidence": 0.7, "mode": "live",
    }
    values.update(overrides)
    return ExecutionEvent(**values)


def _run() -> BacktestRun:
    return BacktestRun(
        run_id=uuid.uuid4(), rule_version=RV, kind="single", dataset="d", dataset_hash=None, period_start=NOW,
        period_end=NOW, periods_per_year=252.0, status="completed", started_at=NOW, finished_at=NOW, metrics={},
    )


#: Every concern of the store API, one call each: (name, call).
CALLS: list[tuple[str, Callable[[SqlStore], object]]] = [
    ("find_rule_version", lambda s: s.find_rule_version("r", "1.0.0")),
    ("list_rule_versions", lambda s: s.list_rule_versions()),
    ("register_rule_version", lambda s: s.register_rule_version("r", "1.0.0", params={}, source="", created_by="a")),
    ("insert_executions", lambda s: s.insert_executions([_event()])),
    ("count_executions", lambda s: s.count_executions()),
    ("insert_backtest", lambda s: s.insert_backtest(_run())),
    ("latest_backtests", lambda s: s.latest_backtests()),
    ("backtests.load_run", lambda s: s.backtests.load_run(uuid.uuid4())),
    ("live.insert_resolutions", lambda s: s.live.insert_resolutions([make_resolution(uuid.uuid4(), correct=True)])),
    ("live.latest_snapshots", lambda s: s.live.latest_snapshots(windows=d.PERFORMANCE_WINDOWS)),
    ("audit.reader", lambda s: s.audit.reader().__enter__().versions()),
    ("chain.head", lambda s: s.chain.head()),
    ("chain.links", lambda s: s.chain.links()),
    ("table_counts", lambda s: s.table_counts()),
    ("revision", lambda s: s.revision()),
    ("ping", lambda s: s.ping()),
]


def _assert_translated(exc: BaseException) -> None:
    """A domain error, not a driver error (the driver's is kept as the cause for debugging)."""
    assert not isinstance(exc, sqlalchemy.exc.SQLAlchemyError | psycopg.Error)
    assert isinstance(exc, StoreError)


def _unreachable_urls(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """(URL, text the driver's reason contains) of databases that cannot be reached."""
    return {
        "postgres-nothing-listening": (
            f"postgresql+psycopg://root:hunter2@127.0.0.1:{free_port()}/test", "connect",
        ),
        "sqlite-missing-directory": (f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", "unable to open"),
    }


@pytest.mark.parametrize("kind", ["postgres-nothing-listening", "sqlite-missing-directory"])
def test_open_on_a_database_that_is_down_raises_store_unavailable_naming_it(kind: str, tmp_path: Path) -> None:
    url, reason = _unreachable_urls(tmp_path)[kind]
    with pytest.raises(StoreUnavailable) as info:
        SqlStore.open(url)
    _assert_translated(info.value)
    message = str(info.value)
    assert message.startswith("cannot reach database ") and reason in message.lower()
    assert "hunter2" not in message  # the password never leaves the store
    assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)


@pytest.mark.parametrize("kind", ["postgres-nothing-listening", "sqlite-missing-directory"])
@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
def test_every_store_call_on_a_database_that_is_down_raises_store_unavailable(
    kind: str, name: str, call: Callable[[SqlStore], object], tmp_path: Path
) -> None:
    url, reason = _unreachable_urls(tmp_path)[kind]
    store = SqlStore.connect(url)  # connect never touches the database
    try:
        with pytest.raises(StoreUnavailable) as info:
            call(store)
    finally:
        store.close()
    _assert_translated(info.value)
    message = str(info.value)
    assert reason in message.lower(), message  # the driver's own reason
    assert " failed: " in message or message.startswith("cannot reach database "), message  # and what failed


def test_upgrade_of_an_unreachable_database_names_it(tmp_path: Path) -> None:
    url, _reason = _unreachable_urls(tmp_path)["sqlite-missing-directory"]
    store = SqlStore.connect(url)
    with pytest.raises(StoreUnavailable, match=r"^cannot reach database sqlite:///.*dir\.db: unable to open"):
        store.upgrade()
    store.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_that_goes_down_mid_life_gives_store_unavailable(
    postgres_server_url: str, short_timeouts: dict[str, str]  # noqa: F811
) -> None:
    with proxied_database(postgres_server_url) as (_url, through, proxy):
        store = SqlStore.open(through)
        try:
            rv, created = store.register_rule_version("r", "1.0.0", params={}, source="", created_by="ana")
            assert created and store.insert_executions([_event(rv)])
            proxy.refuse()
            for name, call in [
                ("insert_executions", lambda: store.insert_executions([_event(rv)])),
                ("find_rule_version", lambda: store.find_rule_version("r", "1.0.0")),
                ("chain head", lambda: store.chain.head()),
            ]:
                with pytest.raises(StoreUnavailable) as info:
                    call()
                _assert_translated(info.value)
                assert " failed: " in str(info.value), name
            proxy.restore()
            assert store.find_rule_version("r", "1.0.0") == rv  # and it works again once the database is back
        finally:
            store.close()


@pytest.mark.postgres
def test_rows_the_database_refuses_give_store_rejected_data(postgres_url: str) -> None:
    store = SqlStore.open(postgres_url, initialize_empty=True)
    try:
        rv, _ = store.register_rule_version("r", "1.0.0", params={}, source="", created_by="ana")
        with pytest.raises(StoreRejectedData, match=r"writing 1 executions: the database refused the data") as info:
            store.insert_executions([_event(rv, error_type="nul\x00byte", status="error", outcome=None)])
        _assert_translated(info.value)
        assert not isinstance(info.value, StoreUnavailable)  # retrying cannot help: the SDK drops it as poison
        assert store.count_executions() == 0  # and nothing was written
    finally:
        store.close()
