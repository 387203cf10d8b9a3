"""Event and delivery ids: time-ordered UUIDv7 from ``uuid-utils`` (a maintained Rust library).

A UUIDv7 starts with its Unix time in milliseconds, then random bits, monotonic within a
millisecond in one process: ids sort by creation time, so primary-key index inserts stay at the
right edge (append-mostly, which partitioned storage relies on), and two processes collide only
with the probability of a 74-bit random collision. ``uuid_utils.compat`` returns standard
:class:`uuid.UUID` objects, which is what the SDK's callers and the stores expect.
"""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7

__all__ = ["EventIds", "new_id", "uuid7"]


def new_id() -> uuid.UUID:
    """A fresh time-ordered id (UUIDv7), as a standard :class:`uuid.UUID`."""
    return uuid7()


class EventIds:
    """A source of event ids for one recorder or client (kept as a seam: tests may pass their own)."""

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = uuid7  # the hot path calls the library directly: no wrapper frame
