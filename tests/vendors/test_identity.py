"""One identity check for every linked answer: a record found by a linked vendor id is used only when the
vendor's name agrees with the contact's; otherwise it is refused as "identity mismatch" with nothing in it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from syncd.model import EnrichmentResult, FoundEmail, LookupRequest, Outcome, Vendor
from syncd.sim.dataset import Route
from syncd.vendors import matching
from syncd.vendors.base import check_identities
from syncd.vendors.matching import IDENTITY_MISMATCH, linked_identity
from tests.vendors import test_insideview as iv
from tests.vendors import test_leadfeeder as lf

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pbx", "vendor", "accepted", "reason"),
    [
        ("Jay Prichett", "Jay Prichett", True, matching.ACCEPTED),
        ("Prichett Jay", "Jay Prichett", True, matching.ACCEPTED),  # a "Last First" display name
        ("Prichett, Jay", "JAY PRICHETT", True, matching.ACCEPTED),
        ("Patricia O'Brien", "Patricia OBrien", True, matching.ACCEPTED),
        ("Søren Müller", "Soren Muller", True, matching.ACCEPTED),
        ("Mary Smith", "Mary Ann Smith", True, matching.PARTIAL_NAME),  # a middle name
        ("Smith", "Mary Smith", True, matching.SINGLE_NAME),
        ("", "Mary Smith", True, matching.NO_PROFILE_NAME),  # nothing to compare: the link stands
        ("Mary Smith", None, True, matching.NO_PROFILE_NAME),
        ("Mary Smith", "Gloria Pritchett", False, matching.NAME_MISMATCH),
        ("Mary Smith", "Mary Jones", False, matching.NAME_MISMATCH),
        ("Mary Smith", "Mary Smithson", False, matching.NAME_MISMATCH),
    ],
)
def test_linked_identity(pbx: str, vendor: str | None, accepted: bool, reason: str) -> None:
    decision = linked_identity(pbx, vendor)
    assert (decision.accepted, decision.reason) == (accepted, reason)


names = st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=6), min_size=2, max_size=4)


@given(words=names, shift=st.integers(0, 3))
def test_a_name_always_agrees_with_itself_in_any_rotation(words: list[str], shift: int) -> None:
    shift %= len(words)
    rotated = words[shift:] + words[:shift]
    assert linked_identity(" ".join(words), " ".join(rotated).upper()).accepted


@given(a=names, b=names)
def test_names_with_no_word_in_common_never_agree(a: list[str], b: list[str]) -> None:
    if set(a) & set(b) or "".join(a) == "".join(b):
        return
    assert not linked_identity(" ".join(a), " ".join(b)).accepted


def found(cid: int, name: str | None, vendor: Vendor = Vendor.insideview) -> EnrichmentResult:
    return EnrichmentResult(
        vendor=vendor,
        contact_id=cid,
        outcome=Outcome.found,
        fetched_at=NOW,
        emails=(FoundEmail("someone@acme.example"),),
        title="CFO",
        full_name=name,
        vendor_id="16000001",
        credits=1,
    )


def test_check_identities_refuses_only_linked_answers_about_someone_else() -> None:
    requests = [
        LookupRequest(1, "Jay Prichett", "Acme", vendor_id="16000001"),
        LookupRequest(5, "Gloria Delgado", "Acme", vendor_id="16000001"),
        LookupRequest(7, "Manny Delgado", "Acme"),  # matched (no vendor id): judged by accept_match before
    ]
    results = [found(1, "Jay Prichett"), found(5, "Jay Prichett"), found(7, "Someone Else")]
    with capture_logs() as events:
        checked = check_identities(requests, results)
    assert checked[0] == results[0] and checked[2] == results[2]
    refused = checked[1]
    assert refused.outcome is Outcome.not_found
    assert (refused.error or "").startswith(IDENTITY_MISMATCH)
    assert refused.emails == () and refused.phones == () and refused.title is None
    assert refused.credits == 1  # paid all the same
    [event] = [e for e in events if e["event"] == "vendor.identity_mismatch"]
    assert event["contact_name"] == "Gloria Delgado" and event["vendor_name"] == "Jay Prichett"
    assert event["contact_id"] == 5 and event["vendor"] == "insideview"


async def test_insideview_answer_for_another_persons_id_is_refused() -> None:
    own, other = iv.CLEAN_CIDS[0], iv.CLEAN_CIDS[1]
    requests = [iv.req(own), iv.req(other, vendor_id=iv.iv_id(own))]  # `other` linked to own's id
    with iv.serving(iv.sim()) as url:
        provider = iv.provider(url)
        try:
            with capture_logs() as events:
                results = await provider.lookup(requests)
        finally:
            await provider.aclose()
    right, wrong = iv.by_contact(results)[own], iv.by_contact(results)[other]
    iv.assert_matches_dataset(right)
    assert wrong.outcome is Outcome.not_found and (wrong.error or "").startswith(IDENTITY_MISMATCH)
    assert wrong.emails == () and wrong.phones == () and wrong.title is None
    mismatches = [e for e in events if e["event"] == "vendor.identity_mismatch"]
    assert [(e["contact_id"], e["vendor_name"]) for e in mismatches] == [(other, iv.DS.person(own).full_name)]


async def test_leadfeeder_answer_for_another_persons_id_is_refused() -> None:
    cids = [c for c in lf.LF_CIDS if not lf.DATASET.person(c).garbage][:2]
    own, other = cids
    requests = [lf.request_for(own), lf.request_for(other, vendor_id=lf.lf_id(own))]
    assert lf.DATASET.route(other) is Route.leadfeeder
    async with lf.serving(lf.simulator()) as provider:
        results = await provider.lookup(requests)
    right, wrong = results
    assert right.outcome is Outcome.found and right.full_name == lf.DATASET.person(own).full_name
    assert wrong.outcome is Outcome.not_found and (wrong.error or "").startswith(IDENTITY_MISMATCH)
    assert wrong.emails == () and wrong.phones == () and wrong.title is None
