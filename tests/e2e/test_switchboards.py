"""End to end against the simulators: direct lines beside a person's business number, and switchboards
(a vendor's corporate number, a number colleagues share) never written into one person's contact.

The seeded 60-contact phonebook: almost every contact holds a business number a person entered;
InsideView and Leadfeeder know each person's direct line; colleagues hold their company's switchboard,
which Leadfeeder lists for some persons too (contact 56 is proposed the switchboard contact 57 holds).
"""

from __future__ import annotations

from typing import Any

from syncd.normalize import to_e164
from syncd.sim.dataset import Route
from tests.e2e.harness import EnvFactory


def numbers_of(record: dict[str, Any]) -> dict[str, str]:
    return {n["num_type"]: n["number"] for n in record["number_list"]}


def test_direct_lines_land_beside_a_persons_number_and_switchboards_are_skipped(
    make_env: EnvFactory,
) -> None:
    env = make_env(60)
    env.import_links()
    dataset = env.dataset
    before = env.phonebook()

    # a dry run that buys the answers it plans with (`--dry-run --buy`, or `--dry-run` where that flag
    # does not exist yet) shows the switchboards it leaves out, one row each, and writes nothing
    dry = env.sync("--dry-run", "--buy")
    if dry.code == 2:
        dry = env.sync("--dry-run")
    assert dry.code == 0, dry.err
    assert env.phonebook() == before
    planned_skips = {
        (r["contact_id"], r["value"], r["reason"]) for r in dry.lines if r["event"] == "plan.skipped"
    }

    result = env.sync()
    assert result.code == 0, result.err
    after = env.phonebook()
    [done] = result.event("run.finished")
    with env.store() as store:
        changes = {(c.contact_id, c.field): c for c in store.history()}

    # 1. a person's numbers stay exactly as entered; the direct line lands in business_number2
    for cid, record in before.items():
        for slot, number in numbers_of(record).items():
            assert numbers_of(after[cid])[slot] == number
    beside = [
        cid
        for cid, record in before.items()
        if "business_number" in numbers_of(record) and "business_number2" not in numbers_of(record)
    ]
    filled = {cid for cid in beside if (cid, "business_number2") in changes}
    iv = [
        cid
        for cid in beside
        if dataset.person(cid).route is Route.insideview and not dataset.person(cid).garbage
    ]
    assert iv, "the demo phonebook holds InsideView contacts with a person's business number"
    for cid in iv:
        change = changes[(cid, "business_number2")]
        assert (change.source, change.new) == ("insideview", dataset.person(cid).direct)
        assert numbers_of(after[cid])["business_number"] == numbers_of(before[cid])["business_number"]
    assert len(filled) > len(iv)  # Leadfeeder's and ContactOut's direct lines land the same way

    # 2. the switchboard colleagues share is never written into a contact, and is counted
    person = dataset.person(56)
    assert person.route is Route.leadfeeder and person.office is not None
    held_by_57 = {to_e164(n, "US") for n in numbers_of(before[57]).values()}
    assert person.office in held_by_57
    assert person.office not in numbers_of(after[56]).values()
    assert changes[(56, "business_number2")].new == person.direct
    skipped = result.event("merge.switchboard_skipped")
    assert {"contact_id": 56, "number": person.office}.items() <= next(
        e for e in skipped if e["contact_id"] == 56
    ).items()
    assert done["switchboards_skipped"] == len(skipped) > 0
    assert planned_skips == {(e["contact_id"], e["number"], "switchboard") for e in skipped}
    assert done["skipped"]["switchboard"] == len(skipped)
    # no number syncd wrote is a switchboard: each one belongs to that one person
    boards = {e["number"] for e in skipped} | {dataset.switchboard(p.company) for p in dataset.persons()}
    written = [c for (_, field), c in changes.items() if field not in ("email", "title")]
    assert written
    for change in written:
        assert to_e164(change.new, "US") not in {to_e164(b, "US") for b in boards}

    # 3. the next run writes nothing
    again = env.sync()
    assert again.code == 0, again.err
    assert again.event("contact.changed") == []
    assert env.phonebook() == after
