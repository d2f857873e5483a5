"""The sd_notify protocol against sockets this test binds (a path and an abstract name)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.notify import Notifier, notify, socket_address, watchdog_interval


@pytest.fixture
def path_socket() -> Iterator[tuple[str, socket.socket]]:
    # a short directory: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        path = str(Path(directory) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        try:
            yield path, sock
        finally:
            sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"syncd-notify-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        yield "@" + name, sock
    finally:
        sock.close()


def test_sends_one_datagram_to_a_path_socket(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    notifier = Notifier(environ={"NOTIFY_SOCKET": address})
    assert notifier.ready("idle; next run 12:00")
    assert sock.recv(4096) == b"READY=1\nSTATUS=idle; next run 12:00"
    assert notifier.status("run 12:00: push 3/10")
    assert sock.recv(4096) == b"STATUS=run 12:00: push 3/10"
    notifier.close()


def test_abstract_socket_names_start_with_at(abstract_socket: tuple[str, socket.socket]) -> None:
    address, sock = abstract_socket
    notifier = Notifier(environ={"NOTIFY_SOCKET": address})
    assert notifier.stopping("stopping")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.reloading()
    reloading = sock.recv(4096).decode().split("\n")
    assert reloading[0] == "RELOADING=1"
    assert reloading[1].startswith("MONOTONIC_USEC=")
    assert int(reloading[1].partition("=")[2]) > 0
    notifier.close()


def test_a_newline_in_a_status_cannot_inject_another_assignment(
    abstract_socket: tuple[str, socket.socket],
) -> None:
    address, sock = abstract_socket
    Notifier(environ={"NOTIFY_SOCKET": address}).status("bad\nREADY=1")
    assert sock.recv(4096) == b"STATUS=bad READY=1"


def test_module_level_notify_reads_the_environment(
    abstract_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, sock = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert notify("READY=1")
    assert sock.recv(4096) == b"READY=1"


def test_no_op_without_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")
    notifier = Notifier(environ={})
    assert not notifier.enabled
    assert not notifier.ready()


def test_an_unreachable_socket_is_not_an_error() -> None:
    notifier = Notifier(environ={"NOTIFY_SOCKET": "@syncd-nobody-listens-here"})
    assert notifier.enabled
    assert not notifier.ready()  # ECONNREFUSED: dropped, never raised


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract") == "\0abstract"
    assert socket_address("vsock:2:1234") is None
    assert socket_address("") is None
    assert socket_address(None) is None


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid())}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}) is None  # not ours
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
