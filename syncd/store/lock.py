"""One writer at a time across processes.

- SQLite file: `fcntl.flock` (non-blocking) on `<db path>.lock`. The kernel drops the lock when the holder
  exits, however it exits, so a crashed run never leaves a stale lock behind. The lock file is never
  deleted (deleting it would let two processes lock two different inodes).
- PostgreSQL: `pg_try_advisory_lock` on a dedicated connection held for the lock's life; the key is derived
  from the database and schema, so stores in different schemas of one database do not contend. The server
  drops the lock when that session ends.
- SQLite in memory: a process-local lock (the database does not outlive the process anyway).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from syncd.errors import LockHeldError, StoreConfigError, StoreError


def _held(where: str) -> LockHeldError:
    return LockHeldError(f"another syncd run holds the state store lock ({where})")


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        # permissions or a read-only file system: retrying cannot help (78); anything else: later (75)
        unwritable = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR)
        kind = StoreConfigError if unwritable else StoreError
        raise kind(f"state store lock {path}: cannot open: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _held(path) from None
            raise StoreError(f"state store lock {path}: cannot lock: {exc.strerror or exc}") from exc
        _write_holder(fd)
        try:
            yield
        finally:
            _write_holder(fd, clear=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_holder(fd: int, *, clear: bool = False) -> None:
    """Who holds the lock (pid, host, since), for `syncd status`; best effort: the flock is what counts."""
    try:
        os.ftruncate(fd, 0)
        if not clear:
            since = datetime.now(UTC).isoformat(timespec="seconds")
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
            os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError:
        pass


def file_lock_holder(path: str) -> dict[str, object] | None:
    """The holder a lock file names, if that process still lives (on this host; another host's is trusted).

    Reads only: taking the lock to test it could make a run that starts at that instant fail as "lock held".
    """
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.loads(handle.read(4096) or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    if info.get("host") == socket.gethostname():
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return None  # killed without releasing: the kernel dropped its flock
        except PermissionError:
            pass
    return info


@contextmanager
def memory_lock(lock: threading.Lock, where: str) -> Iterator[None]:
    """For an in-memory store: its own database, so its own lock."""
    if not lock.acquire(blocking=False):
        raise _held(where)
    try:
        yield
    finally:
        lock.release()


def advisory_key(database: str, schema: str) -> int:
    """A signed 64-bit advisory lock key for one syncd store (database + schema)."""
    digest = hashlib.blake2b(f"syncd.state:{database}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(engine: Engine, where: str) -> Iterator[None]:
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        raise StoreError(f"state store {where}: cannot connect to take the lock: {_reason(exc)}") from exc
    try:
        try:
            with conn.begin():
                database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
                key = advisory_key(str(database), str(schema))
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
        except SQLAlchemyError as exc:
            raise StoreError(f"state store {where}: cannot take the lock: {_reason(exc)}") from exc
        if not got:
            raise _held(where)
        try:
            yield
        finally:
            try:
                with conn.begin():
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            except SQLAlchemyError:
                # the session is gone, and the server released its locks with it
                conn.invalidate()
    finally:
        conn.close()


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]
