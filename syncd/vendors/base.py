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

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from syncd.logs import get_logger
from syncd.model import EnrichmentResult, LookupRequest, Outcome, Vendor
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


def log_rejected_value(vendor: Vendor, field: str, reason: str, **ids: object) -> None:
    """A vendor value that fails validation is dropped; the value itself stays out of the log."""
    log.info("vendor.value_rejected", vendor=vendor.value, field=field, reason=reason, **ids)


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
