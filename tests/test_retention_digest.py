"""Retention's content digest choice: ``mh64`` (fast checksum) or ``sha256`` (collision-resistant).

An auditor recomputes the ``sha256`` digest from an export in any row order exactly as
docs/storage.md says (load the CSV into the documented table, write the canonical export ordered by
the key, sha256 it); the chain holds either format, and ``audit verify`` passes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from typer.testing import CliRunner

from heurmetrics.audit import chain
from heurmetrics.cli import app
from heurmetrics.store import digests, migrations, retention
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.sql_store import SqlStore
from tests.test_storage import EXPORT_TABLE, MONTHS, NOW, _digest_of_export, _events, _export


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlStore]:
    engine = create_store_engine(postgres_url)
    migrations.upgrade(engine)
    engine.dispose()
    s = SqlStore.open(postgres_url)
    yield s
    s.close()


def _sha256_of_export(url: str, lines: list[str]) -> str:
    """The documented recomputation: load the CSV (any order), write the canonical export, sha256 it."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    canonical = bytearray()
    # What `PGOPTIONS='-c TimeZone=UTC -c DateStyle=ISO,YMD -c extra_float_digits=1' psql` sets.
    with psycopg.connect(libpq, options="-c TimeZone=UTC -c DateStyle=ISO,YMD -c extra_float_digits=1") as conn:
        conn.execute(EXPORT_TABLE.format(name="pg_temp.export_check"))
        with conn.cursor().copy("COPY pg_temp.export_check FROM STDIN (FORMAT CSV)") as copy:
            copy.write("\n".join(lines) + "\n")
        query = (f"SELECT {', '.join(digests.DIGEST_COLUMNS)} FROM pg_temp.export_check "
                 "ORDER BY started_at, event_id")
        with conn.cursor().copy(f"COPY ({query}) TO STDOUT") as copy:  # the canonical export file's bytes
            for block in copy:
                canonical += block
    return f"sha256:{hashlib.sha256(canonical).hexdigest()}"


def _policy_through(month_index: int) -> retention.Policy:
    """Live rows kept until just after the end of MONTHS[month_index]: that month and older are due."""
    return retention.parse_policy(f"live={(NOW - MONTHS[month_index + 1]).days}d")


def test_sha256_digest_is_recomputed_from_an_export_in_any_order(pg_store: SqlStore) -> None:
    store = pg_store
    rvs = [store.register_rule_version("range_bias", f"7.{i}.0", params={}, source="s", created_by="t")[0]
           for i in range(2)]
    store.insert_executions(_events(rvs, 20))
    oldest = f"heuristic_executions_p{MONTHS[0]:%Y_%m}"
    url = store.engine.url.render_as_string(hide_password=False)
    exported = _export(url, oldest)
    expected = _sha256_of_export(url, exported)
    assert digests.algorithm_of(expected) == "sha256" and len(expected) == len("sha256:") + 64
    # Order-independent; any missing, changed or duplicated row changes it.
    assert _sha256_of_export(url, exported[::-1]) == expected
    assert _sha256_of_export(url, exported[7:] + exported[:7]) == expected
    assert _sha256_of_export(url, exported[1:]) != expected
    changed = exported[0].replace(",1,", ",2,", 1)
    assert changed != exported[0] and _sha256_of_export(url, [changed, *exported[1:]]) != expected
    assert _sha256_of_export(url, [exported[0], *exported[1:], exported[1]]) != expected

    [event] = retention.apply(store.engine, _policy_through(0), actor="auditor", now=NOW, digest="sha256")

    assert event.partition_name == oldest and event.row_count == 20 and event.content_digest == expected
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT content_digest FROM retention_events")).scalar_one()
    assert stored == expected
    report = chain.verify(store)
    assert report.ok and report.retention_events == 1 and report.head.row_hash == event.row_hash


def test_both_formats_and_the_legacy_one_stay_readable_in_one_chain(pg_store: SqlStore) -> None:
    store = pg_store
    rv = store.register_rule_version("range_bias", "8.0.0", params={}, source="s", created_by="t")[0]
    store.insert_executions(_events([rv], 6))
    url = store.engine.url.render_as_string(hide_password=False)
    first_name, second = (f"heuristic_executions_p{m:%Y_%m}" for m in MONTHS[:2])
    mh64_expected = _digest_of_export(url, _export(url, second))
    # What events chained before the prefixes hold (the earlier code: session time zone UTC only).
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, options="-c TimeZone=UTC") as conn, conn.cursor().copy(
        f"COPY (SELECT {', '.join(digests.DIGEST_COLUMNS)} FROM {first_name} ORDER BY started_at, event_id) TO STDOUT"
    ) as copy:
        legacy = hashlib.sha256(b"".join(bytes(block) for block in copy)).hexdigest()
    [first] = retention.apply(store.engine, _policy_through(0), actor="ops", now=NOW, digest="sha256")
    [then] = retention.apply(store.engine, _policy_through(1), actor="ops", now=NOW)  # default: mh64
    assert digests.algorithm_of(first.content_digest) == "sha256" and first.content_digest == f"sha256:{legacy}"
    assert then.content_digest == mh64_expected and digests.algorithm_of(then.content_digest) == "mh64"
    assert digests.algorithm_of(legacy) == "sha256-legacy"  # same recipe, no prefix
    with pytest.raises(digests.DigestError, match="unknown content digest format"):
        digests.algorithm_of("md5:abc")
    report = chain.verify(store)
    assert report.ok and report.retention_events == 2


def test_bad_digest_is_one_line_exit_2(pg_store: SqlStore) -> None:
    store = pg_store
    rv = store.register_rule_version("range_bias", "9.0.0", params={}, source="s", created_by="t")[0]
    store.insert_executions(_events([rv], 2))
    url = store.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    bad = runner.invoke(app, ["db", "retention", "--digest", "md5", "--keep", "live=1d", "--database-url", url])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines() == [
        "error: --digest 'md5': expected one of mh64, sha256 (mh64: fast checksum; sha256: collision-resistant, "
        "for auditors)"
    ]
    assert chain.verify(store).retention_events == 0  # nothing dropped
    with pytest.raises(digests.DigestError, match="expected one of mh64, sha256"):
        retention.apply(store.engine, _policy_through(0), actor="ops", now=NOW, digest="sha512")
    # A driver error during the streamed COPY surfaces as SQLAlchemy's (reported in one line by the CLI).
    with store.engine.connect() as conn, pytest.raises(ProgrammingError, match="no_such_table"):
        digests.sha256_of_copy(conn, "COPY (SELECT * FROM no_such_table) TO STDOUT")
    done = runner.invoke(app, ["db", "retention", "--digest", "sha256", "--keep", f"live={(NOW - MONTHS[1]).days}d",
                               "--database-url", url, "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert out["digest"] == "sha256" and out["events"]
    assert all(e["content_digest"].startswith("sha256:") for e in out["events"])
    assert chain.verify(store).ok
