"""Issue 2: pull N contacts from the PBX simulator into a fresh SQLite state store.

The simulator runs in its own process (built before any clock starts); syncd runs as the operator runs
it, `python -m syncd --config X --sync-now`, with no vendor table, in a child process reaped with
`os.wait4`, whose rusage is that one process's: peak RSS (`ru_maxrss`) and CPU time are syncd's alone.

Phases come from syncd's own JSON log (stderr): `run.started` -> `pull.done` is the pull proper (paging
and classifying); the rest of the run is loading bases, the (empty) merge and `commit_plan` writing the N
contacts. The PBX calls are the simulator's own count of `company_contact/list` requests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, LoadWatch, SimProcess, fmt_s, print_table, verdict, write_config

RSS_TARGET_MB = 200
PAGE_SIZE = 10_000


def _events(log_path: Path) -> dict[str, datetime]:
    """First timestamp of each event name in syncd's JSON log."""
    seen: dict[str, datetime] = {}
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event and "timestamp" in event:
            seen.setdefault(event["event"], datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")))
    return seen


class RssSampler(threading.Thread):
    """Polls /proc/PID/status (VmRSS) every `interval` seconds: the RSS timeline, to place the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (epoch seconds, MB)
        self.halt = threading.Event()

    def run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self.halt.is_set():
            try:
                with open(path, encoding="ascii", errors="replace") as handle:
                    for line in handle:
                        if line.startswith("VmRSS:"):
                            self.samples.append((time.time(), int(line.split()[1]) / 1024))
                            break
            except OSError:
                return
            self.halt.wait(self.interval)

    def peak_between(self, start: float, end: float) -> float:
        inside = [mb for t, mb in self.samples if start <= t <= end]
        return max(inside, default=0.0)


def run_syncd(config: Path, log_path: Path, *args: str) -> tuple[dict[str, Any], RssSampler]:
    """Run `python -m syncd --config X <args>`; wall time and the child's own rusage (os.wait4)."""
    with log_path.open("w", encoding="utf-8") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config), "--log-format", "json", *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=ROOT,
        )
        sampler = RssSampler(proc.pid)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        sampler.halt.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    run = {
        "exit_status": proc.returncode,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: kilobytes
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
    }
    return run, sampler


def bench_pull(contacts: int) -> dict[str, Any]:
    load = LoadWatch()
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-pull-") as tmp,
        SimProcess(contacts, ["pbx"]) as sims,
    ):
        work = Path(tmp)
        state_url = f"sqlite:///{work / 'state.db'}"
        config = write_config(work / "syncd.toml", sims.urls, state_url, pbx={"page_size": PAGE_SIZE})
        before = sims.stats()["pbx"]["calls"]
        run, rss = run_syncd(config, work / "syncd.log", "--sync-now")
        after = sims.stats()["pbx"]["calls"]
        events = _events(work / "syncd.log")
        db_mb = (work / "state.db").stat().st_size / 2**20 if (work / "state.db").exists() else 0.0
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    list_calls = calls.get("company_contact/list", 0)
    minimum = max(1, math.ceil(contacts / PAGE_SIZE))
    phases: dict[str, float] = {}
    if {"run.started", "pull.done", "run.finished"} <= events.keys():
        started, pulled, finished = (
            events[k].timestamp() for k in ("run.started", "pull.done", "run.finished")
        )
        phases = {
            "pull_s": pulled - started,
            "after_pull_s": finished - pulled,
            "startup_and_exit_s": run["wall_s"] - (finished - started),
            "rss_mb_sampled_peak_in_pull": rss.peak_between(started, pulled),
            "rss_mb_sampled_peak_after_pull": rss.peak_between(pulled, finished),
        }
    result = {
        "contacts": contacts,
        "page_size": PAGE_SIZE,
        "simulator_build_s": sims.build_s,
        **run,
        **phases,
        "pbx_calls": calls,
        "list_calls": list_calls,
        "list_calls_minimum": minimum,
        "state_db_mb": round(db_mb, 1),
        "rss_target_mb": RSS_TARGET_MB,
        "rss_ok": run["peak_rss_mb"] <= RSS_TARGET_MB,
        **load.stop(),
    }
    rows: list[list[Any]] = [
        ["figure", "value", "note"],
        ["contacts pulled", f"{contacts:,}", f"simulator built in {sims.build_s:.1f} s, before timing"],
        ["syncd --sync-now wall", fmt_s(run["wall_s"]), f"exit status {run['exit_status']}; whole process"],
    ]
    if phases:
        rows += [
            ["  pull phase", fmt_s(phases["pull_s"]), "run.started -> pull.done (paging + classify)"],
            [
                "  rest of the run",
                fmt_s(phases["after_pull_s"]),
                "bases, merge, commit_plan of every contact",
            ],
            ["  start-up + exit", fmt_s(phases["startup_and_exit_s"]), "interpreter, imports, config"],
        ]
    rows += [
        ["syncd CPU", fmt_s(run["cpu_user_s"] + run["cpu_sys_s"]), "user + system, syncd process only"],
        [
            "PBX list calls",
            f"{list_calls} (minimum {minimum})",
            "all PBX calls: " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
        ],
        [
            "peak RSS of syncd",
            f"{run['peak_rss_mb']:.0f} MB",
            f"target <= {RSS_TARGET_MB} MB: {verdict(result['rss_ok'])}",
        ],
        [
            "  RSS peak by phase",
            f"pull {phases.get('rss_mb_sampled_peak_in_pull', 0):.0f} MB, "
            f"after {phases.get('rss_mb_sampled_peak_after_pull', 0):.0f} MB",
            "sampled from /proc every 20 ms (the peak above is exact)",
        ],
        ["state store size", f"{db_mb:.1f} MB", "SQLite file after the run"],
    ]
    print_table(f"Pull: {contacts:,} contacts from the PBX simulator (issue 2)", rows)
    return result
