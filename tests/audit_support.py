"""Shared by the audit tests: a small but complete lifecycle history with known boundaries.

``build_history`` writes, through the public SDK only, two rules with versions whose lifecycle
covers every transition (proposal, approval by someone else, activation in live and paper, an
implicit end by a newer activation, a rollback, a retirement) and executions placed exactly on and
around those event times, so point-in-time answers and live flags can be asserted exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from sqlalchemy.engine import make_url

from heurmetrics import Recorder
from heurmetrics.audit.model import LifecycleEvent
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine

US = timedelta(microseconds=1)
SMA_V1 = (
    "def signal(bars, p):\n    fast = sma(bars, p['fast'])\n    slow = sma(bars, p['slow'])\n    return fast > slow\n"
)
SMA_V2 = SMA_V1.replace("fast = sma", "fast = ema")


def equity(n: int = 48, seed: int = 1) -> pd.Series:
    index = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
    rng = np.random.default_rng(seed)
    return pd.Series(np.cumprod(1 + rng.normal(0.0005, 0.01, size=n)), index=index)


@dataclass
class History:
    """What :func:`build_history` wrote, with the events whose times tests use as boundaries."""

    url: str
    events: dict[str, LifecycleEvent] = field(default_factory=dict)
    #: Execution event ids by name (see build_history), with the flag each must get.
    executions: dict[str, tuple[uuid.UUID, bool]] = field(default_factory=dict)
    run_ids: dict[str, uuid.UUID] = field(default_factory=dict)


def build_history(url: str) -> History:
    """Write the reference history into the migrated database at ``url``.

    sma_cross: 1.0.0 (alice) approved by bob, live at ``sma1_live``; 1.1.0 (derived, git ref)
    approved by bob, live at ``sma2_live`` (ends 1.0.0 there), 1.0.0 to paper at ``sma1_paper``;
    1.1.0 rolled back in live at ``rollback`` (1.0.0 live again, same instant).
    range_bias: 2.0.0 approved and live at ``rb2_live``, then retired at ``rb2_retired``; 10.0.0
    only proposed (orders after 2.0.0 semantically); ``nightly`` is not a semantic version and
    orders last.
    """
    h = History(url)
    with Recorder(url, created_by="alice") as rec:
        sma1 = rec.propose("sma_cross", "1.0.0", {"fast": 50, "slow": 200}, SMA_V1, description="initial version")
        sma2 = rec.propose(
            "sma_cross", "1.1.0", {"fast": 20, "slow": 200, "filter": {"atr": 14}}, SMA_V2,
            description="faster EMA leg, ATR filter", parent="1.0.0", code_ref="git:3f2a9c1",
        )
        rb2 = rec.propose("range_bias", "2.0.0", {"window_hours": 24}, "range bias v2", description="v2")
        rec.propose("range_bias", "10.0.0", {"window_hours": 48}, "range bias v10", parent="2.0.0")
        rec.propose("range_bias", "nightly", {"window_hours": 12}, "experimental")
        for name, rv, seed in (("sma1", sma1, 1), ("sma2", sma2, 2), ("rb2", rb2, 3)):
            run = rec.record_backtest(rv, equity(seed=seed), dataset="BTCUSD-1h", periods_per_year=8760)
            h.run_ids[name] = run.run_id
        h.events["sma1_approved"] = rec.approve(sma1, actor="bob", reason="reviewed backtest")
        h.events["sma1_live"] = rec.activate(sma1, "live", actor="carol", reason="first deployment")
        h.events["sma2_approved"] = rec.approve(sma2, actor="Bob", reason="better Sharpe")
        h.events["sma2_live"] = rec.activate(sma2, "live", actor="carol", reason="promote 1.1.0")
        h.events["sma1_paper"] = rec.activate(sma1, "paper", actor="carol", reason="compare on paper")
        rolled, restored = rec.rollback(sma2, "live", actor="carol", reason="too many flips live")
        h.events["rollback"], h.events["restored"] = rolled, restored
        h.events["rb2_approved"] = rec.approve(rb2, actor="bob", reason="ok")
        h.events["rb2_live"] = rec.activate(rb2, "live", actor="carol", reason="deploy")
        h.events["rb2_retired"] = rec.retire(rb2, actor="dave", reason="market regime changed")

        e = h.events

        def record(name: str, rv: object, at: datetime, mode: str, flagged: bool) -> None:
            event_id = uuid.uuid4()
            rec.record_execution(rv, duration_seconds=0.001, started_at=at, mode=mode, outcome="bullish",  # type: ignore[arg-type]
                                 confidence=0.6, event_id=event_id)
            h.executions[name] = (event_id, flagged)

        t1, t2, tr = e["sma1_live"].occurred_at, e["sma2_live"].occurred_at, e["rollback"].occurred_at
        record("sma1_before_live", sma1, t1 - US, "live", True)
        record("sma1_at_live", sma1, t1, "live", False)
        record("sma1_at_replaced", sma1, t2, "live", True)  # 1.1.0 took over at exactly t2
        record("sma2_at_live", sma2, t2, "live", False)
        record("sma2_at_rollback", sma2, tr, "live", True)
        record("sma1_at_rollback", sma1, tr, "live", False)
        record("sma1_paper", sma1, t2 - US, "paper", False)  # only live executions are ever flagged
        record("rb2_after_retired", rb2, e["rb2_retired"].occurred_at, "live", True)
        record("rb2_backtest", rb2, t1, "backtest", False)
        assert rec.flush(timeout=30).complete
    return h


@contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A database of its own on the test server (for module-scoped fixtures), migrated, then dropped."""
    libpq = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"heurmetrics_audit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> str:
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return url
