"""Field provenance, runs, token cache."""

from __future__ import annotations

from datetime import timedelta

import pytest

from syncd.errors import StoreError
from syncd.model import Contact
from syncd.store import FieldState, StateStore, TokenRecord

from .conftest import at

# --- field provenance ---------------------------------------------------------------------------


def test_field_states_empty_for_every_requested_id(store: StateStore) -> None:
    assert store.field_states([1, 2, 2]) == {1: {}, 2: {}}
    assert store.field_states([]) == {}


def test_mark_person_owned(store: StateStore) -> None:
    store.save_contacts([Contact.build(1), Contact.build(2)], at(0))
    store.mark_person_owned(1, ["email", "mobile_number"], at(5))
    states = store.field_states([1, 2])
    assert states[2] == {}
    assert states[1] == {
        "email": FieldState(owner="person", person_touched_at=at(5)),
        "mobile_number": FieldState(owner="person", person_touched_at=at(5)),
    }
    assert states[1]["email"].person_owned
    # marking again keeps the first time a person's edit was noticed
    store.mark_person_owned(1, ["email", "title"], at(60))
    again = store.field_states([1])[1]
    assert again["email"].person_touched_at == at(5)
    assert again["title"].person_touched_at == at(60)


def test_person_ownership_takes_over_a_syncd_written_field(store: StateStore) -> None:
    from syncd.model import ContactUpdate, FieldChange

    run = store.start_run("sync", at(0))
    store.save_contacts([Contact.build(1)], at(0))
    ch = FieldChange(1, "email", "", "a@b.c", "insideview", "fill_empty")
    [entry] = store.journal_add(run, [ContactUpdate(1, "h", email="a@b.c", changes=(ch,))], at(1))
    store.journal_apply(entry, run, Contact.build(1, email="a@b.c"), [ch], at(2))
    assert store.field_states([1])[1]["email"] == FieldState(
        owner="syncd", syncd_value="a@b.c", source="insideview", written_at=at(2)
    )
    store.mark_person_owned(1, ["email"], at(10))
    assert store.field_states([1])[1]["email"] == FieldState(
        owner="person", syncd_value="a@b.c", source="insideview", written_at=at(2), person_touched_at=at(10)
    )


def test_mark_person_owned_needs_a_known_contact(store: StateStore) -> None:
    with pytest.raises(StoreError, match="state store"):
        store.mark_person_owned(404, ["email"], at(0))


def test_empty_field_name_is_refused(store: StateStore) -> None:
    store.save_contacts([Contact.build(1)], at(0))
    with pytest.raises(ValueError, match="empty"):
        store.mark_person_owned(1, [""], at(0))


# --- runs ---------------------------------------------------------------------------------------


def test_run_lifecycle(store: StateStore) -> None:
    first = store.start_run("sync", at(0))
    second = store.start_run("dry_run", at(10))
    assert first != second
    [newest, oldest] = store.recent_runs()
    assert (newest.id, newest.mode, newest.outcome, newest.ended_at) == (second, "dry_run", "running", None)
    assert oldest.started_at == at(0) and oldest.counts == {}
    counts = {"seen": 10, "new": 2, "credits": {"insideview": 3, "contactout": 1}}
    store.finish_run(first, "partial", counts, "2 contacts failed", at(5))
    store.finish_run(second, "ok", {}, None, at(11))
    by_id = {r.id: r for r in store.recent_runs()}
    assert by_id[first].outcome == "partial"
    assert by_id[first].counts == counts
    assert by_id[first].error == "2 contacts failed"
    assert by_id[first].ended_at == at(5)
    assert by_id[second].outcome == "ok" and by_id[second].error is None


def test_recent_runs_limit_newest_first(store: StateStore) -> None:
    ids = [store.start_run("daemon", at(i)) for i in range(5)]
    assert [r.id for r in store.recent_runs(limit=3)] == ids[:-4:-1]


def test_run_validation(store: StateStore) -> None:
    with pytest.raises(ValueError, match="mode"):
        store.start_run("turbo", at(0))
    run = store.start_run("sync", at(0))
    with pytest.raises(ValueError, match="outcome"):
        store.finish_run(run, "running", {}, None, at(1))
    with pytest.raises(KeyError):
        store.finish_run("no-such-run", "ok", {}, None, at(1))


def test_close_stale_runs(store: StateStore) -> None:
    crashed = store.start_run("sync", at(0))
    done = store.start_run("sync", at(1))
    store.finish_run(done, "ok", {}, None, at(2))
    assert store.close_stale_runs(at(30)) == 1
    by_id = {r.id: r for r in store.recent_runs()}
    assert by_id[crashed].outcome == "aborted" and by_id[crashed].ended_at == at(30)
    assert by_id[crashed].error
    assert by_id[done].outcome == "ok"


# --- token cache --------------------------------------------------------------------------------


def test_token_cache(store: StateStore) -> None:
    assert store.load_token("pbx") is None
    tok = TokenRecord("acc-1", at(30), "ref-1", at(60 * 24))
    store.save_token("pbx", tok)
    assert store.load_token("pbx") == tok
    newer = TokenRecord("acc-2", at(60), None, None)
    store.save_token("pbx", newer)
    store.save_token("insideview", TokenRecord("iv", at(45)))
    assert store.load_token("pbx") == newer
    store.delete_token("pbx")
    store.delete_token("pbx")  # deleting nothing is fine
    assert store.load_token("pbx") is None
    assert store.load_token("insideview") == TokenRecord("iv", at(45))


def test_token_expiry_is_utc(store: StateStore) -> None:
    from datetime import timezone

    local = at(30).astimezone(timezone(timedelta(hours=9)))
    store.save_token("pbx", TokenRecord("a", local))
    loaded = store.load_token("pbx")
    assert loaded is not None
    assert loaded.access_expires_at == at(30) and loaded.access_expires_at.utcoffset() == timedelta(0)


def test_store_error_from_a_failed_write_does_not_leak_the_token(store: StateStore) -> None:
    # a value the driver cannot bind: the error must name the store, not echo the parameters
    with pytest.raises(StoreError) as err:
        store.save_token("pbx", TokenRecord(object(), at(1), "refresh-SECRET-xyz"))  # type: ignore[arg-type]
    assert "SECRET" not in str(err.value)
    assert store.where in str(err.value)
