"""Which numbers are a company's switchboard rather than a person's line. Pure: no I/O, no clock.

Caller ID shows the contact whose slot holds the calling number, so a switchboard written into one
person's contact makes every call from that company show that person. A number is a switchboard when

- a vendor says so: the vendor's kind is `PhoneKind.corporate` (InsideView's `corporatePhone`, and its
  `phone` when `phoneType` is CORPORATE or it equals `corporatePhone`; ContactOut's non-geographic
  numbers), or its number type is toll-free or shared-cost (`phonenumbers`), whoever proposes it;
- or it is proposed for, or already held by, two or more different contacts of the phonebook.

`switchboard_numbers` computes the phonebook-wide set (E.164) from the pulled contacts and the vendor
results; the engine passes it to the merge in `MergeSettings.switchboards`, and the merge never writes a
number that `is_switchboard` calls one (skip reason "switchboard").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Final

import phonenumbers

from syncd.model import Contact, EnrichmentResult, FoundPhone, Outcome, PhoneKind
from syncd.normalize import to_e164

__all__ = ["is_shared_cost_or_toll_free", "is_switchboard", "switchboard_numbers", "vendor_says_switchboard"]

_SHARED_TYPES: Final = frozenset(
    {phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.SHARED_COST}
)
_CORPORATE: Final = PhoneKind.corporate


@lru_cache(maxsize=200_000)
def is_shared_cost_or_toll_free(e164: str) -> bool:
    """True for toll-free and shared-cost numbers (a company's line, never a person's)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(parsed) in _SHARED_TYPES


def vendor_says_switchboard(phone: FoundPhone, e164: str) -> bool:
    """The vendor's own word: a corporate number, or a toll-free or shared-cost one."""
    return phone.kind is _CORPORATE or is_shared_cost_or_toll_free(e164)


def is_switchboard(phone: FoundPhone, e164: str, known: frozenset[str]) -> bool:
    """Whether the merge must skip this vendor number as a switchboard (`known`: the phonebook's set)."""
    return e164 in known or vendor_says_switchboard(phone, e164)


def switchboard_numbers(
    contacts: Iterable[Contact],
    results: Mapping[int, Sequence[EnrichmentResult]],
    default_region: str,
) -> frozenset[str]:
    """The phonebook's switchboards in E.164: numbers held by or proposed for two or more different
    contacts, and every number a vendor calls corporate (for any contact).

    Only found results count; a result filed under another contact id than its key is ignored.
    """
    first: dict[str, int] = {}  # E.164 -> the first contact seen with it
    shared: set[str] = set()

    def see(e164: str, cid: int) -> None:
        seen = first.setdefault(e164, cid)
        if seen != cid:
            shared.add(e164)

    for c in contacts:
        for _slot, raw in c.numbers:
            if (e := to_e164(raw, default_region)) is not None:
                see(e, c.id)
    for cid, rs in results.items():
        for r in rs:
            if r.outcome != Outcome.found or r.contact_id != cid:
                continue
            for p in r.phones:
                if (e := to_e164(p.number, default_region)) is None:
                    continue
                see(e, cid)
                if p.kind is _CORPORATE:
                    shared.add(e)
    return frozenset(shared)
