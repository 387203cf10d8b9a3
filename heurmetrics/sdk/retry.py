"""The SDK's one retry policy (tenacity): jittered exponential backoff, capped, honouring hints.

Shared by the delivery loop (:mod:`heurmetrics.sdk.delivery`: re-sending a batch, probing a
target that is down while the spool holds batches) and the HTTP client
(:mod:`heurmetrics.sdk.http_client`: registering a rule version).

* **Backoff**: "full jitter" (tenacity's ``wait_random_exponential``): attempt *n* waits a random
  time in ``[first / 2, min(cap, first * 2**(n-1))]``, so many runners that lost the same target
  do not come back in step.
* **Hints**: a failure that carries a delay (:class:`RetryLater`, e.g. the exporter's
  ``Retry-After``) waits that long instead, at most ``max_hint`` seconds.
* **Bounds**: every caller bounds the whole: the registration by its ``timeout`` (no retry is
  started that would end after it, :func:`before_deadline`), the delivery loop by ``spool_after``
  or ``close()``. Nothing waits forever, and every wait can be cut short by the caller's ``sleep``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

__all__ = ["RetryLater", "RetryPolicy", "before_deadline"]


class RetryLater(Exception):
    """A transient failure with a hint (e.g. ``Retry-After``) in seconds: retry after that long."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class _HintOrBackoff(wait_base):
    """Wait what the failure asks for (:class:`RetryLater`), else the jittered backoff."""

    def __init__(self, backoff: wait_base, max_hint: float) -> None:
        self.backoff = backoff
        self.max_hint = max_hint

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(exc, RetryLater) and exc.delay is not None:
            return min(max(exc.delay, 0.0), self.max_hint)
        return float(self.backoff(retry_state))


class before_deadline(stop_base):  # lower case, like tenacity's own stop conditions
    """Stop when the next wait would end after ``deadline`` (a ``time.monotonic()`` value)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep > self.deadline


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from ``first`` doubling up to ``cap`` seconds (jittered), hints up to ``max_hint``."""

    first: float = 0.05
    cap: float = 5.0
    max_hint: float = 60.0

    def wait(self) -> wait_base:
        """The tenacity wait strategy of this policy (hint, else jittered backoff)."""
        backoff = wait_random_exponential(multiplier=self.first, max=self.cap, min=self.first / 2)
        return _HintOrBackoff(backoff, self.max_hint)

    def backoff(self, attempt: int) -> float:
        """The jittered backoff before retry number ``attempt`` (1 = after the first failure).

        For loops that schedule their next try instead of sleeping (the delivery loop's probe).
        """
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = max(1, attempt)
        return float(self.wait()(state))

    def retrying(
        self,
        *,
        stop: stop_base | Callable[[RetryCallState], bool],
        retry_on: Callable[[BaseException], bool] = lambda exc: True,
        sleep: Callable[[float], Any] = time.sleep,
        before_sleep: Callable[[RetryCallState], None] | None = None,
        after: Callable[[RetryCallState], None] | None = None,
    ) -> Retrying:
        """A tenacity ``Retrying`` with this policy's waits; the last failure is re-raised on stop."""
        return Retrying(
            wait=self.wait(),
            stop=stop,
            retry=retry_if_exception(retry_on),
            sleep=sleep,
            before_sleep=before_sleep,
            after=after or (lambda state: None),
            reraise=True,
        )
