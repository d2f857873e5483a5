"""The schedule: triggers, derived misfire grace, local-time cron, and `syncd status` agreeing with it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import tzlocal
from apscheduler.schedulers.background import BackgroundScheduler

from syncd import report
from syncd.config import Config, parse_config
from syncd.heartbeat import Beat, write_beat
from syncd.schedule import (
    add_sync_job,
    describe_schedule,
    local_timezone,
    misfire_grace_seconds,
    next_fire,
    next_run,
)
from syncd.store import StateStore

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)


def config(sync: str = "") -> Config:
    text = f"""
[sync]
{sync}

[pbx]
base_url = "https://pbx.example.com:8088"
client_id = "id"
client_secret = "secret-value"
"""
    return parse_config(text, source=Path("/nonexistent/syncd.toml"), environ={})


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    """The host's time zone, as tzlocal sees it, is America/New_York for this test."""
    monkeypatch.setenv("TZ", "America/New_York")
    tzlocal.reload_localzone()
    try:
        yield ZoneInfo("America/New_York")
    finally:
        monkeypatch.undo()
        tzlocal.reload_localzone()


@pytest.mark.parametrize(
    ("sync", "grace"),
    [
        ('interval = "1s"', 1),
        ('interval = "15m"', 450),  # half the interval
        ('interval = "4h"', 3600),  # capped at one hour
        ('interval = "15m"\nmisfire_grace = "30s"', 30),  # explicit
        ('cron = "*/15 * * * *"', 450),
        ('cron = "0 3 * * *"', 3600),
        ('cron = "0 9,17 * * 1-5"', 3600),  # shortest gap 8 h
        ('cron = "* * * * *"', 30),
    ],
)
def test_misfire_grace_fits_the_schedule(sync: str, grace: int) -> None:
    assert misfire_grace_seconds(config(sync).sync, BERLIN, T0) == grace


def test_interval_fires_on_the_grid_of_the_last_start() -> None:
    sync = config('interval = "15m"').sync
    assert next_fire(sync, T0, T0 + timedelta(minutes=10), UTC) == T0 + timedelta(minutes=15)
    # a long run missed fire times: they are coalesced, the next is the first grid point still ahead
    assert next_fire(sync, T0, T0 + timedelta(minutes=40), UTC) == T0 + timedelta(minutes=45)


def test_before_any_run_the_daemon_runs_at_start_unless_told_otherwise() -> None:
    assert next_fire(config('interval = "15m"').sync, None, T0, UTC) == T0
    later = config('interval = "15m"\nrun_at_start = false').sync
    assert next_fire(later, None, T0, UTC) == T0 + timedelta(minutes=15)
    cron = config('cron = "0 3 * * *"\nrun_at_start = false').sync
    assert next_fire(cron, None, T0, BERLIN) == datetime(2026, 1, 11, 3, 0, tzinfo=BERLIN)


def test_cron_is_read_in_the_local_time_zone(new_york: ZoneInfo) -> None:
    cfg = config('cron = "0 3 * * *"')
    assert local_timezone() == new_york
    fire = next_run(cfg, T0 - timedelta(days=1), T0)
    assert fire == datetime(2026, 1, 10, 3, 0, tzinfo=new_york)  # 08:00 UTC is 03:00 in New York
    assert fire.astimezone(UTC) == T0
    # daylight saving: 03:00 local is 07:00 UTC in July
    july = datetime(2026, 7, 10, 0, 0, tzinfo=UTC)
    assert next_run(cfg, july - timedelta(days=1), july).astimezone(UTC) == datetime(
        2026, 7, 10, 7, 0, tzinfo=UTC
    )


def test_status_uses_the_daemon_schedule(new_york: ZoneInfo, tmp_path: Path) -> None:
    for sync in ('interval = "15m"', 'cron = "30 2 * * *"'):
        cfg = config(sync)
        for last in (None, T0 - timedelta(minutes=5), T0 - timedelta(hours=30)):
            assert report.next_run(cfg, last, T0) == next_run(cfg, last, T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.start_run("daemon", T0)
        data = report.status_data(config('interval = "15m"'), store, now=T0 + timedelta(minutes=1))
        assert data["next_run"] is None  # no daemon alive: no next run (issue 13)
        write_beat(store, Beat(os.getpid(), socket.gethostname(), T0, T0, 30, "running"))
        data = report.status_data(config('interval = "15m"'), store, now=T0 + timedelta(minutes=1))
        assert datetime.fromisoformat(data["next_run"]) == T0 + timedelta(minutes=15)
        data = report.status_data(config('cron = "0 3 * * *"'), store, now=T0 + timedelta(minutes=1))
        assert datetime.fromisoformat(data["next_run"]) == datetime(2026, 1, 11, 3, 0, tzinfo=new_york)
    finally:
        store.close()


@pytest.mark.parametrize("sync", ['interval = "15m"', 'cron = "*/10 * * * *"'])
def test_the_scheduler_and_status_agree(sync: str) -> None:
    """The job the daemon schedules fires when `syncd status` says it will."""
    cfg = config(sync)
    scheduler = BackgroundScheduler(timezone=BERLIN)
    scheduler.start(paused=True)
    try:
        now = datetime.now(BERLIN)
        job = add_sync_job(scheduler, cfg.sync, lambda: None, BERLIN, now)
        assert job.next_run_time == now  # the run at start
        assert job.max_instances == 1
        assert job.coalesce is True
        assert job.misfire_grace_time == misfire_grace_seconds(cfg.sync, BERLIN, now)
        # after the run that started at `now`, APScheduler asks the trigger for the next fire time
        a_bit_later = now + timedelta(seconds=2)
        scheduled = job.trigger.get_next_fire_time(now, a_bit_later)
        assert next_run(cfg, now, a_bit_later, BERLIN) == scheduled  # report.next_run is this function
    finally:
        scheduler.shutdown(wait=False)


def test_describe_schedule() -> None:
    assert describe_schedule(config('interval = "15m"').sync) == "every 15m"
    assert describe_schedule(config('interval = "90s"').sync) == "every 90s"
    assert describe_schedule(config().sync) == "every 15m"
    assert describe_schedule(config('cron = "0 3 * * *"').sync) == "cron 0 3 * * * (local time)"
