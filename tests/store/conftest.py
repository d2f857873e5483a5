"""Store fixtures: every store test runs on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL tests share the server with other people's tests, so each gets its own schema
(`syncd_t_<random>`), reached through `search_path` in the URL, and drops it afterwards.
"""

from __future__ import annotations

import functools
import secrets
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from syncd.model import Contact, ContactUpdate, FieldChange, NumberSlot
from syncd.store import StateStore
from syncd.store.schema import metadata

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_BASE = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test"
PG_SKIP = f"no PostgreSQL server answers on {PG_HOST}:{PG_PORT}"

T0 = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """A fixed clock: T0 plus `minutes`."""
    return T0 + timedelta(minutes=minutes)


# One contact's push: Ada gets an email and a mobile number (the journal and change-log tests share it)
BEFORE = Contact.build(1, name="Ada", company="Acme")
AFTER = Contact.build(
    1, name="Ada", company="Acme", email="ada@acme.test", numbers={NumberSlot.mobile_number: "+15550100"}
)
CHANGES = (
    FieldChange(1, "email", "", "ada@acme.test", "insideview", "fill_empty"),
    FieldChange(1, "mobile_number", "", "+15550100", "contactout", "fill_empty"),
)
UPDATE = ContactUpdate(
    1,
    BEFORE.content_hash(),
    email="ada@acme.test",
    numbers=((NumberSlot.mobile_number, "+15550100"),),
    changes=CHANGES,
)


@functools.cache
def pg_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


def pg_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


def _create_schema() -> str:
    name = f"syncd_t_{secrets.token_hex(6)}"
    admin = create_engine(PG_BASE, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    finally:
        admin.dispose()
    return name


def _drop_schema(name: str) -> None:
    admin = create_engine(PG_BASE, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema of this test's own; yields its name."""
    if not pg_answers():
        pytest.skip(PG_SKIP)
    name = _create_schema()
    try:
        yield name
    finally:
        _drop_schema(name)


@pytest.fixture(scope="session")
def pg_ready_schema() -> Iterator[str]:
    """One migrated schema for the session's ordinary store tests (emptied before each; see `store_url`).

    Creating and migrating a schema per test costs more than the tests themselves."""
    if not pg_answers():
        pytest.skip(PG_SKIP)
    name = _create_schema()
    try:
        StateStore.open(pg_url(name)).close()
        yield name
    finally:
        _drop_schema(name)


def _empty_tables(schema: str) -> None:
    engine = create_engine(pg_url(schema), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)} RESTART IDENTITY")
            )
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a store nobody has opened yet (no tables), on the parametrized backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    return pg_url(request.getfixturevalue("pg_schema"))


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty store at the head revision, on the parametrized backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    schema = request.getfixturevalue("pg_ready_schema")
    _empty_tables(schema)
    return pg_url(schema)


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    s = StateStore.open(store_url)
    try:
        yield s
    finally:
        s.close()
