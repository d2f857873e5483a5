"""The provider interface every vendor module implements.

A provider turns a batch of `LookupRequest`s into one `EnrichmentResult` per request. It is an adapter:
HTTP, auth and the vendor's response shape stay inside it; the waterfall, ledger and budgets do not.

Failure contract:
- a problem with one contact (not found, invalid id, malformed record) is that contact's result
  (`Outcome.not_found` or `Outcome.error` with a reason), never an exception;
- a problem with the whole call raises: `AuthError` (credentials refused), `OutOfCredits` (stop using this
  vendor for the rest of the run), `ServiceUnavailable` (retries exhausted), `MalformedResponse` (the
  whole body is unusable; the caller marks the batch as errors and goes on).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Final, Protocol, runtime_checkable

from syncd.logs import get_logger
from syncd.merge import SkipReason
from syncd.model import EnrichmentResult, LookupRequest, NumberSlot, Outcome, PhoneKind, Vendor
from syncd.vendors.matching import IDENTITY_MISMATCH, linked_identity

log = get_logger("syncd.vendors")


@runtime_checkable
class Provider(Protocol):
    vendor: Vendor
    max_batch: int  # requests per `lookup` call that map to the vendor's batch maximum

    def can_lookup(self, request: LookupRequest) -> bool:
        """Whether this vendor can be asked about the contact at all (e.g. needs a known id)."""
        ...

    def max_cost(self, requests: Sequence[LookupRequest]) -> int:
        """Upper bound of the credits a `lookup` of these requests may charge (budget check)."""
        ...

    async def lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        """One result per request, keyed by `contact_id`."""
        ...

    async def aclose(self) -> None: ...


def result_template(
    vendor: Vendor,
    fetched_at: datetime,
    outcome: Outcome,
    *,
    vendor_id: str | None = None,
    error: str | None = None,
) -> EnrichmentResult:
    """A result not yet tied to a PBX contact (contact_id 0): one vendor record may answer several."""
    return EnrichmentResult(
        vendor=vendor, contact_id=0, outcome=outcome, fetched_at=fetched_at, vendor_id=vendor_id, error=error
    )


def error_result(
    vendor: Vendor, request: LookupRequest, fetched_at: datetime, reason: str, *, credits: int = 0
) -> EnrichmentResult:
    """A per-contact failure: the contact gets this result, the rest of the batch goes on."""
    return EnrichmentResult(
        vendor=vendor,
        contact_id=request.contact_id,
        outcome=Outcome.error,
        fetched_at=fetched_at,
        vendor_id=request.vendor_id,
        error=reason,
        credits=credits,
    )


# The syncd field a vendor number of each kind is written to first (the merge's number groups); a
# number too broken to have a kind is an other_number, as the merge files a number of unknown kind.
PHONE_FIELD: Final[dict[PhoneKind, str]] = {
    PhoneKind.mobile: NumberSlot.mobile_number.value,
    PhoneKind.direct: NumberSlot.business_number.value,
    PhoneKind.work: NumberSlot.business_number.value,
    PhoneKind.landline: NumberSlot.business_number.value,
    PhoneKind.corporate: NumberSlot.business_number.value,
    PhoneKind.fax: NumberSlot.business_fax.value,
    PhoneKind.other: NumberSlot.other_number.value,
}
EMAIL_FIELD: Final = "email"


def phone_field(kind: PhoneKind | None) -> str:
    """syncd's field name for a vendor number of this kind (`mobile_number`, `business_number`...)."""
    return PHONE_FIELD[kind or PhoneKind.other]


# (vendor id, field, reason) of the values dropped in the current `lookup`, logged per contact at its end
_pending: ContextVar[list[tuple[str | None, str, SkipReason]] | None] = ContextVar(
    "syncd_rejected_values", default=None
)


def log_rejected_value(
    vendor: Vendor,
    field: str,
    reason: SkipReason,
    *,
    contact_id: int | None = None,
    vendor_id: str | None = None,
) -> None:
    """A vendor value that fails validation is dropped; the value itself stays out of the log.

    `field` is syncd's field name (`email`, `mobile_number`, `title`...), `reason` one of the merge's
    `SkipReason`s. Without a `contact_id` (a vendor record not yet tied to a contact) inside
    `rejections_by_contact`, the event waits for the lookup's results and is logged once per contact
    that got the record.
    """
    pending = _pending.get()
    if contact_id is None and pending is not None:
        pending.append((vendor_id, field, reason))
        return
    log.info(
        "vendor.value_rejected",
        vendor=vendor.value,
        contact_id=contact_id,
        vendor_id=vendor_id,
        field=field,
        reason=reason.value,
    )


@contextmanager
def rejections_by_contact(vendor: Vendor) -> Iterator[list[EnrichmentResult]]:
    """Collect the rejections of vendor records during a lookup; at exit, log each of them with the
    contact id of every result the caller put into the yielded list that carries the record's vendor id
    (once per contact that got the record; without one, with no contact id)."""
    pending: list[tuple[str | None, str, SkipReason]] = []
    results: list[EnrichmentResult] = []
    token = _pending.set(pending)
    try:
        yield results
    finally:
        _pending.reset(token)
    by_vendor_id: dict[str | None, list[int | None]] = {}
    for result in results:
        by_vendor_id.setdefault(result.vendor_id, []).append(result.contact_id)
    for vendor_id, field, reason in pending:
        for contact_id in by_vendor_id.get(vendor_id) or [None]:
            log_rejected_value(vendor, field, reason, contact_id=contact_id, vendor_id=vendor_id)


def check_identities(
    requests: Sequence[LookupRequest], results: Sequence[EnrichmentResult]
) -> list[EnrichmentResult]:
    """Refuse every answer looked up by a linked vendor id whose person is not the contact's.

    The one identity check of linked answers, for every provider: a found result for a request with a
    `vendor_id` is kept only when `matching.linked_identity` accepts the vendor's name for the contact's.
    Otherwise it becomes `Outcome.not_found` with `error` "identity mismatch: ...", no data and its credits
    (paid all the same), and a `vendor.identity_mismatch` event names both sides; nothing is written for
    that contact from that answer, and the ledger caches the refusal like a "not found" (asked again after
    `retry_not_found_after`, or at once when the link changes). Matched answers (no `vendor_id` in the
    request) were judged by `matching.accept_match` already and pass through.
    """
    by_id = {r.contact_id: r for r in requests}
    out: list[EnrichmentResult] = []
    for result in results:
        request = by_id.get(result.contact_id)
        if request is None or not request.vendor_id or result.outcome is not Outcome.found:
            out.append(result)
            continue
        decision = linked_identity(request.name, result.full_name)
        if decision.accepted:
            out.append(result)
            continue
        log.warning(
            "vendor.identity_mismatch",
            vendor=result.vendor.value,
            contact_id=result.contact_id,
            vendor_id=request.vendor_id,
            contact_name=request.name,
            vendor_name=result.full_name,
        )
        out.append(
            EnrichmentResult(
                vendor=result.vendor,
                contact_id=result.contact_id,
                outcome=Outcome.not_found,
                fetched_at=result.fetched_at,
                full_name=result.full_name,
                company=result.company,
                vendor_id=result.vendor_id,
                credits=result.credits,
                error=f"{IDENTITY_MISMATCH}: the {result.vendor.value} record is not the contact's person",
            )
        )
    return out
