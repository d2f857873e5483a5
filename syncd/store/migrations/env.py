"""Alembic environment for the state store.

syncd runs its migrations programmatically (`syncd.store.migrate`): the caller opens the connection, begins
the transaction (BEGIN IMMEDIATE on SQLite, an advisory transaction lock on PostgreSQL) and hands the
connection over in `config.attributes["connection"]`. There is no alembic.ini and no logging setup here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

VERSION_TABLE = "syncd_alembic_version"  # same as syncd.store.schema.VERSION_TABLE

config = context.config
connection = config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the syncd state store is migrated by syncd itself (StateStore.open), not by the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=VERSION_TABLE,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
