"""The sd_notify protocol, without libsystemd: one datagram of `KEY=value` lines to `$NOTIFY_SOCKET`.

systemd (Type=notify) passes the socket's address in `$NOTIFY_SOCKET`: a filesystem path, or an abstract
socket name written with a leading '@' (sent as a leading NUL byte). When the variable is unset (syncd run
by hand, or by a timer unit), every call is a no-op that returns False. Sending never blocks and never
raises: a full socket buffer or a vanished manager drops the message, the daemon goes on.

Messages used by syncd (see sd_notify(3)):
- `READY=1` once the config is valid and the state store is open, and again after each reload;
- `STATUS=...` one line for `systemctl status`: the run's phase and progress, or the next run;
- `RELOADING=1` with `MONOTONIC_USEC=` while a SIGHUP reload is handled;
- `STOPPING=1` when SIGTERM/SIGINT is received;
- `WATCHDOG=1` every half `WatchdogSec=` (`$WATCHDOG_USEC`), see `watchdog_interval`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

from syncd.logs import get_logger

log = get_logger("syncd.notify")


def socket_address(value: str | None) -> str | None:
    """The address to send to: a path, or an abstract name ('@name' -> '\\0name'); None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # vsock:CID:PORT and other transports are not used by the service managers syncd runs under
    return None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of `$WATCHDOG_USEC`), or None when no watchdog is set.

    `$WATCHDOG_PID`, when set, must be this process (the variables were meant for it, not inherited).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


class Notifier:
    """Sends notifications to the service manager; every method is a no-op without `$NOTIFY_SOCKET`."""

    def __init__(self, address: str | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = address if address is not None else env.get("NOTIFY_SOCKET")
        self.address = socket_address(raw)
        if raw and self.address is None:
            log.warning("notify.unsupported_socket", address=raw)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send `lines` (each `KEY=value`) as one datagram. True when the datagram was sent."""
        if self.address is None or not lines:
            return False
        payload = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    sock.setblocking(False)
                    self._sock = sock
                self._sock.sendto(payload, self.address)
            except OSError as exc:
                # the manager went away or its queue is full: drop this message, try afresh next time
                log.debug("notify.failed", error=f"{type(exc).__name__}: {exc}")
                self._close()
                return False
        return True

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()

    # --- the messages syncd sends ---------------------------------------------------------------
    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


def notify(*lines: str) -> bool:
    """One-off `sd_notify(0, "\\n".join(lines))` to `$NOTIFY_SOCKET`; False when unset or unreachable."""
    notifier = Notifier()
    try:
        return notifier.send(*lines)
    finally:
        notifier.close()
