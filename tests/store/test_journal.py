"""The push journal and the change log: crash safety is the point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from syncd.errors import StoreError
from syncd.model import Contact, ContactUpdate, FieldChange
from syncd.store import FieldState, StateStore
from syncd.store.schema import change_log, field_provenance

from .conftest import AFTER, BEFORE, CHANGES, UPDATE, at


def update_for(cid: int) -> ContactUpdate:
    ch = FieldChange(cid, "title", "", "CTO", "leadfeeder", "fill_empty")
    return ContactUpdate(cid, f"hash-{cid}", job_title="CTO", changes=(ch,))


@pytest.fixture
def run(store: StateStore) -> str:
    store.save_contacts([BEFORE, Contact.build(2), Contact.build(3)], at(0))
    return store.start_run("sync", at(0))


def test_add_and_list_pending(store: StateStore, run: str) -> None:
    ids = store.journal_add(run, [UPDATE, update_for(2)], at(1))
    assert len(ids) == 2 and ids[0] < ids[1]
    pending = store.journal_pending()
    assert [e.id for e in pending] == ids
    first = pending[0]
    assert (first.run_id, first.contact_id, first.state, first.precondition_hash) == (
        run,
        1,
        "pending",
        BEFORE.content_hash(),
    )
    assert first.update == UPDATE
    assert (first.created_at, first.sent_at, first.applied_at, first.attempts, first.error) == (
        at(1),
        None,
        None,
        0,
        None,
    )
    assert not first.in_doubt
    assert store.journal_add(run, [], at(1)) == []


def test_mark_sent_counts_attempts_and_puts_the_entry_in_doubt(store: StateStore, run: str) -> None:
    [eid] = store.journal_add(run, [UPDATE], at(1))
    store.journal_mark_sent(eid, at(2))
    store.journal_mark_sent(eid, at(3))
    [entry] = store.journal_pending()
    assert (entry.sent_at, entry.attempts, entry.in_doubt) == (at(3), 2, True)


def test_apply_writes_everything_in_one_go(store: StateStore, run: str) -> None:
    [eid] = store.journal_add(run, [UPDATE], at(1))
    store.journal_mark_sent(eid, at(2))
    store.journal_apply(eid, run, AFTER, CHANGES, at(3))
    assert store.journal_pending() == []
    entry = store.journal_get(eid)
    assert entry is not None
    assert (entry.state, entry.applied_at, entry.attempts) == ("applied", at(3), 1)
    assert store.load_contacts([1]) == {1: AFTER}
    assert store.live_hashes()[1] == AFTER.content_hash()
    history = store.history(contact_id=1)
    assert [(h.field, h.old, h.new, h.source, h.reason) for h in history] == [
        ("email", "", "ada@acme.test", "insideview", "fill_empty"),
        ("mobile_number", "", "+15550100", "contactout", "fill_empty"),
    ]
    assert all(h.run_id == run and h.at == at(3) and h.journal_id == eid for h in history)
    assert store.field_states([1])[1] == {
        "email": FieldState("syncd", "ada@acme.test", "insideview", at(3)),
        "mobile_number": FieldState("syncd", "+15550100", "contactout", at(3)),
    }


def test_apply_keeps_person_ownership(store: StateStore, run: str) -> None:
    store.mark_person_owned(1, ["email"], at(0))
    [eid] = store.journal_add(run, [UPDATE], at(1))
    store.journal_apply(eid, run, AFTER, CHANGES, at(3))
    email = store.field_states([1])[1]["email"]
    assert email.person_owned and email.person_touched_at == at(0)
    assert (email.syncd_value, email.source) == ("ada@acme.test", "insideview")


def test_resolve(store: StateStore, run: str) -> None:
    a, b = store.journal_add(run, [UPDATE, update_for(2)], at(1))
    store.journal_resolve(a, "superseded", "the contact changed on the PBX since planning", at(4))
    store.journal_resolve(b, "failed", "PBX said 10002", at(5))
    assert store.journal_pending() == []
    ea, eb = store.journal_get(a), store.journal_get(b)
    assert ea is not None and eb is not None
    assert (ea.state, ea.resolved_at, ea.error) == (
        "superseded",
        at(4),
        "the contact changed on the PBX since planning",
    )
    assert (eb.state, eb.resolved_at, eb.error) == ("failed", at(5), "PBX said 10002")
    assert store.history() == []
    assert store.load_contacts([1]) == {1: BEFORE}


def test_state_machine_is_enforced(store: StateStore, run: str) -> None:
    [eid] = store.journal_add(run, [UPDATE], at(1))
    with pytest.raises(ValueError, match="superseded' or 'failed"):
        store.journal_resolve(eid, "applied", None, at(2))
    store.journal_apply(eid, run, AFTER, CHANGES, at(2))
    calls: list[Callable[[], None]] = [
        lambda: store.journal_apply(eid, run, AFTER, CHANGES, at(3)),
        lambda: store.journal_mark_sent(eid, at(3)),
        lambda: store.journal_resolve(eid, "failed", "late", at(3)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="is applied, not pending"):
            call()
    with pytest.raises(KeyError):
        store.journal_mark_sent(9999, at(3))
    assert len(store.history()) == 2  # the refused second apply wrote nothing


def test_apply_checks_the_contact(store: StateStore, run: str) -> None:
    [eid] = store.journal_add(run, [UPDATE], at(1))
    with pytest.raises(ValueError, match="for contact 1, not 2"):
        store.journal_apply(eid, run, Contact.build(2), [], at(2))
    with pytest.raises(ValueError, match="change for contact 2"):
        store.journal_apply(eid, run, AFTER, [FieldChange(2, "email", "", "x", "insideview", "r")], at(2))
    assert store.journal_get(eid) is not None and store.journal_pending()[0].id == eid


def test_one_pending_entry_per_contact(store: StateStore, run: str) -> None:
    [eid] = store.journal_add(run, [UPDATE], at(1))
    with pytest.raises(ValueError, match=f"already has pending journal entry {eid}"):
        store.journal_add(run, [update_for(2), UPDATE], at(2))
    assert [e.id for e in store.journal_pending()] == [eid]  # the whole call wrote nothing
    with pytest.raises(ValueError, match="two updates for contact 2"):
        store.journal_add(run, [update_for(2), update_for(2)], at(2))
    store.journal_resolve(eid, "superseded", None, at(3))
    assert len(store.journal_add(run, [UPDATE], at(4))) == 1


def test_journal_needs_a_real_run(store: StateStore, run: str) -> None:
    with pytest.raises(StoreError):
        store.journal_add("not-a-run", [UPDATE], at(1))
    assert store.journal_pending() == []


# --- atomicity ----------------------------------------------------------------------------------


@pytest.fixture
def failing_statement(store: StateStore, request: pytest.FixtureRequest) -> Iterator[None]:
    """Make the statement that writes `request.param` blow up half way through journal_apply."""
    target = f"INSERT INTO {request.param}"

    class Injected(RuntimeError):
        pass

    def boom(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().startswith(target):
            raise Injected(f"injected failure before {target}")

    event.listen(store.engine, "before_cursor_execute", boom)
    try:
        yield
    finally:
        event.remove(store.engine, "before_cursor_execute", boom)


def assert_nothing_applied(store: StateStore, eid: int) -> None:
    [entry] = store.journal_pending()
    assert entry.id == eid and entry.state == "pending" and entry.applied_at is None
    assert store.load_contacts([1]) == {1: BEFORE}
    assert store.live_hashes()[1] == BEFORE.content_hash()
    assert store.history() == []
    assert store.field_states([1]) == {1: {}}
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(change_log)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(field_provenance)).scalar_one() == 0


@pytest.mark.parametrize("failing_statement", ["change_log", "field_provenance"], indirect=True)
@pytest.mark.usefixtures("failing_statement")
def test_apply_is_all_or_nothing(store: StateStore, run: str) -> None:
    [eid] = store.journal_add(run, [UPDATE], at(1))
    with pytest.raises(RuntimeError, match="injected failure"):
        store.journal_apply(eid, run, AFTER, CHANGES, at(3))
    assert_nothing_applied(store, eid)


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from sqlalchemy import event
    from syncd.model import Contact, ContactUpdate, FieldChange, NumberSlot
    from syncd.store import StateStore
    from tests.store.conftest import AFTER, CHANGES

    store = StateStore.open(sys.argv[1])
    [entry] = store.journal_pending()

    def die(conn, cursor, statement, *args):
        if statement.lstrip().startswith("INSERT INTO field_provenance"):
            os._exit(17)  # the process vanishes mid-transaction: no rollback, no cleanup

    event.listen(store.engine, "before_cursor_execute", die)
    store.journal_apply(entry.id, entry.run_id, AFTER, CHANGES, entry.created_at)
    sys.exit(0)
    """
)


def test_a_process_dying_inside_apply_leaves_nothing_half_written(
    store: StateStore, store_url: str, run: str
) -> None:
    [eid] = store.journal_add(run, [UPDATE], at(1))
    store.journal_mark_sent(eid, at(2))
    done = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, store_url],
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 17, done.stderr
    entry = store.journal_pending()[0]
    assert entry.in_doubt  # recovery has to look at the PBX
    assert_nothing_applied(store, eid)
    # and the store is fully usable afterwards
    store.journal_apply(eid, run, AFTER, CHANGES, at(5))
    assert len(store.history(contact_id=1)) == 2


def test_free_text_reasons_fit_on_every_backend(store: StateStore, run: str) -> None:
    reason = "refresh: the vendor's value is newer than the 30-day-old one syncd wrote " * 5
    ch = FieldChange(1, "email", "", "ada@acme.test", "insideview", reason)
    [eid] = store.journal_add(run, [ContactUpdate(1, "h", email="ada@acme.test", changes=(ch,))], at(1))
    store.journal_apply(eid, run, AFTER, [ch], at(2))
    assert store.history()[0].reason == reason


# --- history ------------------------------------------------------------------------------------


def test_history_filters(store: StateStore, run: str) -> None:
    ids = store.journal_add(run, [update_for(1), update_for(2), update_for(3)], at(1))
    for n, (eid, cid) in enumerate(zip(ids, [1, 2, 3], strict=True)):
        upd = update_for(cid)
        store.journal_apply(eid, run, Contact.build(cid, job_title="CTO"), upd.changes, at(10 * (n + 1)))
    assert [h.contact_id for h in store.history()] == [1, 2, 3]
    assert [h.contact_id for h in store.history(contact_id=2)] == [2]
    assert [h.contact_id for h in store.history(since=at(20))] == [2, 3]
    assert [h.contact_id for h in store.history(limit=2)] == [2, 3]  # the most recent, oldest first
    assert store.history(contact_id=3, since=at(31)) == []
    assert [h.at for h in store.history()] == [at(10), at(20), at(30)]


# --- commit_plan: a run's plan in one transaction -----------------------------------------------


def test_commit_plan_writes_the_whole_plan(store: StateStore, run: str) -> None:
    edited = Contact.build(2, name="Person edit", email="mine@x.y")
    new = Contact.build(4, name="New")
    ids = store.commit_plan(
        run,
        pulled=[edited, new],
        unchanged=[3],
        person_touched={2: ["email"]},
        tombstones=[1],
        updates=[update_for(4)],
        at=at(30),
    )
    assert [e.id for e in store.journal_pending()] == ids and len(ids) == 1
    assert store.load_contacts() == {2: edited, 3: Contact.build(3), 4: new}
    assert store.tombstoned_ids() == {1}
    assert store.field_states([2])[2]["email"].person_owned
    with store.engine.connect() as conn:
        from syncd.store.schema import contacts

        seen = dict(conn.execute(select(contacts.c.id, contacts.c.last_seen_at)).all())
    assert seen[3] == at(30) and seen[4] == at(30)


@pytest.mark.parametrize("failing_statement", ["push_journal"], indirect=True)
@pytest.mark.usefixtures("failing_statement")
def test_commit_plan_is_all_or_nothing(store: StateStore, run: str) -> None:
    with pytest.raises(RuntimeError, match="injected failure"):
        store.commit_plan(
            run,
            pulled=[Contact.build(2, email="changed@x.y"), Contact.build(9)],
            unchanged=[3],
            person_touched={2: ["email"]},
            tombstones=[1],
            updates=[update_for(2)],
            at=at(30),
        )
    assert store.load_contacts() == {1: BEFORE, 2: Contact.build(2), 3: Contact.build(3)}
    assert store.tombstoned_ids() == set()
    assert store.field_states([2]) == {2: {}}
    assert store.journal_pending() == []
