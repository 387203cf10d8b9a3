"""Cheap, unique event ids for the SDK hot path.

``uuid.uuid4()`` reads the OS random source on every call (~2 us). An :class:`EventIds` draws 60
random bits once and counts upwards: ids are valid RFC 4122 version-4 UUIDs, unique across
processes with the probability of a 60-bit random collision, and sequential within a process
(which keeps the Postgres primary-key index inserts local).
"""

from __future__ import annotations

import itertools
import os
import uuid

_new = object.__new__
# UUID is immutable through __setattr__; its slot descriptors set the fields directly.
_set_int = uuid.UUID.int.__set__  # type: ignore[misc,attr-defined]
_set_safe = uuid.UUID.is_safe.__set__  # type: ignore[misc,attr-defined]
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


class EventIds:
    def __init__(self) -> None:
        high = int.from_bytes(os.urandom(8), "big")
        high = (high & ~0xF000) | 0x4000  # version 4
        self._base = (high << 64) | (0x8000 << 48)  # RFC 4122 variant; the counter fills 62 bits
        self._counter = itertools.count(1)  # next() is atomic under the GIL: thread-safe

    def next(self) -> uuid.UUID:
        # Equivalent to uuid.UUID(int=...) without its argument parsing (the hot path).
        u = _new(uuid.UUID)
        _set_int(u, self._base + next(self._counter))
        _set_safe(u, _SAFE_UNKNOWN)
        return u
