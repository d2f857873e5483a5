"""The pull phase: classification, the mass-loss guard and tombstones (pure, then end to end)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from syncd.errors import MassLossError
from syncd.model import Contact, NumberSlot
from syncd.pull import Classification, check_mass_loss, classify, phonebook_filter, pull_contacts
from syncd.sim.launch import Simulators
from tests.e2e.harness import Env, EnvFactory, Gate, Result, wrap

# --- classify ---------------------------------------------------------------------------------------------


def ids(*values: int) -> frozenset[int]:
    return frozenset(values)


@pytest.mark.parametrize(
    ("current", "known", "expected"),
    [
        pytest.param({}, {}, Classification(ids(), ids(), ids(), ids()), id="nothing"),
        pytest.param(
            {1: "a", 2: "b"}, {}, Classification(ids(1, 2), ids(), ids(), ids()), id="first-run-all-new"
        ),
        pytest.param(
            {1: "a", 2: "b"}, {1: "a", 2: "b"}, Classification(ids(), ids(), ids(1, 2), ids()), id="unchanged"
        ),
        pytest.param(
            {1: "a", 2: "x"}, {1: "a", 2: "b"}, Classification(ids(), ids(2), ids(1), ids()), id="one-changed"
        ),
        pytest.param(
            {1: "a"}, {1: "a", 2: "b"}, Classification(ids(), ids(), ids(1), ids(2)), id="one-deleted"
        ),
        pytest.param({}, {1: "a", 2: "b"}, Classification(ids(), ids(), ids(), ids(1, 2)), id="all-deleted"),
        pytest.param(
            {1: "a", 2: "x", 4: "d"},
            {1: "a", 2: "b", 3: "c"},
            Classification(ids(4), ids(2), ids(1), ids(3)),
            id="mixed",
        ),
    ],
)
def test_classify(current: dict[int, str], known: dict[int, str], expected: Classification) -> None:
    got = classify(current, known)
    assert got == expected
    assert got.counts() == {
        "new": len(expected.new),
        "changed": len(expected.changed),
        "unchanged": len(expected.unchanged),
        "deleted": len(expected.deleted),
    }


# --- the mass-loss guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "known", "ratio", "min_known", "refused"),
    [
        (0, 19, 0.5, 20, False),  # too few known to judge
        (0, 20, 0.5, 20, True),
        (10, 20, 0.5, 20, False),  # exactly half is still enough
        (9, 20, 0.5, 20, True),
        (100, 100, 1.0, 20, False),
        (99, 100, 1.0, 20, True),  # ratio 1: any loss stops the run
        (1, 100, 0.01, 20, False),
        (0, 0, 0.5, 0, False),  # an empty store never refuses
    ],
)
def test_check_mass_loss(seen: int, known: int, ratio: float, min_known: int, refused: bool) -> None:
    if refused:
        with pytest.raises(MassLossError) as caught:
            check_mass_loss(seen, known, ratio=ratio, min_known=min_known)
        message = str(caught.value)
        assert f"lists {seen} " in message and f"knows {known}" in message
        assert "nothing was changed" in message
        assert "mass_loss_ratio" in message
    else:
        check_mass_loss(seen, known, ratio=ratio, min_known=min_known)


def contact(cid: int, *, books: Iterable[int] = (1,), email: str = "") -> Contact:
    return Contact.build(
        cid,
        name=f"Person {cid}",
        company="Acme",
        email=email,
        remark="",
        numbers={NumberSlot.business_number: f"+1212555{cid:04d}"},
        phonebook_ids=list(books),
    )


async def pages_of(*pages: list[Contact]) -> AsyncIterator[list[Contact]]:
    for page in pages:
        yield page


def known(*contacts: Contact) -> dict[int, str]:
    return {c.id: c.content_hash() for c in contacts}


async def test_pull_classifies_and_skips_duplicates_across_pages() -> None:
    a, b, c, d = contact(1), contact(2), contact(3), contact(4)
    b_edited = contact(2, email="b@example.com")
    pulled = await pull_contacts(
        pages_of([a, b_edited], [b_edited, c]),  # paging shifted: contact 2 is listed twice
        known(a, b, d),
    )
    assert pulled.seen == 3
    assert pulled.pages == 2
    assert pulled.duplicates == 1
    assert set(pulled.contacts) == {1, 2, 3}
    assert pulled.classification == Classification(ids(3), ids(2), ids(1), ids(4))
    assert pulled.hashes == {cid: c.content_hash() for cid, c in pulled.contacts.items()}


async def test_contacts_that_left_the_synced_phonebooks_are_out_of_scope_not_deleted() -> None:
    inside, left, gone = contact(1, books=[1]), contact(2, books=[2]), contact(3, books=[1])
    pulled = await pull_contacts(
        pages_of([inside, left]), known(inside, contact(2, books=[1]), gone), in_scope=phonebook_filter([1])
    )
    assert set(pulled.contacts) == {1}
    assert pulled.out_of_scope == 1
    assert pulled.classification.deleted == ids(3)
    assert pulled.classification.unchanged == ids(1)


async def test_pull_refuses_a_mass_loss_before_classifying() -> None:
    store = [contact(i) for i in range(1, 41)]
    with pytest.raises(MassLossError):
        await pull_contacts(pages_of(store[:19]), known(*store), mass_loss_min_known=20)
    pulled = await pull_contacts(pages_of(store[:20]), known(*store), mass_loss_min_known=20)
    assert len(pulled.classification.deleted) == 20


async def test_pull_refuses_when_most_known_contacts_vanished_even_if_as_many_new_ones_appeared() -> None:
    # a wrong base_url, or a restore that renumbered the phonebook: as many contacts as before, but
    # 30 of the 40 the store knows are gone. Tombstoning them would be the mass loss the guard is for.
    store = [contact(i) for i in range(1, 41)]
    other = [contact(i) for i in range(1001, 1031)]
    with pytest.raises(MassLossError) as caught:
        await pull_contacts(pages_of(store[:10] + other), known(*store), mass_loss_min_known=20)
    assert str(caught.value).startswith(
        "the PBX lists 40 contacts but only 10 of the 40 the state store knows"
    )


# --- end to end -----------------------------------------------------------------------------------------


@pytest.fixture
def env(make_env: EnvFactory) -> Env:
    return make_env(60)


def test_mass_loss_end_to_end_stops_the_run_and_changes_nothing(env: Env) -> None:
    env.import_links()
    assert env.sync().code == 0
    with env.store() as store:
        live_before = store.live_hashes()
        history_before = store.history()
    assert len(live_before) == 60
    for cid in range(1, 46):  # 45 of 60 deleted by someone at the PBX
        env.pbx.delete_contact(cid)
    updates_before = env.pbx.calls["company_contact/update"]

    result = env.sync()
    assert result.code == 1
    message = result.err.strip().splitlines()[-1]
    assert message.startswith("syncd: error: the PBX lists 15 contacts but the state store knows 60")
    assert "Refusing to run, nothing was changed" in message
    assert "Traceback" not in result.err
    assert env.pbx.calls["company_contact/update"] == updates_before
    with env.store() as store:
        assert store.live_hashes() == live_before
        assert store.tombstoned_ids() == set()
        assert store.history() == history_before
        assert store.journal_pending() == []
        last = store.recent_runs(1)[0]
    assert last.outcome == "aborted"
    assert last.error is not None and "Refusing to run" in last.error

    # the operator confirms the deletions by lowering the ratio for one run
    env.write_config(extra="", edit=lambda t: t.replace("[sync]\n", "[sync]\nmass_loss_ratio = 0.2\n", 1))
    confirmed = env.sync()
    assert confirmed.code == 0, confirmed.err
    with env.store() as store:
        assert store.tombstoned_ids() == set(range(1, 46))
        assert store.live_count() == 15


def test_deleted_contacts_are_tombstoned_once_and_never_recreated(env: Env) -> None:
    env.import_links()
    assert env.sync().code == 0
    env.pbx.delete_contact(5)
    env.pbx.delete_contact(6)

    second = env.sync()
    assert second.code == 0, second.err
    [done] = second.event("run.finished")
    assert done["deleted"] == 2
    assert [e["count"] for e in second.event("pull.tombstoned")] == [2]
    with env.store() as store:
        assert store.tombstoned_ids() == {5, 6}
        assert store.live_count() == 58

    third = env.sync()
    assert third.code == 0
    [done] = third.event("run.finished")
    assert done["deleted"] == 0
    assert third.event("pull.tombstoned") == []
    with env.store() as store:
        assert store.tombstoned_ids() == {5, 6}

    assert env.pbx.calls["company_contact/create"] == 0
    assert env.pbx.contact_count() == 58
    assert 5 not in env.pbx.contact_ids() and 6 not in env.pbx.contact_ids()


def test_a_deletion_during_a_paged_pull_tombstones_only_the_deleted_contact(tmp_path: Path) -> None:
    # Paging is by offset: a contact deleted from an already-listed page shifts every later contact one
    # place up, so the first contact of the next page is never listed in this pull.
    gates: dict[str, Gate] = {}

    def setup(sims: Simulators) -> None:
        gates["pbx"] = wrap(sims, "pbx", Gate)

    factory = EnvFactory(tmp_path)
    try:
        env = factory(60, setup=setup, edit=lambda t: t.replace("[pbx]\n", "[pbx]\npage_size = 10\n", 1))
        assert env.sync().code == 0
        gate = gates["pbx"]
        gate.arm("company_contact/list", 2)
        results: list[Result] = []
        run = threading.Thread(target=lambda: results.append(env.sync()))
        run.start()
        try:
            assert gate.hit.wait(60)
            env.pbx.delete_contact(3)  # on page 1, which the run has already read
        finally:
            gate.release(apply=True)
            run.join(60)
        [result] = results
        assert result.code == 0, result.err
        assert [e["count"] for e in result.event("pull.missed_by_paging")] == [1]
        [done] = result.event("run.finished")
        assert done["deleted"] == 0  # contact 3 was listed before it went; 11 was missed, not deleted
        with env.store() as store:
            assert store.tombstoned_ids() == set()
            assert 11 in store.live_hashes()
        # the next run lists everything again: contact 3, and only 3, is tombstoned
        again = env.sync()
        assert again.code == 0
        [done] = again.event("run.finished")
        assert done["deleted"] == 1
        with env.store() as store:
            assert store.tombstoned_ids() == {3}
    finally:
        factory.close()
