"""The one way in: every write, from the SDK and from HTTP, is validated, stored and counted here.

:mod:`.service` (:class:`Ingest`), :mod:`.builder` (the one execution builder and timing
context), :mod:`.claims` (counting committed execution batches exactly once).

``Ingest`` is imported on first use: the builder alone (what ``ExporterClient`` needs) does not
load the store and its database drivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heurmetrics.execution_builder import TimedExecution, as_uuid, build_execution, epoch, start_time

if TYPE_CHECKING:
    from heurmetrics.ingest.claims import MAX_PENDING_CLAIMS
    from heurmetrics.ingest.service import Ingest

__all__ = ["MAX_PENDING_CLAIMS", "Ingest", "TimedExecution", "as_uuid", "build_execution", "epoch", "start_time"]


def __getattr__(name: str) -> Any:
    if name == "Ingest":
        from heurmetrics.ingest.service import Ingest

        return Ingest
    if name == "MAX_PENDING_CLAIMS":
        from heurmetrics.ingest.claims import MAX_PENDING_CLAIMS

        return MAX_PENDING_CLAIMS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
