"""kill -9 at many points of a run, on a 1,000-contact phonebook: every time, later runs end in exactly the
state an uninterrupted run produces, and the change log holds every change once.

The kills are deterministic: `SYNCD_CRASH_AT=<point>:<n>` (syncd/crashpoint.py) makes the child kill
itself with SIGKILL the n-th time it passes a named point. Two shapes:
- a chain: one site, a run killed at each point in turn (pull, mid-enrichment, inside and after the plan's
  commit, mid-push, inside and after journal commits, during the journal resume), checked after every kill
  (nothing logged twice, nothing unaccounted for, no contact half-written), then one clean run;
- independent crashes, each followed by a clean rerun compared with the reference.

`SYNCD_CRASH_CONTACTS` sets the phonebook size (default 1000).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.site import (
    Run,
    Site,
    add_figure,
    assert_no_crash,
    checkpoint,
    duplicates,
    phonebook_diff,
)

SIZE = int(os.environ.get("SYNCD_CRASH_CONTACTS", "1000"))
# 100 contacts a page: the pull has 10 pages to be killed in; 16 updates in flight when a push is killed
KNOBS: dict[str, dict[str, str]] = {"pbx": {"page_size": "100"}, "sync": {"push_concurrency": "16"}}

Change = tuple[int, str, str, str, str]


@dataclass
class Reference:
    """An uninterrupted run on a fresh site: what every crashed site must end up as."""

    initial: dict[int, dict[str, Any]]
    final: dict[int, dict[str, Any]]
    changes: list[Change]
    cold: Path  # state store with the links imported
    warm: Path  # ... and the vendors' answers bought by a dry run
    credits: dict[str, int]  # what the vendors charged for it all


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    root = tmp_path_factory.mktemp("crash-reference")
    with Site(root / "site", SIZE) as site:
        site.write_config(**KNOBS)
        site.import_links()
        initial = site.phonebook()
        checkpoint(site.db)
        shutil.copyfile(site.db, root / "cold.db")
        dry = site.sync("--dry-run", "--buy")
        assert dry.code == 0, dry.describe()
        checkpoint(site.db)
        shutil.copyfile(site.db, root / "warm.db")
        run = site.sync()
        assert run.code == 0, run.describe()
        final = site.phonebook()
        changes = site.changes()
        credits = site.credits()
    assert len(changes) > SIZE, "the reference run must have plenty to push"
    assert not duplicates(changes)
    yield Reference(initial, final, changes, root / "cold.db", root / "warm.db", credits)


def crashed(site: Site, point: str) -> Run:
    run = site.sync(env={"SYNCD_CRASH_AT": point})
    assert run.killed, f"crash point {point} was not reached:\n{run.describe()}"
    return run


def check_consistent(site: Site, ref: Reference, after: str) -> None:
    """What a killed run may leave: a prefix of the reference's work, every bit of it accounted for."""
    changes = site.changes()
    assert not duplicates(changes), f"after {after}: changes logged twice: {duplicates(changes)[:3]}"
    unknown = set(changes) - set(ref.changes)
    assert not unknown, f"after {after}: changes the reference never made: {sorted(unknown)[:3]}"
    logged = {c[0] for c in changes}
    with site.store() as store:
        pending = {e.contact_id for e in store.journal_pending()}
    book = site.phonebook()
    for cid, now in book.items():
        if now == ref.initial[cid]:
            continue
        # written: it must be the reference's final record, never a half-written or foreign one
        assert now == ref.final[cid], f"after {after}: contact {cid} half-written:\n" + phonebook_diff(
            {cid: now}, {cid: ref.final[cid]}
        )
        # and either confirmed in the change log or still pending in the journal (resumed next run)
        assert cid in logged or cid in pending, f"after {after}: contact {cid} written but unaccounted for"


def check_final(site: Site, ref: Reference, what: str) -> None:
    book = site.phonebook()
    assert book == ref.final, f"{what}: the phonebook differs from the uninterrupted run:\n" + phonebook_diff(
        book, ref.final
    )
    changes = site.changes()
    assert not duplicates(changes), f"{what}: changes logged twice: {duplicates(changes)[:3]}"
    assert sorted(changes) == sorted(ref.changes), f"{what}: the change log differs from the reference"
    assert site.pending() == 0, f"{what}: journal entries left pending"


def logged_once(runs: list[Run], site: Site) -> tuple[int, int]:
    """Every change of the change log has a `contact.changed` event carrying its `change_id`; an event a
    kill left unmarked may repeat in a later run, always with the same id and the same content (a consumer
    drops the duplicate by id). Returns (lost, repeated) and records both as figures."""
    with site.store() as store:
        rows = {c.id: (c.contact_id, c.field, c.old, c.new) for c in store.history()}
    seen: dict[int, tuple[Any, ...]] = {}
    repeated = 0
    for run in runs:
        for e in run.event("contact.changed"):
            key = (e["contact_id"], e["field"], e["old"], e["new"])
            change_id = e["change_id"]
            assert rows.get(change_id) == key, f"event {key} carries change_id {change_id} of another change"
            if change_id in seen:
                repeated += 1
            seen[change_id] = key
    lost = len(set(rows) - set(seen))
    add_figure("crash_events_lost", lost)
    add_figure("crash_events_repeated", repeated)
    add_figure("crash_changes_logged", len(rows))
    return lost, repeated


# Each run of the chain is killed at its point. Once a push was killed, the next runs start by resuming
# the journal (one entry at a time), and are killed there in turn.
CHAIN = [
    "pull_page:3",
    "vendor_answer:2",  # mid-enrichment: some answers bought and stored, the run dies
    "vendor_answer:1",  # the same again, with the first answers taken from the ledger
    "enriched",
    "plan_commit",  # inside the plan's transaction: rolled back
    "marked_sent:700",  # mid-push: 16 updates in flight, some sent, some only marked
    "marked_sent:1",  # the resume marked its first entry sent, then died before sending it
    "sent:15",  # the PBX took the update, the run died before reading it back
    "journal_commit:30",  # inside a journal_apply transaction (change log, new record)
    "applied:45",
    "sent:1",
    "journal_commit:1",
    "applied:20",
]


def test_a_chain_of_kills_ends_like_an_uninterrupted_run(reference: Reference, tmp_path: Path) -> None:
    runs: list[Run] = []
    with Site(tmp_path / "chain", SIZE) as site:
        site.write_config(**KNOBS)
        site.copy_store_from(reference.cold)
        for point in CHAIN:
            runs.append(crashed(site, point))
            check_consistent(site, reference, point)
        final = site.sync()
        assert final.code == 0, final.describe()
        assert_no_crash(final)
        runs.append(final)
        check_final(site, reference, "after the chain")
        changes = site.changes()
        again = site.sync()
        assert again.code == 0, again.describe()
        assert again.event("run.finished")[0]["updated"] == 0
        assert not again.event("journal.resuming")
        # an answer in flight when a run is killed was paid for but never stored: bought again
        spent = site.credits()
        lost, _ = logged_once(runs, site)
    assert len(changes) == len(reference.changes)
    assert lost == 0, f"{lost} change(s) have no contact.changed event"
    add_figure("crash_chain_credits", spent)
    add_figure("crash_reference_credits", reference.credits)
    add_figure("crash_points_survived", len(CHAIN))


INDEPENDENT = [
    ("committed", "warm"),  # every update journaled, none sent: the next run resumes them all
    ("journal_commit:850", "warm"),  # late in the push, 16 in flight
    # between a chunk's commit and its last events: the events written repeat (same change_id), none lost
    ("applied:150", "warm"),
]


@pytest.mark.parametrize(("point", "start"), INDEPENDENT)
def test_a_killed_run_is_finished_by_the_next(
    reference: Reference, tmp_path: Path, point: str, start: str
) -> None:
    with Site(tmp_path / "site", SIZE) as site:
        site.write_config(**KNOBS)
        site.copy_store_from(reference.warm if start == "warm" else reference.cold)
        killed = crashed(site, point)
        check_consistent(site, reference, point)
        rerun = site.sync()
        assert rerun.code == 0, rerun.describe()
        assert_no_crash(rerun)
        check_final(site, reference, f"rerun after a kill at {point}")
        lost, _ = logged_once([killed, rerun], site)
    assert lost == 0, f"{lost} change(s) have no contact.changed event"
    add_figure("crash_points_survived", 1)
