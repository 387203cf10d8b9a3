"""Former home of the SDK's delivery parts, kept so existing imports work.

They are now one module per concern: :mod:`heurmetrics.sdk.store_sink` (the background writer),
:mod:`heurmetrics.sdk.spool_codec`, :mod:`heurmetrics.sdk.store_gate` and
:mod:`heurmetrics.sdk.version_cache`.
"""

from heurmetrics.sdk.delivery import FlushResult
from heurmetrics.sdk.store_gate import StoreGate, database_identity, open_store
from heurmetrics.sdk.store_sink import SPOOL_BYTES_PER_EVENT, BackgroundWriter, StoreSink
from heurmetrics.sdk.version_cache import VersionCache

__all__ = [
    "SPOOL_BYTES_PER_EVENT",
    "BackgroundWriter",
    "FlushResult",
    "StoreGate",
    "StoreSink",
    "VersionCache",
    "database_identity",
    "open_store",
]
