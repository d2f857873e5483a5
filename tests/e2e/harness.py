"""Shared machinery of the end-to-end suites: simulators around a fresh state store, the CLI run in-process
or as a subprocess, and small ASGI wrappers that let a test see or steer what reaches a simulator.

The wrappers sit between uvicorn and a simulator's app (`wrap(sims, "pbx", Gate(...))` before the
simulators start). They only use the public ASGI interface, so the simulators stay untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.sim.dataset import Dataset
from syncd.sim.launch import Simulators
from syncd.store import StateStore

REPO = Path(__file__).resolve().parents[2]

# --- ASGI wrappers -------------------------------------------------------------------------------------


def endpoint_of(scope: Scope) -> str:
    """'company_contact/update' for a PBX path, the path itself for the vendors."""
    path = str(scope.get("path", ""))
    prefix = "/openapi/v1.0/"
    return path[len(prefix) :] if path.startswith(prefix) else path


class Inflight:
    """Counts the requests the wrapped app is still working on (a killed client's included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._count = 0
        self._idle = threading.Condition(self._lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._lock:
            self._count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._count -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> None:
        with self._idle:
            if not self._idle.wait_for(lambda: self._count == 0, timeout=timeout):
                raise AssertionError(f"{self._count} request(s) still in flight after {timeout}s")


class Gate:
    """Once armed, holds every request to `endpoint` from its `after`-th one on (1-based) until released.

    `hit` is set when the first request is held: the client is then provably stopped at that point
    (a test kills it there). On `release(apply=True)` the held requests reach the app (the server did the
    work but the client never heard back); with `apply=False` they are answered 503 without reaching it
    (the request was lost).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.endpoint = ""
        self.counting_from = ""
        self.after = 0
        self.seen = 0
        self.held = 0
        self.armed = False
        self.hit = threading.Event()
        self._released = threading.Event()
        self._apply = True
        self._lock = threading.Lock()

    def arm(self, endpoint: str, after: int, counting_from: str = "") -> None:
        """Hold the `after`-th request to `endpoint` from now on, and every later one; with
        `counting_from`, requests to `endpoint` count only once one to `counting_from` went through."""
        with self._lock:
            self.endpoint, self.after, self.seen, self.held = endpoint, after, 0, 0
            self.counting_from = counting_from
            self.hit = threading.Event()
            self._released = threading.Event()
            self.armed = True

    def release(self, *, apply: bool) -> None:
        self._apply = apply
        self.armed = False
        self._released.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hold = False
        if scope["type"] == "http":
            with self._lock:
                name = endpoint_of(scope)
                if self.armed and name == self.counting_from:
                    self.counting_from = ""
                elif self.armed and name == self.endpoint and not self.counting_from:
                    self.seen += 1
                    hold = self.seen >= self.after
                hit, released = self.hit, self._released
        if not hold:
            await self.app(scope, receive, send)
            return
        # the server has the whole request before the client dies (uvicorn would answer a read after
        # the disconnect with http.disconnect, losing a request a real PBX would still carry out)
        raw, whole = await read_whole_body(receive)
        if not whole:  # the client died before it had sent the request: it never reached the PBX
            return
        with self._lock:
            self.held += 1  # counted only once the whole request is here: it is applied on release
        hit.set()
        await asyncio.to_thread(released.wait, 120)  # bounded: a failing test never hangs the server
        if not self._apply:
            await _respond(send, 503, b"lost")
            return
        await self.app(scope, replay(raw, receive), send)


class RejectUpdates:
    """Answers company_contact/update for the ids in `ids` with errcode 40002, as the PBX does for a
    value it refuses; every other request passes through untouched."""

    def __init__(self, app: ASGIApp, ids: set[int]) -> None:
        self.app = app
        self.ids = ids
        self.rejected: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or endpoint_of(scope) != "company_contact/update":
            await self.app(scope, receive, send)
            return
        raw = await read_body(receive)
        try:
            cid = json.loads(raw).get("id")
        except ValueError:
            cid = None
        if cid in self.ids:
            self.rejected.append(cid)
            body = json.dumps(
                {"errcode": 40002, "errmsg": "PARAMETER ERROR: email: not of the form XXX@XXX.XX"}
            ).encode()
            await _respond(send, 200, body, b"application/json")
            return
        await self.app(scope, replay(raw, receive), send)


class CaptureTokens:
    """Collects every token value a simulator hands out (any JSON key naming a token)."""

    KEYS = ("access_token", "refresh_token", "accesstoken", "refreshtoken", "token")

    def __init__(self, app: ASGIApp, sink: set[str]) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []

        async def spy(message: Message) -> None:
            if message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    self._collect(b"".join(body))
            await send(message)

        await self.app(scope, receive, spy)

    def _collect(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            return
        self._walk(data)

    def _walk(self, data: Any) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and key.replace("_", "").lower() in {
                    k.replace("_", "") for k in self.KEYS
                }:
                    self.sink.add(value)
                else:
                    self._walk(value)
        elif isinstance(data, list):
            for item in data:
                self._walk(item)


async def read_body(receive: Receive) -> bytes:
    return (await read_whole_body(receive))[0]


async def read_whole_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body, and whether all of it arrived (False: the client disconnected first)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks), True


def replay(raw: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out `raw` as the request body, then defers to the real one."""
    done = False

    async def again() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return again


async def _respond(send: Send, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wrap(sims: Simulators, name: str, make: Callable[[ASGIApp], Any]) -> Any:
    """Put a wrapper around simulator `name`'s app; call before the simulators start."""
    if sims.servers:
        raise RuntimeError("wrap the app before the simulators start")
    sim = getattr(sims, name)
    wrapper = make(sim.app)
    sim.app = wrapper
    return wrapper


# --- the environment of one test -------------------------------------------------------------------------


def json_events(text: str) -> list[dict[str, Any]]:
    """The JSON log events among a command's stderr lines."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log events on stderr."""
        return json_events(self.err)

    def event(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The JSON objects on stdout (history --json, status --json, the dry-run plan)."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@dataclass
class Env:
    sims: Simulators
    dir: Path
    config: Path = field(init=False)
    state_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.state_url = f"sqlite:///{self.dir / 'state.db'}"
        self.config = self.dir / "syncd.toml"

    @property
    def pbx(self) -> Any:
        return self.sims.pbx

    @property
    def dataset(self) -> Dataset:
        return self.sims.dataset

    def write_config(self, *, extra: str = "", edit: Callable[[str], str] | None = None) -> Path:
        text = self.sims.config_text(self.state_url, extra=extra)
        if edit is not None:
            text = edit(text)
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return self.config

    def cli(self, *args: str) -> Result:
        """`syncd --config <ours> ARGS...` in this process, stdout and stderr captured."""
        return run_cli(["--config", str(self.config), "--log-format", "json", *args])

    def sync(self, *args: str) -> Result:
        return self.cli("--sync-now", *args)

    def import_links(self) -> Result:
        links = self.sims.write_links(self.dir / "links.csv")
        result = self.cli("links", "import", str(links))
        assert result.code == 0, result.err
        return result

    def spawn(
        self, *args: str, log: Path | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`python -m syncd --config <ours> ARGS...` as a child process, output to `log`; `env` adds
        variables (e.g. SYNCD_CRASH_AT)."""
        out = (log or self.dir / "child.log").open("wb")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "syncd", "--config", str(self.config), "--log-format", "json", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=child_env(**(env or {})),
            )
        finally:
            out.close()

    @contextlib.contextmanager
    def store(self) -> Iterator[StateStore]:
        store = StateStore.open(self.state_url)
        try:
            yield store
        finally:
            store.close()

    def sync_held(
        self, gate: Gate, endpoint: str, after: int, meanwhile: Callable[[], None], *args: str
    ) -> Result:
        """A `--sync-now` (in a thread of this process) held at the `after`-th request to `endpoint`;
        `meanwhile` runs while it is held, then the run goes on to its end."""
        results: list[Result] = []
        gate.arm(endpoint, after)
        run = threading.Thread(target=lambda: results.append(self.sync(*args)))
        run.start()
        try:
            while not gate.hit.wait(0.02):
                if not run.is_alive():
                    raise AssertionError(f"the run ended before request {after} to {endpoint}")
            meanwhile()
        finally:
            gate.release(apply=True)
            run.join(120)
        [result] = results
        return result

    def phonebook(self) -> dict[int, dict[str, Any]]:
        """Every contact the PBX simulator holds, in detailed form."""
        return {cid: self.pbx.contact(cid) for cid in self.pbx.contact_ids()}


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def run_cli(argv: list[str]) -> Result:
    from syncd.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors and --version
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def with_contactout_budget(text: str, budget: int) -> str:
    """An `edit` for EnvFactory: the config with ContactOut's monthly credit budget set to `budget`."""
    head, _, tail = text.partition("[vendors.contactout]\n")
    return (
        head
        + "[vendors.contactout]\n"
        + tail.replace("monthly_credit_budget = 100000", f"monthly_credit_budget = {budget}", 1)
    )


class EnvFactory:
    """Builds environments for one test and stops every simulator it started afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.made: list[Env] = []

    def __call__(
        self,
        size: int = 60,
        *,
        dataset: Dataset | None = None,
        setup: Callable[[Simulators], None] | None = None,
        extra: str = "",
        edit: Callable[[str], str] | None = None,
    ) -> Env:
        """Fresh simulators around `dataset` (or `Dataset(size)`), started, with a config written.

        `setup` runs before the servers start: the place to `wrap` an app or change a simulator.
        """
        sims = Simulators(dataset if dataset is not None else Dataset(size))
        if setup is not None:
            setup(sims)
        where = self.tmp / f"env{len(self.made)}"
        where.mkdir(parents=True)
        env = Env(sims, where)
        self.made.append(env)
        sims.start()
        env.write_config(extra=extra, edit=edit)
        return env

    def close(self) -> None:
        for env in self.made:
            env.sims.stop()
