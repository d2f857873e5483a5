"""Foundation: contacts (with tombstones), runs, token cache.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _ts("first_seen_at", nullable=False),
        _ts("last_seen_at", nullable=False),
        _ts("deleted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_contacts"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        _ts("started_at", nullable=False),
        _ts("ended_at", nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "tokens",
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        _ts("access_expires_at", nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        _ts("refresh_expires_at", nullable=True),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("service", name="pk_tokens"),
    )


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.drop_table("runs")
    op.drop_table("contacts")
