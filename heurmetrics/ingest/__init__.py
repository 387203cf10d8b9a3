"""The one way in: every write, from the SDK and from HTTP, is validated, stored and counted here.

:mod:`.service` (:class:`Ingest`), :mod:`.builder` (the one execution builder and timing
context), :mod:`.claims` (counting committed execution batches exactly once).
"""

from heurmetrics.ingest.builder import TimedExecution, as_uuid, build_execution, epoch, start_time
from heurmetrics.ingest.claims import MAX_PENDING_CLAIMS
from heurmetrics.ingest.service import Ingest

__all__ = ["MAX_PENDING_CLAIMS", "Ingest", "TimedExecution", "as_uuid", "build_execution", "epoch", "start_time"]
