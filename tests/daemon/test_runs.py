"""Runs that tell the truth: a vendor that is down, a `--sync-now` stopped by a signal, the resume after it.

`python -m syncd` against simulators served by this process. Nothing asserts how long anything took: the
breaker is checked by counting attempts and events, the concurrent resume by the updates the PBX had in
flight at once.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sim.dataset import Dataset
from syncd.sim.launch import Simulators
from syncd.store import StateStore
from tests.daemon.conftest import DaemonProcess, run_syncd, wait_until, write_config

UPDATE_PATH = "company_contact/update"


def events(stderr: str) -> list[dict[str, Any]]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
    return found


def named(found: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in found if e.get("event") == name and all(e.get(k) == v for k, v in match.items())]


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def status(config: Path) -> dict[str, Any]:
    done = run_syncd(config, "status", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


class UpdatesInFlight:
    """Wraps the PBX simulator's app: the most `company_contact/update` requests it held at once."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.total = 0

    def reset(self) -> None:
        with self._lock:
            self.most = self.total = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        update = scope.get("type") == "http" and str(scope.get("path", "")).endswith(UPDATE_PATH)
        if update:
            with self._lock:
                self.now += 1
                self.total += 1
                self.most = max(self.most, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            if update:
                with self._lock:
                    self.now -= 1


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Simulators, UpdatesInFlight]]:
    sims = Simulators(Dataset(60))
    wrapper = UpdatesInFlight(sims.pbx.app)
    sims.pbx.app = wrapper
    with sims:
        yield sims, wrapper


def import_links(sims: Simulators, config: Path, tmp_path: Path) -> None:
    done = run_syncd(config, "links", "import", str(sims.write_links(tmp_path / "links.csv")))
    assert done.returncode == 0, done.stderr[-2000:]


# --- a vendor that is down --------------------------------------------------------------------------------


def test_a_vendor_on_a_closed_port_is_dropped_once_and_asked_again_next_run(
    site: tuple[Simulators, UpdatesInFlight], tmp_path: Path
) -> None:
    sims, _ = site
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(sims, tmp_path / "syncd.toml", state_url)
    healthy = config.read_text(encoding="utf-8")
    closed = f"http://127.0.0.1:{free_port()}"
    config.write_text(healthy.replace(sims.url("contactout"), closed), encoding="utf-8")
    import_links(sims, config, tmp_path)

    down = run_syncd(config, "--sync-now")
    assert down.returncode == 75, down.stderr[-3000:]
    found = events(down.stderr)
    [stopped] = named(found, "vendor.stopped")
    assert stopped["vendor"] == "contactout" and stopped["reason"] == "unreachable"
    assert len(named(found, "http.circuit_open", service="contactout")) == 1
    # the breaker's threshold (5) of refused connections, not 5 attempts for each of the contacts
    retries = named(found, "http.retry", service="contactout")
    assert len(retries) <= 4, len(retries)
    [finished] = named(found, "run.finished")
    assert finished["outcome"] == "unreachable"
    asked = finished["vendors"]["contactout"]["asked"]
    assert asked > 5  # enough contacts that a retry ladder each would have shown
    # the other vendors went on and their answers were written
    assert finished["vendors"]["insideview"]["found"] > 0 and finished["vendors"]["leadfeeder"]["found"] > 0
    assert finished["updated"] > 0

    with StateStore.open(state_url) as store:
        [run] = store.recent_runs(1)
        assert run.outcome == "unreachable"
        assert run.counts["unreachable"] == ["contactout"]
        assert run.error is not None and "contactout" in run.error
    shown = status(config)
    assert shown["runs"][0]["outcome"] == "unreachable"

    # ContactOut is back: its contacts are asked again (nothing was cached as not found)
    config.write_text(healthy, encoding="utf-8")
    again = run_syncd(config, "--sync-now")
    assert again.returncode == 0, again.stderr[-3000:]
    [finished] = named(events(again.stderr), "run.finished")
    assert finished["outcome"] == "ok"
    assert finished["vendors"]["contactout"]["cached"] == 0
    assert finished["vendors"]["contactout"]["asked"] > 0
    assert not named(events(again.stderr), "vendor.stopped")


# --- a --sync-now stopped by SIGTERM, and the resume ------------------------------------------------------


def test_sigterm_to_sync_now_records_interrupted_and_the_resume_is_concurrent(
    site: tuple[Simulators, UpdatesInFlight], tmp_path: Path
) -> None:
    sims, in_flight = site
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    slow = write_config(sims, tmp_path / "slow.toml", state_url, sync_extra="push_concurrency = 1")
    import_links(sims, slow, tmp_path)
    sims.pbx.faults.latency = 0.3  # the push of one contact at a time lasts long enough to be stopped

    run = DaemonProcess(slow, args=("--sync-now",))
    try:
        wait_until(lambda: in_flight.total >= 2, "the push under way")
        run.signal(signal.SIGTERM)
        code = run.wait_exit()
    finally:
        run.kill()
    found = list(run.events)
    assert code == 75, "\n".join(run.raw[-30:])  # entries remain pending: try later
    [stopping] = named(found, "run.stopping")
    assert stopping["signal"] == "SIGTERM"
    [finished] = named(found, "run.finished")
    assert finished["outcome"] == "interrupted"
    pending = finished["pending"]
    assert pending > 4  # the stop came well before the last contact
    with StateStore.open(state_url) as store:
        [stored] = store.recent_runs(1)
        entries = store.journal_pending()
    assert stored.outcome == "interrupted" and stored.counts["pending"] == pending
    assert stored.error is not None and f"{pending} journal entries pending" in stored.error
    assert len(entries) == pending  # one number: the log, the run's record and the journal agree
    assert all(entry.sent_at is None for entry in entries)  # the contact in flight was finished
    shown = status(slow)
    assert shown["runs"][0]["outcome"] == "interrupted"
    assert len(shown["pending_journal"]) == pending

    # the next run resumes them push_concurrency at a time, with an event per chunk
    fast = write_config(sims, tmp_path / "fast.toml", state_url, sync_extra="push_concurrency = 4")
    sims.pbx.faults.latency = 0.5
    in_flight.reset()
    resumed = run_syncd(fast, "--sync-now")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = events(resumed.stderr)
    [started] = named(found, "journal.resuming")
    assert started["pending"] == pending
    chunks = named(found, "journal.resume_progress")
    assert chunks and chunks[-1]["done"] == chunks[-1]["of"] == pending
    [done] = named(found, "journal.resumed")
    assert done["sent"] + done["confirmed"] + done["superseded"] == pending
    assert done["sent"] == pending  # nobody touched the contacts meanwhile
    assert in_flight.most == 4  # the resume sent four at a time, not one
    [finished] = named(found, "run.finished")
    assert finished["outcome"] == "ok" and finished["pending"] == 0
    with StateStore.open(state_url) as store:
        assert store.journal_pending() == []


# --- exit codes of a summary --------------------------------------------------------------------------------


def test_exit_code_of_interrupted_and_unreachable_runs() -> None:
    from datetime import UTC, datetime

    from syncd.engine import RunSummary

    def made(**kw: Any) -> RunSummary:
        return RunSummary(run_id="r", mode="sync", started_at=datetime(2026, 12, 1, tzinfo=UTC), **kw)

    stopped = made(interrupted=True, counts={"pending": 3})
    stopped.outcome = stopped.settle()
    assert (stopped.outcome, stopped.exit_code) == ("interrupted", 75)
    early = made(interrupted=True, counts={"pending": 0})  # stopped before anything was committed
    early.outcome = early.settle()
    assert (early.outcome, early.exit_code) == ("interrupted", 0)
    down = made(vendor_stops={"contactout": "unavailable", "leadfeeder": "budget"})
    down.outcome = down.settle()
    assert (down.outcome, down.exit_code) == ("unreachable", 75)
    down_and_failed = made(vendor_stops={"contactout": "unavailable"}, failures=[(1, "40002")])
    down_and_failed.outcome = down_and_failed.settle()
    assert (down_and_failed.outcome, down_and_failed.exit_code) == ("unreachable", 75)
    spent = made(vendor_stops={"leadfeeder": "budget"})
    spent.outcome = spent.settle()
    assert (spent.outcome, spent.exit_code) == ("ok", 0)
    refused = made(vendor_stops={"insideview": "auth"})
    refused.outcome = refused.settle()
    assert (refused.outcome, refused.exit_code) == ("ok", 1)
