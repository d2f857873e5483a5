"""One writer at a time, across processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from syncd.errors import EXIT_TEMPFAIL, LockHeldError
from syncd.store import StateStore

from .conftest import pg_url

HOLDER = textwrap.dedent(
    """
    import sys
    from syncd.store import StateStore

    store = StateStore.open(sys.argv[1])
    with store.lock():
        print("locked", flush=True)
        sys.stdin.readline()  # hold until the parent says so (or closes stdin)
    print("released", flush=True)
    store.close()
    """
)


@contextmanager
def holder(url: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the store's lock until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "locked", proc.stderr.read() if proc.stderr else ""
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    assert proc.wait(timeout=30) == 0


def test_second_process_is_refused_until_the_first_releases(store: StateStore, store_url: str) -> None:
    with holder(store_url) as proc:
        with pytest.raises(LockHeldError) as err, store.lock():
            pass
        assert "another syncd run holds the state store lock" in str(err.value)
        assert err.value.exit_code == EXIT_TEMPFAIL
        release(proc)
    with store.lock():
        pass


def test_lock_is_exclusive_within_one_process_too(store: StateStore, store_url: str) -> None:
    other = StateStore.open(store_url)
    try:
        with store.lock():
            with pytest.raises(LockHeldError), other.lock():
                pass
            with pytest.raises(LockHeldError), store.lock():
                pass
        with other.lock():
            pass
    finally:
        other.close()


def test_the_lock_dies_with_its_holder(store: StateStore, store_url: str) -> None:
    """A run killed with SIGKILL leaves no stale lock: the kernel (flock) or the server (the session's
    advisory lock) lets go. PostgreSQL notices the dead session on its own schedule, so poll for it."""
    with holder(store_url) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                with store.lock():
                    break
            except LockHeldError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_sqlite_lock_file_names_the_path(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = StateStore.open(f"sqlite:///{db}")
    try:
        with holder(f"sqlite:///{db}"), pytest.raises(LockHeldError, match=str(db) + ".lock"), store.lock():
            pass
        assert oct((tmp_path / "s.db.lock").stat().st_mode & 0o777) == "0o600"
    finally:
        store.close()


def test_memory_store_lock() -> None:
    store = StateStore.open("sqlite://")
    try:
        with store.lock(), pytest.raises(LockHeldError), store.lock():
            pass
        with store.lock():
            pass
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_stores_in_different_schemas_do_not_contend(pg_schema: str) -> None:
    from sqlalchemy import create_engine, text

    from .conftest import PG_BASE

    other = pg_schema + "_b"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{other}"'))
    try:
        a, b = StateStore.open(pg_url(pg_schema)), StateStore.open(pg_url(other))
        try:
            with a.lock(), b.lock():
                pass
        finally:
            a.close()
            b.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{other}" CASCADE'))
        admin.dispose()
