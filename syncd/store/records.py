"""The store's value types and the JSON codecs for the model objects it persists.

Everything here is pure: frozen dataclasses handed out by `StateStore`, and lossless JSON round trips for
`EnrichmentResult` (the enrichment ledger) and `ContactUpdate` (the push journal). The codecs ignore keys they
do not know and default the ones that are missing, so a row written by a newer or older syncd still loads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncd.model import (
    ContactUpdate,
    EmailKind,
    EnrichmentResult,
    FieldChange,
    FoundEmail,
    FoundPhone,
    LookupRequest,
    NumberSlot,
    Outcome,
    PhoneKind,
    Vendor,
)

# --- vocabularies -------------------------------------------------------------------------------

OWNER_SYNCD = "syncd"
OWNER_PERSON = "person"
OWNERS = frozenset({OWNER_SYNCD, OWNER_PERSON})

RUN_MODES = frozenset({"sync", "dry_run", "daemon"})
RUN_RUNNING = "running"
RUN_OUTCOMES = frozenset({RUN_RUNNING, "ok", "partial", "unreachable", "interrupted", "failed", "aborted"})

LINK_METHODS = frozenset({"imported", "matched", "unmatched"})

JOURNAL_PENDING = "pending"
JOURNAL_APPLIED = "applied"
JOURNAL_SUPERSEDED = "superseded"
JOURNAL_FAILED = "failed"
JOURNAL_STATES = frozenset({JOURNAL_PENDING, JOURNAL_APPLIED, JOURNAL_SUPERSEDED, JOURNAL_FAILED})

_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def month_of(at: datetime) -> str:
    """The credit-usage month ("2026-11") of a moment, in UTC."""
    return utc(at).strftime("%Y-%m")


def check_month(month: str) -> str:
    if not _MONTH_RE.match(month):
        raise ValueError(f"month must look like 2026-11, not {month!r}")
    return month


def utc(at: datetime) -> datetime:
    """`at` converted to UTC; a naive datetime is a caller bug (its zone is unknowable)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: the store takes timezone-aware datetimes")
    return at.astimezone(UTC)


def lookup_fingerprint(request: LookupRequest) -> str:
    """A stable digest of what a vendor is asked about a contact (for `StateStore.record_results`).

    Case, surrounding blanks and the order of phones do not count; anything else that changes the
    question changes the fingerprint, so the ledger knows to ask again.
    """
    payload = _dumps(
        {
            "name": " ".join(request.name.split()).casefold(),
            "company": " ".join(request.company.split()).casefold(),
            "email": request.email.strip().casefold(),
            "phones": sorted({p.strip() for p in request.phones if p.strip()}),
            "vendor_id": request.vendor_id,
        }
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def vendor_name(vendor: Vendor | str) -> str:
    """The stored name of a vendor; unknown names are refused."""
    return Vendor(vendor).value


# --- value types --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldState:
    """Provenance of one field of one contact ("email", "title", or a number slot name)."""

    owner: str  # "syncd" or "person"; once "person", forever
    syncd_value: str | None = None  # the value syncd last wrote, None if it never wrote one
    source: str | None = None  # vendor that supplied `syncd_value`
    written_at: datetime | None = None
    person_touched_at: datetime | None = None  # first time a person's edit was noticed

    @property
    def person_owned(self) -> bool:
        return self.owner == OWNER_PERSON


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    mode: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A cached OAuth token pair. The token values are kept out of `repr`."""

    access_token: str = field(repr=False)
    access_expires_at: datetime
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """A PBX contact's identity at a vendor. `vendor_id` is None for an `unmatched` attempt."""

    contact_id: int
    vendor: str
    vendor_id: str | None
    method: str  # "imported", "matched", "unmatched"
    confidence: float | None
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    vendor: str
    contact_id: int
    outcome: Outcome
    fetched_at: datetime
    fingerprint: str
    result: EnrichmentResult


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    run_id: str
    contact_id: int
    state: str  # "pending", "applied", "superseded", "failed"
    precondition_hash: str
    update: ContactUpdate
    created_at: datetime
    sent_at: datetime | None
    applied_at: datetime | None
    resolved_at: datetime | None
    attempts: int
    error: str | None

    @property
    def in_doubt(self) -> bool:
        """Pending but already sent at least once: the PBX may or may not have applied it."""
        return self.state == JOURNAL_PENDING and self.sent_at is not None


CHANGE_KIND = "change"  # syncd's own write: the only kind with a `contact.changed` event
TAKEOVER_KIND = "takeover"  # a person changed a field: it is person-owned from then on
REMOVAL_KIND = "removal"  # a person emptied a field: person-owned too
TOMBSTONE_KIND = "tombstone"  # the contact left the PBX
RESET_KIND = "reset"  # `syncd owners reset` gave a person-owned field back to syncd
CHANGE_KINDS = frozenset({CHANGE_KIND, TAKEOVER_KIND, REMOVAL_KIND, TOMBSTONE_KIND, RESET_KIND})


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One row of the change log: an applied field change, or (`kind` other than "change") a person's
    takeover or removal of a field, a tombstone, an owners reset. `id` is the change's stable id: the
    `change_id` of its `contact.changed` event."""

    id: int
    run_id: str | None
    at: datetime
    contact_id: int
    field: str
    old: str
    new: str
    source: str
    reason: str
    journal_id: int | None
    kind: str = CHANGE_KIND
    logged_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (`history --json`)."""
        return {
            "id": self.id,
            "change_id": self.id,
            "kind": self.kind,
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "contact_id": self.contact_id,
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "source": self.source,
            "reason": self.reason,
            "journal_id": self.journal_id,
        }


@dataclass(frozen=True, slots=True)
class OwnershipNote:
    """A change-log row that is not syncd's own write (see `ChangeRecord.kind`), as the engine plans it."""

    contact_id: int
    field: str
    kind: str  # TAKEOVER_KIND or REMOVAL_KIND
    old: str  # the value at the last sync
    new: str  # the value the PBX holds now
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FieldOwner:
    """Who owns one managed field of a live contact (`syncd owners`)."""

    contact_id: int
    field: str
    owner: str  # "syncd" or "person"
    since: datetime | None  # person: when the takeover was noticed; syncd: when syncd last wrote it
    syncd_value: str | None
    source: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "field": self.field,
            "owner": self.owner,
            "since": None if self.since is None else self.since.isoformat(),
            "syncd_value": self.syncd_value,
            "source": self.source,
        }


# --- JSON codecs --------------------------------------------------------------------------------


def _dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _loads_object(text: str, what: str) -> dict[str, Any]:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return obj


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: object) -> float | None:
    return None if value is None else float(str(value))


def result_to_json(result: EnrichmentResult) -> str:
    """Serialise a normalised vendor answer (lossless; see `result_from_json`)."""
    return _dumps(
        {
            "vendor": result.vendor.value,
            "contact_id": result.contact_id,
            "outcome": result.outcome.value,
            "fetched_at": utc(result.fetched_at).isoformat(),
            "emails": [
                {
                    "address": e.address,
                    "kind": e.kind.value,
                    "verification": e.verification,
                    "confidence": e.confidence,
                }
                for e in result.emails
            ],
            "phones": [
                {"number": p.number, "kind": p.kind.value, "blacklisted": p.blacklisted}
                for p in result.phones
            ],
            "title": result.title,
            "company": result.company,
            "full_name": result.full_name,
            "vendor_id": result.vendor_id,
            "credits": result.credits,
            "error": result.error,
            "matched_by": result.matched_by,
            "match_confidence": result.match_confidence,
        }
    )


def result_from_json(text: str) -> EnrichmentResult:
    d = _loads_object(text, "enrichment result")
    emails = tuple(
        FoundEmail(
            address=str(e["address"]),
            kind=EmailKind(e.get("kind") or EmailKind.unknown),
            verification=_opt_str(e.get("verification")),
            confidence=_opt_float(e.get("confidence")),
        )
        for e in d.get("emails") or ()
    )
    phones = tuple(
        FoundPhone(
            number=str(p["number"]),
            kind=PhoneKind(p.get("kind") or PhoneKind.other),
            blacklisted=bool(p.get("blacklisted", False)),
        )
        for p in d.get("phones") or ()
    )
    return EnrichmentResult(
        vendor=Vendor(d["vendor"]),
        contact_id=int(d["contact_id"]),
        outcome=Outcome(d["outcome"]),
        fetched_at=utc(datetime.fromisoformat(str(d["fetched_at"]))),
        emails=emails,
        phones=phones,
        title=_opt_str(d.get("title")),
        company=_opt_str(d.get("company")),
        full_name=_opt_str(d.get("full_name")),
        vendor_id=_opt_str(d.get("vendor_id")),
        credits=int(d.get("credits") or 0),
        error=_opt_str(d.get("error")),
        matched_by=_opt_str(d.get("matched_by")),
        match_confidence=_opt_float(d.get("match_confidence")),
    )


def change_to_dict(change: FieldChange) -> dict[str, Any]:
    return {
        "contact_id": change.contact_id,
        "field": change.field,
        "old": change.old,
        "new": change.new,
        "source": change.source,
        "reason": change.reason,
    }


def change_from_dict(d: Mapping[str, Any]) -> FieldChange:
    return FieldChange(
        contact_id=int(d["contact_id"]),
        field=str(d["field"]),
        old=str(d.get("old") or ""),
        new=str(d.get("new") or ""),
        source=str(d.get("source") or ""),
        reason=str(d.get("reason") or ""),
    )


def update_to_json(update: ContactUpdate) -> str:
    """Serialise a planned update with its field changes (lossless; see `update_from_json`).

    `None` (leave unchanged) and `""` (clear) stay distinct; `numbers` keeps its slot order.
    """
    return _dumps(
        {
            "contact_id": update.contact_id,
            "precondition_hash": update.precondition_hash,
            "email": update.email,
            "remark": update.remark,
            "job_title": update.job_title,
            "numbers": None if update.numbers is None else [[s.value, n] for s, n in update.numbers],
            "changes": [change_to_dict(c) for c in update.changes],
        }
    )


def update_from_json(text: str) -> ContactUpdate:
    d = _loads_object(text, "contact update")
    numbers = d.get("numbers")
    return ContactUpdate(
        contact_id=int(d["contact_id"]),
        precondition_hash=str(d["precondition_hash"]),
        email=_opt_str(d.get("email")),
        remark=_opt_str(d.get("remark")),
        job_title=_opt_str(d.get("job_title")),
        numbers=None if numbers is None else tuple((NumberSlot(s), str(n)) for s, n in numbers),
        changes=tuple(change_from_dict(c) for c in d.get("changes") or ()),
    )
