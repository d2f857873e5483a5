"""normalize.py: phone numbers, PBX renderings, email cleaning, name and company folding."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.normalize import (
    PBX_EMAIL_MAX,
    NumberFormat,
    clean_email,
    email_key,
    fold_company,
    fold_text,
    format_number,
    pbx_number_ok,
    to_e164,
)

# --- to_e164 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "(415)555-0134",
        "(415) 555-0134",
        "+14155550134",
        "1-415-555-0134",
        "+1-415-555-0134",
        "415.555.0134",
        "4155550134",
        "  415 555 0134  ",
        "+1 (415) 555-0134",
        "011 1 415 555 0134",  # the US international prefix
    ],
)
def test_to_e164_us_notations_agree(raw: str) -> None:
    assert to_e164(raw, "US") == "+14155550134"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("030 123456", "DE", "+4930123456"),
        ("+49 (0)30 123456", "US", "+4930123456"),
        ("1-800-FLOWERS", "US", "+18003569377"),  # vanity letters are digits
    ],
)
def test_to_e164_other_regions(raw: str, region: str, expected: str) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "not-a-number",
        "n/a",
        "12",
        "555-0134",  # too short without an area code
        "+1 415 555",
        "+999 1234 5678",  # no such country code
        "1" * 65,  # longer than any notation of a number
        "(415)555-0134 and then some text",
    ],
)
def test_to_e164_rejects_garbage(raw: str) -> None:
    assert to_e164(raw, "US") is None


def test_to_e164_national_number_needs_a_known_region() -> None:
    assert to_e164("4155550134", "ZZ") is None
    assert to_e164("+14155550134", "ZZ") == "+14155550134"


def test_to_e164_drops_an_extension() -> None:
    # documented behaviour worth knowing: an extension does not survive normalisation, so a PBX number
    # with an extension compares equal to the main line
    assert to_e164("+1 (415) 555-0134 ext 12", "US") == "+14155550134"


def test_to_e164_region_is_case_insensitive() -> None:
    assert to_e164("(415)555-0134", "us") == to_e164("(415)555-0134", "US")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_to_e164_never_raises_and_is_canonical(raw: str) -> None:
    e164 = to_e164(raw, "US")
    if e164 is not None:
        assert e164.startswith("+")
        assert e164[1:].isdigit()
        assert to_e164(e164, "US") == e164
        assert to_e164(e164, "DE") == e164


# --- format_number ------------------------------------------------------------------------------------


def _example_numbers() -> list[str]:
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            ex = phonenumbers.example_number_for_type(region, kind)
            if ex is not None:
                out.append(phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164))
    return out


EXAMPLES = _example_numbers()


@pytest.mark.parametrize(
    ("style", "region", "expected"),
    [
        (NumberFormat.e164, "US", "+14155550134"),
        (NumberFormat.international, "US", "+1-415-555-0134"),
        (NumberFormat.national, "US", "(415)555-0134"),
        (NumberFormat.national, "GB", "+1-415-555-0134"),  # foreign numbers stay international
    ],
)
def test_format_number_styles(style: NumberFormat, region: str, expected: str) -> None:
    assert format_number("+14155550134", style, region) == expected


@pytest.mark.parametrize("style", list(NumberFormat))
@pytest.mark.parametrize("region", ["US", "GB", "DE", "IN"])
def test_format_number_is_pbx_valid_and_reads_back(style: NumberFormat, region: str) -> None:
    for e164 in EXAMPLES:
        text = format_number(e164, style, region)
        assert pbx_number_ok(text), (e164, text)
        assert " " not in text
        assert to_e164(text, region) == e164, (e164, style, region, text)


def test_format_number_national_in_own_region_for_every_region() -> None:
    for e164 in EXAMPLES:
        region = str(phonenumbers.region_code_for_number(phonenumbers.parse(e164, None)))
        text = format_number(e164, NumberFormat.national, region)
        assert pbx_number_ok(text), (e164, text)
        assert to_e164(text, region) == e164, (e164, region, text)


def test_format_number_non_geographic() -> None:
    text = format_number("+80012345678", NumberFormat.national, "US")
    assert text == "+800-1234-5678"
    assert to_e164(text, "US") == "+80012345678"


# --- pbx_number_ok ------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["+14155550134", "(415)555-0134", "*67#", "1-800-FLOWERS", "9" * 31])
def test_pbx_number_ok_accepts(number: str) -> None:
    assert pbx_number_ok(number)


@pytest.mark.parametrize("number", ["", "415 555 0134", "9" * 32, "415/555", "+1\n415", "ext:12"])
def test_pbx_number_ok_rejects(number: str) -> None:
    assert not pbx_number_ok(number)


# --- clean_email --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a@b.co", "a@b.co"),
        ("John.Doe@Example.COM", "John.Doe@example.com"),  # domain folded, local part kept
        ("  x@y.io \n", "x@y.io"),
        ("o'brien@x.ie", "o'brien@x.ie"),
        ("a_b-c@x.co.uk", "a_b-c@x.co.uk"),
        ("a@example.com", "a@example.com"),
    ],
)
def test_clean_email_accepts(raw: str, expected: str) -> None:
    assert clean_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "n/a",
        "N/A",
        "none",
        "a@b",
        "a@b.c",  # the PBX wants a 2+ character top-level domain
        "a+tag@x.com",  # '+' is outside the PBX's email characters
        "ü@x.de",
        "a@bücher.de",
        "a..b@x.com",
        ".a@x.com",
        "a@x..com",
        "a@-x.com",
        "a@x.com.",
        '"a b"@x.com',
        "a@[1.2.3.4]",
        "a@localhost",
        "a@x.test",
        "two@at@x.com",
        "a@" + "x" * 250 + ".com",
    ],
)
def test_clean_email_rejects(raw: str | None) -> None:
    assert clean_email(raw) is None


def test_clean_email_rejects_overlong() -> None:
    local = "a" * 64
    domain = ".".join(["d" * 60] * 4) + ".com"
    assert len(f"{local}@{domain}") > PBX_EMAIL_MAX
    assert clean_email(f"{local}@{domain}") is None


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=40), st.emails()))
def test_clean_email_is_idempotent_and_pbx_safe(raw: str) -> None:
    cleaned = clean_email(raw)
    if cleaned is not None:
        assert clean_email(cleaned) == cleaned
        assert len(cleaned) <= PBX_EMAIL_MAX
        assert cleaned == cleaned.strip()
        assert email_key(cleaned) == cleaned.lower()


def test_email_key_ignores_case_and_blanks() -> None:
    assert email_key(" John.Doe@Example.com ") == email_key("john.doe@example.COM")


# --- fold_text / fold_company -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Søren   MÜLLER-Lüdenscheidt ", "soren muller ludenscheidt"),
        ("Straße", "strasse"),
        ("Łódź", "lodz"),
        ("Ærø", "aero"),
        ("Đorđe", "dorde"),
        ("ﬁne", "fine"),
        ("José_María", "jose maria"),
        ("O'Brien", "o brien"),
        ("", ""),
        (None, ""),
        ("---", ""),
    ],
)
def test_fold_text(raw: str | None, expected: str) -> None:
    assert fold_text(raw) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_fold_text_is_idempotent(raw: str) -> None:
    once = fold_text(raw)
    assert fold_text(once) == once
    assert once == once.strip()
    assert "  " not in once


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Acme, Inc.", "ACME"),
        ("Acme S.A.", "acme"),
        ("Acme Co. Ltd", "Acme"),
        ("Müller GmbH", "MULLER"),
        ("Acme Corporation", "acme corp"),
    ],
)
def test_fold_company_drops_legal_forms(a: str, b: str) -> None:
    assert fold_company(a) == fold_company(b)


def test_fold_company_keeps_distinct_names_apart() -> None:
    assert fold_company("Acme") != fold_company("Acme Labs")
    assert fold_company("Group Lotus") == "group lotus"  # a suffix word at the front stays


def test_fold_company_never_folds_a_name_to_nothing() -> None:
    assert fold_company("Group") != ""
    assert fold_company("Company") != fold_company("AG")


def test_fold_company_strips_mixed_suffix_orders() -> None:
    assert fold_company("Acme Inc S.A.") == fold_company("Acme S.A. Inc") == "acme"
