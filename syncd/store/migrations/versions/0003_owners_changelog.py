"""Change log: every row carries a `kind`, changes are marked once their event is logged, and rows that no
run wrote (an owners reset) have no run.

- `kind`: "change" (syncd's own write, the only kind with a `contact.changed` event), "takeover" (a person
  changed a field), "removal" (a person emptied a field), "tombstone" (the contact left the PBX), "reset"
  (`syncd owners reset` gave a field back to syncd).
- `logged_at`: when the row's `contact.changed` event was written; NULL for a change committed and not yet
  logged (a crash between the two), which the next run logs. Rows already in the table were logged by the
  syncd that wrote them: they get their own `at`.
- `run_id` becomes nullable.

Revision ID: 0003_owners
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_owners"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

KINDS = "kind IN ('change', 'takeover', 'removal', 'tombstone', 'reset')"


def upgrade() -> None:
    with op.batch_alter_table("change_log") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="change"))
        batch.add_column(sa.Column("logged_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("run_id", existing_type=sa.String(36), nullable=True)
        batch.create_check_constraint("ck_change_log_kind", KINDS)
    op.execute("UPDATE change_log SET logged_at = at")
    op.create_index(
        "ix_change_log_unlogged",
        "change_log",
        ["id"],
        sqlite_where=sa.text("logged_at IS NULL"),
        postgresql_where=sa.text("logged_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_change_log_unlogged", table_name="change_log")
    op.execute("DELETE FROM change_log WHERE run_id IS NULL")
    with op.batch_alter_table("change_log") as batch:
        batch.drop_constraint("ck_change_log_kind", type_="check")
        batch.alter_column("run_id", existing_type=sa.String(36), nullable=False)
        batch.drop_column("logged_at")
        batch.drop_column("kind")
