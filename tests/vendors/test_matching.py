"""The identity-match acceptance rule (pure): full name and company must agree, and nothing ambiguous."""

from __future__ import annotations

import pytest

from syncd.vendors import matching
from syncd.vendors.matching import accept_match

CASES = [
    # pbx name, pbx company, profile name, profile company, alternatives, accepted, reason
    ("Søren Müller", "Acme Inc.", "soren muller", "Acme Inc.", 0, True, matching.ACCEPTED),
    ("SØREN MÜLLER", "acme inc", "Søren Müller", "ACME INC.", 0, True, matching.ACCEPTED),
    ("  Jane   Doe ", "Globex", "Jane Doe", "Globex", 0, True, matching.ACCEPTED),
    ("Patricia O'Brien", "Øresund Logistik AB", "Patricia OBrien", "Oresund Logistik", 0, True, "accepted"),
    ("Patricia O'Brien", "Øresund Logistik AB", "patricia o brien", "Oresund Logistik", 0, True, "accepted"),
    ("O'Brien, Patricia", "Øresund Logistik AB", "Patricia OBrien", "Oresund Logistik", 0, True, "accepted"),
    ("Jean-Luc Picard", "Starfleet", "Jean Luc Picard", "Starfleet", 0, True, matching.ACCEPTED),
    ("Acme Person", "Acme Inc.", "Acme Person", "ACME", 0, True, matching.ACCEPTED),
    ("Jane Doe", "Acme, Inc.", "Jane Doe", "Acme Corporation", 0, True, matching.ACCEPTED),
    (
        "Jane Doe",
        "Société Générale de Café S.A.",
        "Jane Doe",
        "Societe Generale de Cafe",
        0,
        True,
        "accepted",
    ),
    ("Müller Søren", "Acme", "Søren Müller", "Acme", 0, True, matching.ACCEPTED),  # order swapped
    ("Van der Berg, Mary", "Acme", "Mary Van der Berg", "Acme", 0, True, matching.ACCEPTED),
    ("Jane Doe", "Acme", "Jane Doe", "Globex", 0, False, matching.COMPANY_MISMATCH),
    ("Jane Doe", "Acme", "Jane Doe", "Acme Labs", 0, False, matching.COMPANY_MISMATCH),
    ("Jane Doe", "", "Jane Doe", "Acme", 0, False, matching.NO_COMPANY),
    ("Jane Doe", "Acme", "Jane Doe", None, 0, False, matching.NO_COMPANY),
    ("Jane Doe", "Inc.", "Jane Doe", "Inc.", 0, False, matching.NO_COMPANY),  # nothing left after suffixes
    ("Jane", "Acme", "Jane Doe", "Acme", 0, False, matching.SINGLE_NAME),  # one name only
    ("Jane Doe", "Acme", "Jane", "Acme", 0, False, matching.SINGLE_NAME),
    ("Madonna", "Acme", "Madonna", "Acme", 0, False, matching.SINGLE_NAME),
    ("Jane Doe", "Acme", "Jane Q Doe", "Acme", 0, False, matching.PARTIAL_NAME),
    ("Jane Mary Doe", "Acme", "Jane Doe", "Acme", 0, False, matching.PARTIAL_NAME),
    ("Jane Doe", "Acme", "John Doe", "Acme", 0, False, matching.NAME_MISMATCH),
    ("Jane Doe", "Acme", "Doe Jane Doe", "Acme", 0, False, matching.NAME_MISMATCH),
    ("Jane Doe", "Acme", None, "Acme", 0, False, matching.NO_PROFILE_NAME),
    ("Jane Doe", "Acme", "   ", "Acme", 0, False, matching.NO_PROFILE_NAME),
    ("Jane Doe", "Acme", "Jane Doe", "Acme", 1, False, matching.AMBIGUOUS),
    ("Søren Müller", "Acme Inc.", "soren muller", "ACME", 3, False, matching.AMBIGUOUS),
]


@pytest.mark.parametrize(
    ("pbx_name", "pbx_company", "profile_name", "profile_company", "alts", "accepted", "reason"), CASES
)
def test_accept_match_table(
    pbx_name: str,
    pbx_company: str,
    profile_name: str | None,
    profile_company: str | None,
    alts: int,
    accepted: bool,
    reason: str,
) -> None:
    decision = accept_match(pbx_name, pbx_company, profile_name, profile_company, alts)
    assert (decision.accepted, decision.reason) == (accepted, reason)
    assert 0.0 <= decision.confidence <= 1.0
    if not accepted:
        assert decision.confidence < 1.0


@pytest.mark.parametrize(
    ("pbx", "profile", "expected"),
    [
        (("Jane Doe", "Acme"), ("Jane Doe", "Acme"), 1.0),  # exact after folding
        (("jane doe", "ACME"), ("Jane Doe", "Acme"), 1.0),  # case only
        (("Doe Jane", "Acme"), ("Jane Doe", "Acme"), 0.95),  # order swapped
        (("Jane Doe", "Acme Inc."), ("Jane Doe", "Acme"), 0.95),  # legal suffix differs
        (("Doe Jane", "Acme Inc."), ("Jane Doe", "Acme"), 0.9025),  # both
        (("Jane O'Doe", "Acme"), ("Jane ODoe", "Acme"), 0.95),  # word breaks differ (punctuation)
    ],
)
def test_confidence_of_accepted_matches(
    pbx: tuple[str, str], profile: tuple[str, str], expected: float
) -> None:
    decision = accept_match(*pbx, *profile)
    assert decision.accepted
    assert decision.confidence == pytest.approx(expected)


def test_refusals_say_how_close_they_came() -> None:
    # same person, other company: half the name score; ambiguity divides by the candidates
    assert accept_match("Jane Doe", "Acme", "Jane Doe", "Globex").confidence == pytest.approx(0.5)
    assert accept_match("Jane Doe", "Acme", "Jane Doe", "Acme", 1).confidence == pytest.approx(0.5)
    assert accept_match("Jane Doe", "Acme", "Jane Doe", "Acme", 3).confidence == pytest.approx(0.25)
    assert accept_match("Jane Doe", "Acme", "John Roe", "Acme").confidence == 0.0


def test_decision_is_symmetric_in_names_and_companies() -> None:
    for pbx_name, pbx_company, profile_name, profile_company, alts, _accepted, _reason in CASES:
        if not profile_name or not profile_company or not pbx_company:
            continue
        forward = accept_match(pbx_name, pbx_company, profile_name, profile_company, alts)
        backward = accept_match(profile_name, profile_company, pbx_name, pbx_company, alts)
        assert forward.accepted == backward.accepted
