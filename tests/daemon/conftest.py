"""Helpers for the daemon tests: the simulators, the daemon as a subprocess, a notify socket.

The daemon runs as `python -m syncd --config X` (JSON log events on stderr, read by a thread); the
simulators are served by the test process. Waits have generous deadlines so that a broken daemon fails
the test instead of hanging it; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from syncd.sim.dataset import Dataset
from syncd.sim.launch import Simulators
from syncd.store import StateStore

DEADLINE = 45.0  # seconds: only reached when something is broken


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def write_config(
    sims: Simulators,
    path: Path,
    state_url: str,
    *,
    interval: str = "1s",
    sync_extra: str = "",
    extra: str = "",
) -> Path:
    """The simulators' config, with more keys in [sync] (`sync_extra`) and more tables (`extra`)."""
    sims.write_config(path, state_url, interval=interval, extra=extra)
    if sync_extra:
        text = path.read_text(encoding="utf-8").replace("[sync]\n", f"[sync]\n{sync_extra}\n", 1)
        path.write_text(text, encoding="utf-8")
    return path


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket (abstract name: no path limits)."""

    def __init__(self) -> None:
        self.name = f"@syncd-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())

    def lines(self) -> list[str]:
        with self._lock:
            return [line for message in self.messages for line in message.split("\n")]

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class DaemonProcess:
    """`python -m syncd --config X --log-format json [args]` with its stderr events collected."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.config = config
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config), "--log-format", "json", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.raw.append(line.rstrip("\n"))
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.events.append(event)

    def find(self, name: str, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
            ]

    def wait_event(self, name: str, *, after: int = 0, **match: Any) -> dict[str, Any]:
        """The first event `name` (matching `match`) beyond the first `after` such events."""

        def found() -> dict[str, Any] | None:
            self.check_alive()
            events = self.find(name, **match)
            return events[after] if len(events) > after else None

        event: dict[str, Any] = wait_until(found, f"log event {name} {match or ''}")
        return event

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            self._reader.join(timeout=2)
            pytest.fail(f"daemon exited with {self.proc.returncode}:\n" + "\n".join(self.raw[-30:]))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("daemon did not exit:\n" + "\n".join(self.raw[-30:]))
        self._reader.join(timeout=5)
        return code

    def stop(self) -> int:
        self.signal(signal.SIGTERM)
        return self.wait_exit()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=2)


def run_syncd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.fixture
def sims() -> Iterator[Simulators]:
    with Simulators(Dataset(12)) as started:
        yield started


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    """The test's own handle on the daemon's store (SQLite in WAL mode: reads while the daemon writes)."""
    handle = StateStore.open(state_url)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def daemons() -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons; any still running at the end of the test is killed."""
    started: list[DaemonProcess] = []

    def start(config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(config, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def daemon_runs(store: StateStore, outcome: str | None = None) -> list[Any]:
    """The daemon's runs, oldest first (optionally only those with `outcome`)."""
    runs = [r for r in reversed(store.recent_runs(1000)) if r.mode == "daemon"]
    return [r for r in runs if outcome is None or r.outcome == outcome]
