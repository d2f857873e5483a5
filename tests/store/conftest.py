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

from syncd.store import StateStore

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_BASE = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test"
PG_SKIP = f"no PostgreSQL server answers on {PG_HOST}:{PG_PORT}"

T0 = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """A fixed clock: T0 plus `minutes`."""
    return T0 + timedelta(minutes=minutes)


@functools.cache
def pg_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


def pg_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema; yields its name."""
    if not pg_answers():
        pytest.skip(PG_SKIP)
    name = f"syncd_t_{secrets.token_hex(6)}"
    admin = create_engine(PG_BASE, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a store nobody has opened yet, on the parametrized backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    return pg_url(request.getfixturevalue("pg_schema"))


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    s = StateStore.open(store_url)
    try:
        yield s
    finally:
        s.close()
