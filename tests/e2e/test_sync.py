"""End to end: the CLI against the four simulators on loopback, a real SQLite state store.

A seeded 60-contact phonebook; contacts 1, 4, 7, ... are found through InsideView (imported ids),
2, 5, 8, ... through Leadfeeder (imported ids), the rest through ContactOut by name (or by nobody).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from syncd.config import load_config
from syncd.engine import SyncEngine
from syncd.model import EnrichmentResult, LookupRequest, Outcome, Vendor
from syncd.sim.dataset import Dataset, Person, Route
from syncd.sim.launch import Simulators
from tests.e2e.harness import Env, EnvFactory, Gate, RejectUpdates, Result, with_contactout_budget, wrap

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
HISTORY_KEYS = {"run_id", "at", "contact_id", "field", "old", "new", "source"}


class MutableDataset(Dataset):
    """A dataset whose vendors' truth a test can change while the simulators run."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.changes: dict[int, dict[str, Any]] = {}

    def person(self, contact_id: int) -> Person:
        person = super().person(contact_id)
        change = self.changes.get(contact_id)
        return replace(person, **change) if change else person


def vendor_calls(sims: Simulators) -> dict[str, int]:
    return {name: sum(getattr(sims, name).calls.values()) for name in sims.vendors}


def credits_charged(sims: Simulators) -> dict[str, int]:
    return {
        "insideview": sims.insideview.credits_charged,
        "leadfeeder": sims.leadfeeder.credits_charged,
        "contactout": sum(sims.contactout.charged.values()),
    }


def numbers_of(record: dict[str, Any]) -> dict[str, str]:
    return {n["num_type"]: n["number"] for n in record["number_list"]}


def changes_of(env: Env) -> dict[tuple[int, str], Any]:
    with env.store() as store:
        return {(c.contact_id, c.field): c for c in store.history()}


def finished(result: Result) -> dict[str, Any]:
    [event] = result.event("run.finished")
    return event


@dataclass
class Synced:
    env: Env
    before: dict[int, dict[str, Any]]
    first: Result
    after_first: dict[int, dict[str, Any]]
    pbx_calls_first: Counter[str]
    vendor_calls_first: dict[str, int]
    credits_first: dict[str, int]
    second: Result
    after_second: dict[int, dict[str, Any]]
    pbx_calls_second: Counter[str]
    vendor_calls_second: dict[str, int]
    credits_second: dict[str, int]


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    """Links imported, then two runs in a row; everything observed is kept for the tests to read."""
    factory = EnvFactory(tmp_path_factory.mktemp("synced"))
    try:
        env = factory(60)
        env.import_links()
        before = env.phonebook()
        first = env.sync()
        snap1 = (env.phonebook(), Counter(env.pbx.calls), vendor_calls(env.sims), credits_charged(env.sims))
        second = env.sync()
        snap2 = (env.phonebook(), Counter(env.pbx.calls), vendor_calls(env.sims), credits_charged(env.sims))
        yield Synced(env, before, first, *snap1, second, *snap2)
    finally:
        factory.close()


# --- first and second run ---------------------------------------------------------------------------


def test_first_run_fills_emails_numbers_and_titles_from_each_route(synced: Synced) -> None:
    assert synced.first.code == 0, synced.first.err
    pbx, dataset = synced.after_first, synced.env.dataset
    changes = changes_of(synced.env)

    # concrete values, one contact per route first
    assert pbx[1]["email"] == "arjun.patel@gringotts.example"
    assert pbx[1]["remark"] == "Call before 10am\nTitle: CFO"
    assert changes[(1, "email")].source == "insideview"
    assert numbers_of(pbx[2])["mobile_number"] == "+4915136434291"
    assert pbx[2]["email"] == "wei@globex.example"  # a person's email is kept (fill_empty)
    assert changes[(2, "mobile_number")].source == "leadfeeder"
    assert pbx[3]["email"] == "chen.johnson@tyrell.example"
    assert pbx[3]["remark"] == "Call before 10am\nTitle: Geschäftsführer"
    assert changes[(3, "email")].source == "contactout"

    # then every route against the vendors' truth
    def expected_email(cid: int, person_email: str) -> str:
        # fill_empty: an email a person entered is kept; an empty one gets the vendor's
        return str(synced.before[cid]["email"]) or person_email

    for cid, route in ((1, "insideview"), (4, "insideview"), (7, "insideview"), (10, "insideview")):
        person = dataset.person(cid)
        assert person.route is Route(route)
        assert pbx[cid]["email"] == expected_email(cid, person.work_email)
        assert pbx[cid]["remark"].splitlines()[-1] == f"Title: {person.title}"
        assert changes[(cid, "title")].new == person.title
    for cid in (8, 11):
        person = dataset.person(cid)
        assert person.route is Route.leadfeeder
        assert pbx[cid]["email"] == expected_email(cid, person.work_email)
        assert numbers_of(pbx[cid])["mobile_number"] == person.mobile
        assert pbx[cid]["remark"].splitlines()[-1] == f"Title: {person.title}"
    for cid in (3, 6, 12):
        person = dataset.person(cid)
        assert person.route is Route.contactout
        assert pbx[cid]["email"] == expected_email(cid, person.work_email)
        assert person.mobile in numbers_of(pbx[cid]).values()

    # every number syncd wrote is E.164; every number a person entered is untouched
    for (cid, field), change in changes.items():
        if field not in {"email", "title"}:
            assert E164.fullmatch(change.new), change
            assert numbers_of(pbx[cid])[field] == change.new
    for cid, record in synced.before.items():
        for slot, number in numbers_of(record).items():
            assert numbers_of(pbx[cid])[slot] == number
        # the rest of a remark is kept byte for byte
        assert pbx[cid]["remark"].startswith(record["remark"])
    # a contact nobody knows is left alone
    assert dataset.person(9).route is Route.unknown
    assert pbx[9] == synced.before[9]

    done = finished(synced.first)
    assert done["outcome"] == "ok"
    assert done["updated"] == done["planned_updates"] == len({cid for cid, _ in changes}) > 30
    assert len(synced.first.event("contact.changed")) == len(changes) == done["planned_changes"]


def test_second_run_writes_nothing_asks_no_vendor_and_spends_nothing(synced: Synced) -> None:
    assert synced.second.code == 0, synced.second.err
    assert synced.after_second == synced.after_first
    writes = synced.pbx_calls_second - synced.pbx_calls_first
    assert writes["company_contact/update"] == 0
    assert set(writes) <= {"company_contact/list", "company_contact/query"}
    assert synced.vendor_calls_second == synced.vendor_calls_first
    assert synced.credits_second == synced.credits_first
    done = finished(synced.second)
    assert done["credits"] == {"insideview": 0, "leadfeeder": 0, "contactout": 0}
    assert done["planned_updates"] == done["updated"] == 0
    assert done["unchanged"] == 60
    assert synced.second.event("contact.changed") == []


def test_second_one_shot_run_reuses_the_cached_pbx_token(synced: Synced) -> None:
    # the links import and both runs are three processes' worth of one-shot work: one login
    assert synced.pbx_calls_second["get_token"] == 1
    assert synced.pbx_calls_second["refresh_token"] == 0


def test_credits_the_run_counted_are_what_the_vendors_charged(synced: Synced) -> None:
    assert finished(synced.first)["credits"] == synced.credits_first
    status = synced.env.cli("status", "--json")
    assert status.code == 0
    [data] = status.lines
    spent = {name: v["credits_this_month"] for name, v in data["vendors"].items()}
    assert spent == synced.credits_first


# --- history and status -------------------------------------------------------------------------------


def test_history_json_is_one_applied_change_a_line(synced: Synced) -> None:
    env = synced.env
    result = env.cli("history", "--json")
    assert result.code == 0, result.err
    rows = result.lines
    run_id = synced.first.event("run.started")[0]["run_id"]
    assert rows
    for row in rows:
        assert set(row) >= HISTORY_KEYS
        assert row["run_id"] == run_id
        assert datetime.fromisoformat(row["at"]).tzinfo is not None
    logged = {
        (e["contact_id"], e["field"], e["old"], e["new"], e["source"])
        for e in synced.first.event("contact.changed")
    }
    listed = [(r["contact_id"], r["field"], r["old"], r["new"], r["source"]) for r in rows]
    assert len(listed) == len(set(listed)) == len(logged)
    assert set(listed) == logged
    assert {
        "contact_id": 1,
        "field": "email",
        "old": "",
        "new": "arjun.patel@gringotts.example",
        "source": "insideview",
    }.items() <= next(r for r in rows if r["contact_id"] == 1 and r["field"] == "email").items()

    one = env.cli("history", "--json", "--contact", "1").lines
    assert one and {r["contact_id"] for r in one} == {1}
    assert len(one) == sum(1 for r in rows if r["contact_id"] == 1)
    assert env.cli("history", "--json", "--since", "2999-01-01T00:00:00Z").lines == []
    assert len(env.cli("history", "--json", "--since", rows[0]["at"]).lines) == len(rows)
    bad = env.cli("history", "--json", "--since", "yesterday-ish")
    assert bad.code == 2
    assert "--since" in bad.err


def test_status_json_lists_runs_counts_and_credits(synced: Synced) -> None:
    result = synced.env.cli("status", "--json")
    assert result.code == 0, result.err
    [data] = result.lines
    first_id = synced.first.event("run.started")[0]["run_id"]
    second_id = synced.second.event("run.started")[0]["run_id"]
    runs = {r["run_id"]: r for r in data["runs"]}
    assert set(runs) == {first_id, second_id}
    for run in runs.values():
        assert run["outcome"] == "ok"
        assert run["mode"] == "sync"
        assert datetime.fromisoformat(run["started_at"]) <= datetime.fromisoformat(run["ended_at"])
    assert runs[first_id]["counts"]["updated"] == finished(synced.first)["updated"]
    assert runs[second_id]["counts"]["updated"] == 0
    assert data["pending_journal"] == []
    assert data["contacts"] == 60
    # one-shot runs only: no daemon, so no next run (issue 13: status used to print one regardless)
    assert data["next_run"] is None
    assert data["next_run_note"] == "no daemon has run on this state store"
    assert data["daemon"] is None and data["lock"] == {"held_by": None}
    for run in runs.values():
        assert run["duration_s"] == pytest.approx(
            (
                datetime.fromisoformat(run["ended_at"]) - datetime.fromisoformat(run["started_at"])
            ).total_seconds(),
            abs=0.001,
        )
    for name, vendor in data["vendors"].items():
        assert vendor["monthly_budget"] == 100000
        assert vendor["remaining"] == 100000 - vendor["credits_this_month"]
        assert vendor["credits_this_month"] == synced.credits_first[name]


# --- a person's changes win -------------------------------------------------------------------------


REFRESH = '\n[fields]\nemail = "refresh"\nnumbers = "refresh"\ntitle = "refresh"\n'


def _refresh_after_1s(text: str) -> str:
    return text.replace("[enrich]\n", '[enrich]\nrefresh_after = "1s"\n', 1)


def test_a_persons_edit_and_removal_survive_later_runs_and_new_vendor_values(
    make_env: EnvFactory,
) -> None:
    dataset = MutableDataset(60)
    env = make_env(dataset=dataset, extra=REFRESH, edit=_refresh_after_1s)
    env.import_links()
    assert env.sync().code == 0
    written = changes_of(env)
    # A and C: InsideView wrote their email; B and D: Leadfeeder wrote their mobile (and the contact
    # keeps another number, which the PBX requires)
    iv = sorted(cid for (cid, f), ch in written.items() if f == "email" and ch.source == "insideview")
    lf = sorted(
        cid
        for (cid, f), ch in written.items()
        if f == "mobile_number" and ch.source == "leadfeeder" and len(dataset.contact(cid - 1).numbers) >= 1
    )
    (a, c), (b, d) = iv[:2], lf[:2]
    for cid in (a, c):
        assert written[(cid, "email")].source == "insideview"
    for cid in (b, d):
        assert written[(cid, "mobile_number")].source == "leadfeeder"

    env.pbx.edit_contact(a, email="a.person@example.org")
    b_numbers = [n for n in env.pbx.contact(b)["number_list"] if n["num_type"] != "mobile_number"]
    assert b_numbers  # the PBX needs one number left
    env.pbx.edit_contact(b, number_list=b_numbers)

    second = env.sync()
    assert second.code == 0, second.err
    assert env.pbx.contact(a)["email"] == "a.person@example.org"
    assert "mobile_number" not in numbers_of(env.pbx.contact(b))
    assert {(e["contact_id"], e["field"]) for e in second.event("contact.changed")}.isdisjoint(
        {(a, "email"), (b, "mobile_number"), (b, "mobile_number2")}
    )

    # the vendors now know other values for all four; their answers are older than refresh_after
    dataset.changes = {
        a: {"work_email": "a.vendor@gringotts.example"},
        c: {"work_email": "c.vendor@monarch.example"},
        b: {"mobile": "+12125550101"},
        d: {"mobile": "+12125550102"},
    }
    time.sleep(1.1)
    third = env.sync()
    assert third.code == 0, third.err
    # the controls prove the new values were offered and written where syncd owns the field ...
    assert env.pbx.contact(c)["email"] == "c.vendor@monarch.example"
    assert numbers_of(env.pbx.contact(d))["mobile_number"] == "+12125550102"
    # ... and the person's edit and removal still win
    assert env.pbx.contact(a)["email"] == "a.person@example.org"
    b_now = numbers_of(env.pbx.contact(b))
    assert "mobile_number" not in b_now and "mobile_number2" not in b_now
    assert "+12125550101" not in b_now.values()

    fourth = env.sync()
    assert fourth.code == 0
    assert env.pbx.contact(a)["email"] == "a.person@example.org"
    assert "mobile_number" not in numbers_of(env.pbx.contact(b))
    with env.store() as store:
        states = store.field_states([a, b])
    assert states[a]["email"].owner == "person"
    assert states[b]["mobile_number"].owner == "person"


# --- dry run ---------------------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(make_env: EnvFactory) -> None:
    env = make_env()
    env.import_links()
    before = env.phonebook()
    dry = env.sync("--dry-run", "--buy")  # a plain --dry-run buys nothing: see test_credits.py
    assert dry.code == 0, dry.err
    plan = [row for row in dry.lines if row["event"] == "plan.change"]
    assert env.phonebook() == before
    assert env.pbx.calls["company_contact/update"] == 0
    assert env.pbx.updates == []
    with env.store() as store:
        assert store.history() == []
        assert store.journal_pending() == []
        assert store.recent_runs(1)[0].mode == "dry_run"
    assert len(plan) == finished(dry)["planned_changes"] > 30
    assert {
        "contact_id": 1,
        "field": "email",
        "old": "",
        "new": "arjun.patel@gringotts.example",
        "source": "insideview",
    }.items() <= next(p for p in plan if p["contact_id"] == 1 and p["field"] == "email").items()

    # the real run then applies exactly the plan, from the answers the dry run already paid for
    credits = credits_charged(env.sims)
    real = env.sync()
    assert real.code == 0, real.err
    assert credits_charged(env.sims) == credits
    applied = {(c.contact_id, c.field, c.old, c.new, c.source) for c in changes_of(env).values()}
    assert applied == {(p["contact_id"], p["field"], p["old"], p["new"], p["source"]) for p in plan}


# --- failures ----------------------------------------------------------------------------------------------


def test_a_contact_the_pbx_rejects_fails_alone(make_env: EnvFactory) -> None:
    rejected = 4
    holder: dict[str, RejectUpdates] = {}

    def setup(sims: Simulators) -> None:
        holder["r"] = wrap(sims, "pbx", lambda app: RejectUpdates(app, {rejected}))

    env = make_env(setup=setup)
    env.import_links()
    seed_record = env.pbx.contact(rejected)
    result = env.sync()
    assert result.code == 1
    [event] = result.event("contact.rejected")
    assert event["contact_id"] == rejected
    assert "40002" in event["reason"]
    assert event["level"] == "error"
    done = finished(result)
    assert done["outcome"] == "partial"
    assert done["failed"] == 1
    assert done["updated"] == done["planned_updates"] - 1
    updated = {body["id"] for body in env.pbx.updates}
    assert rejected not in updated
    assert len(updated) == done["updated"]
    assert {cid for cid, _ in changes_of(env)} == updated
    before = env.pbx.contact(rejected)
    assert before == seed_record  # nothing of the rejected update reached the contact

    holder["r"].ids.clear()  # the PBX accepts it now: the next run plans it again
    again = env.sync()
    assert again.code == 0, again.err
    assert {e["contact_id"] for e in again.event("contact.changed")} == {rejected}
    assert env.pbx.contact(rejected) != before


def test_an_overlapping_run_exits_75(env: Env) -> None:
    with env.store() as store, store.lock():
        result = env.sync()
    assert result.code == 75
    assert "another syncd run holds the state store lock" in result.err
    assert "Traceback" not in result.err
    assert sum(env.pbx.calls.values()) == 0
    with env.store() as store:
        assert store.recent_runs(5) == []
    # once the lock is free the run goes ahead
    assert env.sync().code == 0


def test_history_and_status_before_any_run_create_no_store(env: Env) -> None:
    # read-only commands never create a store: before the first run (or with a mistyped state_url)
    # they say there is none, as a configuration error, instead of reporting an empty one
    db = env.dir / "state.db"
    assert not db.exists()
    for command in (["history", "--json"], ["status", "--json"]):
        result = env.cli(*command)
        assert result.code == 78, result.err
        assert result.out == ""
        assert f"state store {db} does not exist" in result.err
        assert "Traceback" not in result.err
    assert not db.exists()
    assert env.sync().code == 0
    history = env.cli("history", "--json")
    assert history.code == 0 and history.out
    status = env.cli("status", "--json")
    assert status.code == 0
    [data] = status.lines
    assert len(data["runs"]) == 1 and data["contacts"] > 0


# --- a person and the PBX acting while a run is under way ---------------------------------------------


@pytest.fixture
def gated(make_env: EnvFactory) -> tuple[Env, Gate]:
    gates: dict[str, Gate] = {}

    def setup(sims: Simulators) -> None:
        gates["pbx"] = wrap(sims, "pbx", Gate)

    env = make_env(setup=setup)
    env.import_links()
    return env, gates["pbx"]


def test_a_person_editing_or_deleting_a_contact_during_the_run_wins(gated: tuple[Env, Gate]) -> None:
    env, gate = gated
    before = env.phonebook()

    def person() -> None:
        env.pbx.edit_contact(1, email="typed.by@person.example")
        env.pbx.delete_contact(4)

    # held at the push's first read: the plan is committed, nothing is sent yet
    result = env.sync_held(gate, "company_contact/query", 1, person)
    assert result.code == 0, result.err
    done = finished(result)
    assert done["superseded"] == 2
    assert done["updated"] == done["planned_updates"] - 2
    superseded = result.event("journal.superseded")
    assert sorted(e["contact_id"] for e in superseded) == [1, 4]
    assert all(e["reason"] == "the contact changed before the push" for e in superseded)
    assert {e["contact_id"] for e in result.event("contact.changed")}.isdisjoint({1, 4})
    assert env.pbx.contact(1)["email"] == "typed.by@person.example"
    assert env.pbx.contact(1)["remark"] == before[1]["remark"]  # nothing of the superseded update went

    # the next run plans contact 1 again: the title and the direct line beside the person's business
    # number, never over the person's email; 4 is tombstoned
    again = env.sync()
    assert again.code == 0, again.err
    assert {(e["contact_id"], e["field"]) for e in again.event("contact.changed")} == {
        (1, "title"),
        (1, "business_number2"),
    }
    assert numbers_of(env.pbx.contact(1))["business_number2"] == env.dataset.person(1).direct
    assert env.pbx.contact(1)["email"] == "typed.by@person.example"
    assert env.pbx.contact(1)["remark"] == "Call before 10am\nTitle: CFO"
    with env.store() as store:
        assert store.field_states([1])[1]["email"].owner == "person"
        assert store.tombstoned_ids() == {4}


def test_tokens_expiring_in_the_middle_of_the_push_are_refreshed_once(gated: tuple[Env, Gate]) -> None:
    env, gate = gated
    result = env.sync_held(gate, "company_contact/update", 10, env.pbx.expire_tokens)
    assert result.code == 0, result.err
    done = finished(result)
    assert done["updated"] == done["planned_updates"] > 30
    assert env.pbx.calls["refresh_token"] == 1
    assert env.pbx.calls["get_token"] == 1  # the links import's token, reused by the run
    assert len(env.pbx.updates) == done["updated"]


# --- credits ------------------------------------------------------------------------------------------------


def test_a_budget_lowered_below_what_was_spent_buys_nothing_more(make_env: EnvFactory) -> None:
    # contacts nobody found are asked again after retry_not_found_after: here at once
    env = make_env(edit=lambda t: t.replace("[enrich]\n", '[enrich]\nretry_not_found_after = "1s"\n', 1))
    env.import_links()
    first = env.sync()
    assert first.code == 0
    spent = finished(first)["credits"]["contactout"]
    assert finished(first)["vendors"]["contactout"]["not_found"] > 0

    # the operator lowers ContactOut's budget below what this month already cost
    lowered = spent - 1
    env.write_config(
        edit=lambda t: with_contactout_budget(
            t.replace("[enrich]\n", '[enrich]\nretry_not_found_after = "1s"\n', 1), lowered
        )
    )
    calls, charged = vendor_calls(env.sims)["contactout"], credits_charged(env.sims)["contactout"]
    time.sleep(1.1)
    second = env.sync()
    assert second.code == 0, second.err
    assert vendor_calls(env.sims)["contactout"] == calls
    assert credits_charged(env.sims)["contactout"] == charged
    done = finished(second)
    assert done["vendors"]["contactout"]["asked"] == 0
    assert done["vendors"]["contactout"]["stopped"] == "budget"
    [event] = second.event("vendor.budget_exhausted")
    assert (event["vendor"], event["budget"], event["spent"]) == ("contactout", lowered, spent)
    status = env.cli("status", "--json").lines[0]
    assert status["vendors"]["contactout"]["remaining"] == 0


class MeteredVendor:
    """A ContactOut stand-in that finds nobody and charges exactly its estimate: 4 credits for contacts
    1 to 3 (say, a search plus contact details), 1 for the others."""

    vendor = Vendor.contactout
    max_batch = 1000

    def __init__(self) -> None:
        self.charged = 0

    @staticmethod
    def cost(request: LookupRequest) -> int:
        return 4 if request.contact_id <= 3 else 1

    def can_lookup(self, request: LookupRequest) -> bool:
        return True

    def max_cost(self, requests: Sequence[LookupRequest]) -> int:
        return sum(self.cost(r) for r in requests)

    async def lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        now = datetime.now(UTC)
        self.charged += self.max_cost(requests)
        return [
            EnrichmentResult(self.vendor, r.contact_id, Outcome.not_found, now, credits=self.cost(r))
            for r in requests
        ]

    async def aclose(self) -> None:
        return None


def test_the_budget_holds_when_requests_cost_unequal_amounts(make_env: EnvFactory) -> None:
    env = make_env(edit=lambda t: with_contactout_budget(t, 10))
    vendor = MeteredVendor()
    config = load_config(env.config)
    with env.store() as store, store.lock():
        summary = asyncio.run(SyncEngine(config, store, providers={Vendor.contactout: vendor}).run())
        spent = store.credits_for_month(summary.started_at.strftime("%Y-%m"))
    assert summary.vendor_stops == {"contactout": "budget"}
    assert 0 < vendor.charged <= 10
    assert spent == {"contactout": vendor.charged}
