"""The phonebook-wide switchboard set (pure) and its use by the merge."""

from __future__ import annotations

from datetime import UTC, datetime

from syncd.merge import MergeSettings, SkipReason, merge
from syncd.model import Contact, EnrichmentResult, FoundPhone, NumberSlot, Outcome, PhoneKind, Vendor
from syncd.switchboards import is_shared_cost_or_toll_free, switchboard_numbers, vendor_says_switchboard

AT = datetime(2026, 3, 1, tzinfo=UTC)
BUS, BUS2 = NumberSlot.business_number, NumberSlot.business_number2
BOARD, DIRECT_A, DIRECT_B = "+14155550100", "+14155550134", "+14155550199"


def found(cid: int, *phones: tuple[str, PhoneKind], outcome: Outcome = Outcome.found) -> EnrichmentResult:
    return EnrichmentResult(
        vendor=Vendor.leadfeeder,
        contact_id=cid,
        outcome=outcome,
        fetched_at=AT,
        phones=tuple(FoundPhone(n, k) for n, k in phones),
    )


def test_a_number_two_contacts_hold_is_a_switchboard_in_any_notation() -> None:
    contacts = [
        Contact.build(1, numbers={BUS: "(415)555-0100"}),
        Contact.build(2, numbers={BUS: "+1-415-555-0100"}),
        Contact.build(3, numbers={BUS: DIRECT_A}),
    ]
    assert switchboard_numbers(contacts, {}, "US") == {BOARD}


def test_a_number_proposed_for_two_contacts_or_held_by_one_and_proposed_for_another() -> None:
    contacts = [Contact.build(1, numbers={BUS: DIRECT_A}), Contact.build(2), Contact.build(3)]
    results = {
        2: [found(2, (BOARD, PhoneKind.landline), (DIRECT_A, PhoneKind.direct))],
        3: [found(3, (BOARD, PhoneKind.landline), (DIRECT_B, PhoneKind.direct))],
    }
    assert switchboard_numbers(contacts, results, "US") == {BOARD, DIRECT_A}


def test_one_contact_proposed_its_own_number_twice_is_no_switchboard() -> None:
    contacts = [Contact.build(1, numbers={BUS: DIRECT_A})]
    results = {1: [found(1, (DIRECT_A, PhoneKind.direct)), found(1, ("(415) 555-0134", PhoneKind.landline))]}
    assert switchboard_numbers(contacts, results, "US") == frozenset()


def test_not_found_answers_and_garbage_do_not_count_but_a_corporate_number_always_does() -> None:
    results = {
        1: [
            found(1, (BOARD, PhoneKind.direct), outcome=Outcome.not_found),
            found(1, ("n/a", PhoneKind.direct)),
        ],
        2: [found(2, (BOARD, PhoneKind.direct)), found(2, (DIRECT_B, PhoneKind.corporate))],
    }
    assert switchboard_numbers([], results, "US") == {DIRECT_B}


def test_the_vendors_word_corporate_toll_free_and_shared_cost() -> None:
    assert vendor_says_switchboard(FoundPhone(DIRECT_A, PhoneKind.corporate), DIRECT_A)
    assert not vendor_says_switchboard(FoundPhone(DIRECT_A, PhoneKind.direct), DIRECT_A)
    assert is_shared_cost_or_toll_free("+18005550199")  # US toll-free
    assert is_shared_cost_or_toll_free("+448001234567")  # UK freephone
    assert is_shared_cost_or_toll_free("+611300123456")  # AU shared cost (1300)
    assert not is_shared_cost_or_toll_free("+442079460958")
    assert not is_shared_cost_or_toll_free("garbage")


def test_the_merge_skips_a_phonebook_switchboard_and_fills_the_direct_line_beside_a_persons_number() -> None:
    colleague = Contact.build(2, numbers={BUS: "(415)555-0100"})
    me = Contact.build(1, numbers={BUS: "415.555.0111"})
    results = [found(1, (BOARD, PhoneKind.landline), (DIRECT_A, PhoneKind.landline))]
    boards = switchboard_numbers([me, colleague], {1: results}, "US")
    m = merge(me, me, results, {}, MergeSettings(switchboards=boards))
    assert m.update is not None and m.update.numbers == ((BUS, "415.555.0111"), (BUS2, DIRECT_A))
    assert [(s.value, s.reason) for s in m.skipped] == [(BOARD, SkipReason.switchboard)]
    # the colleague holds it already: no news, and nothing written
    m = merge(colleague, colleague, [found(2, (BOARD, PhoneKind.corporate))], {}, MergeSettings())
    assert m.update is None
    assert [s.reason for s in m.skipped] == [SkipReason.already_present]
