"""Contacts: snapshot upserts, hashes, tombstones."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from syncd.model import Contact, NumberSlot
from syncd.store import StateStore
from syncd.store.schema import contacts as contacts_table

from .conftest import at


def contact(i: int, **kw: object) -> Contact:
    fields: dict[str, object] = {"name": f"Person {i}", "company": "Acme"}
    fields.update(kw)
    return Contact.build(i, **fields)  # type: ignore[arg-type]


def seen_times(store: StateStore, cid: int) -> tuple[datetime, datetime, datetime | None]:
    c = contacts_table.c
    with store.engine.connect() as conn:
        row = conn.execute(select(c.first_seen_at, c.last_seen_at, c.deleted_at).where(c.id == cid)).one()
    return row.first_seen_at, row.last_seen_at, row.deleted_at


def test_empty_store(store: StateStore) -> None:
    assert store.live_hashes() == {}
    assert store.tombstoned_ids() == set()
    assert store.live_count() == 0
    assert store.load_contacts() == {}
    assert store.load_contacts([1, 2]) == {}


def test_save_and_load_round_trip(store: StateStore) -> None:
    a = contact(
        1,
        email="a@acme.test",
        remark="met at fair",
        numbers={NumberSlot.mobile_number: "+1 555 0100", NumberSlot.business_fax: "0101"},
        phonebook_ids=[3, 1],
        job_title="CTO",
    )
    b = contact(2, name="Ünïcødé 名前")
    store.save_contacts([a, b], at(0))
    assert store.load_contacts() == {1: a, 2: b}
    assert store.load_contacts([2, 99]) == {2: b}
    assert store.live_hashes() == {1: a.content_hash(), 2: b.content_hash()}
    assert store.live_count() == 2


def test_record_is_the_contact_record_as_json(store: StateStore) -> None:
    a = contact(4, email="x@y.z")
    store.save_contacts([a], at(0))
    with store.engine.connect() as conn:
        raw = conn.execute(select(contacts_table.c.record)).scalar_one()
    assert json.loads(raw) == a.to_record()


def test_upsert_updates_record_keeps_first_seen(store: StateStore) -> None:
    store.save_contacts([contact(1)], at(0))
    changed = contact(1, email="new@acme.test")
    store.save_contacts([changed], at(15))
    assert store.load_contacts() == {1: changed}
    assert store.live_hashes() == {1: changed.content_hash()}
    first, last, deleted = seen_times(store, 1)
    assert (first, last, deleted) == (at(0), at(15), None)


def test_datetimes_come_back_aware_utc(store: StateStore) -> None:
    cet = timezone(timedelta(hours=1))
    store.save_contacts([contact(1)], datetime(2026, 11, 3, 10, 30, tzinfo=cet))
    first, _, _ = seen_times(store, 1)
    assert first == at(0)
    assert first.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.save_contacts([contact(1)], datetime(2026, 11, 3, 9, 30))
    assert store.live_count() == 0


def test_duplicate_ids_in_one_save_last_wins(store: StateStore) -> None:
    store.save_contacts([contact(1, email="old@x.y"), contact(1, email="new@x.y")], at(0))
    assert store.load_contacts()[1].email == "new@x.y"


def test_mark_seen_bumps_last_seen_of_live_contacts(store: StateStore) -> None:
    store.save_contacts([contact(1), contact(2)], at(0))
    store.tombstone([2], at(1))
    assert store.mark_seen([1, 2, 3], at(5)) == 1
    assert seen_times(store, 1)[:2] == (at(0), at(5))
    assert seen_times(store, 2)[1] == at(0)


def test_tombstone_hides_contact_and_is_final(store: StateStore) -> None:
    store.save_contacts([contact(1), contact(2), contact(3)], at(0))
    assert store.tombstone([2, 3, 404], at(10)) == 2
    assert store.tombstone([2], at(20)) == 0  # already tombstoned: keeps the first time
    assert store.tombstoned_ids() == {2, 3}
    assert set(store.live_hashes()) == {1}
    assert store.live_count() == 1
    assert store.load_contacts() == {1: contact(1)}
    assert store.load_contacts([2]) == {}
    assert seen_times(store, 2)[2] == at(10)
    # the PBX listing the id again does not revive it
    store.save_contacts([contact(2, email="back@x.y")], at(30))
    assert store.tombstoned_ids() == {2, 3}
    assert 2 not in store.live_hashes()


def test_save_contacts_marks_person_touched_fields_in_the_same_call(store: StateStore) -> None:
    store.save_contacts(
        [contact(1, email="person@x.y")], at(0), person_touched={1: ["email", "mobile_number"]}
    )
    states = store.field_states([1])[1]
    assert set(states) == {"email", "mobile_number"}
    assert all(s.person_owned and s.person_touched_at == at(0) for s in states.values())


def test_many_ids_are_chunked(store: StateStore) -> None:
    many = [contact(i) for i in range(1, 1_501)]
    store.save_contacts(many, at(0))
    wanted = list(range(1, 1_501, 2))
    assert set(store.load_contacts(wanted)) == set(wanted)
    assert store.tombstone(range(1, 1_001), at(1)) == 1_000
    assert store.live_count() == 500


def test_100k_contacts_round_trip_on_sqlite(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    store = StateStore.open(f"sqlite:///{tmp_path / 'big.db'}")
    try:
        slots = list(NumberSlot)
        everyone = [
            Contact.build(
                i,
                name=f"Person {i}",
                company=f"Company {i % 997}",
                email=f"p{i}@example.test" if i % 3 else "",
                numbers={slots[i % len(slots)]: f"+1555{i:07d}"},
                phonebook_ids=[i % 7],
                job_title=None if i % 5 else "Engineer",
            )
            for i in range(1, 100_001)
        ]
        store.save_contacts(everyone, at(0))
        assert store.live_count() == 100_000
        assert store.live_hashes() == {c.id: c.content_hash() for c in everyone}
        assert store.load_contacts() == {c.id: c for c in everyone}
        # a second snapshot with some changes and some deletions
        changed = [Contact.build(c.id, name=c.name + " Jr", company=c.company) for c in everyone[::100]]
        store.save_contacts(changed, at(15))
        store.tombstone(range(99_001, 100_001), at(15))
        hashes = store.live_hashes()
        assert len(hashes) == 99_000
        assert all(hashes[c.id] == c.content_hash() for c in changed if c.id <= 99_000)
        assert hashes[2] == everyone[1].content_hash()
    finally:
        store.close()
