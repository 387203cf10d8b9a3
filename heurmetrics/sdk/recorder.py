"""The Python SDK: what a rule runner or backtest runner calls.

    with Recorder() as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0", params={...}, source=src)
        with rec.execution(rv, mode="live") as ex:
            ex.set_result(outcome="bullish", signal=1.0, confidence=0.72)

``record_execution`` is the hot path: it validates, updates the Prometheus metrics and appends to
an in-memory queue; a background thread writes batches to the store. ``flush()`` returns when
everything recorded before it is durable.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import InterfaceError, OperationalError

from heurmetrics.audit import lifecycle
from heurmetrics.audit.model import LifecycleEvent, split_ref
from heurmetrics.config import Settings
from heurmetrics.domain import BacktestFold, BacktestRun, ExecutionEvent, RuleVersion
from heurmetrics.errors import InvalidEvent, StoreUnavailable
from heurmetrics.ingest import Ingest
from heurmetrics.ingest.builder import TimedExecution, as_uuid, build_execution
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.sdk.delivery import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SPOOL_AFTER,
    FlushResult,
    FullPolicy,
)
from heurmetrics.sdk.ids import EventIds
from heurmetrics.sdk.spool import DEFAULT_MAX_BYTES as DEFAULT_SPOOL_MAX_BYTES
from heurmetrics.sdk.spool import Spool
from heurmetrics.sdk.spool_codec import Uncounted
from heurmetrics.sdk.store_gate import database_identity, open_store
from heurmetrics.sdk.store_sink import BackgroundWriter
from heurmetrics.sdk.version_cache import VersionCache

if TYPE_CHECKING:
    from heurmetrics.backtest.splits import WalkForwardSplitter
    from heurmetrics.backtest.walkforward import WalkForwardResult
    from heurmetrics.live.resolution import Resolution
    from heurmetrics.live.store import ResolutionResult


class Recorder:
    """Records rule versions, executions and backtests of one runner process.

    ``database_url`` defaults to ``HEURMETRICS_DATABASE_URL`` (else ``./heurmetrics.db``). A
    brand-new empty database is initialised; one at an older schema revision is refused (run
    ``heurmetrics db upgrade``). ``registry`` receives the metrics (a fresh one by default); expose
    it with :meth:`start_metrics_server` or your own exporter.

    Delivery (see docs/reliability.md and :mod:`heurmetrics.sdk.delivery`): executions wait in a
    queue of at most ``max_queue`` events; a full queue blocks the caller for at most
    ``block_timeout`` seconds (``full_policy="block"``) or not at all (``"drop"``) before events
    are dropped and counted in ``heurmetrics_dropped_events_total``. ``spool_dir`` (default: none)
    enables a local durable spool of at most ``spool_max_bytes``: batches the database has refused
    for ``spool_after`` seconds are written there and replayed in order when it is back, also by
    the next process that opens the same ``spool_dir`` (one directory per runner process; it is
    bound to this database). Without a spool, a Recorder cannot be created while the database is
    unreachable (:class:`~heurmetrics.errors.StoreUnavailable`); with one, it can, and
    :meth:`register_rule_version` then answers from the spool's cache of versions registered
    before (identical content only). A ``spool_dir`` that cannot be created or written raises
    :class:`~heurmetrics.sdk.spool.SpoolError` naming it; a ``spool_max_bytes`` too small for one
    batch raises :class:`~heurmetrics.sdk.delivery.SpoolTooSmall`.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: CollectorRegistry | None = None,
        created_by: str | None = None,
        batch_size: int = 5000,
        flush_interval: float = 0.05,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        full_policy: FullPolicy = "block",
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        max_queue: int = DEFAULT_MAX_QUEUE,
        spool_after: float = DEFAULT_SPOOL_AFTER,
    ) -> None:
        url = database_url or Settings().database_url
        self.registry = registry if registry is not None else CollectorRegistry()
        self.spool = (
            None if spool_dir is None else Spool(spool_dir, max_bytes=spool_max_bytes, identity=database_identity(url))
        )
        try:
            gate = open_store(url, allow_offline=self.spool is not None)
            self._gate = gate
            self.store = gate.store
            self.metrics = PipelineMetrics(self.registry)
            self.ingest = Ingest(self.store, self.metrics)
            self._versions = None if self.spool is None else VersionCache(self.spool)
            self.created_by = created_by or _current_user()
            self._ids = EventIds()
            self._writer = BackgroundWriter(
                self.ingest,
                batch_size=batch_size,
                flush_interval=flush_interval,
                max_queue=max_queue,
                full_policy=full_policy,
                block_timeout=block_timeout,
                spool=self.spool,
                spool_after=spool_after,
                gate=None if gate.verified else gate,
            )
        except BaseException:
            if self.spool is not None:  # release the spool's lock for the next attempt
                self.spool.close()
            raise
        self._put = self._writer.put
        self._observe = self.metrics.observe_execution
        self._new_id = self._ids.next
        self._closed = False

    # --- rule versions ----------------------------------------------------------------------
    def register_rule_version(
        self,
        rule: str,
        version: str,
        params: dict[str, Any] | None = None,
        source: str = "",
        *,
        created_by: str | None = None,
        description: str | None = None,
    ) -> RuleVersion:
        """Register a rule version (synchronously, durable on return) and return it.

        Idempotent for identical content; raises :class:`~heurmetrics.errors.VersionConflict` when
        ``rule@version`` exists with other params or source (nothing is written). When the database
        is unreachable: with a spool, a version registered before through the same spool with
        identical content is returned from its cache; otherwise
        :class:`~heurmetrics.errors.StoreUnavailable` is raised.
        """
        try:
            self._gate.ensure()
            rv, _created = self.ingest.register_rule_version(
                rule,
                version,
                params=params,
                source=source,
                created_by=created_by or self.created_by,
                description=description,
            )
        except (StoreUnavailable, OperationalError, InterfaceError) as exc:
            cached = None if self._versions is None else self._versions.lookup(rule, version, params or {}, source)
            if cached is None:
                raise StoreUnavailable(f"cannot register {rule}@{version}: database unreachable ({exc})") from exc
            self.metrics.prepare_rule_version(cached)
            return cached
        if self._versions is not None:
            self._versions.remember(rv)
        return rv

    # --- rule-version lifecycle: thin wrappers over Ingest (policy: heurmetrics.audit.lifecycle) --
    def propose(
        self,
        rule: str,
        version: str,
        params: dict[str, Any] | None = None,
        source: str = "",
        *,
        description: str | None = None,
        parent: str | None = None,
        code_ref: str | None = None,
        created_by: str | None = None,
    ) -> RuleVersion:
        """Register a version as a proposal with its lineage: ``description`` (what changed),
        ``parent`` (the version it derives from, e.g. ``"1.0.0"``) and ``code_ref`` (e.g. a git
        commit). Idempotent and conflict-checked exactly like :meth:`register_rule_version`."""
        self.ingest.propose(
            rule,
            version,
            params=params,
            source=source,
            created_by=created_by or self.created_by,
            description=description,
            parent=parent,
            code_ref=code_ref,
        )
        return self.ingest.rule_version(rule, version)

    def approve(self, rule_version: RuleVersion | str, *, reason: str, actor: str | None = None) -> LifecycleEvent:
        """Approve a version (``RuleVersion`` or ``"rule@version"``); the approver must not be its author."""
        rule, version = _ref(rule_version)
        return self.ingest.approve(rule, version, actor=actor or self.created_by, reason=reason)

    def activate(
        self,
        rule_version: RuleVersion | str,
        env: str = "live",
        *,
        reason: str,
        actor: str | None = None,
        require_backtest: bool = True,
    ) -> LifecycleEvent:
        """Activate a version in ``env``; needs an approval and (by default) a completed backtest of it.

        Ends the version active in ``env`` before. ``require_backtest=False`` relaxes the policy
        for this activation and is recorded in the event."""
        rule, version = _ref(rule_version)
        return self.ingest.activate(
            rule,
            version,
            env=env,
            actor=actor or self.created_by,
            reason=reason,
            policy=lifecycle.Policy(require_backtest=require_backtest),
        )

    def retire(self, rule_version: RuleVersion | str, *, reason: str, actor: str | None = None) -> LifecycleEvent:
        """Retire a version for good (it ends in every environment)."""
        rule, version = _ref(rule_version)
        return self.ingest.retire(rule, version, actor=actor or self.created_by, reason=reason)

    def rollback(
        self, rule_version: RuleVersion | str, env: str = "live", *, reason: str, actor: str | None = None
    ) -> list[LifecycleEvent]:
        """Roll the active version back in ``env``: the version it replaced becomes active again."""
        rule, version = _ref(rule_version)
        return self.ingest.rollback(rule, version, env=env, actor=actor or self.created_by, reason=reason)

    # --- executions (hot path) --------------------------------------------------------------
    def record_execution(
        self,
        rule_version: RuleVersion,
        *,
        duration_seconds: float,
        status: str = "ok",
        outcome: str | None = None,
        signal: float | None = None,
        confidence: float | None = None,
        mode: str = "live",
        started_at: datetime | float | None = None,
        error_type: str | None = None,
        event_id: uuid.UUID | None = None,
        backtest_run_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Record one execution and return its event id; never touches the database.

        Pass ``event_id`` to make retries idempotent: an id seen before is stored and counted once.
        ``started_at`` is an aware datetime or Unix seconds (default: now minus the duration).
        Invalid values raise :class:`~heurmetrics.errors.InvalidEvent` and record nothing.
        """
        if self._closed:
            raise RuntimeError("Recorder is closed")
        if rule_version.__class__ is not RuleVersion:
            raise InvalidEvent("rule_version", "must be the RuleVersion returned by register_rule_version")
        event = build_execution(
            rule_version, duration_seconds, status, outcome, signal, confidence, mode, started_at, error_type,
            event_id, backtest_run_id, self._new_id,
        )  # fmt: skip
        # Enqueue first (False: dropped by the full-queue policy, counted there, not here); a fresh
        # id cannot be a duplicate: count it now (a caller's id is counted after its insert).
        if event_id is None:
            if self._put(event):
                self._observe(event)
        else:
            self._put(Uncounted(event))
        return event.event_id

    def record_executions(
        self,
        rule_version: RuleVersion,
        executions: Iterable[Mapping[str, Any]],
        *,
        mode: str = "live",
        backtest_run_id: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        """Record many executions of one version at once; returns their event ids, in order.

        For runners that evaluate many bars at a time (the walk-forward harness records its
        workers' evaluations this way). Each item is a mapping of :meth:`record_execution`'s
        keyword arguments (``duration_seconds`` required; ``mode`` per item overrides ``mode``).
        Every item is validated before any is recorded: an invalid one raises
        :class:`~heurmetrics.errors.InvalidEvent` naming ``executions[i].field``, and nothing of
        the batch is recorded. The version, mode default and run id are checked once per batch.
        """
        if self._closed:
            raise RuntimeError("Recorder is closed")
        if rule_version.__class__ is not RuleVersion:
            raise InvalidEvent("rule_version", "must be the RuleVersion returned by register_rule_version")
        if backtest_run_id is not None and backtest_run_id.__class__ is not uuid.UUID:
            backtest_run_id = as_uuid(backtest_run_id, "backtest_run_id")
        items = [self._batch_event(i, item, rule_version, mode, backtest_run_id) for i, item in enumerate(executions)]
        put, observe = self._put, self._observe
        ids = []
        for event, generated in items:  # validated, all of them: now enqueue and count as record_execution does
            if not generated:
                put(Uncounted(event))
            elif put(event):
                observe(event)
            ids.append(event.event_id)
        return ids

    def _batch_event(
        self, index: int, item: Mapping[str, Any], rv: RuleVersion, mode: str, run_id: uuid.UUID | None
    ) -> tuple[ExecutionEvent, bool]:
        """One validated item of :meth:`record_executions` (errors name ``executions[index]``)."""
        try:
            # Cheap checks first (this is per item): a plain dict skips the ABC isinstance test.
            if item.__class__ is not dict and not isinstance(item, Mapping):
                kind = type(item).__name__
                raise InvalidEvent("item", f"must be a mapping of record_execution arguments, got {kind}")
            if not _BATCH_FIELDS.issuperset(item):
                unknown = sorted(str(k) for k in item if k not in _BATCH_FIELDS)[0]
                allowed = ", ".join(sorted(_BATCH_FIELDS))
                raise InvalidEvent(unknown, f"is not an argument of record_execution ({allowed})")
            if "duration_seconds" not in item:
                raise InvalidEvent("duration_seconds", "is required")
            duration = item["duration_seconds"]
            status, item_mode = item.get("status", "ok"), item.get("mode", mode)
            outcome, signal, confidence = item.get("outcome"), item.get("signal"), item.get("confidence")
            error_type, started_at, event_id = item.get("error_type"), item.get("started_at"), item.get("event_id")
            event = build_execution(
                rv, duration, status, outcome, signal, confidence, item_mode, started_at, error_type, event_id,
                run_id, self._new_id,
            )  # fmt: skip
        except InvalidEvent as exc:
            raise exc.at(f"executions[{index}]") from None
        return event, event_id is None

    def execution(
        self, rule_version: RuleVersion, *, mode: str = "live", backtest_run_id: uuid.UUID | None = None
    ) -> ExecutionContext:
        """Time a block as one execution: ``with rec.execution(rv) as ex: ex.set_result(...)``.

        An exception leaving the block records status ``error`` (``timeout`` for TimeoutError)
        with its type in ``error_type``, and is re-raised.
        """
        return ExecutionContext(self, rule_version, mode, backtest_run_id)

    # --- backtests --------------------------------------------------------------------------
    def record_backtest(
        self,
        rule_version: RuleVersion,
        equity: pd.Series,
        *,
        dataset: str,
        periods_per_year: float,
        risk_free_rate: float = 0.0,
        trades: pd.DataFrame | None = None,
        dataset_hash: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        run_id: uuid.UUID | None = None,
        config: dict[str, Any] | None = None,
        kind: str = "single",
        folds: Sequence[BacktestFold] = (),
        fold_equity: dict[int, pd.Series] | None = None,
    ) -> BacktestRun:
        """Compute the performance metrics of an equity curve and store the run (durable on return).

        ``equity`` is a Series indexed by time; ``periods_per_year`` is explicit (365*24 for
        hourly crypto bars, 252 for daily equities). Returns the stored run with its metrics.
        """
        run, _created = self.ingest.record_backtest(
            rule_version,
            equity,
            dataset=dataset,
            periods_per_year=periods_per_year,
            risk_free_rate=risk_free_rate,
            trades=trades,
            dataset_hash=dataset_hash,
            started_at=started_at,
            finished_at=finished_at,
            run_id=run_id,
            config=config,
            kind=kind,
            folds=folds,
            fold_equity=fold_equity,
        )
        return run

    def walk_forward(
        self,
        rule_version: RuleVersion,
        data: pd.DataFrame,
        *,
        run: Callable[..., pd.Series],
        splitter: WalkForwardSplitter,
        dataset: str,
        periods_per_year: float,
        fit: Callable[[pd.DataFrame], Any] | None = None,
        executor: Executor | None = None,
        **options: Any,
    ) -> WalkForwardResult:
        """Run and store a walk-forward backtest (kind ``walk_forward``): fit in-sample, run
        out-of-sample, stitch; folds in parallel on ``executor`` (a process pool by default).

        Thin wrapper of :func:`heurmetrics.backtest.walkforward.run_walk_forward` (``options``:
        ``output``, ``warmup``, ``price_column``, ``horizons``, ``risk_free_rate``,
        ``dataset_hash``, ``run_id``, ``config``, ``record_in_sample``, ``progress``); see
        ``docs/walk-forward.md``.
        """
        from heurmetrics.backtest.walkforward import run_walk_forward

        return run_walk_forward(
            self,
            rule_version,
            data,
            run=run,
            splitter=splitter,
            dataset=dataset,
            periods_per_year=periods_per_year,
            fit=fit,
            executor=executor,
            **options,
        )

    # --- outcome resolution -------------------------------------------------------------------
    def resolve(
        self,
        event_id: uuid.UUID | str,
        *,
        horizon: str = "1h",
        realized_return: float | None = None,
        correct: bool | None = None,
        resolved_at: datetime | None = None,
    ) -> bool:
        """Record what an execution's signal realised after ``horizon`` (durable on return).

        ``realized_return`` is signed by the signal's direction (positive = it was right);
        ``correct`` defaults to ``realized_return > 0``. Returns False when this (event, horizon)
        was resolved before: resolutions are append-only and never overwritten.
        """
        from heurmetrics.live.resolution import make_resolution

        item = make_resolution(
            event_id, horizon=horizon, realized_return=realized_return, correct=correct, resolved_at=resolved_at
        )
        return self.ingest.resolve([item]).accepted == 1

    def resolve_many(self, resolutions: Iterable[Resolution | Mapping[str, Any]]) -> ResolutionResult:
        """Batch form of :meth:`resolve` (one transaction): ``Resolution`` objects or dicts with
        ``event_id``, ``horizon``, ``realized_return`` / ``correct``, ``resolved_at``."""
        from heurmetrics.live.resolution import Resolution, make_resolution

        items = [r if isinstance(r, Resolution) else make_resolution(**r) for r in resolutions]
        return self.ingest.resolve(items)

    def resolve_from_prices(
        self, close: pd.Series, *, horizons: Sequence[str] = ("1h",), modes: Sequence[str] = ("live", "paper")
    ) -> ResolutionResult:
        """Resolve every stored, unresolved directional signal (of ``modes``) that ``close`` covers.

        Flushes first so executions recorded so far are included; see
        :func:`heurmetrics.live.resolution.resolve_pending`.
        """
        from heurmetrics.live.store import resolve_pending

        self.flush()
        return resolve_pending(self.store, close, horizons=horizons, modes=modes)

    # --- lifecycle ----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> FlushResult:
        """Return when everything recorded so far is in the database (or ``timeout`` seconds passed).

        With a spool and the database down, return as soon as it is in the spool instead
        (``result.spooled`` > 0; durable on local disk, replayed later). ``result.complete``: all
        in the database; ``result.durable``: all in the database or the spool; ``result.pending``:
        only in memory; ``result.dropped``: given up since start (see :class:`FlushResult`).
        """
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> FlushResult:
        """Flush, stop the writer and release the database; reports what could not be written.

        With a spool, whatever is still in memory after ``timeout`` is spooled before returning
        (and replayed by the next Recorder opening the same ``spool_dir``).
        """
        if self._closed:
            return FlushResult(0)
        self._closed = True
        result = self._writer.close(timeout)
        self.store.close()
        return result

    def start_metrics_server(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve this recorder's metrics on ``http://addr:port/metrics`` (embedded mode)."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr, registry=self.registry)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class ExecutionContext(TimedExecution):
    """Times one execution (:class:`~heurmetrics.ingest.builder.TimedExecution`); see :meth:`Recorder.execution`."""

    __slots__ = ("_mode", "_recorder", "_run_id", "_rv", "event_id")

    def __init__(
        self, recorder: Recorder, rule_version: RuleVersion, mode: str, backtest_run_id: uuid.UUID | None
    ) -> None:
        super().__init__()
        self._recorder = recorder
        self._run_id = backtest_run_id
        self._rv = rule_version
        self._mode = mode
        self.event_id: uuid.UUID | None = None

    def _finish(
        self,
        duration: float,
        status: str,
        outcome: str | None,
        signal: float | None,
        confidence: float | None,
        error_type: str | None,
    ) -> None:
        self.event_id = self._recorder.record_execution(
            self._rv,
            duration_seconds=duration,
            status=status,
            outcome=outcome,
            signal=signal,
            confidence=confidence,
            mode=self._mode,
            started_at=self._start,
            error_type=error_type,
            backtest_run_id=self._run_id,
        )


def _ref(rule_version: RuleVersion | str) -> tuple[str, str]:
    if isinstance(rule_version, RuleVersion):
        return rule_version.rule, rule_version.version
    try:
        return split_ref(rule_version)
    except ValueError as exc:
        raise InvalidEvent("rule_version", str(exc)) from None


#: Keys an item of :meth:`Recorder.record_executions` may carry.
_BATCH_FIELDS = frozenset(
    {"duration_seconds", "status", "outcome", "signal", "confidence", "mode", "started_at", "error_type", "event_id"}
)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"
