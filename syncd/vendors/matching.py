"""The identity-match acceptance rule: is the vendor's profile the PBX contact's person?

Pure: no I/O, no clock, no logging. A vendor found a profile by email, phone or name + company; syncd only
trusts it when the profile's full name and current company both agree with the PBX contact and the vendor
did not report other candidates. Everything else is a weak, partial or ambiguous match: refused, with a
reason the engine records (it keeps the candidate as an `unmatched` link and never writes from it).

Agreement, after folding (`fold_text`: case, accents, punctuation and spacing aside):
- names: the same words in the same order, or rotated ("Müller Søren", "Van der Berg, Mary" for "Mary Van
  der Berg": first/last order swapped), or the same letters with other word breaks ("O'Brien" / "OBrien",
  punctuation aside); both sides need at least two words (a first name alone is too weak to identify
  anyone);
- companies: equal under `fold_company` (legal-form suffixes dropped: "Acme Inc." == "ACME").

Confidence (0..1) when accepted: 1.0 for an exact folded agreement, 0.95 per softer step (name order
swapped or word breaks differing; companies equal only once legal suffixes are dropped). When refused it says how close the
candidate came: the name part alone (0.5 of it) when only the company disagrees or is missing, divided by
1 + alternatives when ambiguous, 0.0 when the names disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.normalize import fold_company, fold_text, legal_form_only

ACCEPTED = "accepted"
NO_PROFILE_NAME = "no_profile_name"
SINGLE_NAME = "single_name"  # one side has a single word only (first name, or surname only)
NAME_MISMATCH = "name_mismatch"
PARTIAL_NAME = "partial_name"  # one name's words are a strict subset of the other's (middle name, initials)
NO_COMPANY = "no_company"  # the PBX contact or the profile names no company: nothing to confirm with
COMPANY_MISMATCH = "company_mismatch"
AMBIGUOUS = "ambiguous"  # the vendor reported alternative matches

_SOFT_STEP = 0.95


@dataclass(frozen=True, slots=True)
class MatchDecision:
    accepted: bool
    confidence: float  # 0..1
    reason: str  # ACCEPTED or one of the refusal codes above


def _name_score(pbx_words: list[str], profile_words: list[str]) -> float:
    """1.0 same words in order; 0.95 when only the word breaks differ ("O'Brien" / "OBrien") or the order
    is rotated (first/last swapped); 0.0 otherwise."""
    if pbx_words == profile_words:
        return 1.0
    joined = "".join(profile_words)
    for shift in range(len(pbx_words)):
        rotated = pbx_words[shift:] + pbx_words[:shift]
        if rotated == profile_words or "".join(rotated) == joined:
            return _SOFT_STEP
    return 0.0


def accept_match(
    pbx_name: str,
    pbx_company: str,
    profile_name: str | None,
    profile_company: str | None,
    alt_matches: int = 0,
) -> MatchDecision:
    """Accept only a full-name and company agreement that the vendor itself calls unambiguous."""
    pbx_words = fold_text(pbx_name).split()
    profile_words = fold_text(profile_name).split()
    if not profile_words:
        return MatchDecision(False, 0.0, NO_PROFILE_NAME)
    if len(pbx_words) < 2 or len(profile_words) < 2:
        return MatchDecision(False, 0.0, SINGLE_NAME)
    name_score = _name_score(pbx_words, profile_words)
    if name_score == 0.0:
        a, b = set(pbx_words), set(profile_words)
        if a < b or b < a:
            return MatchDecision(False, 0.0, PARTIAL_NAME)
        return MatchDecision(False, 0.0, NAME_MISMATCH)
    pbx_key, profile_key = fold_company(pbx_company), fold_company(profile_company)
    if legal_form_only(pbx_company) or legal_form_only(profile_company):
        pbx_key = profile_key = ""  # "Inc." alone names no company: nothing to confirm the match with
    if not pbx_key or not profile_key:
        return MatchDecision(False, round(0.5 * name_score, 4), NO_COMPANY)
    if pbx_key != profile_key:
        return MatchDecision(False, round(0.5 * name_score, 4), COMPANY_MISMATCH)
    company_score = 1.0 if fold_text(pbx_company) == fold_text(profile_company) else _SOFT_STEP
    score = round(name_score * company_score, 4)
    if alt_matches > 0:
        return MatchDecision(False, round(score / (1 + alt_matches), 4), AMBIGUOUS)
    return MatchDecision(True, score, ACCEPTED)


IDENTITY_MISMATCH = "identity mismatch"


def linked_identity(pbx_name: str, vendor_name: str | None) -> MatchDecision:
    """Is the person a vendor answered about, by an id linked to the contact, the contact's person?

    The name rule of `accept_match` (same words in order, rotated, or with other word breaks, case, accents
    and punctuation aside), without its company rule: the link, not the name, identifies the person, and
    people change companies. The check only catches someone else's record behind the link (a wrong or
    stale imported id), so a name that is one side's subset ("Mary Smith" / "Mary Ann Smith", a contact
    named "Smith" alone) agrees too. Refused (NAME_MISMATCH) only when the two names share no such
    agreement; accepted as NO_PROFILE_NAME when the vendor named no one or the contact has no name (nothing
    to compare: the answer stands on the link).
    """
    pbx_words = fold_text(pbx_name).split()
    vendor_words = fold_text(vendor_name).split()
    if not vendor_words or not pbx_words:
        return MatchDecision(True, 0.5, NO_PROFILE_NAME)
    score = _name_score(pbx_words, vendor_words)
    if score > 0.0:
        return MatchDecision(True, score, ACCEPTED)
    a, b = set(pbx_words), set(vendor_words)
    if a <= b or b <= a:
        return MatchDecision(True, 0.9, PARTIAL_NAME if min(len(a), len(b)) > 1 else SINGLE_NAME)
    if "".join(pbx_words) == "".join(vendor_words):
        return MatchDecision(True, _SOFT_STEP, ACCEPTED)
    return MatchDecision(False, 0.0, NAME_MISMATCH)
