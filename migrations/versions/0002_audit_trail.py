"""Audit trail: version lineage, lifecycle events, hash chain, append-only history tables.

- ``rule_versions`` gains ``parent_id`` (nullable FK to ``rule_versions``), ``code_ref`` and the
  hash-chain columns ``chain_position``, ``prev_hash``, ``row_hash``.
- New table ``rule_version_events`` (proposed / approved / activated / retired / rolled_back).
- Existing versions are backfilled onto the chain in id order, each followed by a ``proposed``
  event (actor = its author, time = its registration time, ``details.backfilled`` true).
- Triggers make the history tables append-only: UPDATE and DELETE (and on PostgreSQL TRUNCATE)
  of ``rules``, ``rule_versions``, ``rule_version_events``, ``heuristic_executions``,
  ``backtest_runs``, ``backtest_folds`` and ``equity_points`` raise an error naming the table.
  DROP is not blocked (dropping a schema stays possible for operators).

Note for later migrations: on SQLite, a batch migration that recreates one of these tables drops
its triggers; recreate them (see ``_sqlite_triggers``). A migration that must rewrite history rows
has to disable the triggers explicitly, which should make anyone think twice.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = (
    "rules", "rule_versions", "rule_version_events", "heuristic_executions", "backtest_runs", "backtest_folds",
    "equity_points",
)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"

    # 1. Lineage and chain columns. SQLite adds NOT NULL columns only with a default; the default
    #    is never used (every insert sets the column) and verify would flag an empty hash.
    if sqlite:
        op.execute(
            "ALTER TABLE rule_versions ADD COLUMN parent_id INTEGER "
            "CONSTRAINT fk_rule_versions_parent_id_rule_versions REFERENCES rule_versions (id)"
        )
        op.execute("ALTER TABLE rule_versions ADD COLUMN code_ref VARCHAR(256)")
        op.execute("ALTER TABLE rule_versions ADD COLUMN chain_position INTEGER NOT NULL DEFAULT 0")
        op.execute("ALTER TABLE rule_versions ADD COLUMN prev_hash VARCHAR(64) NOT NULL DEFAULT ''")
        op.execute("ALTER TABLE rule_versions ADD COLUMN row_hash VARCHAR(64) NOT NULL DEFAULT ''")
    else:
        op.add_column("rule_versions", sa.Column("parent_id", sa.Integer(), nullable=True))
        op.add_column("rule_versions", sa.Column("code_ref", sa.String(length=256), nullable=True))
        op.add_column("rule_versions", sa.Column("chain_position", sa.Integer(), nullable=True))
        op.add_column("rule_versions", sa.Column("prev_hash", sa.String(length=64), nullable=True))
        op.add_column("rule_versions", sa.Column("row_hash", sa.String(length=64), nullable=True))
        op.create_foreign_key(
            op.f("fk_rule_versions_parent_id_rule_versions"), "rule_versions", "rule_versions", ["parent_id"], ["id"]
        )

    # 2. Lifecycle events.
    op.create_table(
        "rule_version_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_version_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("env", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("chain_position", sa.Integer(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "event IN ('proposed', 'approved', 'activated', 'retired', 'rolled_back')",
            name=op.f("ck_rule_version_events_event"),
        ),
        sa.CheckConstraint(
            "(env IS NOT NULL) = (event IN ('activated', 'rolled_back'))",
            name=op.f("ck_rule_version_events_env_when_deployed"),
        ),
        sa.ForeignKeyConstraint(
            ["rule_version_id"], ["rule_versions.id"], name=op.f("fk_rule_version_events_rule_version_id_rule_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_version_events")),
    )
    op.create_index(
        op.f("ix_rule_version_events_rule_version_id"), "rule_version_events", ["rule_version_id"], unique=False
    )
    op.create_index(
        "ix_rule_version_events_chain_position", "rule_version_events", ["chain_position"], unique=True
    )

    # 3. Backfill existing versions onto the chain (before the triggers forbid the UPDATE).
    _backfill(bind)
    if not sqlite:
        for column in ("chain_position", "prev_hash", "row_hash"):
            op.alter_column("rule_versions", column, nullable=False)
    op.create_index("ix_rule_versions_chain_position", "rule_versions", ["chain_position"], unique=True)

    # 4. Append-only, in the database itself.
    for statement in _sqlite_triggers() if sqlite else _postgres_triggers():
        op.execute(statement)


def _backfill(bind: sa.engine.Connection) -> None:
    # The record layout and hash are those of heurmetrics.audit.chain (format 1).
    from heurmetrics.audit import chain
    from heurmetrics.store.schema import JSONType, UTCDateTime

    versions = sa.table(
        "rule_versions", sa.column("id", sa.Integer()), sa.column("rule_id", sa.Integer()),
        sa.column("version", sa.String()), sa.column("content_hash", sa.String()),
        sa.column("created_at", UTCDateTime()), sa.column("created_by", sa.String()),
        sa.column("description", sa.Text()), sa.column("chain_position", sa.Integer()),
        sa.column("prev_hash", sa.String()), sa.column("row_hash", sa.String()),
    )
    rules = sa.table("rules", sa.column("id", sa.Integer()), sa.column("name", sa.String()))
    events = sa.table(
        "rule_version_events", sa.column("id", sa.Integer()), sa.column("rule_version_id", sa.Integer()),
        sa.column("event", sa.String()), sa.column("env", sa.String()), sa.column("actor", sa.String()),
        sa.column("reason", sa.Text()), sa.column("occurred_at", UTCDateTime()), sa.column("details", JSONType),
        sa.column("chain_position", sa.Integer()), sa.column("prev_hash", sa.String()),
        sa.column("row_hash", sa.String()),
    )
    rows = bind.execute(
        sa.select(versions.c.id, versions.c.rule_id, rules.c.name, versions.c.version, versions.c.content_hash,
                  versions.c.created_at, versions.c.created_by, versions.c.description)
        .join(rules, rules.c.id == versions.c.rule_id)
        .order_by(versions.c.id)
    ).all()
    prev, position, event_id = chain.GENESIS_HASH, 0, 0
    for r in rows:
        position += 1
        record = chain.version_record(
            position=position, id=r.id, rule_id=r.rule_id, rule=r.name, version=r.version,
            content_hash=r.content_hash, parent_id=None, code_ref=None, created_at=r.created_at,
            created_by=r.created_by, description=r.description,
        )
        row_hash = chain.link_hash(prev, record)
        bind.execute(
            versions.update().where(versions.c.id == r.id)
            .values(chain_position=position, prev_hash=prev, row_hash=row_hash)
        )
        prev = row_hash
        position += 1
        event_id += 1
        details = {"content_hash": r.content_hash, "backfilled": True}
        reason = r.description or "registered"
        record = chain.event_record(
            position=position, id=event_id, rule_version_id=r.id, rule=r.name, version=r.version, event="proposed",
            env=None, actor=r.created_by, reason=reason, occurred_at=r.created_at, details=details,
        )
        row_hash = chain.link_hash(prev, record)
        bind.execute(events.insert().values(
            id=event_id, rule_version_id=r.id, event="proposed", env=None, actor=r.created_by, reason=reason,
            occurred_at=r.created_at, details=details, chain_position=position, prev_hash=prev, row_hash=row_hash,
        ))
        prev = row_hash
    if event_id and bind.dialect.name == "postgresql":
        bind.execute(sa.text("SELECT setval(pg_get_serial_sequence('rule_version_events', 'id'), :n)"), {"n": event_id})


def _postgres_triggers() -> list[str]:
    statements = [
        """
        CREATE FUNCTION heurmetrics_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'heurmetrics: table % is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation',
                      HINT = 'history rows are facts; they are never updated or deleted';
        END
        $$
        """
    ]
    for table in APPEND_ONLY_TABLES:
        statements.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()"
        )
        statements.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION heurmetrics_append_only()"
        )
    return statements


def _sqlite_triggers() -> list[str]:
    # SQLite has no TRUNCATE: "DELETE FROM t" without WHERE is the same and fires the DELETE trigger
    # (the truncate optimisation is disabled for tables with triggers).
    return [
        f"CREATE TRIGGER {table}_append_only_{op_name.lower()} BEFORE {op_name} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'heurmetrics: table {table} is append-only: {op_name} is not allowed'); END"
        for table in APPEND_ONLY_TABLES
        for op_name in ("UPDATE", "DELETE")
    ]


def downgrade() -> None:
    # Forward-only: heurmetrics never migrates a database backwards (restore a backup instead).
    raise NotImplementedError("heurmetrics migrations are forward-only")
