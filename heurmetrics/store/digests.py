"""Content digests of the raw executions a retention run drops: which algorithm, and how it is computed.

The digest is stored in the chained retention event; its prefix names the algorithm
(``docs/storage.md`` shows how an auditor recomputes each one from an export):

- ``mh64:`` + 16 hex digits (:data:`FAST`, the default): ``Σ hash_record_extended(row, 0) mod 2^64``
  over the rows' :data:`DIGEST_COLUMNS` -- an order-independent multiset checksum computed in the
  same parallel scan as the counts per rule version. It detects accidental differences (a changed,
  missing or extra row) except with probability ~2^-64, but it is **not** collision-resistant:
  someone choosing rows can build a different export with the same checksum.
- ``sha256set:`` + 64 hex digits (``--digest sha256``, auditor-grade): the sha256 of the sorted
  list of per-row sha256s, i.e. ``sha256sum`` of the lines ``hex(sha256(row text))`` in ascending
  order. Order-independent (the sort canonicalises the multiset) and collision-resistant: two
  different multisets of rows with the same digest give a sha256 collision. It needs a sort of the
  per-row hashes, so it costs more than the checksum (``docs/benchmarks.md``).
- no prefix, 64 hex digits (events chained before these formats): the sha256 of the partition's
  text ``COPY`` ordered by ``started_at, event_id`` (session time zone UTC).

Not chosen: a sum of per-row sha256s in 64-bit lanes (256 bits or so). It is as cheap as ``mh64``
but additive hashes of that width fall to Wagner's generalised-birthday attack (forging a matching
set of replacement rows takes ~2^32 work, not 2^128), so it would only look auditor-grade.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.engine import Connection

#: The columns every digest covers, in this order (the export an auditor checks has them).
DIGEST_COLUMNS = (
    "started_at", "event_id", "duration_seconds", "signal", "confidence", "rule_version_id", "status", "mode",
    "outcome", "error_type", "backtest_run_id",
)
#: ``--digest`` value → the prefix of the digest it stores.
ALGORITHMS = {"mh64": "mh64", "sha256": "sha256set"}
FAST = "mh64"
#: The text form of a row hashed by ``sha256set`` depends on these session settings: pinned.
TEXT_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "extra_float_digits": "1"}


class DigestError(ValueError):
    """An unknown digest algorithm."""


def check(algorithm: str) -> str:
    """``algorithm`` if it is one of :data:`ALGORITHMS`, else a one-line :class:`DigestError`."""
    if algorithm not in ALGORITHMS:
        raise DigestError(f"--digest {algorithm!r}: expected one of {', '.join(ALGORITHMS)} "
                          "(mh64: fast checksum; sha256: collision-resistant, for auditors)")
    return algorithm


def algorithm_of(digest: str) -> str:
    """The format a stored digest was made with: ``mh64``, ``sha256set`` or ``sha256-copy`` (legacy)."""
    prefix, sep, _ = digest.partition(":")
    if sep and prefix in ALGORITHMS.values():
        return prefix
    if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return "sha256-copy"
    raise DigestError(f"unknown content digest format {digest[:24]!r}")


def _columns() -> str:
    return ", ".join(DIGEST_COLUMNS)


def mh64_scan_sql(source: str) -> str:
    """Rows per rule version and the 64-bit hash sum of ``source`` (a partition or an export)."""
    return (
        "SELECT t.rule_version_id, count(*), sum(hash_record_extended(t, 0)) "
        f"FROM (SELECT {_columns()} FROM {source}) AS t GROUP BY t.rule_version_id"
    )


def mh64_of(sums: list[int]) -> str:
    """The ``mh64`` digest from per-group hash sums (any grouping: the sum is order-independent)."""
    return f"mh64:{sum(sums) % 2**64:016x}"


def sha256_leaves_sql(source: str) -> str:
    """One line per row of ``source``: hex sha256 of the row's text form, ascending (under :data:`TEXT_SETTINGS`)."""
    return (
        "SELECT encode(d, 'hex') FROM (SELECT sha256(convert_to(t::text, 'UTF8')) AS d "
        f"FROM (SELECT {_columns()} FROM {source}) AS t) AS leaves ORDER BY d"
    )


def pin_text_settings(conn: Connection) -> None:
    """Pin the settings the row text depends on, for the current transaction."""
    for name, value in TEXT_SETTINGS.items():
        conn.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})


def scan(conn: Connection, source: str, algorithm: str = FAST) -> tuple[dict[str, int], str]:
    """Rows per rule version (text keys) and the ``algorithm`` digest of ``source`` (PostgreSQL)."""
    check(algorithm)
    if algorithm == "mh64":
        rows = conn.execute(text(mh64_scan_sql(source))).all()
        return {str(vid): int(n) for vid, n, _ in rows if int(n)}, mh64_of([int(h) for _, _, h in rows])
    counts = {
        str(vid): int(n)
        for vid, n in conn.execute(text(f"SELECT rule_version_id, count(*) FROM {source} GROUP BY 1")).all()
        if int(n)
    }
    pin_text_settings(conn)
    # A sort of 32-byte hashes: give it memory so a month does not spill to disk in small runs.
    conn.execute(text("SELECT set_config('work_mem', '256MB', true)"))
    h = hashlib.sha256()
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY ({sha256_leaves_sql(source)}) TO STDOUT") as copy:
        for block in copy:  # exactly the bytes `sha256sum` reads: one "hex\n" line per row
            h.update(block)
    return counts, f"sha256set:{h.hexdigest()}"
