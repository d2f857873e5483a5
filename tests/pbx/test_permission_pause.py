"""The daemon pauses on a missing PBX API permission (10005 on a data call) as after a refused login."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.sim.dataset import Dataset
from syncd.sim.launch import Simulators
from syncd.store import StateStore
from tests.daemon.conftest import DaemonProcess, daemon_runs, wait_until, write_config


@pytest.fixture
def sims() -> Iterator[Simulators]:
    with Simulators(Dataset(12)) as started:
        yield started


@pytest.fixture
def daemons() -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def test_a_missing_permission_pauses_runs_until_a_reload(
    sims: Simulators, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    path = tmp_path / "syncd.toml"
    write_config(sims, path, state_url, interval="1s")
    sims.pbx.denied = {"company_contact/list"}
    daemon = daemons(path)

    failed = daemon.wait_event("run.failed")
    assert failed["exit_code"] == 78
    assert "Contacts (read)" in failed["error"]
    daemon.wait_event("schedule.paused")
    daemon.wait_event("run.skipped", after=1)  # two fire times passed without asking the PBX
    assert sims.pbx.calls["company_contact/list"] == 1
    daemon.check_alive()

    sims.pbx.denied = set()  # the administrator grants the permission, then reloads
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("schedule.resumed")
    store = StateStore.open(state_url)
    try:
        wait_until(lambda: daemon_runs(store, "ok"), "a run after the permission was granted")
    finally:
        store.close()
    assert daemon.stop() == 0
