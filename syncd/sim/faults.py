"""Fault injection shared by every simulator, as ASGI middleware.

Knobs are plain attributes so a test can change them while the server runs. Counting is per
simulator instance, so "every Nth call" is deterministic for a sequential client.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Faults:
    latency: float = 0.0  # seconds added to every response
    error_every: int = 0  # every Nth request answers `error_status` (0 = never)
    error_status: int = 503
    stall_every: int = 0  # every Nth request hangs for `stall_seconds` before answering
    stall_seconds: float = 30.0
    throttle_every: int = 0  # every Nth request answers 429
    retry_after: float | None = 1.0  # Retry-After on injected 429s (None = header absent)
    drop_every: int = 0  # every Nth request sends headers then closes mid-body
    html_every: int = 0  # every Nth request answers 200 with an HTML error page
    random_rate: float = 0.0  # probability of a random fault from the kinds above
    seed: int = 7
    calls: int = 0  # requests seen (read by tests)
    injected: dict[str, int] = field(default_factory=dict)  # fault kind -> times injected
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def reset(self) -> None:
        """Back to a fault-free server (counters kept)."""
        self.latency = 0.0
        self.error_every = self.stall_every = self.throttle_every = self.drop_every = self.html_every = 0
        self.random_rate = 0.0

    def _pick(self) -> str | None:
        with self._lock:
            self.calls += 1
            n = self.calls
            kind: str | None = None
            for name, every in (
                ("drop", self.drop_every),
                ("stall", self.stall_every),
                ("error", self.error_every),
                ("throttle", self.throttle_every),
                ("html", self.html_every),
            ):
                if every and n % every == 0:
                    kind = name
                    break
            if kind is None and self.random_rate and self._rng.random() < self.random_rate:
                kind = self._rng.choice(["drop", "error", "throttle", "throttle_bare", "html", "stall"])
            if kind is not None:
                self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind


class FaultInjector:
    """Wraps a simulator app; faults are decided before the app sees the request."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        faults = self.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        kind = faults._pick()
        if kind is None:
            await self.app(scope, receive, send)
            return
        if kind == "stall":
            await asyncio.sleep(faults.stall_seconds)
            await self.app(scope, receive, send)
            return
        if kind == "error":
            await _plain(send, faults.error_status, b"Service Unavailable", [])
            return
        if kind in {"throttle", "throttle_bare"}:
            headers: list[tuple[bytes, bytes]] = []
            if kind == "throttle" and faults.retry_after is not None:
                headers.append((b"retry-after", str(faults.retry_after).encode()))
            await _plain(send, 429, b'{"message":"Too Many Requests"}', headers, b"application/json")
            return
        if kind == "html":
            page = b"<html><head><title>Error</title></head><body><h1>Gateway error</h1></body></html>"
            await _plain(send, 200, page, [], b"text/html")
            return
        # drop: promise a body, send part of it, then let the connection die
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"errcode":0,"da', "more_body": True})
        raise ConnectionAbortedError("simulated dropped connection")


async def _plain(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    content_type: bytes = b"text/plain",
) -> None:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
