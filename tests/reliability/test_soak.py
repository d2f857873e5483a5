"""Fault soak: syncs against all four simulators while they inject faults at random; at the end the PBX
holds exactly what a fault-free run produces, every change was logged once, and nothing crashed.

The phonebook grows while the soak runs (before every run new contacts arrive on the PBX and their known
vendor ids are imported with `links import`, itself retried on exit 75 as an operator would), so that
every run pulls, buys, merges and pushes. Before each run every simulator gets a fresh random mix of
faults (5xx, 429 with and without Retry-After, stalled responses the client times out on, connections
dropped mid-body), the PBX is now and then mostly down for a whole run, and the PBX's (and
InsideView's) tokens are expired now and then. Then the faults are switched off and one clean run ends
the soak.

Two drivers:
- cycles of `syncd --sync-now`, each a child process: a cycle may end with exit 1 (some contacts failed)
  or 75 (a service stayed unreachable), never with a traceback, an internal error or another status;
- the daemon (`syncd` on a 1-second interval) for as many runs: it never dies, a failed run is a
  documented error, never an unexpected exception, and SIGTERM ends it with exit 0.

`SYNCD_SOAK_CYCLES` (default 4 each; `make soak` runs 200), `SYNCD_SOAK_ARRIVALS` (new contacts per run,
default 10), `SYNCD_SOAK_SEED`, `SYNCD_SOAK_EVERY` ("7,30": a fault kind hits one request in 7 to 30) and
`SYNCD_SOAK_DENSITY` (0.2: at most that share of a simulator's requests faulted).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.sim.faults import Faults
from syncd.store import Link
from tests.reliability.site import (
    PYTHON,
    REPO,
    Site,
    add_figure,
    assert_no_crash,
    child_env,
    duplicates,
    phonebook_diff,
    record_output,
)

CYCLES = int(os.environ.get("SYNCD_SOAK_CYCLES", "4"))
ARRIVALS = int(os.environ.get("SYNCD_SOAK_ARRIVALS", "10"))
START = 100  # contacts on the PBX before the first run
SIZE = START + ARRIVALS * max(0, CYCLES - 1)  # the first run adds none
SEED = int(os.environ.get("SYNCD_SOAK_SEED", "20261122"))
# every fault kind hits one request in EVERY_MIN..EVERY_MAX, and at most MAX_DENSITY of a simulator's
# requests are faulted: rare enough that six attempts in a row essentially never all fail (a vendor given
# up on for a run would let a later vendor in the waterfall fill its fields: a different, correct result)
EVERY_MIN, EVERY_MAX = (int(n) for n in os.environ.get("SYNCD_SOAK_EVERY", "7,30").split(","))
MAX_DENSITY = float(os.environ.get("SYNCD_SOAK_DENSITY", "0.2"))

# Stalled responses outlast the client's timeout; the retries' backoff stays short
KNOBS: dict[str, dict[str, str]] = {"*": {"timeout": '"1s"'}}
STALL_SECONDS = 1.5
KINDS = ("error", "throttle", "stall", "drop")
ALLOWED_EXITS = {0, 1, 75}
# Runs in which the PBX is mostly down (the 4th, 11th... and a random share of the others). Vendors'
# faults stay transient: a vendor given up on for a run lets the next vendor in the waterfall fill the
# fields it would have filled, so that run's result would rightly differ from a fault-free one.
OUTAGE_RATE = 0.15


@dataclass
class Reference:
    phonebook: dict[int, Any]
    changes: list[tuple[int, str, str, str, str]]
    credits: dict[str, int]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """An identical fresh setup (the whole phonebook from the start), one run, no faults."""
    with Site(tmp_path_factory.mktemp("soak-reference"), SIZE) as ref:
        ref.write_config(**KNOBS)
        ref.import_links()
        first = ref.sync()
        assert first.code == 0, first.describe()
        yield Reference(ref.phonebook(), ref.changes(), ref.credits())


@dataclass
class Soak:
    """The random faults, arrivals and token expiries of one soak, and what they amounted to."""

    site: Site
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    expired: int = 0
    outages: int = 0
    link_retries: int = 0

    def randomize(self, faults: Faults) -> None:
        """A fresh random mix: one to three fault kinds, each on every EVERY_MIN-th to EVERY_MAX-th request."""
        rng = self.rng
        faults.reset()
        faults.stall_seconds = STALL_SECONDS
        for kind in rng.sample(KINDS, rng.randint(1, 3)):
            setattr(faults, f"{kind}_every", rng.randint(EVERY_MIN, EVERY_MAX))
        # at most MAX_DENSITY of the requests faulted: six failed attempts in a row stay improbable
        while sum(1 / e for e in self.everies(faults)) > MAX_DENSITY:
            kind = rng.choice([k for k in KINDS if getattr(faults, f"{k}_every")])
            setattr(faults, f"{kind}_every", getattr(faults, f"{kind}_every") + 1)
        faults.error_status = rng.choice((500, 502, 503, 504))
        faults.retry_after = rng.choice((None, None, 0.0, 0.3, 1.0))  # None: a 429 without Retry-After

    @staticmethod
    def everies(faults: Faults) -> list[int]:
        return [e for k in KINDS if (e := getattr(faults, f"{k}_every"))]

    def perturb(self, n: int, *, links_first: bool = False) -> None:
        """Before the n-th run: new contacts (n > 0), fresh faults, perhaps an outage, expired tokens."""
        site = self.site
        if n:
            self.calm()  # an outage lasts one run
            self.arrive_with_links() if links_first else self.arrive()
        for faults in site.sims.all_faults():
            self.randomize(faults)
        if n % 7 == 3 or self.rng.random() < OUTAGE_RATE:
            # a PBX outage: most requests fail, the run most likely gives up (exit 75) somewhere
            site.sims.pbx.faults.error_every, site.sims.pbx.faults.drop_every = 2, 3
            self.outages += 1
        if n and self.rng.random() < 0.5:
            site.sims.pbx.expire_tokens()
            site.sims.insideview.expire_tokens()
            self.expired += 1

    def arrive(self) -> None:
        """New contacts on the PBX, and their vendor ids imported (retried on exit 75, as an operator
        would: a run may hold the store, the PBX may be down; an outage ends after a while)."""
        site = self.site
        first = site.sims.pbx.contact_count() + 1
        arrived = range(first, first + site.arrive(ARRIVALS))
        for attempt in range(40):
            links = site.import_links(arrived, check=False)
            assert_no_crash(links)
            if links.code != 75:
                break
            self.link_retries += 1
            if attempt == 3:
                site.sims.pbx.faults.reset()
            time.sleep(0.25)
        assert links.code == 0, links.describe()

    def arrive_with_links(self) -> None:
        """New contacts whose vendor ids are already in the store. With the daemon running, importing
        them after they arrive would race its next run: a contact synced before its ids are known is
        (rightly) matched at ContactOut instead, and would differ from the reference."""
        site = self.site
        first = site.sims.pbx.contact_count() + 1
        ids = range(first, min(SIZE, first + ARRIVALS - 1) + 1)
        now = datetime.now(UTC)
        with site.store() as store:
            store.save_links(
                Link(cid, vendor, vid, "imported", 1.0, now)
                for cid, vendor, vid in site.sims.dataset.links()
                if cid in ids
            )
        site.arrive(ARRIVALS)

    def calm(self) -> None:
        for faults in self.site.sims.all_faults():
            faults.reset()

    def injected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for faults in self.site.sims.all_faults():
            total.update(faults.injected)
        return total


def check_like_reference(site: Site, ref: Reference) -> None:
    book = site.phonebook()
    changes = site.changes()
    assert book == ref.phonebook, "the soaked phonebook differs from a fault-free run:\n" + phonebook_diff(
        book, ref.phonebook
    )
    assert not duplicates(changes), f"changes logged twice: {duplicates(changes)[:5]}"
    assert sorted(without_taken_back(changes)) == sorted(ref.changes), (
        "the change log differs from a fault-free run's"
    )
    assert site.pending() == 0


def without_taken_back(changes: list[tuple[int, str, str, str, str]]) -> list[tuple[int, str, str, str, str]]:
    """The change log less each number syncd wrote and later took back as a switchboard (a run whose
    lookups failed for a colleague could not see yet that two contacts share it): both rows go, nothing
    else may differ from a fault-free run's log."""
    backs = [c for c in changes if c[1] not in ("email", "title") and c[3] == "" and c[2]]
    out = list(changes)
    for back in backs:
        cid, slot, number = back[:3]
        out.remove(back)
        written = [c for c in out if c[:4] == (cid, slot, "", number)]
        assert written, f"contact {cid}: {slot} {number} taken back but never written"
        out.remove(written[0])
    add_figure("soak_switchboards_taken_back", len(backs))
    return out


def figures(prefix: str, soak: Soak, runs: int, exits: Counter[Any], ref: Reference) -> None:
    seen = soak.injected()
    assert sum(seen.values()) > 0, "the soak injected no fault"
    add_figure(f"{prefix}_runs", runs)
    add_figure(f"{prefix}_contacts", SIZE)
    add_figure(f"{prefix}_faults_injected", dict(seen))
    add_figure(f"{prefix}_token_expiries", soak.expired)
    add_figure(f"{prefix}_pbx_outages", soak.outages)
    add_figure(f"{prefix}_links_import_retries", soak.link_retries)
    add_figure(f"{prefix}_outcomes", {str(k): v for k, v in exits.items()})
    add_figure(f"{prefix}_credits", soak.site.credits())
    add_figure(f"{prefix}_reference_credits", ref.credits)
    print(
        f"{prefix}: {runs} runs on {SIZE} contacts, faults injected {dict(seen)}, token expiries "
        f"{soak.expired}, PBX outages {soak.outages}, outcomes {dict(exits)}, credits "
        f"{soak.site.credits()} (fault-free: {ref.credits})"
    )


# --- cycles of `syncd --sync-now` ----------------------------------------------------------------------


def test_soak_cycles_with_random_faults_end_like_a_fault_free_run(
    tmp_path: Path, reference: Reference
) -> None:
    exits: Counter[int] = Counter()
    with Site(tmp_path / "soak", SIZE, pbx_start=START) as site:
        site.write_config(**KNOBS)
        site.import_links(range(1, START + 1))
        soak = Soak(site)
        for cycle in range(CYCLES):
            soak.perturb(cycle)
            run = site.sync(timeout=600)
            assert_no_crash(run)
            assert run.code in ALLOWED_EXITS, f"cycle {cycle}: {run.describe()}"
            exits[run.code] += 1
            assert not duplicates(site.changes()), f"cycle {cycle}: a change was logged twice"
        assert site.sims.pbx.contact_count() == SIZE
        soak.calm()
        clean = site.sync()
        assert clean.code == 0, clean.describe()
        assert_no_crash(clean)
        check_like_reference(site, reference)
        figures("soak", soak, CYCLES, exits, reference)


# --- the daemon ---------------------------------------------------------------------------------------------


class Daemon:
    """`syncd` (the daemon) as a child process; its JSON events are read as they come."""

    def __init__(self, site: Site) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "syncd", "--config", str(site.config), "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        self.lines: list[str] = []
        self.finished: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if '"run.finished"' in line:
                self.finished.put(json.loads(line))

    def next_run(self, timeout: float = 300) -> dict[str, Any]:
        """The `run.finished` event of the next run to end."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "the daemon died:\n" + "".join(self.lines[-30:])
            try:
                return self.finished.get(timeout=0.5)
            except queue.Empty:
                assert time.monotonic() < deadline, "no run ended in time:\n" + "".join(self.lines[-30:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(timeout=10)
        record_output("soak daemon", "".join(self.lines))
        return code

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.lines:
            if f'"{name}"' in line and line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found


def test_soak_the_daemon_with_random_faults_ends_like_a_fault_free_run(
    tmp_path: Path, reference: Reference
) -> None:
    outcomes: Counter[str] = Counter()
    with Site(tmp_path / "daemon", SIZE, pbx_start=START) as site:
        site.write_config(**KNOBS, sync={"interval": '"1s"'})
        site.import_links(range(1, START + 1))
        soak = Soak(site)
        soak.perturb(0)
        daemon = Daemon(site)
        try:
            for n in range(1, CYCLES):
                outcomes[daemon.next_run()["outcome"]] += 1
                soak.perturb(n, links_first=True)  # while the daemon waits (or already runs)
            outcomes[daemon.next_run()["outcome"]] += 1
            assert site.sims.pbx.contact_count() == SIZE
            soak.calm()
            daemon.next_run()  # it may have started before the calm
            clean = daemon.next_run()
            assert clean["outcome"] == "ok", clean
        finally:
            code = daemon.stop()
        assert code == 0, "".join(daemon.lines[-30:])
        text = "".join(daemon.lines)
        for marker in ("Traceback (most recent call last)", "scheduler.crashed", '"exception"'):
            assert marker not in text, f"{marker} in the daemon's log"
        for failed in daemon.events("run.failed"):
            assert failed["exit_code"] in (1, 75), failed  # documented failures only
        check_like_reference(site, reference)
        figures("daemon_soak", soak, len(daemon.events("run.finished")), outcomes, reference)
