"""Content digests of the raw executions a retention run drops: which algorithm, and how it is computed.

The digest is stored in the chained retention event; its prefix names the algorithm
(``docs/storage.md`` shows how an auditor recomputes each one from an export):

- ``mh64:`` + 16 hex digits (:data:`FAST`, the default): ``Σ hash_record_extended(row, 0) mod 2^64``
  over the rows' :data:`DIGEST_COLUMNS` -- an order-independent multiset checksum computed in the
  same parallel scan as the counts per rule version. It detects accidental differences (a changed,
  missing or extra row) except with probability ~2^-64, but it is **not** collision-resistant:
  someone choosing rows can build a different export with the same checksum.
- ``sha256:`` + 64 hex digits (``--digest sha256``, auditor-grade): the sha256 of the canonical
  export -- the text ``COPY`` of :data:`DIGEST_COLUMNS` ordered by the key ``(started_at,
  event_id)`` under :data:`TEXT_SETTINGS`. The order is canonical (the key is unique), so any export
  re-sorted by the key gives the same bytes; a different set of rows with the same digest would be
  a sha256 collision. The canonical export file's own ``sha256sum`` is the digest. It costs an
  ordered read and a serial hash (about 3-5x the checksum; ``docs/benchmarks.md``).
- no prefix, 64 hex digits (events chained before the prefixes): the same sha256 computation
  (session time zone UTC, the other settings at their defaults).

Measured and not chosen (``docs/benchmarks.md``): the sha256 of the sorted per-row sha256s
(order-independent, collision-resistant, but twice the cost of the ordered export: a sha256 call
and a sort key per row), and a sum of per-row sha256s in four 64-bit lanes (slower still in SQL,
and an additive hash of 256 bits falls to Wagner's generalised-birthday attack: ~2^32 work to forge
a matching set of replacement rows, so it would only look auditor-grade).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection

#: The columns every digest covers, in this order (the export an auditor checks has them).
DIGEST_COLUMNS = (
    "started_at", "event_id", "duration_seconds", "signal", "confidence", "rule_version_id", "status", "mode",
    "outcome", "error_type", "backtest_run_id",
)
#: ``--digest`` values; each is also the prefix of the digest it stores.
ALGORITHMS = ("mh64", "sha256")
FAST = "mh64"
#: The text form the sha256 digest hashes depends on these session settings: pinned.
TEXT_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "extra_float_digits": "1"}
#: The canonical order of the sha256 digest: the partitions' unique key.
ORDER_KEY = ("started_at", "event_id")


class DigestError(ValueError):
    """An unknown digest algorithm."""


def check(algorithm: str) -> str:
    """``algorithm`` if it is one of :data:`ALGORITHMS`, else a one-line :class:`DigestError`."""
    if algorithm not in ALGORITHMS:
        raise DigestError(f"--digest {algorithm!r}: expected one of {', '.join(ALGORITHMS)} "
                          "(mh64: fast checksum; sha256: collision-resistant, for auditors)")
    return algorithm


def algorithm_of(digest: str) -> str:
    """The format a stored digest was made with: ``mh64``, ``sha256`` or ``sha256-legacy`` (no prefix)."""
    prefix, sep, _ = digest.partition(":")
    if sep and prefix in ALGORITHMS:
        return prefix
    if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return "sha256-legacy"
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


def canonical_export_sql(source: str) -> str:
    """The canonical export of ``source`` whose text ``COPY`` (under :data:`TEXT_SETTINGS`) the sha256 digest hashes."""
    return f"SELECT {_columns()} FROM {source} ORDER BY {', '.join(ORDER_KEY)}"


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
    return counts, f"sha256:{sha256_of_copy(conn, f'COPY ({canonical_export_sql(source)}) TO STDOUT')}"


def sha256_of_copy(conn: Connection, statement: str) -> str:
    """Hex sha256 of the bytes ``statement`` (a ``COPY … TO STDOUT``) streams, read through the driver.

    A driver error becomes the matching SQLAlchemy error, so callers report it as any other.
    """
    import psycopg  # only PostgreSQL reaches here

    h = hashlib.sha256()
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            for block in copy:  # exactly the bytes of the canonical export file
                h.update(block)
    except psycopg.Error as exc:
        raise sa_exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    return h.hexdigest()
