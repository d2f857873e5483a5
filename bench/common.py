"""Shared plumbing: the simulator process, config files, machine facts, tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from syncd.sim.launch import CO_TOKEN, IV_CLIENT_ID, IV_SECRET, LF_ACCOUNT, LF_KEY, PBX_CLIENT_ID, PBX_SECRET

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


class SimProcess:
    """The simulators in a child process (`bench.simproc`): `with SimProcess(spec) as sims: sims.urls`."""

    def __init__(self, contacts: int, sims: Sequence[str], **spec: Any) -> None:
        self.spec = {"contacts": contacts, "sims": list(sims), **spec}
        self.proc: subprocess.Popen[str] | None = None
        self.urls: dict[str, str] = {}
        self.build_s = 0.0

    def __enter__(self) -> SimProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simproc", json.dumps(self.spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"simulators failed to start: {ready}")
        self.urls = ready["urls"]
        self.build_s = float(ready["build_s"])
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        self.proc = None

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator process exited")
        result: dict[str, Any] = json.loads(line)
        return result

    def command(self, text: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self._read()

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def cpu_seconds(self) -> float:
        """User + system CPU time the simulator process has used so far."""
        assert self.proc is not None
        return proc_cpu_seconds(self.proc.pid)

    def set_faults(self, sim: str, **values: Any) -> None:
        self.command(f"faults {sim} {json.dumps(values)}")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- config -----------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _table(name: str, values: Mapping[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items()), ""]


def write_config(
    path: Path,
    urls: Mapping[str, str],
    state_url: str,
    *,
    sync: Mapping[str, Any] | None = None,
    pbx: Mapping[str, Any] | None = None,
    vendors: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A syncd config for the simulators at `urls`; a vendor is configured only when it is in `vendors`."""
    lines = ["# written by the syncd benchmark (bench/) for its loopback simulators", ""]
    lines += _table("sync", {"state_url": state_url, "default_region": "US", **(sync or {})})
    lines += _table(
        "pbx",
        {"base_url": urls["pbx"], "client_id": PBX_CLIENT_ID, "client_secret": PBX_SECRET, **(pbx or {})},
    )
    vendors = vendors or {}
    if vendors:
        lines += _table(
            "enrich", {"order": [v for v in ("insideview", "leadfeeder", "contactout") if v in vendors]}
        )
    if "insideview" in vendors:
        url = urls.get("insideview", "")
        base = {"base_url": url, "login_url": url, "client_id": IV_CLIENT_ID, "client_secret": IV_SECRET}
        lines += _table("vendors.insideview", {**base, **vendors["insideview"]})
    if "leadfeeder" in vendors:
        base = {"base_url": urls.get("leadfeeder", ""), "api_key": LF_KEY, "account_id": LF_ACCOUNT}
        lines += _table("vendors.leadfeeder", {**base, **vendors["leadfeeder"]})
    if "contactout" in vendors:
        base = {"base_url": urls.get("contactout", ""), "token": CO_TOKEN}
        lines += _table("vendors.contactout", {**base, **vendors["contactout"]})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path


# --- machine facts ----------------------------------------------------------------------------------


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "revision": git_revision(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class LoadWatch:
    """The 1-minute load average before and after a benchmark: was the machine busy with other work?"""

    before: float = field(default_factory=lambda: os.getloadavg()[0])
    after: float = 0.0

    def stop(self) -> dict[str, float]:
        self.after = os.getloadavg()[0]
        return {"loadavg_1m_before": round(self.before, 2), "loadavg_1m_after": round(self.after, 2)}


# --- output -----------------------------------------------------------------------------------------


def print_table(title: str, rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """A plain two-or-more column table: the first row is the header."""
    stream = out or sys.stdout
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(len(r) for r in cells))]
    stream.write(f"\n{title}\n{'=' * len(title)}\n")
    for n, row in enumerate(cells):
        stream.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() + "\n")
        if n == 0:
            stream.write("  ".join("-" * w for w in widths) + "\n")
    stream.flush()


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
