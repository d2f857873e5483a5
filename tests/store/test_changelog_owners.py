"""The change log's kinds and logged marks, and field ownership (`owners`, `reset_owners`), on both backends."""

from __future__ import annotations

from sqlalchemy import text

from syncd.model import Contact
from syncd.store import OwnershipNote, StateStore, migrate
from syncd.store.store import make_engine

from .conftest import AFTER, BEFORE, CHANGES, UPDATE, at


def applied(store: StateStore) -> tuple[str, list[int]]:
    store.save_contacts([BEFORE, Contact.build(2, name="Bo")], at(0))
    run = store.start_run("sync", at(0))
    [entry] = store.journal_add(run, [UPDATE], at(1))
    [ids] = store.journal_apply_many(run, [(entry, AFTER, CHANGES)], at(2))
    return run, ids


def test_applied_changes_get_ids_and_stay_unlogged_until_marked(store: StateStore) -> None:
    run, ids = applied(store)
    assert len(ids) == 2 and ids[0] < ids[1]
    rows = store.history()
    assert [r.id for r in rows] == ids
    assert [r.as_dict()["change_id"] for r in rows] == ids
    assert {r.kind for r in rows} == {"change"}
    assert {r.run_id for r in rows} == {run}
    assert [r.id for r in store.unlogged_changes()] == ids
    assert store.mark_logged(ids[:1], at(3)) == 1
    assert [r.id for r in store.unlogged_changes()] == ids[1:]
    assert store.mark_logged(ids, at(4)) == 1  # the first was marked already
    assert store.unlogged_changes() == []
    assert [r.logged_at for r in store.history()] == [at(3), at(4)]


def test_takeovers_and_tombstones_are_in_the_log_but_not_changes(store: StateStore) -> None:
    applied(store)
    later = store.start_run("sync", at(10))
    person = Contact.build(1, name="Ada", company="Acme", email="me@ada.test")
    store.commit_plan(
        later,
        pulled=[person],
        unchanged=[],
        person_touched={1: {"email", "mobile_number"}},
        tombstones=[2, 99],  # 99: never known
        updates=[],
        at=at(11),
        notes=[
            OwnershipNote(1, "email", "takeover", "ada@acme.test", "me@ada.test", "a person changed it"),
            OwnershipNote(1, "mobile_number", "removal", "+15550100", "", "a person emptied it"),
        ],
    )
    assert [r.kind for r in store.history()] == ["change", "change"]  # syncd's own writes only
    every = store.history(kinds=None)
    assert [(r.kind, r.contact_id, r.field) for r in every[2:]] == [
        ("takeover", 1, "email"),
        ("removal", 1, "mobile_number"),
        ("tombstone", 2, "contact"),
    ]
    assert all(r.run_id == later and r.logged_at is not None for r in every[2:])
    assert store.unlogged_changes() == [r for r in every if r.kind == "change"]  # none marked yet
    assert [r.kind for r in store.history(contact_id=2, kinds=None)] == ["tombstone"]


def test_owners_lists_who_owns_what_since_when(store: StateStore) -> None:
    applied(store)
    assert store.syncd_written_count() == 2
    store.mark_person_owned(1, ["email"], at(5))
    owners = {o.field: o for o in store.owners()}
    assert set(owners) == {"email", "mobile_number"}
    assert (owners["email"].owner, owners["email"].since) == ("person", at(5))
    assert (owners["mobile_number"].owner, owners["mobile_number"].since) == ("syncd", at(2))
    assert owners["mobile_number"].as_dict()["syncd_value"] == "+15550100"
    assert store.syncd_written_count() == 1
    assert store.owners(contact_id=2) == []
    store.tombstone([1], at(6))
    assert store.owners() == []  # a deleted contact owns nothing any more
    assert store.syncd_written_count() == 0


def test_reset_gives_fields_back_and_is_kept_in_history(store: StateStore) -> None:
    applied(store)
    store.mark_person_owned(1, ["email", "mobile_number"], at(5))
    assert store.reset_owners(at(6), contact_id=1, field="email")[0].field == "email"
    owners = {o.field: o.owner for o in store.owners()}
    assert owners == {"email": "syncd", "mobile_number": "person"}
    rows = store.reset_owners(at(7))
    assert [(r.kind, r.field, r.run_id) for r in rows] == [("reset", "mobile_number", None)]
    assert store.reset_owners(at(8)) == []  # nothing person-owned is left
    states = store.field_states([1])[1]
    assert states["mobile_number"].owner == "syncd" and states["mobile_number"].person_touched_at is None
    resets = [r for r in store.history(kinds=None) if r.kind == "reset"]
    assert [(r.field, r.at, r.as_dict()["run_id"]) for r in resets] == [
        ("email", at(6), None),
        ("mobile_number", at(7), None),
    ]
    assert store.unlogged_changes() == [r for r in store.history() if r.logged_at is None]


def test_changes_logged_before_the_upgrade_are_not_logged_again(fresh_url: str) -> None:
    engine, where, _ = make_engine(fresh_url)
    tz = "+00" if engine.dialect.name == "postgresql" else ""
    try:
        migrate.upgrade(engine, where, "0002")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (id, mode, started_at, ended_at, outcome, counts, error) "
                    "VALUES ('run-1', 'sync', :t, :t, 'ok', '{}', NULL)"
                ),
                {"t": "2026-11-01 08:00:00" + tz},
            )
            conn.execute(
                text(
                    "INSERT INTO change_log (run_id, at, contact_id, field, old, new, source, reason) "
                    "VALUES ('run-1', :t, 5, 'email', '', 'a@b.test', 'insideview', 'fill_empty')"
                ),
                {"t": "2026-11-01 08:05:00" + tz},
            )
    finally:
        engine.dispose()
    with StateStore.open(fresh_url) as store:
        [row] = store.history()
        assert (row.kind, row.contact_id, row.new) == ("change", 5, "a@b.test")
        assert row.logged_at == row.at
        assert store.unlogged_changes() == []
