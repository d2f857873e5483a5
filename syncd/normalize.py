"""Pure normalisation and validation of the values syncd compares and writes.

- phone numbers: `phonenumbers`, parsed against the configured default region, compared in E.164;
- emails: `email-validator` syntax check (no DNS at run time) plus the PBX's own field rules;
- names and companies: folded (case, accents, punctuation and spacing aside) for identity matching.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# PBX field rules (P-Series CSV spec; the simulator enforces the same)
PBX_NUMBER_RE = re.compile(r"[0-9A-Za-z().+*#-]{1,31}")
PBX_EMAIL_CHARS_RE = re.compile(r"[A-Za-z0-9@_.'-]+")
PBX_EMAIL_SHAPE_RE = re.compile(r"[^@]+@[^@]+\.[^@]{2,}")
PBX_EMAIL_MAX = 255
PBX_REMARK_MAX = 1024
PBX_NAME_MAX = 127
PBX_COMPANY_MAX = 127


class NumberFormat(StrEnum):
    e164 = "e164"  # +14155550134
    international = "international"  # +1-415-555-0134 (PBX numbers may not contain spaces)
    national = "national"  # (415)555-0134 in the default region, international elsewhere


@lru_cache(maxsize=200_000)
def to_e164(raw: str, default_region: str) -> str | None:
    """The E.164 form of `raw`, or None when it is not a valid number (garbage, too short, ...)."""
    text = (raw or "").strip()
    if not text or len(text) > 64:
        return None
    try:
        parsed = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def format_number(e164: str, style: NumberFormat, default_region: str) -> str:
    """Render a valid E.164 number for writing to the PBX (no spaces: the PBX rejects them)."""
    if style is NumberFormat.e164:
        return e164
    parsed = phonenumbers.parse(e164, None)
    region = phonenumbers.region_code_for_number(parsed)
    if style is NumberFormat.national and region == default_region.upper():
        text = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    else:
        text = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    text = re.sub(r"\)\s+", ")", str(text))
    return re.sub(r"\s+", "-", text.strip())


def pbx_number_ok(number: str) -> bool:
    return bool(PBX_NUMBER_RE.fullmatch(number))


def clean_email(raw: str | None) -> str | None:
    """A normalised email that passes both a syntax check and the PBX's field rules, or None."""
    text = (raw or "").strip()
    if not text or len(text) > PBX_EMAIL_MAX:
        return None
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    address = f"{result.local_part}@{result.domain.lower()}"
    if not PBX_EMAIL_CHARS_RE.fullmatch(address) or not PBX_EMAIL_SHAPE_RE.fullmatch(address):
        return None
    return address


def email_key(address: str) -> str:
    """Comparison key for emails: case-insensitive."""
    return address.strip().lower()


_FOLD_SPECIAL = str.maketrans(
    {
        "ø": "o",
        "Ø": "o",
        "ł": "l",
        "Ł": "l",
        "ß": "ss",
        "æ": "ae",
        "Æ": "ae",
        "đ": "d",
        "Đ": "d",
        "\u0131": "i",
    }
)
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def fold_text(text: str | None) -> str:
    """'  Søren   MÜLLER-Lüdenscheidt ' -> 'soren muller ludenscheidt' (case, accents, spacing aside)."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD_SPECIAL))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(_NON_WORD.sub(" ", stripped).split())


_COMPANY_SUFFIXES = frozenset(
    {
        "inc",
        "llc",
        "ltd",
        "gmbh",
        "ag",
        "ab",
        "sa",
        "s a",
        "corp",
        "co",
        "plc",
        "group",
        "bv",
        "nv",
        "srl",
        "sarl",
        "oy",
        "as",
        "kg",
        "limited",
        "corporation",
        "company",
        "incorporated",
    }
)


def fold_company(text: str | None) -> str:
    """Company comparison key: folded, legal-form suffixes dropped ('Acme, Inc.' == 'ACME').

    Suffixes are dropped in any order ('Acme Inc S.A.'), but a name made only of legal-form words
    ('Group') keeps its words: it must not fold to nothing and match every other such name.
    """
    words = fold_text(text).split()
    while len(words) > 1:
        if len(words) > 2 and f"{words[-2]} {words[-1]}" in _COMPANY_SUFFIXES:
            words = words[:-2]
        elif words[-1] in _COMPANY_SUFFIXES:
            words = words[:-1]
        else:
            break
    return " ".join(words)


def legal_form_only(text: str | None) -> bool:
    """True for a company given only as a legal form ('Inc.', 'GmbH'): it names no company."""
    words = fold_text(text).split()
    return all(w in _COMPANY_SUFFIXES for w in words) or " ".join(words) in _COMPANY_SUFFIXES
