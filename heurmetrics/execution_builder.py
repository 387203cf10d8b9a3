"""The one execution builder: how every front door validates an execution and builds its event.

``Recorder.record_execution`` / ``record_executions``, ``ExporterClient.record_execution``,
``Ingest.make_execution`` (``POST /v1/executions``) and the walk-forward fold context all check
an execution here, and :class:`TimedExecution` is the one timing context behind
``Recorder.execution`` and ``FoldContext.execution``. Events are immutable (a store that claims a start
time returns new events).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.errors import InvalidEvent
from heurmetrics.validation import check_execution, check_execution_values, check_timestamp

__all__ = ["TimedExecution", "as_uuid", "build_execution", "epoch", "start_time"]

_new_event = tuple.__new__


def epoch(value: datetime | float, field: str = "started_at") -> float:
    """Unix seconds of an aware datetime or a number (naive datetimes and non-numbers refused)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEvent(field, "naive datetime: pass a timezone-aware time (e.g. UTC)")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(field, f"must be a datetime or Unix seconds, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        raise InvalidEvent(field, "is too large to be a time") from None


def as_uuid(value: object, field: str = "event_id") -> uuid.UUID:
    """``value`` as a UUID (a UUID or its text); anything else is refused naming ``field``."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidEvent(field, f"{str(value)[:64]!r} is not a UUID") from None


def start_time(
    duration_seconds: float,
    status: str,
    outcome: str | None,
    signal: float | None,
    confidence: float | None,
    mode: str,
    started_at: Any,
    error_type: str | None,
) -> float:
    """Validate one execution's fields and return its start (Unix seconds; default now - duration)."""
    check_execution(
        status=status,
        mode=mode,
        duration_seconds=duration_seconds,
        outcome=outcome,
        signal=signal,
        confidence=confidence,
        error_type=error_type,
    )
    if started_at is None:
        return time.time() - duration_seconds
    return check_timestamp("started_at", started_at if started_at.__class__ is float else epoch(started_at))


def build_execution(
    rv: RuleVersion,
    duration_seconds: float,
    status: str,
    outcome: str | None,
    signal: float | None,
    confidence: float | None,
    mode: str,
    started_at: Any,
    error_type: str | None,
    event_id: Any,
    backtest_run_id: Any,
    new_id: Callable[[], uuid.UUID],
) -> ExecutionEvent:
    """Validate one execution and build its event (positional: this is the SDK's hot path).

    ``new_id`` makes the id when ``event_id`` is None. A caller's id without a start time is
    marked ``started_at_defaulted``: the store then keeps the start of the id's first receipt,
    so a retry stays one execution (docs/storage.md).
    """
    # start_time() inlined, positional checks: one call frame and seven keyword bindings less per call.
    check_execution_values(status, mode, duration_seconds, outcome, signal, confidence, error_type)
    if started_at is None:
        started = time.time() - duration_seconds
    else:
        started = check_timestamp("started_at", started_at if started_at.__class__ is float else epoch(started_at))
    if backtest_run_id is not None and backtest_run_id.__class__ is not uuid.UUID:
        backtest_run_id = as_uuid(backtest_run_id, "backtest_run_id")
    # tuple.__new__ directly: the named tuple's own __new__ is one more Python frame per event.
    return _new_event(
        ExecutionEvent,
        (
            new_id() if event_id is None else event_id if event_id.__class__ is uuid.UUID else as_uuid(event_id),
            rv, started, duration_seconds, status, outcome,
            signal, confidence, mode, error_type, backtest_run_id, event_id is not None and started_at is None,
        ),
    )  # fmt: skip


class TimedExecution:
    """Times a block as one execution: ``with ctx.execution(...) as ex: ex.set_result(...)``.

    An exception leaving the block is recorded as status ``error`` (``timeout`` for
    TimeoutError) with its type in ``error_type``, without the (possibly half-set) result, and
    re-raised. Subclasses say where the execution goes (:meth:`_finish`).
    """

    __slots__ = ("_result", "_start", "_t0")

    def __init__(self) -> None:
        self._result: tuple[str | None, float | None, float | None] = (None, None, None)

    def set_result(
        self, outcome: str | None = None, signal: float | None = None, confidence: float | None = None
    ) -> None:
        self._result = (outcome, signal, confidence)

    def __enter__(self) -> Self:
        self._start = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = time.perf_counter() - self._t0
        if exc_type is None:
            outcome, signal, confidence = self._result
            self._finish(duration, "ok", outcome, signal, confidence, None)
            return
        status = "timeout" if issubclass(exc_type, TimeoutError) else "error"
        self._finish(duration, status, None, None, None, exc_type.__qualname__[:128])

    def _finish(
        self,
        duration: float,
        status: str,
        outcome: str | None,
        signal: float | None,
        confidence: float | None,
        error_type: str | None,
    ) -> None:
        raise NotImplementedError
