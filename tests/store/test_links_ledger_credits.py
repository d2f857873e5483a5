"""Identity links, the enrichment ledger, credit usage."""

from __future__ import annotations

import threading

import pytest

from syncd.model import EnrichmentResult, FoundEmail, FoundPhone, Outcome, PhoneKind, Vendor
from syncd.store import LedgerEntry, Link, StateStore

from .conftest import at

# --- links --------------------------------------------------------------------------------------


def link(
    cid: int, vendor: str, vid: str | None, method: str, conf: float | None = None, t: float = 0
) -> Link:
    return Link(cid, vendor, vid, method, conf, at(t))


def test_links_round_trip_and_filters(store: StateStore) -> None:
    rows = [
        link(1, "insideview", "iv-1", "imported"),
        link(1, "contactout", "https://linkedin.com/in/one", "matched", 0.92),
        link(2, "insideview", None, "unmatched"),
        link(3, "leadfeeder", "lf-3", "matched", 0.5),
    ]
    assert store.save_links(rows) == 4
    everything = store.links_for()
    assert everything == {(r.contact_id, r.vendor): r for r in rows}
    assert set(store.links_for(Vendor.insideview)) == {(1, "insideview"), (2, "insideview")}
    assert set(store.links_for("insideview", ids=[2, 3])) == {(2, "insideview")}
    assert set(store.links_for(ids=[1])) == {(1, "insideview"), (1, "contactout")}
    # Vendor members work as keys too (StrEnum)
    assert everything[(1, Vendor.contactout)].confidence == 0.92


def test_links_may_precede_the_first_sync(store: StateStore) -> None:
    assert store.save_links([link(999, "insideview", "iv-999", "imported")]) == 1
    assert store.live_count() == 0


def test_an_imported_link_is_only_replaced_by_an_import(store: StateStore) -> None:
    store.save_links([link(1, "insideview", "iv-person", "imported")])
    assert store.save_links([link(1, "insideview", "iv-guess", "matched", 0.99, t=5)]) == 0
    assert store.save_links([link(1, "insideview", None, "unmatched", t=6)]) == 0
    assert store.links_for()[(1, "insideview")].vendor_id == "iv-person"
    assert store.save_links([link(1, "insideview", "iv-corrected", "imported", t=7)]) == 1
    got = store.links_for()[(1, "insideview")]
    assert (got.vendor_id, got.linked_at) == ("iv-corrected", at(7))
    # a match replaces an earlier non-match
    store.save_links([link(2, "contactout", None, "unmatched")])
    assert store.save_links([link(2, "contactout", "co-2", "matched", 0.8)]) == 1
    assert store.links_for()[(2, "contactout")].method == "matched"


def test_link_validation(store: StateStore) -> None:
    with pytest.raises(ValueError, match="method"):
        store.save_links([link(1, "insideview", "x", "guessed")])
    with pytest.raises(ValueError, match="vendor_id"):
        store.save_links([link(1, "insideview", None, "matched")])
    with pytest.raises(ValueError):
        store.save_links([link(1, "clearbit", "x", "imported")])
    assert store.save_links([]) == 0
    assert store.links_for() == {}


# --- ledger -------------------------------------------------------------------------------------


def result(vendor: Vendor, cid: int, outcome: Outcome, t: float = 0, **kw: object) -> EnrichmentResult:
    return EnrichmentResult(vendor, cid, outcome, at(t), **kw)  # type: ignore[arg-type]


def test_ledger_round_trip(store: StateStore) -> None:
    found = result(
        Vendor.insideview,
        1,
        Outcome.found,
        emails=(FoundEmail("a@acme.test", verification="verified", confidence=0.9),),
        phones=(FoundPhone("+15550100", PhoneKind.mobile),),
        title="CTO",
        vendor_id="iv-1",
        credits=2,
    )
    missing = result(Vendor.insideview, 2, Outcome.not_found, credits=1)
    other_vendor = result(Vendor.contactout, 1, Outcome.not_found)
    store.record_results([found, missing, other_vendor], {1: "fp-1", 2: "fp-2"})
    entries = store.ledger(Vendor.insideview, [1, 2, 3])
    assert entries == {
        1: LedgerEntry("insideview", 1, Outcome.found, at(0), "fp-1", found),
        2: LedgerEntry("insideview", 2, Outcome.not_found, at(0), "fp-2", missing),
    }
    assert store.ledger("contactout", [1, 2]) == {
        1: LedgerEntry("contactout", 1, Outcome.not_found, at(0), "fp-1", other_vendor)
    }


def test_ledger_newer_answer_and_fingerprint_replace_older(store: StateStore) -> None:
    store.record_results([result(Vendor.leadfeeder, 1, Outcome.not_found)], {1: "old-inputs"})
    newer = result(Vendor.leadfeeder, 1, Outcome.found, t=60, title="VP")
    store.record_results([newer], {1: "new-inputs"})
    entry = store.ledger(Vendor.leadfeeder, [1])[1]
    assert (entry.outcome, entry.fingerprint, entry.fetched_at, entry.result) == (
        Outcome.found,
        "new-inputs",
        at(60),
        newer,
    )


def test_an_error_never_erases_a_paid_answer(store: StateStore) -> None:
    found = result(Vendor.insideview, 1, Outcome.found, title="CTO")
    store.record_results([found], {1: "fp"})
    store.record_results([result(Vendor.insideview, 1, Outcome.error, t=5, error="timeout")], {1: "fp"})
    assert store.ledger(Vendor.insideview, [1])[1].result == found
    # an error is recorded where there was nothing, and a later error replaces an earlier one
    store.record_results([result(Vendor.insideview, 2, Outcome.error, t=1, error="500")], {2: "fp"})
    store.record_results([result(Vendor.insideview, 2, Outcome.error, t=9, error="502")], {2: "fp"})
    e2 = store.ledger(Vendor.insideview, [2])[2]
    assert (e2.outcome, e2.result.error, e2.fetched_at) == (Outcome.error, "502", at(9))
    # and an answer replaces an error
    store.record_results([result(Vendor.insideview, 2, Outcome.not_found, t=20)], {2: "fp"})
    assert store.ledger(Vendor.insideview, [2])[2].outcome is Outcome.not_found


def test_long_fingerprints_and_texts_fit_on_every_backend(store: StateStore) -> None:
    long = "x" * 2_000
    r = result(Vendor.contactout, 1, Outcome.error, error=long, title=long)
    store.record_results([r], {1: long})
    entry = store.ledger(Vendor.contactout, [1])[1]
    assert entry.fingerprint == long and entry.result == r


def test_record_results_needs_every_fingerprint(store: StateStore) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        store.record_results([result(Vendor.insideview, 7, Outcome.found)], {})
    assert store.ledger(Vendor.insideview, [7]) == {}
    store.record_results([], {})


# --- credits ------------------------------------------------------------------------------------


def test_credits_accumulate_per_vendor_and_month(store: StateStore) -> None:
    assert store.credits_for_month("2026-11") == {}
    store.add_credits(Vendor.insideview, "2026-11", 3)
    store.add_credits("insideview", "2026-11", 4)
    store.add_credits(Vendor.contactout, "2026-11", 1)
    store.add_credits(Vendor.insideview, "2026-12", 10)
    store.add_credits(Vendor.leadfeeder, "2026-11", 0)
    assert store.credits_for_month("2026-11") == {"insideview": 7, "contactout": 1}
    assert store.credits_for_month("2026-12") == {"insideview": 10}


def test_credit_validation(store: StateStore) -> None:
    with pytest.raises(ValueError, match="month"):
        store.add_credits(Vendor.insideview, "2026-13", 1)
    with pytest.raises(ValueError, match="month"):
        store.credits_for_month("November")
    with pytest.raises(ValueError, match="negative"):
        store.add_credits(Vendor.insideview, "2026-11", -1)


def test_concurrent_increments_are_not_lost(store_url: str) -> None:
    """Separate stores (separate connections) adding at once: the increment is atomic in the database."""
    stores = [StateStore.open(store_url) for _ in range(4)]
    errors: list[BaseException] = []

    def spend(s: StateStore) -> None:
        try:
            for _ in range(25):
                s.add_credits(Vendor.contactout, "2026-11", 1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=spend, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert stores[0].credits_for_month("2026-11") == {"contactout": 100}
    finally:
        for s in stores:
            s.close()


def test_record_results_can_book_their_credits_in_the_same_transaction(store: StateStore) -> None:
    paid = [
        result(Vendor.insideview, 1, Outcome.found, credits=2),
        result(Vendor.insideview, 2, Outcome.not_found, credits=1),
        result(Vendor.contactout, 1, Outcome.found, credits=3),
        result(Vendor.contactout, 2, Outcome.error, credits=0),
    ]
    store.record_results(paid, {1: "a", 2: "b"}, credits_month="2026-11")
    assert store.credits_for_month("2026-11") == {"insideview": 3, "contactout": 3}
    store.record_results(paid[:1], {1: "a"})  # without a month, no credits are booked
    assert store.credits_for_month("2026-11") == {"insideview": 3, "contactout": 3}
    with pytest.raises(ValueError, match="month"):
        store.record_results(paid, {1: "a", 2: "b"}, credits_month="11/2026")
