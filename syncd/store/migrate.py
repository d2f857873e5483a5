"""Schema versions, run programmatically through Alembic (no alembic.ini).

`upgrade` takes the store's write lock for the duration (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction
advisory lock), so two processes opening a fresh store at once migrate it once, one after the other. On
both backends the whole upgrade is one transaction: a failed migration leaves the previous revision intact.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from syncd.errors import StoreError
from syncd.store.lock import advisory_key
from syncd.store.schema import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, "the store ships at least one migration"
    return head


def known_revisions() -> list[str]:
    """Every revision this syncd knows, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def current_revision(conn: Connection) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def check_known(revision: str | None, where: str) -> None:
    if revision is not None and revision not in known_revisions():
        raise StoreError(
            f"state store {where} is at schema revision {revision!r}, which this syncd does not know "
            f"(it knows up to {head_revision()!r}): it was written by a newer syncd; upgrade syncd "
            "or point state_url at another store"
        )


def _write_connection(engine: Engine) -> Connection:
    # see StateStore: this execution option makes SQLite begin with BEGIN IMMEDIATE
    return engine.connect().execution_options(syncd_write=True)


def upgrade(engine: Engine, where: str, target: str = "head") -> str:
    """Migrate to `target` (default: head) in one transaction; returns the revision reached."""
    wanted = head_revision() if target == "head" else target
    # the common case, an up-to-date store, takes no write lock (a running daemon may hold it)
    with engine.connect() as conn, conn.begin():
        current = current_revision(conn)
    check_known(current, where)
    if current == wanted:
        return wanted
    with _write_connection(engine) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
            if schema is None:
                raise StoreError(
                    f"state store {where}: no schema to create tables in (the search_path names none that "
                    "exists)"
                )
            key = advisory_key(str(database), str(schema)) ^ 1  # not the run lock's key
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        current = current_revision(conn)  # again: another process may have migrated meanwhile
        check_known(current, where)
        if current != wanted:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
        reached = current_revision(conn)
    assert reached is not None
    return reached


def downgrade(engine: Engine, where: str, target: str) -> str | None:
    """Migrate down to `target` ("base" = empty). For tests and for operators rolling back syncd."""
    with _write_connection(engine) as conn, conn.begin():
        check_known(current_revision(conn), where)
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)
        return current_revision(conn)
