"""The daemon's heartbeat in the state store: `syncd status` reads it to say whether a daemon is alive.

The daemon writes one row (`daemon_heartbeat`, id "daemon") at start, every `every` seconds, whenever a run
starts or ends, and once more as "stopped" on shutdown. A daemon is alive while its last beat is younger than
three periods (and, on the same host, while its pid exists): a `kill -9` shows as a stale beat.
A failed beat is logged once and never stops the daemon.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update

from syncd.errors import SyncdError
from syncd.logs import get_logger
from syncd.store import StateStore
from syncd.store.schema import daemon_heartbeat

log = get_logger("syncd.heartbeat")

ROW = "daemon"
EVERY_SECONDS = 30
STALE_PERIODS = 3

IDLE, RUNNING, PAUSED, STOPPED = "idle", "running", "paused", "stopped"


@dataclass(frozen=True, slots=True)
class Beat:
    pid: int
    host: str
    started_at: datetime
    beat_at: datetime
    every_s: int
    state: str
    next_run_at: datetime | None = None
    note: str | None = None

    def alive(self, now: datetime, *, this_host: str | None = None) -> bool:
        if self.state == STOPPED:
            return False
        if now - self.beat_at > timedelta(seconds=STALE_PERIODS * self.every_s):
            return False
        if self.host == (this_host or socket.gethostname()):
            return _pid_exists(self.pid)
        return True


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process (the service's dynamic user): it exists
        return True
    return True


def write_beat(store: StateStore, beat: Beat) -> None:
    values = {
        "pid": beat.pid,
        "host": beat.host[:255],
        "started_at": beat.started_at,
        "beat_at": beat.beat_at,
        "every_s": beat.every_s,
        "state": beat.state,
        "next_run_at": beat.next_run_at,
        "note": beat.note,
    }
    with store._write() as conn:
        done = conn.execute(update(daemon_heartbeat).where(daemon_heartbeat.c.id == ROW).values(**values))
        if done.rowcount == 0:
            conn.execute(insert(daemon_heartbeat).values(id=ROW, **values))


def read_beat(store: StateStore) -> Beat | None:
    with store._read() as conn:
        row = conn.execute(select(daemon_heartbeat).where(daemon_heartbeat.c.id == ROW)).first()
    if row is None:
        return None
    return Beat(
        pid=row.pid,
        host=row.host,
        started_at=row.started_at,
        beat_at=row.beat_at,
        every_s=row.every_s,
        state=row.state,
        next_run_at=row.next_run_at,
        note=row.note,
    )


def clear_beat(store: StateStore) -> None:
    with store._write() as conn:
        conn.execute(delete(daemon_heartbeat).where(daemon_heartbeat.c.id == ROW))


class Heartbeat:
    """A thread that beats every `every` seconds, and at once on `poke()`.

    `info()` returns (state, next run, note); `store()` the daemon's current store (a reload may swap it).
    """

    def __init__(
        self,
        store: Callable[[], StateStore | None],
        info: Callable[[], tuple[str, datetime | None, str | None]],
        *,
        every: int = EVERY_SECONDS,
    ) -> None:
        self._store = store
        self._info = info
        self.every = every
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started_at = datetime.now(UTC)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="syncd-heartbeat", daemon=True)
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.beat(state=STOPPED)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if not self._stop.is_set():
                self.beat()

    def beat(self, *, state: str | None = None) -> None:
        store = self._store()
        if store is None:
            return
        try:
            current, next_run, note = self._info()
            write_beat(
                store,
                Beat(
                    pid=self.pid,
                    host=self.host,
                    started_at=self.started_at,
                    beat_at=datetime.now(UTC),
                    every_s=self.every,
                    state=state or current,
                    next_run_at=next_run,
                    note=note,
                ),
            )
        except (SyncdError, Exception) as exc:  # a beat never stops the daemon
            if not self._failing:
                log.warning("daemon.heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
            self._failing = True
        else:
            self._failing = False
