"""Crash safety: `python -m syncd --sync-now` killed with SIGKILL at chosen points, then run again.

The kill points are deterministic: a gate in front of a simulator holds the chosen request, so the child is
provably stopped there when it is killed. The held request is then either lost (never reaches the
simulator) or applied anyway (the server did the work, the client never heard back), the two ways a real
crash leaves a request.

After the rerun the PBX must hold exactly what an uninterrupted run produces on an identical fresh setup,
contact by contact, and the change log (and the `contact.changed` events) must hold each change once.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncd.sim.launch import Simulators
from tests.e2e.harness import Env, EnvFactory, Gate, Inflight, wrap

SIZE = 150
Change = tuple[int, str, str, str, str]  # contact_id, field, old, new, source


def small_pages(text: str) -> str:
    """Three list pages, so that a kill can land in the middle of the pull."""
    return text.replace("[pbx]\n", "[pbx]\npage_size = 50\n", 1)


@dataclass
class Rig:
    env: Env
    gates: dict[str, Gate]
    inflight: dict[str, Inflight]

    def wait_idle(self) -> None:
        for flight in self.inflight.values():
            flight.wait_idle()


def rig(factory: EnvFactory) -> Rig:
    gates: dict[str, Gate] = {}
    inflight: dict[str, Inflight] = {}

    def setup(sims: Simulators) -> None:
        for name in ("pbx", *sims.vendors):
            gates[name] = wrap(sims, name, Gate)
            inflight[name] = wrap(sims, name, Inflight)

    env = factory(SIZE, setup=setup, edit=small_pages)
    env.import_links()
    return Rig(env, gates, inflight)


def history(env: Env) -> list[Change]:
    with env.store() as store:
        return [(c.contact_id, c.field, c.old, c.new, c.source) for c in store.history()]


def logged_changes(text: str) -> list[Change]:
    return [change for _, change in logged_events(text)]


def logged_events(text: str) -> list[tuple[int, Change]]:
    """The `contact.changed` events of a run's output: (change_id, change)."""
    out: list[tuple[int, Change]] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "contact.changed":
            change = (event["contact_id"], event["field"], event["old"], event["new"], event["source"])
            out.append((event["change_id"], change))
    return out


def once_by_id(events: list[tuple[int, Change]]) -> list[Change]:
    """The events with repeats dropped by change_id, as a consumer does; a repeat must be the same change."""
    by_id: dict[int, Change] = {}
    for change_id, change in events:
        assert by_id.setdefault(change_id, change) == change, f"change_id {change_id} names two changes"
    return list(by_id.values())


@dataclass
class Baseline:
    phonebook: dict[int, dict[str, Any]]
    changes: list[Change]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    """One uninterrupted run on an identical fresh setup."""
    factory = EnvFactory(tmp_path_factory.mktemp("baseline"))
    try:
        env = rig(factory).env
        result = env.sync()
        assert result.code == 0, result.err
        changes = history(env)
        assert sorted(logged_changes(result.err)) == sorted(changes)
        yield Baseline(env.phonebook(), changes)
    finally:
        factory.close()


@dataclass(frozen=True)
class KillPoint:
    sim: str
    endpoint: str
    after: int  # the n-th request to the endpoint in the killed run is held (1-based)
    apply: bool  # the held requests reach the simulator after the kill
    # count requests to `endpoint` only once one to this endpoint went through (the push's read-backs
    # come after its first update; ContactOut's name lookups read the PBX before the push)
    counting_from: str = ""


CRASH_AFTER_COMMIT = KillPoint("", "committed:1", 0, apply=False)  # SYNCD_CRASH_AT, no gate


@dataclass(frozen=True)
class Case:
    kills: list[KillPoint]
    # journal entries the rerun must find applied and only confirm: None = the plan was never committed;
    # "held" adds the requests the gate held and let through after the kill
    confirmed: int | None
    plus_held: bool = False


CASES: dict[str, Case] = {
    # the second of three list pages: nothing is remembered yet
    "pull": Case([KillPoint("pbx", "company_contact/list", 2, apply=False)], None),
    # in the middle of ContactOut's lookups; the vendor charges for answers the client never sees
    "enrich": Case([KillPoint("contactout", "/v1/people/enrich", 12, apply=True)], None),
    # the plan is committed, nothing sent: the journal is all pending (syncd's own crash point, since
    # ContactOut's name lookups read the PBX with the same endpoint as the push's first read)
    "between-enrich-and-push": Case([CRASH_AFTER_COMMIT], 0),
    # 29 updates applied and unconfirmed, the next ones lost
    "push-request-lost": Case([KillPoint("pbx", "company_contact/update", 30, apply=False)], 29),
    # 79 updates applied and unconfirmed, and the held ones applied after the kill
    "push-applied-unconfirmed": Case(
        [KillPoint("pbx", "company_contact/update", 80, apply=True)], 79, plus_held=True
    ),
    # the first chunk's 100 updates sent, their read-back held: applied at the PBX, unknown to the store
    "push-read-back": Case(
        [KillPoint("pbx", "company_contact/query", 1, apply=True, counting_from="company_contact/update")],
        100,
    ),
    # killed mid-push, then killed again while the next run resumes the journal (which confirmed the
    # first run's updates and sent `push_concurrency` at a time: two reached the PBX, the third was held,
    # and the kill came before the chunk's read-back): the last run confirms those two and sends the rest
    "twice-in-push-then-resume": Case(
        [
            KillPoint("pbx", "company_contact/update", 50, apply=True),
            KillPoint("pbx", "company_contact/update", 3, apply=False),
        ],
        2,
    ),
}


def kill_at(rig: Rig, point: KillPoint, log: Path) -> tuple[str, int]:
    """Start a sync, SIGKILL it once it is held at `point`, let the held requests go.

    Returns the child's output and how many requests the gate held."""
    if not point.sim:  # the process kills itself at a crash point of its own
        child = rig.env.spawn("--sync-now", log=log, env={"SYNCD_CRASH_AT": point.endpoint})
        assert child.wait(timeout=300) == -signal.SIGKILL, log.read_text()
        rig.wait_idle()
        return log.read_text(), 0
    gate = rig.gates[point.sim]
    gate.arm(point.endpoint, point.after, point.counting_from)
    child = rig.env.spawn("--sync-now", log=log)
    try:
        while not gate.hit.wait(0.02):
            if child.poll() is not None:
                pytest.fail(f"the run ended ({child.returncode}) before {point}:\n{log.read_text()}")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        gate.release(apply=point.apply)
    rig.wait_idle()
    return log.read_text(), gate.held


@pytest.mark.parametrize("name", list(CASES))
def test_killed_run_then_rerun_ends_like_an_uninterrupted_run(
    name: str, make_env: EnvFactory, baseline: Baseline
) -> None:
    case = CASES[name]
    r = rig(make_env)
    env = r.env
    events: list[tuple[int, Change]] = []
    held = 0
    for i, point in enumerate(case.kills):
        text, held = kill_at(r, point, env.dir / f"killed{i}.log")
        events += logged_events(text)
    contacts_left = {c[0] for c in baseline.changes} - {c[1][0] for c in events}

    rerun = env.sync()
    assert rerun.code == 0, rerun.err
    events += logged_events(rerun.err)
    logged = once_by_id(events)

    # the rerun took the path the kill point calls for
    resumed = rerun.event("journal.resumed")
    if case.confirmed is None:
        assert resumed == []
    else:
        [event] = resumed
        assert event["confirmed"] == case.confirmed + (held if case.plus_held else 0)
        assert event["confirmed"] + event["sent"] == len(contacts_left)
        assert event["superseded"] == 0

    # the PBX holds exactly what the uninterrupted run left, contact by contact
    after = env.phonebook()
    assert after.keys() == baseline.phonebook.keys()
    differing = [cid for cid in after if after[cid] != baseline.phonebook[cid]]
    assert differing == []

    # each change is in the change log exactly once, none missing, and logged once (by change_id; these
    # kills land on held requests, never between an event and its logged mark, so nothing repeats either)
    changes = history(env)
    assert Counter(changes) == Counter(baseline.changes)
    assert len(set(changes)) == len(changes)
    assert Counter(logged) == Counter(baseline.changes)
    assert len(events) == len(logged)
    with env.store() as store:
        assert store.unlogged_changes() == []
        assert {c.id for c in store.history()} == {change_id for change_id, _ in events}

    with env.store() as store:
        assert store.journal_pending() == []
        runs = store.recent_runs(10)
    killed = runs[1:]
    assert runs[0].outcome == "ok"
    assert [run.outcome for run in killed] == ["aborted"] * len(case.kills)

    # and the phonebook is at rest: one more run changes nothing
    steady = env.sync()
    assert steady.code == 0
    assert steady.event("contact.changed") == []
    assert env.phonebook() == baseline.phonebook


def test_a_dry_run_after_a_killed_push_plans_what_the_next_run_does(
    make_env: EnvFactory, baseline: Baseline
) -> None:
    """Updates a killed run sent but never confirmed are syncd's own writes: a dry run must not report them
    as a person's changes, and must show what the next real run would still send."""
    r = rig(make_env)
    env = r.env
    # 119 updates applied (the first chunk of 100 also confirmed), update 120 onwards never sent
    kill_at(r, KillPoint("pbx", "company_contact/update", 120, apply=False), env.dir / "killed.log")
    with env.store() as store:
        pending = {e.contact_id: e for e in store.journal_pending()}
    applied_ids = {body["id"] for body in env.pbx.updates}
    assert len(applied_ids) == 119
    unconfirmed = {cid for cid in pending if cid in applied_ids}
    unsent = set(pending) - unconfirmed
    assert len(unconfirmed) == 19 and unsent

    dry = env.sync("--dry-run")
    assert dry.code == 0, dry.err
    plan = dry.lines
    assert [row for row in plan if row["event"] == "plan.person_owned"] == []
    planned = {(row["contact_id"], row["field"], row["new"]) for row in plan if row["event"] == "plan.change"}
    assert planned == {
        (cid, change.field, change.new) for cid in unsent for change in pending[cid].update.changes
    }

    # and the real run does just that: confirms the 19, sends the rest, marks no field person-owned
    real = env.sync()
    assert real.code == 0, real.err
    [resumed] = real.event("journal.resumed")
    assert (resumed["confirmed"], resumed["sent"]) == (len(unconfirmed), len(unsent))
    [done] = real.event("run.finished")
    assert done["person_touched"] == 0
    assert env.phonebook() == baseline.phonebook
