"""The machinery of the reliability suite: a "site" is the four simulators around one seeded phonebook, a
config pointing at them and a state store, driven through the real command line in child processes.

Everything a child prints, and every secret or token the simulators hand out, is recorded for the
secrets scan (`test_secrets_scan.py`, run last); figures the tests measure go to `FIGURES`, printed at
the end of the session (and written to `$SYNCD_FIGURES_JSON` when set).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.sim.dataset import Dataset
from syncd.sim.faults import Faults
from syncd.sim.launch import (
    CO_TOKEN,
    IV_SECRET,
    LF_KEY,
    PBX_CLIENT_ID,
    PBX_SECRET,
    VENDORS,
    SimOptions,
    Simulators,
)
from syncd.sim.pbx import PbxSimulator, seed_fields
from syncd.store import StateStore
from tests.e2e.harness import json_events

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# --- what the whole suite saw: outputs, secrets, figures ----------------------------------------------

_lock = threading.Lock()
OUTPUTS: list[tuple[str, str]] = []  # (label, text) of everything syncd printed during the suite
SECRETS: set[str] = {PBX_SECRET, IV_SECRET, LF_KEY, CO_TOKEN}  # plus every token minted, added as seen
FIGURES: dict[str, Any] = {}
SCANNED = Counter[str]()  # outputs scanned on the spot (not kept: the hostile tests' logs are large)


def record_output(label: str, *texts: str) -> None:
    with _lock:
        OUTPUTS.extend((label, t) for t in texts if t)


def scanned_on_the_spot(text: str) -> list[str]:
    """Scan `text` for every secret known so far, count it, and do not keep it."""
    with _lock:
        SCANNED["outputs"] += 1
        SCANNED["bytes"] += len(text)
    return scan(text)


def add_secret(value: str) -> None:
    if value:
        with _lock:
            SECRETS.add(value)


def add_figure(key: str, value: Any) -> None:
    """Add a number to a figure (or merge a Counter-like dict into it)."""
    with _lock:
        if isinstance(value, dict):
            total: Counter[str] = Counter(FIGURES.get(key, {}))
            total.update(value)
            FIGURES[key] = dict(total)
        else:
            FIGURES[key] = FIGURES.get(key, 0) + value


def scan(text: str, secrets: Iterable[str] | None = None) -> list[str]:
    """The secrets that occur in `text`."""
    return [s for s in (SECRETS if secrets is None else secrets) if s and s in text]


# --- one command's outcome --------------------------------------------------------------------------


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return json_events(self.err)

    def event(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    @property
    def killed(self) -> bool:
        return self.code == -9

    def describe(self) -> str:
        tail = "\n".join(self.err.splitlines()[-15:])
        return f"syncd {' '.join(self.args)} -> {self.code}\nstdout: {self.out[-1500:]}\nstderr tail:\n{tail}"


CRASH_MARKERS = ("Traceback (most recent call last)", "syncd.crashed", "internal error")


def assert_no_crash(run: Run) -> None:
    """No traceback, no internal error: whatever went wrong was a documented, handled failure."""
    for marker in CRASH_MARKERS:
        assert marker not in run.err and marker not in run.out, run.describe()


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_syncd(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    label: str = "syncd",
    stdin: str | None = None,
) -> Run:
    """`python -m syncd ARGS...` in a child process; its output is recorded for the secrets scan."""
    proc = subprocess.run(
        [PYTHON, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        env=child_env(**(env or {})),
        cwd=cwd,
        timeout=timeout,
        input=stdin,
        check=False,
    )
    record_output(f"{label}: {' '.join(args)}", proc.stdout, proc.stderr)
    return Run(list(args), proc.returncode, proc.stdout, proc.stderr)


# --- configs ----------------------------------------------------------------------------------------

# the simulators' ContactOut limits are raised so that a site's run is bound by work, not by rate limits
FAST_OPTIONS = SimOptions(contactout={"search_per_minute": 600_000, "general_per_minute": 600_000})


def set_key(text: str, section: str, key: str, value: str) -> str:
    """Set `key = value` in `[section]` of a config text (replacing it, or adding it after the header)."""
    lines = text.splitlines()
    try:
        start = lines.index(f"[{section}]")
    except ValueError:
        return text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"{re.escape(key)}\s*=", lines[i]):
            lines[i] = f"{key} = {value}"
            break
    else:
        lines.insert(start + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def sections(text: str) -> list[str]:
    return re.findall(r"(?m)^\[([a-z.]+)\]$", text)


# --- a site ----------------------------------------------------------------------------------------


@dataclass
class Site:
    """Simulators around `Dataset(size)`, a config and a state store under `root`.

    With `pbx_start`, the PBX starts with the first `pbx_start` contacts only; `arrive(n)` adds the next n
    (same ids, same records), as people add contacts to a phonebook between runs.
    """

    root: Path
    size: int = 100
    options: SimOptions | None = None
    vendors: tuple[str, ...] = VENDORS
    seed: int = 42
    pbx_start: int | None = None
    sims: Simulators = field(init=False)
    minted: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sims = Simulators(
            Dataset(self.size, seed=self.seed),
            vendors=self.vendors,
            options=self.options or FAST_OPTIONS,
        )
        self._later: PbxSimulator | None = None
        if self.pbx_start is not None:
            self._later = self.sims.pbx
            self.sims.pbx = PbxSimulator(
                Dataset(self.pbx_start, seed=self.seed),
                client_id=PBX_CLIENT_ID,
                client_secret=PBX_SECRET,
                faults=Faults(),
            )
        self._record_pbx_tokens()

    def arrive(self, n: int) -> int:
        """Add the next `n` contacts of the dataset to the PBX; returns how many were added."""
        if self._later is None:
            return 0
        pbx = self.sims.pbx
        added = 0
        for cid in range(pbx.contact_count() + 1, min(self.size, pbx.contact_count() + n) + 1):
            got = pbx.add_contact(**seed_fields(self._later.contact(cid)))
            assert got == cid, f"the PBX gave id {got} to contact {cid}"
            added += 1
        return added

    def _record_pbx_tokens(self) -> None:
        pbx = self.sims.pbx
        mint = pbx._mint

        def recording() -> bytes:
            body = mint()
            data = json.loads(body)
            for key in ("access_token", "refresh_token"):
                self.minted.append(data[key])
                add_secret(data[key])
            return body

        pbx._mint = recording  # type: ignore[method-assign]

    # --- life ------------------------------------------------------------------------------------
    def start(self) -> Site:
        self.sims.start()
        return self

    def stop(self) -> None:
        if "insideview" in self.vendors:
            for token in list(self.sims.insideview.tokens):
                add_secret(token)
        self.sims.stop()

    def __enter__(self) -> Site:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- files -----------------------------------------------------------------------------------
    @property
    def db(self) -> Path:
        return self.root / "state.db"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.db}"

    @property
    def config(self) -> Path:
        return self.root / "syncd.toml"

    def config_text(self, **keys: dict[str, str]) -> str:
        """The simulators' config; `keys` maps a section ("pbx", "sync", "vendors.insideview", or "*"
        for every service section) to raw TOML values to set in it."""
        text = self.sims.config_text(self.state_url)
        for section, values in keys.items():
            targets = (
                [s for s in sections(text) if s == "pbx" or s.startswith("vendors.")]
                if section == "*"
                else [section]
            )
            for target in targets:
                for key, value in values.items():
                    text = set_key(text, target, key, value)
        return text

    def write_config(self, text: str | None = None, **keys: dict[str, str]) -> Path:
        body = text if text is not None else self.config_text(**keys)
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        return self.config

    # --- commands --------------------------------------------------------------------------------
    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
        return run_syncd(
            ["--config", str(self.config), "--log-format", "json", *args],
            env=env,
            cwd=self.root,
            timeout=timeout,
            label=f"site {self.root.name}",
        )

    def sync(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
        return self.cli("--sync-now", *args, env=env, timeout=timeout)

    def import_links(self, ids: range | None = None, *, check: bool = True) -> Run:
        """`links import` of the dataset's vendor ids (of the contacts in `ids`, or all of them)."""
        path = self.root / "links.csv"
        with path.open("w", encoding="utf-8") as handle:
            handle.write("pbx_contact_id,vendor,vendor_id\n")
            for cid, vendor, vendor_id in self.sims.dataset.links():
                if vendor in self.vendors and (ids is None or cid in ids):
                    handle.write(f"{cid},{vendor},{vendor_id}\n")
        run = self.cli("links", "import", str(path))
        if check:
            assert run.code == 0, run.describe()
        return run

    # --- what it holds ---------------------------------------------------------------------------
    def phonebook(self) -> dict[int, dict[str, Any]]:
        """Every contact the PBX holds, in detailed form."""
        pbx = self.sims.pbx
        return {cid: pbx.contact(cid) for cid in pbx.contact_ids()}

    def credits(self) -> dict[str, int]:
        """Credits each vendor simulator charged so far."""
        sims = self.sims
        return {
            "insideview": sims.insideview.credits_charged,
            "leadfeeder": sims.leadfeeder.credits_charged,
            "contactout": sum(sims.contactout.charged.values()),
        }

    @contextlib.contextmanager
    def store(self) -> Iterator[StateStore]:
        store = StateStore.open(self.state_url)
        try:
            yield store
        finally:
            store.close()

    def changes(self) -> list[tuple[int, str, str, str, str]]:
        """The change log as (contact, field, old, new, source), in the order it was written."""
        with self.store() as store:
            return [(c.contact_id, c.field, c.old, c.new, c.source) for c in store.history()]

    def pending(self) -> int:
        with self.store() as store:
            return len(store.journal_pending())

    def copy_store_from(self, db: Path) -> None:
        """Start from a copy of another site's state store (same phonebook), without its PBX token."""
        for suffix in ("-wal", "-shm"):
            Path(str(self.db) + suffix).unlink(missing_ok=True)
        shutil.copyfile(db, self.db)
        os.chmod(self.db, 0o600)
        with contextlib.closing(sqlite3.connect(self.db)) as conn, conn:
            conn.execute("DELETE FROM tokens")


def checkpoint(db: Path) -> None:
    """Fold a state store's WAL into the main file, so that copying the file copies everything."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def duplicates(changes: list[tuple[int, str, str, str, str]]) -> list[tuple[int, str, str, str, str]]:
    counts = Counter(changes)
    return [c for c, n in counts.items() if n > 1]


def phonebook_diff(got: dict[int, dict[str, Any]], want: dict[int, dict[str, Any]], limit: int = 5) -> str:
    """A short account of how two phonebooks differ (for assertion messages)."""
    lines: list[str] = []
    for cid in sorted(set(got) | set(want)):
        a, b = got.get(cid), want.get(cid)
        if a == b:
            continue
        if a is None or b is None:
            lines.append(f"contact {cid}: {'missing' if a is None else 'unexpected'}")
        else:
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            lines.append(f"contact {cid}: " + "; ".join(f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys))
        if len(lines) >= limit:
            lines.append("...")
            break
    return "\n".join(lines)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
