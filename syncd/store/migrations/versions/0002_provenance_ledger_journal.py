"""Field provenance, identity links, enrichment ledger, credit usage, push journal, change log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

# INTEGER PRIMARY KEY is SQLite's rowid alias; PostgreSQL gets a 64-bit key.
_surrogate = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "field_provenance",
        sa.Column("contact_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(8), nullable=False),
        sa.Column("syncd_value", sa.Text(), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        _ts("written_at", nullable=True),
        _ts("person_touched_at", nullable=True),
        sa.PrimaryKeyConstraint("contact_id", "field", name="pk_field_provenance"),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_field_provenance_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("owner IN ('syncd', 'person')", name="ck_field_provenance_owner"),
    )
    op.create_table(
        "identity_links",
        sa.Column("contact_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("vendor_id", sa.Text(), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        _ts("linked_at", nullable=False),
        sa.PrimaryKeyConstraint("contact_id", "vendor", name="pk_identity_links"),
        sa.CheckConstraint("method IN ('imported', 'matched', 'unmatched')", name="ck_identity_links_method"),
    )
    op.create_index("ix_identity_links_vendor_vendor_id", "identity_links", ["vendor", "vendor_id"])
    op.create_table(
        "enrichment_ledger",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        _ts("fetched_at", nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("vendor", "contact_id", name="pk_enrichment_ledger"),
        sa.CheckConstraint("outcome IN ('found', 'not_found', 'error')", name="ck_enrichment_ledger_outcome"),
    )
    op.create_table(
        "credit_usage",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("vendor", "month", name="pk_credit_usage"),
    )
    op.create_table(
        "push_journal",
        sa.Column("id", _surrogate, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("precondition_hash", sa.String(64), nullable=False),
        sa.Column("planned", sa.Text(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("sent_at", nullable=True),
        _ts("applied_at", nullable=True),
        _ts("resolved_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_push_journal"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_push_journal_run_id_runs"),
        sa.CheckConstraint(
            "state IN ('pending', 'applied', 'superseded', 'failed')", name="ck_push_journal_state"
        ),
    )
    op.create_index("ix_push_journal_state", "push_journal", ["state"])
    op.create_index(
        "ux_push_journal_pending_contact",
        "push_journal",
        ["contact_id"],
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_table(
        "change_log",
        sa.Column("id", _surrogate, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        _ts("at", nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("old", sa.Text(), nullable=False),
        sa.Column("new", sa.Text(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("journal_id", _surrogate, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_change_log"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_change_log_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["journal_id"], ["push_journal.id"], name="fk_change_log_journal_id_push_journal"
        ),
    )
    op.create_index("ix_change_log_contact_id_at", "change_log", ["contact_id", "at"])
    op.create_index("ix_change_log_at", "change_log", ["at"])


def downgrade() -> None:
    op.drop_table("change_log")
    op.drop_table("push_journal")
    op.drop_table("credit_usage")
    op.drop_table("enrichment_ledger")
    op.drop_table("identity_links")
    op.drop_table("field_provenance")
