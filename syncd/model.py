"""Plain typed data shared by every layer: PBX contacts, vendor results, planned changes.

Everything here is immutable and free of I/O so that the merge and the planner stay pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class NumberSlot(StrEnum):
    """The nine typed number slots of a Yeastar company contact (detailed form `num_type`)."""

    business_number = "business_number"
    business_number2 = "business_number2"
    mobile_number = "mobile_number"
    mobile_number2 = "mobile_number2"
    home_number = "home_number"
    home_number2 = "home_number2"
    business_fax = "business_fax"
    home_fax = "home_fax"
    other_number = "other_number"


# Flat form (company_contact/list) field name for each slot.
FLAT_FIELD: dict[NumberSlot, str] = {
    NumberSlot.business_number: "business",
    NumberSlot.business_number2: "business2",
    NumberSlot.mobile_number: "mobile",
    NumberSlot.mobile_number2: "mobile2",
    NumberSlot.home_number: "home",
    NumberSlot.home_number2: "home2",
    NumberSlot.business_fax: "business_fax",
    NumberSlot.home_fax: "home_fax",
    NumberSlot.other_number: "other",
}
SLOT_FOR_FLAT: dict[str, NumberSlot] = {v: k for k, v in FLAT_FIELD.items()}


@dataclass(frozen=True, slots=True)
class Contact:
    """A PBX company contact, restricted to the fields syncd reads or writes.

    `numbers` maps a slot to the number exactly as the PBX holds it (never reformatted).
    `job_title` is None when the firmware has no such field (older firmware, flat form without it).
    """

    id: int
    name: str = ""
    company: str = ""
    email: str = ""
    remark: str = ""
    numbers: tuple[tuple[NumberSlot, str], ...] = ()
    phonebook_ids: tuple[int, ...] = ()
    job_title: str | None = None

    @staticmethod
    def build(
        id: int,
        *,
        name: str = "",
        company: str = "",
        email: str = "",
        remark: str = "",
        numbers: Mapping[NumberSlot, str] | Iterable[tuple[NumberSlot, str]] = (),
        phonebook_ids: Iterable[int] = (),
        job_title: str | None = None,
    ) -> Contact:
        """Canonical constructor: drops empty slots, orders slots and phonebooks."""
        items = numbers.items() if isinstance(numbers, Mapping) else numbers
        clean = tuple(
            sorted(
                ((NumberSlot(s), n) for s, n in items if n),
                key=lambda sn: _SLOT_ORDER[sn[0]],
            )
        )
        return Contact(
            id=id,
            name=name,
            company=company,
            email=email,
            remark=remark,
            numbers=clean,
            phonebook_ids=tuple(sorted(set(phonebook_ids))),
            job_title=job_title,
        )

    @property
    def number_map(self) -> dict[NumberSlot, str]:
        return dict(self.numbers)

    def to_record(self) -> dict[str, object]:
        """A JSON-safe dict; the inverse of `from_record`."""
        return {
            "id": self.id,
            "name": self.name,
            "company": self.company,
            "email": self.email,
            "remark": self.remark,
            "numbers": {s.value: n for s, n in self.numbers},
            "phonebook_ids": list(self.phonebook_ids),
            "job_title": self.job_title,
        }

    @staticmethod
    def from_record(rec: Mapping[str, object]) -> Contact:
        numbers = rec.get("numbers") or {}
        assert isinstance(numbers, Mapping)
        pbs = rec.get("phonebook_ids") or []
        assert isinstance(pbs, list)
        title = rec.get("job_title")
        return Contact.build(
            int(str(rec["id"])),
            name=str(rec.get("name") or ""),
            company=str(rec.get("company") or ""),
            email=str(rec.get("email") or ""),
            remark=str(rec.get("remark") or ""),
            numbers={NumberSlot(k): str(v) for k, v in numbers.items()},
            phonebook_ids=[int(p) for p in pbs],
            job_title=None if title is None else str(title),
        )

    def content_hash(self) -> str:
        """Stable hash of every field syncd reads or writes; equal hash = unchanged contact."""
        payload = json.dumps(self.to_record(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


_SLOT_ORDER = {slot: i for i, slot in enumerate(NumberSlot)}


# --- enrichment ---------------------------------------------------------------------------------


class Vendor(StrEnum):
    insideview = "insideview"
    leadfeeder = "leadfeeder"
    contactout = "contactout"


class EmailKind(StrEnum):
    work = "work"
    personal = "personal"
    unknown = "unknown"


class PhoneKind(StrEnum):
    mobile = "mobile"
    direct = "direct"
    corporate = "corporate"
    landline = "landline"
    work = "work"
    fax = "fax"
    other = "other"


class Outcome(StrEnum):
    found = "found"
    not_found = "not_found"
    error = "error"


@dataclass(frozen=True, slots=True)
class FoundEmail:
    address: str
    kind: EmailKind = EmailKind.unknown
    # The vendor's own word, normalised: "verified", "unverified", "valid", "invalid", "accept_all",
    # "unknown", or None when the vendor said nothing.
    verification: str | None = None
    confidence: float | None = None  # 0..1 when the vendor gives a score


@dataclass(frozen=True, slots=True)
class FoundPhone:
    number: str
    kind: PhoneKind = PhoneKind.other
    blacklisted: bool = False


@dataclass(frozen=True, slots=True)
class EnrichmentResult:
    """One vendor's answer about one PBX contact, normalised."""

    vendor: Vendor
    contact_id: int
    outcome: Outcome
    fetched_at: datetime
    emails: tuple[FoundEmail, ...] = ()
    phones: tuple[FoundPhone, ...] = ()
    title: str | None = None
    company: str | None = None
    full_name: str | None = None
    vendor_id: str | None = None  # the vendor's identity for the person (id or LinkedIn URL)
    credits: int = 0  # credits this answer cost, as the vendor reported it
    error: str | None = None  # reason when outcome is error (no secrets)
    # How the person was identified when no vendor id was known: "email", "phone", "name_company".
    # None when looked up by a known vendor id. A match is only `found` when name and company agree.
    matched_by: str | None = None
    match_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class LookupRequest:
    """What syncd knows about a contact when it asks a vendor."""

    contact_id: int
    name: str
    company: str
    email: str = ""
    phones: tuple[str, ...] = ()
    vendor_id: str | None = None  # known identity at this vendor (imported or matched link)
    # the name's parts as the PBX holds them (detailed form), when known: `name` may be a display string
    # whose word order depends on the PBX ("Last First")
    first_name: str = ""
    last_name: str = ""
    # what can still be written for the contact: a provider that can choose what it buys asks only for these
    need_email: bool = True
    need_phones: bool = True


# --- merge output -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldChange:
    contact_id: int
    field: str  # "email", "title", or a number slot such as "mobile_number"
    old: str
    new: str
    source: str  # vendor name
    reason: str  # e.g. "fill_empty", "refresh"


@dataclass(frozen=True, slots=True)
class ContactUpdate:
    """A complete update for one contact: what to send and what it was planned against."""

    contact_id: int
    precondition_hash: str  # content hash of the PBX contact the plan was made from
    email: str | None = None  # None = leave unchanged
    remark: str | None = None
    job_title: str | None = None
    numbers: tuple[tuple[NumberSlot, str], ...] | None = None  # complete list when changed
    changes: tuple[FieldChange, ...] = field(default=())
