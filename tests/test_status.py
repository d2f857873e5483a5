"""`syncd status`: a daemon alive or not (its heartbeat), who holds the lock, the next run only from a live
daemon, local times with their zone, durations, the last error in words, budgets with 0 and "over by N"."""

from __future__ import annotations

import io
import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import tzlocal

from syncd import report
from syncd.config import Config, parse_config
from syncd.heartbeat import Beat, Heartbeat, read_beat, write_beat
from syncd.store import StateStore

T0 = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
HOST = socket.gethostname()


def config(budgets: tuple[int | None, int | None, int | None] = (5000, 300, None)) -> Config:
    iv, lf, co = (f"monthly_credit_budget = {b}\n" if b is not None else "" for b in budgets)
    text = f"""
[sync]
interval = "15m"

[pbx]
base_url = "https://pbx.example.com:8088"
client_id = "id"
client_secret = "secret-value"

[vendors.insideview]
client_id = "iv"
client_secret = "iv-secret-value"
{iv}
[vendors.leadfeeder]
api_key = "lf-key-value"
account_id = "1"
{lf}
[vendors.contactout]
token = "co-token-value"
{co}"""
    return parse_config(text, source=Path("/nonexistent/syncd.toml"), environ={})


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> ZoneInfo:
    zone = ZoneInfo("Europe/Berlin")
    monkeypatch.setattr(tzlocal, "get_localzone", lambda: zone)
    return zone


def beat(state: str = "idle", *, at: datetime = T0, pid: int | None = None, host: str = HOST) -> Beat:
    return Beat(pid or os.getpid(), host, T0 - timedelta(hours=1), at, 30, state)


def test_budget_words_show_zero_and_overruns() -> None:
    assert report.budget_words(1200, 5000) == "1,200 / 5,000 / 3,800 left"
    assert report.budget_words(5000, 5000) == "5,000 / 5,000 / 0 left"
    assert report.budget_words(5100, 5000) == "5,100 / 5,000 / over by 100"
    assert report.budget_words(7, None) == "7 spent / no budget"


def test_durations() -> None:
    assert report.human_duration(0.951) == "1.0 s"
    assert report.human_duration(123.4) == "2m 03s"
    assert report.human_duration(3 * 3600 + 61) == "3h 01m"
    assert report.human_duration(None) == "-"


def test_no_daemon_no_next_run(store: StateStore) -> None:
    data = report.status_data(config(), store, now=T0)
    assert data["daemon"] is None
    assert data["next_run"] is None
    assert data["next_run_note"] == "no daemon has run on this state store"
    assert data["lock"] == {"held_by": None}


def test_a_live_daemon_gives_the_next_run_and_holds_the_lock(store: StateStore, berlin: ZoneInfo) -> None:
    store.start_run("daemon", T0)  # in progress
    write_beat(store, beat("running"))
    data = report.status_data(config(), store, now=T0 + timedelta(seconds=20))
    assert data["daemon"]["alive"] is True
    assert data["daemon"]["heartbeat_age_s"] == 20.0
    assert datetime.fromisoformat(data["next_run"]) == T0 + timedelta(minutes=15)
    assert data["next_run"].endswith("+01:00")  # local time, with its offset
    assert data["lock"]["held_by"] == f"the daemon (pid {os.getpid()} on {HOST})"


@pytest.mark.parametrize(
    ("state", "age", "pid", "alive"),
    [
        ("idle", 89, None, True),
        ("idle", 91, None, False),  # three beats missed
        ("stopped", 1, None, False),
        ("idle", 1, 2**22 + 12345, False),  # its pid is gone on this host: killed
    ],
)
def test_a_daemon_is_alive_while_its_heartbeat_is(
    store: StateStore, state: str, age: int, pid: int | None, alive: bool
) -> None:
    write_beat(store, beat(state, pid=pid))
    data = report.status_data(config(), store, now=T0 + timedelta(seconds=age))
    assert data["daemon"]["alive"] is alive
    assert (data["next_run"] is not None) is alive
    if not alive and state == "stopped":
        assert data["next_run_note"] == "no daemon is running: the last one stopped"
    elif not alive and pid is None:
        assert data["next_run_note"] == "no daemon is running: its last heartbeat is 1m 31s old"


def test_a_paused_daemon_has_no_next_run(store: StateStore) -> None:
    write_beat(store, beat("paused"))
    data = report.status_data(config(), store, now=T0)
    assert data["daemon"]["alive"] is True
    assert data["next_run"] is None
    assert data["next_run_note"] == "runs paused until a reload (SIGHUP)"


def test_the_lock_holder_is_named(store: StateStore) -> None:
    store.start_run("sync", T0)
    with store.lock():
        data = report.status_data(config(), store, now=T0)
        assert data["lock"]["held_by"].startswith(f"syncd (pid {os.getpid()} on {HOST}, since ")
        assert "interrupted_run" not in data["lock"]
    data = report.status_data(config(), store, now=T0)
    assert data["lock"]["held_by"] is None  # released: the lock file no longer names anyone


def test_a_run_whose_process_died_shows_as_interrupted(store: StateStore, berlin: ZoneInfo) -> None:
    store.start_run("sync", T0)  # left `running`, and nobody holds the lock
    data = report.status_data(config(), store, now=T0)
    assert data["lock"]["held_by"] is None
    assert data["lock"]["interrupted_run"] == (
        "a sync run started 2026-01-10T09:00:00+01:00 ended without finishing (killed?)"
    )
    # a holder whose pid is gone (kill -9) is no holder
    Path(str(store.engine.url.database) + ".lock").write_text(
        json.dumps({"pid": 2**22 + 12345, "host": HOST, "since": T0.isoformat()})
    )
    assert report.status_data(config(), store, now=T0)["lock"]["held_by"] is None


def test_the_terminal_view(store: StateStore, berlin: ZoneInfo) -> None:
    ok = store.start_run("sync", T0)
    store.finish_run(
        ok,
        "ok",
        {"seen": 300, "updated": 275, "credits": {"contactout": 286}},
        None,
        T0 + timedelta(seconds=8.25),
    )
    bad = store.start_run("sync", T0 + timedelta(hours=1))
    store.finish_run(
        bad,
        "failed",
        {},
        "pbx: connection refused on pbx.example.com:8088",
        T0 + timedelta(hours=1, seconds=2),
    )
    store.add_credits("insideview", "2026-01", 5000)  # the whole budget
    store.add_credits("leadfeeder", "2026-01", 310)  # 10 over
    store.add_credits("contactout", "2026-01", 12)  # no budget
    data = report.status_data(config(), store, now=T0 + timedelta(hours=2))
    assert data["vendors"]["insideview"] == {
        "credits_this_month": 5000,
        "monthly_budget": 5000,
        "remaining": 0,
        "over_by": 0,
    }
    assert data["vendors"]["leadfeeder"]["over_by"] == 10
    assert data["last_error"]["error"] == "pbx: connection refused on pbx.example.com:8088"
    out = io.StringIO()
    report.print_status(data, out)
    text = out.getvalue()
    assert "2026-01-10 11:00:00 CET" in text  # the status' own time: local, zone, no microseconds
    assert "times in CET" in text
    assert "01-10 09:00:00" in text and "8.2 s" in text and "2.0 s" in text
    assert "last error (2026-01-10 10:00:02 CET): pbx: connection refused on pbx.example.com:8088" in text
    assert "5,000 / 5,000 / 0 left" in text
    assert "310 / 300 / over by 10" in text
    assert "12 spent / no budget" in text
    assert "next run: none (no daemon has run on this state store)" in text
    assert "daemon: none has run on this state store" in text
    assert ".0000" not in text and "+00:00" not in text


def test_piped_status_is_one_json_document(store: StateStore, tmp_path: Path) -> None:
    cfg = config()
    cfg = cfg.model_copy(update={"sync": cfg.sync.model_copy(update={"state_url": store_url(store)})})
    out = io.StringIO()
    assert report.show_status(cfg, stream=out) == 0  # piped: indented, still one JSON document
    data = json.loads(out.getvalue())
    assert set(data) >= {"daemon", "lock", "next_run", "runs", "vendors", "last_error", "now", "timezone"}
    assert out.getvalue().startswith('{\n  "now": ')
    out = io.StringIO()
    assert report.show_status(cfg, as_json=True, stream=out) == 0  # --json: one object on one line
    assert out.getvalue().count("\n") == 1
    again = json.loads(out.getvalue())
    assert again.keys() == data.keys() and again["vendors"] == data["vendors"]


def store_url(store: StateStore) -> str:
    return str(store.engine.url)


def test_the_heartbeat_thread_beats_and_stops(store: StateStore) -> None:
    info = ("idle", T0, None)
    heart = Heartbeat(lambda: store, lambda: info, every=3600).start()
    first = read_beat(store)
    assert first is not None and first.state == "idle" and first.pid == os.getpid()
    heart.stop()
    last = read_beat(store)
    assert last is not None and last.state == "stopped" and last.beat_at >= first.beat_at
