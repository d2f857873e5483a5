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
