"""The daemon's heartbeat, for `syncd status` (is a daemon alive, when does it run next).

Revision ID: 0004_heartbeat
Revises: 0003_owners
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_heartbeat"
down_revision: str | None = "0003_owners"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "daemon_heartbeat",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        _ts("started_at", nullable=False),
        _ts("beat_at", nullable=False),
        sa.Column("every_s", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _ts("next_run_at", nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_daemon_heartbeat"),
    )


def downgrade() -> None:
    op.drop_table("daemon_heartbeat")
