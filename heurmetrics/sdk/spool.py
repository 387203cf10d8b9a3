"""A local, durable FIFO of event batches: where the SDK puts what it cannot deliver yet.

When the database (SDK) or the exporter (HTTP client) stays unreachable, the delivery loop
appends each batch it could not deliver to a :class:`Spool` and replays the spool, oldest record
first, once the target answers again. A record is durable when :meth:`Spool.append` returns: it
was written and ``fdatasync``'d. Replaying is idempotent because every event carries its event
id, so a record replayed twice (e.g. after a crash between delivery and :meth:`Spool.ack`) is
stored once.

On-disk format (version 1)
--------------------------
A spool is one directory, owned by exactly one process at a time::

    LOCK                      flock(2)-ed by the owning process (released by the kernel on death)
    META                      JSON {"format": 1, "identity": "<what the events belong to>"}
    seg-0000000000000001.hms  segment files, replayed in name order
    state-<name>.json         small JSON documents of the owner (e.g. the rule-version cache)

A segment starts with the 8-byte magic ``b"HMSPOOL1"`` followed by records::

    +----------------+----------------+----------------+----------------------+
    | length  u32 BE | count   u32 BE | crc32   u32 BE | payload (length B)   |
    +----------------+----------------+----------------+----------------------+

``count`` is the number of events in the payload; ``crc32`` (zlib) covers the first eight header
bytes and the payload. The payload is opaque to the spool (the SDK writes compact JSON). A record
is written with one ``write(2)``; a crash can leave a *torn* record at the end of the last
segment: a short header, a length running past the end of the file, a zero header, or a CRC
mismatch. Reading stops at the first such record of a segment: it and anything after it in that
segment are skipped (counted in :attr:`Spool.torn_segments` and logged), never half-replayed.
After a restart, appends always go to a new segment, so a torn tail is never written after.

Bounds: the bytes of all segment files (consumed or not) never exceed ``max_bytes``;
:meth:`Spool.append` raises :class:`SpoolFull` instead. A segment is deleted as soon as every
record in it was acknowledged; when everything is acknowledged the directory holds no segment.

Why one module of ~500 lines: the on-disk format, its locking and its crash recovery are one
contract (fsync order, torn records) that must be read together.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from heurmetrics.errors import HeurmetricsError

log = logging.getLogger(__name__)

MAGIC: Final = b"HMSPOOL1"
FORMAT_VERSION: Final = 1
_HEADER: Final = struct.Struct(">III")
#: A record longer than this is treated as corruption (a torn length field), not allocated.
MAX_RECORD_BYTES: Final = 256 * 1024 * 1024
DEFAULT_MAX_BYTES: Final = 1024 * 1024 * 1024
DEFAULT_SEGMENT_BYTES: Final = 8 * 1024 * 1024
_SEGMENT_GLOB: Final = "seg-*.hms"
#: Bytes a record costs beyond its payload when it is alone in a segment (magic + header).
RECORD_OVERHEAD_BYTES: Final = len(MAGIC) + _HEADER.size


class SpoolError(HeurmetricsError):
    """Base class of the spool's own errors."""


class SpoolFull(SpoolError):
    """Appending would exceed the spool's ``max_bytes``; nothing was written."""


class SpoolLocked(SpoolError):
    """Another live process (or another object in this one) owns the spool directory."""


class SpoolMismatch(SpoolError):
    """The spool directory holds events of another database or exporter."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One record read from the spool: ``count`` events in ``payload``, at ``segment``:``offset``."""

    segment: int
    offset: int
    end: int
    count: int
    payload: bytes


@dataclass
class _Segment:
    seq: int
    path: Path
    end: int  # bytes of valid records (plus the magic); the reader never passes it
    events: int  # unacknowledged events in the segment
    size: int  # bytes on disk (end plus any torn tail)


def _segment_name(seq: int) -> str:
    return f"seg-{seq:016d}.hms"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _crc(length: int, count: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack(">II", length, count)))


def encode_record(payload: bytes, count: int) -> bytes:
    """The bytes of one record (header + payload), as written to a segment."""
    return _HEADER.pack(len(payload), count, _crc(len(payload), count, payload)) + payload


def iter_records(data: bytes, start: int = len(MAGIC)) -> Iterator[tuple[int, int, int, bytes]]:
    """Valid records of a segment's bytes as ``(offset, end, count, payload)``, from ``start``.

    Stops silently at the first torn or corrupt record; the caller compares the last ``end``
    with ``len(data)`` to know whether a tail was skipped.
    """
    pos = start
    size = len(data)
    while pos + _HEADER.size <= size:
        length, count, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length == 0 or count == 0 or length > MAX_RECORD_BYTES or end > size:
            return
        payload = data[pos + _HEADER.size : end]
        if _crc(length, count, payload) != crc:
            return
        yield pos, end, count, payload
        pos = end


def _extent(data: bytes) -> tuple[int, int, int]:
    """``(end of the last valid record, records, events)`` of a segment's bytes (after the magic)."""
    end, records, events = len(MAGIC), 0, 0
    for _pos, record_end, count, _payload in iter_records(data):
        end = record_end
        records += 1
        events += count
    return end, records, events


def scan(directory: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Read-only look at a spool: ``(records, events, torn_segments)`` (no lock taken).

    For tests and tooling: it shows what a new owner would replay.
    """
    records = events = torn = 0
    for path in sorted(Path(directory).glob(_SEGMENT_GLOB)):
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            torn += 1
            continue
        end, n_records, n_events = _extent(data)
        records += n_records
        events += n_events
        if end != len(data):
            torn += 1
    return records, events, torn


class Spool:
    """A durable, size-bounded FIFO of records in ``directory`` (see the module doc).

    Thread-safe. ``identity`` names what the events belong to (a database, an exporter URL): a
    directory created for another identity is refused with :class:`SpoolMismatch`. Opening takes
    an exclusive ``flock`` on ``LOCK`` (:class:`SpoolLocked` if another owner holds it) and scans
    the existing segments, so :attr:`events` counts what a previous owner left to replay.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int | None = None,
        identity: str | None = None,
    ) -> None:
        if max_bytes <= len(MAGIC) + _HEADER.size:
            raise ValueError(f"spool max_bytes must be larger than {len(MAGIC) + _HEADER.size}, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(DEFAULT_SEGMENT_BYTES, max_bytes // 8))
        self.torn_segments = 0
        self._lock = threading.RLock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = self._take_lock()
        except OSError as exc:  # read-only file system, no permission, a file in the way
            raise SpoolError(
                f"spool directory {self.directory} is not usable ({exc.strerror or exc}): give the spool a "
                "writable directory of its own"
            ) from None
        try:
            self._check_identity(identity)
            self._segments: dict[int, _Segment] = {}
            self._scan()
            self._events = sum(seg.events for seg in self._segments.values())
            self._bytes = sum(seg.size for seg in self._segments.values())
        except OSError as exc:
            os.close(self._lock_fd)
            raise SpoolError(
                f"spool directory {self.directory} is not usable ({exc.strerror or exc}): give the spool a "
                "writable directory of its own"
            ) from None
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._head_seq = -1
        self._read_pos = 0  # next unread offset in the head segment
        self._write_fd: int | None = None  # appends always go to a fresh segment after open
        self._write_seq = max(self._segments, default=0)
        self._closed = False
        self._drop_consumed()  # leading segments without a single valid record

    # --- opening ------------------------------------------------------------------------------
    def _take_lock(self) -> int:
        import fcntl

        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SpoolLocked(
                    f"spool {self.directory} is in use by another process (or another Recorder in this one): "
                    "give every runner process its own spool_dir"
                ) from None
            raise
        return fd

    def _check_identity(self, identity: str | None) -> None:
        meta = self.directory / "META"
        if meta.exists():
            try:
                stored = json.loads(meta.read_text())
            except (OSError, ValueError) as exc:
                raise SpoolError(f"spool {self.directory}: unreadable META ({exc}); move the directory aside") from None
            if stored.get("format") != FORMAT_VERSION:
                raise SpoolError(
                    f"spool {self.directory} has format {stored.get('format')!r}, expected {FORMAT_VERSION}"
                )
            if identity is not None and stored.get("identity") not in (None, identity):
                raise SpoolMismatch(
                    f"spool {self.directory} holds events for {stored.get('identity')!r}, not {identity!r}: "
                    "use one spool_dir per database (or exporter) and runner"
                )
            if stored.get("identity") is not None or identity is None:
                return
        self._write_json(meta, {"format": FORMAT_VERSION, "identity": identity})

    def _scan(self) -> None:
        for path in sorted(self.directory.glob(_SEGMENT_GLOB)):
            try:
                seq = int(path.name[4:-4])
            except ValueError:
                continue
            data = path.read_bytes()
            if not data.startswith(MAGIC):
                self.torn_segments += 1
                log.warning("spool segment %s has no valid header; skipping it", path)
                self._segments[seq] = _Segment(seq, path, len(MAGIC), 0, len(data))
                continue
            end, _records, events = _extent(data)
            if end != len(data):
                self.torn_segments += 1
                log.warning(
                    "spool segment %s: torn or corrupt record at byte %d (of %d); the rest of the segment is skipped",
                    path,
                    end,
                    len(data),
                )
            self._segments[seq] = _Segment(seq, path, end, events, len(data))

    # --- state ------------------------------------------------------------------------------
    @property
    def events(self) -> int:
        """Events appended and not yet acknowledged (what a replay would deliver)."""
        return self._events

    @property
    def size_bytes(self) -> int:
        """Bytes of all segment files on disk (acknowledged records included until deleted)."""
        return self._bytes

    def __len__(self) -> int:
        return self.events

    def can_ever_hold(self, payload_bytes: int) -> bool:
        """Whether a record of ``payload_bytes`` fits in this spool at all (when it is empty)."""
        return payload_bytes + RECORD_OVERHEAD_BYTES <= self.max_bytes

    # --- appending --------------------------------------------------------------------------
    def append(self, payload: bytes, count: int) -> None:
        """Append one record of ``count`` events; durable (fdatasync'd) when this returns.

        Raises :class:`SpoolFull` when it would not fit in ``max_bytes`` and :class:`OSError`
        (e.g. ENOSPC) when the disk refuses it; in both cases nothing of it remains in the spool.
        """
        if count <= 0:
            raise ValueError("a spool record holds at least one event")
        record = encode_record(payload, count)
        with self._lock:
            self._check_open()
            seg = self._segments.get(self._write_seq) if self._write_fd is not None else None
            rotate = seg is None or (seg.size > len(MAGIC) and seg.size + len(record) > self.segment_bytes)
            extra = len(MAGIC) if rotate else 0
            if self._bytes + extra + len(record) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.directory} is full ({self._bytes} of {self.max_bytes} bytes); "
                    f"a record of {len(record)} bytes does not fit"
                )
            if rotate:
                seg = self._new_segment()
            assert seg is not None and self._write_fd is not None
            try:
                written = os.write(self._write_fd, record)
                if written != len(record):
                    raise OSError(errno.EIO, f"short write to {seg.path} ({written} of {len(record)} bytes)")
                os.fdatasync(self._write_fd)
            except OSError:
                self._undo_append(seg)
                raise
            seg.end += len(record)
            seg.size = seg.end
            seg.events += count
            self._events += count
            self._bytes += len(record)

    def _new_segment(self) -> _Segment:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self._write_seq += 1
        path = self.directory / _segment_name(self._write_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            os.write(fd, MAGIC)
            os.fdatasync(fd)
            _fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._write_fd = fd
        seg = _Segment(self._write_seq, path, len(MAGIC), 0, len(MAGIC))
        self._segments[self._write_seq] = seg
        self._bytes += len(MAGIC)
        return seg

    def _undo_append(self, seg: _Segment) -> None:
        """Cut a failed append back off; if even that fails, seal the segment (reads stop at ``end``)."""
        assert self._write_fd is not None
        try:
            os.ftruncate(self._write_fd, seg.end)
        except OSError:
            log.warning("spool segment %s: could not truncate a failed append; sealing the segment", seg.path)
            os.close(self._write_fd)
            self._write_fd = None
            try:
                size = seg.path.stat().st_size
            except OSError:
                return
            self._bytes += size - seg.size
            seg.size = size

    # --- replaying --------------------------------------------------------------------------
    def peek(self, max_events: int | None = None) -> list[SpoolRecord]:
        """The oldest unacknowledged records, in order, without removing them.

        Returns at least one record when any is pending, and more while their events add up to at
        most ``max_events``. Empty when nothing is pending.
        """
        out: list[SpoolRecord] = []
        total = 0
        with self._lock:
            self._check_open()
            for seq in sorted(self._segments):
                seg = self._segments[seq]
                pos = self._read_pos if seq == self._head_seq else len(MAGIC)
                if pos >= seg.end:
                    continue
                with seg.path.open("rb") as f:
                    f.seek(pos)
                    while pos < seg.end:
                        length, count, crc = _HEADER.unpack(f.read(_HEADER.size))
                        if out and max_events is not None and total + count > max_events:
                            return out
                        end = pos + _HEADER.size + length
                        payload = f.read(length)
                        if end > seg.end or _crc(length, count, payload) != crc:  # changed on disk since
                            self._truncate_segment(seg, pos, sum(r.count for r in out if r.segment == seq))
                            break
                        out.append(SpoolRecord(seq, pos, end, count, payload))
                        total += count
                        pos = end
        return out

    def _truncate_segment(self, seg: _Segment, pos: int, readable: int) -> None:
        """Stop reading ``seg`` at ``pos``: the record there changed on disk since it was verified."""
        self.torn_segments += 1
        skipped = seg.events - readable
        log.error(
            "spool segment %s: corrupt record at byte %d; skipping the rest of the segment (%d events)",
            seg.path,
            pos,
            skipped,
        )
        seg.end = pos
        seg.events -= skipped
        self._events -= skipped

    def ack(self, records: list[SpoolRecord]) -> None:
        """Acknowledge records returned by :meth:`peek` (delivered, or given up); oldest first."""
        with self._lock:
            self._check_open()
            for rec in records:
                seg = self._segments.get(rec.segment)
                if seg is None:
                    continue
                self._head_seq = rec.segment
                self._read_pos = rec.end
                seg.events -= rec.count
                self._events -= rec.count
            self._drop_consumed()

    def _drop_consumed(self) -> None:
        for seq in sorted(self._segments):
            seg = self._segments[seq]
            consumed = seq < self._head_seq or (seq == self._head_seq and self._read_pos >= seg.end)
            if not consumed and seg.end > len(MAGIC):
                break
            if seq == self._write_seq and self._write_fd is not None:
                if not consumed:
                    break
                os.close(self._write_fd)  # the next append opens a fresh segment
                self._write_fd = None
            with contextlib.suppress(FileNotFoundError):
                seg.path.unlink()
            del self._segments[seq]
            self._bytes -= seg.size
            self._events -= seg.events  # torn or skipped remainders (normally 0)

    # --- small state documents ------------------------------------------------------------------
    def load_state(self, name: str) -> Any:
        """The JSON document ``name`` saved by :meth:`save_state` (None when absent or unreadable)."""
        path = self.directory / f"state-{name}.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("spool state %s unreadable (%s); ignoring it", path, exc)
            return None

    def save_state(self, name: str, document: Any) -> None:
        """Replace the JSON document ``name`` atomically (write, fsync, rename, fsync dir)."""
        self._write_json(self.directory / f"state-{name}.json", document)

    def _write_json(self, path: Path, document: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as f:
            json.dump(document, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.directory)

    # --- closing ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.directory} is closed")

    def close(self) -> None:
        """Close the files and release the directory lock (the records stay for the next owner)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
            os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
