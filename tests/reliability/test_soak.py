"""Fault soak: sync cycles against all four simulators while they inject faults at random; at the end the
PBX holds exactly what a fault-free run produces, every change was logged once, and no cycle crashed.

The phonebook grows while the soak runs (every cycle new contacts arrive on the PBX and their known
vendor ids are imported with `links import`, itself retried on exit 75 as an operator would), so that
every cycle pulls, buys, merges and pushes. Each cycle is one `syncd --sync-now` child process. Before
it, every simulator gets a fresh random mix of faults (5xx, 429 with and without Retry-After, stalled
responses the client times out on, connections dropped mid-body), the PBX is now and then mostly down
for a whole cycle, and the PBX's (and InsideView's) tokens are expired now and then. A cycle may end with exit 1 (some contacts failed) or 75 (a service
stayed unreachable): never with a traceback, an internal error or any other status. Then the faults are
switched off and one clean cycle runs.

`SYNCD_SOAK_CYCLES` (default 8; `make soak` runs 200), `SYNCD_SOAK_ARRIVALS` (new contacts a cycle,
default 10) and `SYNCD_SOAK_SEED` set the size of the soak.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from syncd.sim.faults import Faults
from tests.reliability.site import (
    Site,
    add_figure,
    assert_no_crash,
    duplicates,
    phonebook_diff,
)

CYCLES = int(os.environ.get("SYNCD_SOAK_CYCLES", "8"))
ARRIVALS = int(os.environ.get("SYNCD_SOAK_ARRIVALS", "10"))
START = 100  # contacts on the PBX before the first cycle
SIZE = START + ARRIVALS * max(0, CYCLES - 1)  # the first cycle adds none
SEED = int(os.environ.get("SYNCD_SOAK_SEED", "20261122"))
# every fault kind hits one request in EVERY_MIN..EVERY_MAX: rare enough that six attempts in a row
# essentially never all fail (a vendor given up on for a run would let a later vendor fill its fields)
EVERY_MIN, EVERY_MAX = (int(n) for n in os.environ.get("SYNCD_SOAK_EVERY", "7,30").split(","))

# Stalled responses outlast the client's timeout; the retries' backoff stays short
KNOBS: dict[str, dict[str, str]] = {"*": {"timeout": '"1s"'}}
STALL_SECONDS = 1.5
KINDS = ("error", "throttle", "stall", "drop")
ALLOWED_EXITS = {0, 1, 75}
# Cycles in which the PBX is mostly down. Vendors' faults stay transient: a vendor given up on for a run
# lets the next vendor in the waterfall fill the fields it would have filled, so that run's result would
# rightly differ from a fault-free one.
OUTAGE_RATE = 0.15


def randomize(faults: Faults, rng: random.Random) -> dict[str, Any]:
    """A fresh random mix: one to three fault kinds, each on every EVERY_MIN-th to EVERY_MAX-th request."""
    faults.reset()
    faults.stall_seconds = STALL_SECONDS
    mix: dict[str, Any] = {}
    for kind in rng.sample(KINDS, rng.randint(1, 3)):
        every = rng.randint(EVERY_MIN, EVERY_MAX)
        setattr(faults, f"{kind}_every", every)
        mix[kind] = every
    faults.error_status = rng.choice((500, 502, 503, 504))
    faults.retry_after = rng.choice((None, None, 0.0, 0.3, 1.0))  # None: a 429 without Retry-After
    return mix


def credits(site: Site) -> dict[str, int]:
    sims = site.sims
    return {
        "insideview": sims.insideview.credits_charged,
        "leadfeeder": sims.leadfeeder.credits_charged,
        "contactout": sum(sims.contactout.charged.values()),
    }


def injected(site: Site) -> Counter[str]:
    total: Counter[str] = Counter()
    for faults in site.sims.all_faults():
        total.update(faults.injected)
    return total


def test_soak_with_random_faults_ends_like_a_fault_free_run(tmp_path: Path) -> None:
    # the reference: an identical fresh setup, no faults
    with Site(tmp_path / "reference", SIZE) as ref:
        ref.write_config(**KNOBS)
        ref.import_links()
        first = ref.sync()
        assert first.code == 0, first.describe()
        want = ref.phonebook()
        want_changes = ref.changes()
        want_credits = credits(ref)

    rng = random.Random(SEED)
    exits: Counter[int] = Counter()
    expired = link_retries = outages = 0
    with Site(tmp_path / "soak", SIZE, pbx_start=START) as site:
        site.write_config(**KNOBS)
        site.import_links(range(1, START + 1))
        for cycle in range(CYCLES):
            if cycle:
                # new contacts, and their known vendor ids imported (retried on exit 75, as an operator
                # would; once the PBX's outage is over if it lasts)
                first_new = site.sims.pbx.contact_count() + 1
                arrived = range(first_new, first_new + site.arrive(ARRIVALS))
                for attempt in range(6):
                    links = site.import_links(arrived, check=False)
                    assert_no_crash(links)
                    if links.code != 75:
                        break
                    link_retries += 1
                    if attempt == 3:
                        site.sims.pbx.faults.reset()
                assert links.code == 0, links.describe()
            for faults in site.sims.all_faults():
                randomize(faults, rng)
            if rng.random() < OUTAGE_RATE:
                # a PBX outage: most requests fail, the run most likely gives up (exit 75) somewhere
                site.sims.pbx.faults.error_every, site.sims.pbx.faults.drop_every = 2, 3
                outages += 1
            if cycle and rng.random() < 0.5:
                site.sims.pbx.expire_tokens()
                site.sims.insideview.expire_tokens()
                expired += 1
            run = site.sync(timeout=600)
            assert_no_crash(run)
            assert run.code in ALLOWED_EXITS, f"cycle {cycle}: {run.describe()}"
            exits[run.code] += 1
            assert not duplicates(site.changes()), f"cycle {cycle}: a change was logged twice"
        assert site.sims.pbx.contact_count() == SIZE

        for faults in site.sims.all_faults():
            faults.reset()
        clean = site.sync()
        assert clean.code == 0, clean.describe()
        assert_no_crash(clean)

        book = site.phonebook()
        changes = site.changes()
        faults_seen = injected(site)
        spent = credits(site)
        pending = site.pending()

    assert book == want, "the soaked phonebook differs from a fault-free run:\n" + phonebook_diff(book, want)
    assert not duplicates(changes), f"changes logged twice: {duplicates(changes)[:5]}"
    assert sorted(changes) == sorted(want_changes), "the change log differs from a fault-free run's"
    assert pending == 0
    assert sum(faults_seen.values()) > 0, "the soak injected no fault"

    add_figure("soak_cycles", CYCLES)
    add_figure("soak_contacts", SIZE)
    add_figure("soak_links_import_retries", link_retries)
    add_figure("soak_faults_injected", dict(faults_seen))
    add_figure("soak_token_expiries", expired)
    add_figure("soak_pbx_outages", outages)
    add_figure("soak_exit_codes", {str(k): v for k, v in exits.items()})
    add_figure("soak_credits", spent)
    add_figure("soak_reference_credits", want_credits)
    print(
        f"soak: {CYCLES} cycles on {SIZE} contacts, faults injected {dict(faults_seen)}, "
        f"token expiries {expired}, PBX outages {outages}, exits {dict(exits)}, "
        f"credits {spent} (fault-free: {want_credits})"
    )
