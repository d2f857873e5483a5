"""The daemon end to end: `python -m syncd --config X` against the simulators served by this process."""

from __future__ import annotations

import json
import signal
import socket
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from syncd.sim.launch import PBX_SECRET, Simulators
from syncd.store import StateStore, month_of
from tests.daemon.conftest import (
    DaemonProcess,
    NotifySocket,
    daemon_runs,
    run_syncd,
    wait_until,
    write_config,
)

Start = Callable[..., DaemonProcess]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all((k, v) in sample_labels for k, v in labels.items())
    )


def test_runs_cycles_notifies_serves_metrics_and_stops_cleanly(
    sims: Simulators,
    tmp_path: Path,
    state_url: str,
    store: StateStore,
    notify_socket: NotifySocket,
    daemons: Start,
) -> None:
    port = free_port()
    config = write_config(
        sims,
        tmp_path / "syncd.toml",
        state_url,
        interval="1s",
        extra=f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n',
    )
    daemon = daemons(config, {"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "1000000"})

    wait_until(lambda: len(daemon_runs(store, "ok")) >= 3, "three successful scheduled runs")
    daemon.check_alive()

    # sd_notify: READY=1 first (config valid, store open), then STATUS= lines with the run's progress
    wait_until(lambda: "WATCHDOG=1" in notify_socket.lines(), "a watchdog ping")
    messages = notify_socket.snapshot()
    assert messages[0].split("\n")[0] == "READY=1"
    statuses = [line for line in notify_socket.lines() if line.startswith("STATUS=")]
    assert any("push" in s for s in statuses), statuses
    assert any(s.startswith("STATUS=idle; last run: ok") for s in statuses), statuses

    # metrics: after the runs, the counters agree with what the store recorded
    def observed() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        return samples if total(samples, "syncd_runs_total", outcome="ok") >= 2 else None

    samples = wait_until(observed, "two runs counted by the metrics endpoint")
    history = store.history()
    assert history, "the first run applied changes"
    assert total(samples, "syncd_field_changes_total") == len(history)
    by_field: dict[tuple[str, str], int] = {}
    for row in history:
        by_field[(row.field, row.source)] = by_field.get((row.field, row.source), 0) + 1
    for (field, source), count in by_field.items():
        assert total(samples, "syncd_field_changes_total", field=field, source=source) == count
    credits = store.credits_for_month(month_of(datetime.now(UTC)))
    for vendor, spent in credits.items():
        assert total(samples, "syncd_vendor_credits_total", vendor=vendor) == spent
    assert total(samples, "syncd_contacts_seen_total") >= 2 * sims.dataset.size
    assert total(samples, "syncd_run_duration_seconds_count") >= 2
    assert total(samples, "syncd_vendor_lookups_total", vendor="contactout", result="asked") >= 1

    # `syncd status` shows the next run
    status = run_syncd(config, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["next_run"]
    assert data["daemon"]["alive"] is True and data["daemon"]["pid"] == daemon.proc.pid

    # SIGTERM: exit 0, STOPPING=1, the PBX token revoked, no run left `running`
    assert daemon.stop() == 0
    after = json.loads(run_syncd(config, "status", "--json").stdout)
    assert (after["daemon"]["alive"], after["daemon"]["state"], after["next_run"]) == (False, "stopped", None)
    assert "STOPPING=1" in notify_socket.lines()
    assert daemon.find("pbx.token_revoked")
    assert sims.pbx.live_tokens() == 0
    assert store.load_token("pbx") is None
    assert all(r.outcome != "running" for r in daemon_runs(store))


def test_survives_a_failing_cycle(
    sims: Simulators, tmp_path: Path, state_url: str, store: StateStore, daemons: Start
) -> None:
    sims.pbx.faults.error_every = 1  # the PBX answers 503 to everything until further notice
    config = write_config(sims, tmp_path / "syncd.toml", state_url, interval="1s")
    daemon = daemons(config)

    failed = daemon.wait_event("run.failed")
    assert "pbx" in failed["error"]
    assert failed["exit_code"] == 75
    daemon.check_alive()
    assert daemon_runs(store, "failed")

    sims.pbx.faults.reset()
    wait_until(lambda: daemon_runs(store, "ok"), "a successful run after the PBX recovered")
    runs = daemon_runs(store)
    first_ok = next(i for i, r in enumerate(runs) if r.outcome == "ok")
    assert any(r.outcome == "failed" for r in runs[:first_ok])
    assert daemon.stop() == 0


def test_reload_reschedules_and_status_agrees(
    sims: Simulators, tmp_path: Path, state_url: str, store: StateStore, daemons: Start
) -> None:
    path = tmp_path / "syncd.toml"
    config = write_config(sims, path, state_url, interval="1h")
    daemon = daemons(config)
    daemon.wait_event("run.finished")  # the run at start; the next one is an hour away
    first = daemon_runs(store)
    assert len(first) == 1

    # a new interval: the schedule continues from the last run, as `syncd status` computes it
    write_config(sims, path, state_url, interval="2h")
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config.reloaded")
    assert reloaded["changed"] == ["sync"]
    assert reloaded["schedule"] == "every 2h"
    changed = daemon.wait_event("schedule.changed")
    next_at = datetime.fromisoformat(changed["next_run"])
    assert abs(next_at - (first[0].started_at + timedelta(hours=2))) < timedelta(milliseconds=1)
    status = run_syncd(config, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert datetime.fromisoformat(json.loads(status.stdout)["next_run"]) == next_at

    # a field policy and a 1 s interval: runs resume on the new schedule
    write_config(sims, path, state_url, interval="1s", extra='[fields]\ntitle = "never"\n')
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config.reloaded", after=1)
    assert sorted(reloaded["changed"]) == ["fields", "sync"]
    wait_until(lambda: len(daemon_runs(store, "ok")) >= 3, "runs on the reloaded 1 s schedule")
    assert daemon.stop() == 0


def test_refuses_an_invalid_reload_and_keeps_running(
    sims: Simulators, tmp_path: Path, state_url: str, store: StateStore, daemons: Start
) -> None:
    path = tmp_path / "syncd.toml"
    config = write_config(sims, path, state_url, interval="1s")
    daemon = daemons(config)
    wait_until(lambda: daemon_runs(store, "ok"), "a first run")

    path.write_text(path.read_text().replace('interval = "1s"', 'interval = "soon"'))
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_event("config.reload_failed")
    assert "sync.interval" in failed["error"]
    assert not daemon.find("config.reloaded")

    # still running, on the old 1 s schedule
    done = len(daemon_runs(store, "ok"))
    wait_until(lambda: len(daemon_runs(store, "ok")) >= done + 2, "runs after the refused reload")
    daemon.check_alive()
    assert daemon.stop() == 0


def test_sigterm_mid_push_exits_0_with_a_consistent_journal(
    sims: Simulators,
    tmp_path: Path,
    state_url: str,
    store: StateStore,
    notify_socket: NotifySocket,
    daemons: Start,
) -> None:
    config = write_config(
        sims, tmp_path / "syncd.toml", state_url, interval="1h", sync_extra="push_concurrency = 1"
    )
    sims.pbx.faults.latency = 0.3  # every PBX answer takes 0.3 s: the push lasts a few seconds
    daemon = daemons(config, {"NOTIFY_SOCKET": notify_socket.name})

    wait_until(lambda: any(" push " in line for line in notify_socket.lines()), "the push phase")
    assert daemon.stop() == 0
    assert "STOPPING=1" in notify_socket.lines()

    # the run recorded its end; every entry still pending was never sent (none left in doubt)
    runs = daemon_runs(store)
    assert len(runs) == 1
    assert runs[0].outcome == "interrupted"
    pending = store.journal_pending()
    assert pending, "the stop came before the last contact"
    assert all(entry.sent_at is None for entry in pending)
    # one pending count: the run's log event, its record and the journal (what `status` shows) agree
    [finished] = daemon.find("run.finished")
    assert finished["outcome"] == "interrupted"
    assert finished["pending"] == runs[0].counts["pending"] == len(pending)
    applied_before = len(store.history())

    # the next run resolves them
    sims.pbx.faults.reset()
    result = run_syncd(config, "--sync-now")
    assert result.returncode == 0, result.stderr[-2000:]
    assert store.journal_pending() == []
    for entry in pending:
        resolved = store.journal_get(entry.id)
        assert resolved is not None
        assert resolved.state in ("applied", "superseded")
    assert len(store.history()) > applied_before


def test_a_run_that_finds_the_lock_held_is_skipped(
    sims: Simulators, tmp_path: Path, state_url: str, store: StateStore, daemons: Start
) -> None:
    config = write_config(sims, tmp_path / "syncd.toml", state_url, interval="1s")
    with store.lock():  # as a `syncd --sync-now` in progress would
        daemon = daemons(config)
        wait_until(
            lambda: [e for e in daemon.find("run.skipped") if "holds the state store lock" in e["reason"]],
            "a run skipped because the lock is held",
        )
        assert daemon_runs(store) == []
    wait_until(lambda: daemon_runs(store, "ok"), "a run once the lock is free")
    daemon.signal(signal.SIGINT)  # Ctrl-C in a terminal: the same orderly stop as SIGTERM
    assert daemon.wait_exit() == 0


def test_a_refused_pbx_login_pauses_runs_until_a_reload(
    sims: Simulators, tmp_path: Path, state_url: str, store: StateStore, daemons: Start
) -> None:
    """Five failed logins get the host's IP blocked: after one refusal the daemon stops trying."""
    path = tmp_path / "syncd.toml"
    write_config(sims, path, state_url, interval="1s")
    good = path.read_text()
    path.write_text(good.replace(f'client_secret = "{PBX_SECRET}"', 'client_secret = "wrong-secret"'))
    daemon = daemons(path)

    failed = daemon.wait_event("run.failed")
    assert failed["exit_code"] == 78
    daemon.wait_event("schedule.paused")
    daemon.wait_event("run.skipped", after=1)  # two fire times passed without a login attempt
    assert sims.pbx.failed_logins == {"127.0.0.1": 1}
    daemon.check_alive()

    path.write_text(good)
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("schedule.resumed")
    wait_until(lambda: daemon_runs(store, "ok"), "a run after the credentials were fixed")
    assert daemon.stop() == 0
