"""Table definitions the store queries through (SQLAlchemy Core).

These describe the schema at the head revision. The migrations under `migrations/versions/` create it and
never import this module (a migration is frozen in time); `tests/store/test_migrations.py` checks that the
two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

VERSION_TABLE = "syncd_alembic_version"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out.

    PostgreSQL stores `timestamptz`; SQLite has no zone, so the value is stored as naive UTC and given its
    zone back on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the store takes timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Surrogate keys: INTEGER PRIMARY KEY is SQLite's rowid alias; PostgreSQL gets a 64-bit identity.
SurrogateId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(naming_convention=NAMING)

# --- 0001: foundation ---------------------------------------------------------------------------

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # the PBX contact id
    Column("record", Text, nullable=False),  # Contact.to_record() as canonical JSON
    Column("content_hash", String(64), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),  # tombstone: gone from the PBX, never revived
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("counts", Text, nullable=False),  # JSON object
    Column("error", Text, nullable=True),
    Index(None, "started_at"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("service", String(64), primary_key=True),
    Column("access_token", Text, nullable=False),
    Column("access_expires_at", UTCDateTime, nullable=False),
    Column("refresh_token", Text, nullable=True),
    Column("refresh_expires_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- 0002: provenance, links, ledger, credits, journal, change log --------------------------------

field_provenance = Table(
    "field_provenance",
    metadata,
    Column(
        "contact_id",
        BigInteger,
        ForeignKey("contacts.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("field", String(64), primary_key=True),
    Column("owner", String(8), nullable=False),
    Column("syncd_value", Text, nullable=True),
    Column("source", String(64), nullable=True),
    Column("written_at", UTCDateTime, nullable=True),
    Column("person_touched_at", UTCDateTime, nullable=True),
    CheckConstraint("owner IN ('syncd', 'person')", name="owner"),
)

identity_links = Table(
    "identity_links",
    metadata,
    # no foreign key: links may be imported before the first sync has seen the contact
    Column("contact_id", BigInteger, primary_key=True, autoincrement=False),
    Column("vendor", String(32), primary_key=True),
    Column("vendor_id", Text, nullable=True),
    Column("method", String(16), nullable=False),
    Column("confidence", Float, nullable=True),
    Column("linked_at", UTCDateTime, nullable=False),
    CheckConstraint("method IN ('imported', 'matched', 'unmatched')", name="method"),
    Index(None, "vendor", "vendor_id"),
)

enrichment_ledger = Table(
    "enrichment_ledger",
    metadata,
    Column("vendor", String(32), primary_key=True),
    Column("contact_id", BigInteger, primary_key=True, autoincrement=False),
    Column("outcome", String(16), nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("result", Text, nullable=False),  # result_to_json()
    CheckConstraint("outcome IN ('found', 'not_found', 'error')", name="outcome"),
)

credit_usage = Table(
    "credit_usage",
    metadata,
    Column("vendor", String(32), primary_key=True),
    Column("month", String(7), primary_key=True),  # "2026-11"
    Column("credits", BigInteger, nullable=False),
)

push_journal = Table(
    "push_journal",
    metadata,
    Column("id", SurrogateId, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("precondition_hash", String(64), nullable=False),
    Column("planned", Text, nullable=False),  # update_to_json()
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("applied_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    CheckConstraint("state IN ('pending', 'applied', 'superseded', 'failed')", name="state"),
    Index(None, "state"),
    # at most one pending entry per contact: two would make crash recovery ambiguous
    Index(
        "ux_push_journal_pending_contact",
        "contact_id",
        unique=True,
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
)

change_log = Table(
    "change_log",
    metadata,
    Column("id", SurrogateId, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=True),  # NULL: not written by a run
    Column("at", UTCDateTime, nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("field", String(64), nullable=False),
    Column("old", Text, nullable=False),
    Column("new", Text, nullable=False),
    Column("source", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("journal_id", SurrogateId, ForeignKey("push_journal.id"), nullable=True),
    # --- 0003_owners: kinds of rows, logged marks, rows outside a run (owners reset) ---
    Column("kind", String(16), nullable=False, server_default="change"),
    Column("logged_at", UTCDateTime, nullable=True),  # NULL: a change whose event is not written yet
    CheckConstraint("kind IN ('change', 'takeover', 'removal', 'tombstone', 'reset')", name="kind"),
    Index(None, "contact_id", "at"),
    Index(None, "at"),
    Index(
        "ix_change_log_unlogged",
        "id",
        sqlite_where=text("logged_at IS NULL"),
        postgresql_where=text("logged_at IS NULL"),
    ),
)

# --- 0003 (feat-check): the daemon's heartbeat ---------------------------------------------------

daemon_heartbeat = Table(
    "daemon_heartbeat",
    metadata,
    Column("id", String(32), primary_key=True),  # "daemon": one row per store
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("beat_at", UTCDateTime, nullable=False),
    Column("every_s", Integer, nullable=False),  # the heartbeat's period: alive while beats are fresh
    Column("state", String(16), nullable=False),  # idle, running, paused, stopped
    Column("next_run_at", UTCDateTime, nullable=True),
    Column("note", Text, nullable=True),  # why runs are paused, or the run in progress
)
