"""Leadfeeder (Dealfront) v1: Retrieve Contacts by known Leadfeeder contact id.

`GET /v1/contacts?ids=a,b&account_id=…` with the key in the `X-Api-Key` header (never in the URL).
Only contacts whose Leadfeeder id the operator imported can be looked up; the answer is 1 credit per
record not accessed in the last 12 months, reported per call in `meta.credits.charged`.

How the answers map (see also the module docstring of `syncd.sim.leadfeeder` for the simulator's side):
- 401, and 403 with an auth code (`missing_token`, `invalid_api_key`, `access_denied`, or an unknown one)
  -> `AuthError`; 404 `account_not_found` (the key cannot see `account_id`) -> `AuthError` as well;
- 402, and 403 with a credits or entitlement code (`insufficient_credits`, `insufficient_entitlements`)
  -> `OutOfCredits`; errors come flat `{code,message}` or as `{errors:[{code,title}]}`;
- 429 and 5xx are retried by the `ServiceClient` (Retry-After when sent, jittered backoff otherwise);
- an id without an entry in `data` -> `Outcome.not_found`; a record of the wrong shape -> `Outcome.error`
  for that contact only; values failing `clean_email` / `to_e164` are dropped; blacklisted phones (and
  phones whose blacklist flag is missing: they may be do-not-call) are skipped.

Several batches of one `lookup` run concurrently. When some of them fail (credits ran out half-way, a
broken body) the others' results, already paid for, are kept, and the failed batches' contacts get
`Outcome.error`; the call raises only when every batch failed, or at once on `AuthError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from syncd.errors import AuthError, MalformedResponse, OutOfCredits, ServiceError
from syncd.http import HttpSettings, ServiceClient, json_body
from syncd.logs import get_logger, redact, register_secret
from syncd.merge import SkipReason
from syncd.model import (
    EmailKind,
    EnrichmentResult,
    FoundEmail,
    FoundPhone,
    LookupRequest,
    Outcome,
    PhoneKind,
    Vendor,
)
from syncd.normalize import clean_email, email_key, to_e164
from syncd.vendors.base import (
    EMAIL_FIELD,
    check_identities,
    error_result,
    log_rejected_value,
    phone_field,
    rejections_by_contact,
    result_template,
)

log = get_logger("syncd.vendors.leadfeeder")

MAX_IDS = 100  # per Retrieve Contacts call: undocumented, the project's assumption (notes, section 6)
RATE_PER_SECOND = 10.0  # documented per-key limit, for the HttpSettings the config builds
BURST = 15
CONTACTS_PATH = "/v1/contacts"

_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")  # safe inside the comma-separated `ids` parameter
_PHONE_KINDS = {"mobile": PhoneKind.mobile, "landline": PhoneKind.landline}
_AUTH_CODES = frozenset(
    {"missing_token", "invalid_api_key", "access_denied", "unauthorized", "invalid_token", "forbidden"}
)
_MAX_MESSAGE = 200


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _MalformedRecord(Exception):
    """One ContactV1 object does not have the documented shape."""


def vendor_id_of(request: LookupRequest) -> str | None:
    """The request's Leadfeeder contact id, if it has a usable one."""
    vid = (request.vendor_id or "").strip()
    return vid if _ID_RE.fullmatch(vid) else None


def error_of(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from a flat `{code,message}` or a list `{errors:[{code,title}]}` error body."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep JSON
        return None, ""
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        body = body["errors"][0]
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    message = next((body[k] for k in ("message", "title", "detail") if isinstance(body.get(k), str)), "")
    return (code.strip().lower() if isinstance(code, str) and code.strip() else None), message


class LeadfeederProvider:
    vendor = Vendor.leadfeeder
    max_batch = MAX_IDS

    def __init__(
        self,
        http: HttpSettings,
        api_key: str,
        account_id: str,
        *,
        default_region: str = "US",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = _utcnow,
        include_company: bool = False,
    ) -> None:
        register_secret(api_key)
        self.service = http.service
        self._client = ServiceClient(http, transport=transport)
        self._headers = {"X-Api-Key": api_key, "Accept": "application/json"}
        self._account_id = account_id
        self._region = default_region
        self._clock = clock
        # include=company costs a credit per company record as well (the docs' credit note): off by default,
        # since the PBX contact already names the company.
        self._include_company = include_company

    @property
    def client(self) -> ServiceClient:
        """The underlying HTTP client (its `stats` count requests, retries and throttling)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()

    def can_lookup(self, request: LookupRequest) -> bool:
        return vendor_id_of(request) is not None

    def max_cost(self, requests: Sequence[LookupRequest]) -> int:
        ids = {vid for r in requests if (vid := vendor_id_of(r)) is not None}
        return len(ids) * (2 if self._include_company else 1)

    async def lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        with rejections_by_contact(self.vendor) as done:
            results = await self._lookup(requests)
            done.extend(results)
        return results

    async def _lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        fetched_at = self._clock()
        by_id: dict[str, list[int]] = {}  # vendor id -> positions in `requests`
        results: list[EnrichmentResult | None] = [None] * len(requests)
        for pos, request in enumerate(requests):
            vid = vendor_id_of(request)
            if vid is None:
                results[pos] = self._error(request, fetched_at, "no usable Leadfeeder contact id")
            else:
                by_id.setdefault(vid, []).append(pos)
        ids = list(by_id)
        batches = [ids[i : i + MAX_IDS] for i in range(0, len(ids), MAX_IDS)]
        answers = await asyncio.gather(
            *(self._fetch(batch, fetched_at) for batch in batches), return_exceptions=True
        )
        failures: list[ServiceError] = []
        for batch, answer in zip(batches, answers, strict=True):
            if isinstance(answer, ServiceError):
                failures.append(answer)
                for vid in batch:
                    for pos in by_id[vid]:
                        results[pos] = self._error(requests[pos], fetched_at, answer.reason)
                continue
            if isinstance(answer, BaseException):
                raise answer
            for vid, (template, credits) in answer.items():
                for n, pos in enumerate(by_id[vid]):
                    # the record is paid once; further contacts holding the same id get it for free
                    results[pos] = dataclasses.replace(
                        template, contact_id=requests[pos].contact_id, credits=credits if n == 0 else 0
                    )
        if failures:
            auth = [f for f in failures if isinstance(f, AuthError)]
            if auth:
                raise auth[0]
            if len(failures) == len(batches):
                raise next((f for f in failures if isinstance(f, OutOfCredits)), failures[0])
            for failure in failures:
                log.warning(
                    "vendor.batch_failed",
                    vendor=self.vendor.value,
                    error=type(failure).__name__,
                    reason=failure.reason,
                )
        done = [r for r in results if r is not None]
        assert len(done) == len(requests), "every request gets a result"
        return check_identities(requests, done)

    # --- one call ---------------------------------------------------------------------------
    async def _fetch(self, batch: list[str], fetched_at: datetime) -> dict[str, tuple[EnrichmentResult, int]]:
        """One Retrieve Contacts call: vendor id -> (result template, credits it cost)."""
        params = {"ids": ",".join(batch), "account_id": self._account_id}
        if self._include_company:
            params["include"] = "company"
        response = await self._client.request("GET", CONTACTS_PATH, params=params, headers=self._headers)
        if response.status_code != 200:
            raise self._failure(response)
        body = json_body(response, self.service)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise MalformedResponse(self.service, "HTTP 200: no `data` list in the body", status=200)
        charged = self._charged(body)
        companies = self._companies(body.get("included"))
        wanted = set(batch)
        parsed: dict[str, EnrichmentResult] = {}
        unidentified = 0
        for record in body["data"]:
            raw_id = record.get("id") if isinstance(record, dict) else None
            vid = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else None
            if vid is None:
                unidentified += 1
                log.warning(
                    "vendor.malformed_record", vendor=self.vendor.value, reason="record without an id"
                )
                continue
            if vid not in wanted or vid in parsed:
                log.warning("vendor.unexpected_record", vendor=self.vendor.value, vendor_id=vid)
                continue
            try:
                parsed[vid] = self._normalise(vid, record, companies, fetched_at)
            except _MalformedRecord as exc:
                log.warning(
                    "vendor.malformed_record", vendor=self.vendor.value, vendor_id=vid, reason=str(exc)
                )
                parsed[vid] = self._template(vid, fetched_at, Outcome.error, error=f"malformed record: {exc}")
        for vid in batch:
            if vid not in parsed:
                # with an unreadable record in the answer, "absent" may be that record: don't claim not found
                parsed[vid] = (
                    self._template(vid, fetched_at, Outcome.error, error="unidentifiable record in response")
                    if unidentified
                    else self._template(vid, fetched_at, Outcome.not_found)
                )
        return self._attribute(batch, parsed, charged)

    def _failure(self, response: httpx.Response) -> ServiceError:
        status = response.status_code
        code, message = error_of(response)
        reason = f"HTTP {status}" + (f" {code}" if code else "")
        if message:
            reason += f": {redact(message)[:_MAX_MESSAGE]}"
        credits_code = code is not None and ("credit" in code or "entitlement" in code)
        if status == 402 or (status == 403 and credits_code):
            return OutOfCredits(self.service, reason, status=status, code=code)
        if status in (401, 403):
            # an unknown 403 code is treated as refused access too: retrying cannot help
            return AuthError(self.service, reason, status=status, code=code)
        if status == 404 and code is not None and "account" in code:
            return AuthError(self.service, f"account_id not accessible with this key ({reason})", status=404)
        return MalformedResponse(self.service, f"unexpected {reason}", status=status, code=code)

    def _charged(self, body: Mapping[str, Any]) -> int:
        meta = body.get("meta")
        credits = meta.get("credits") if isinstance(meta, dict) else None
        charged = credits.get("charged") if isinstance(credits, dict) else None
        if isinstance(charged, int) and not isinstance(charged, bool) and charged >= 0:
            return charged
        log.warning("vendor.credits_unknown", vendor=self.vendor.value, meta=repr(meta)[:_MAX_MESSAGE])
        return 0

    @staticmethod
    def _companies(included: object) -> dict[str, str]:
        """Company id -> name from a JSON:API `included` list (present with include=company)."""
        names: dict[str, str] = {}
        if not isinstance(included, list):
            return names
        for item in included:
            if not isinstance(item, dict) or item.get("type") != "company":
                continue
            attrs = item.get("attributes")
            name = attrs.get("name") if isinstance(attrs, dict) else None
            if isinstance(name, str) and name.strip() and isinstance(item.get("id"), (str, int)):
                names[str(item["id"])] = name.strip()
        return names

    def _attribute(
        self, batch: list[str], parsed: dict[str, EnrichmentResult], charged: int
    ) -> dict[str, tuple[EnrichmentResult, int]]:
        """Spread the call's charge over its found records (all records if none was found)."""
        payers = [vid for vid in batch if parsed[vid].outcome is Outcome.found] or batch
        share, rest = divmod(charged, len(payers))
        credits = {vid: share + (1 if i < rest else 0) for i, vid in enumerate(payers)}
        return {vid: (parsed[vid], credits.get(vid, 0)) for vid in batch}

    # --- one record -------------------------------------------------------------------------
    def _template(
        self, vid: str, fetched_at: datetime, outcome: Outcome, *, error: str | None = None
    ) -> EnrichmentResult:
        return result_template(self.vendor, fetched_at, outcome, vendor_id=vid, error=error)

    def _error(self, request: LookupRequest, fetched_at: datetime, reason: str) -> EnrichmentResult:
        return error_result(self.vendor, request, fetched_at, reason)

    def _reject(self, vid: str, field: str, reason: SkipReason) -> None:
        log_rejected_value(self.vendor, field, reason, vendor_id=vid)

    def _normalise(
        self, vid: str, record: Mapping[str, Any], companies: Mapping[str, str], fetched_at: datetime
    ) -> EnrichmentResult:
        attrs = record.get("attributes")
        if not isinstance(attrs, dict):
            raise _MalformedRecord("attributes is not an object")
        emails: list[FoundEmail] = []
        for entry in _entries(attrs, "emails"):
            raw = entry.get("address")
            address = clean_email(raw) if isinstance(raw, str) else None
            if address is None:
                self._reject(vid, EMAIL_FIELD, SkipReason.invalid_email)
            elif all(email_key(e.address) != email_key(address) for e in emails):
                emails.append(FoundEmail(address=address, kind=EmailKind.work, verification=None))
        phones: list[FoundPhone] = []
        for entry in _entries(attrs, "phones"):
            kind = _PHONE_KINDS.get(str(entry.get("type")), PhoneKind.other)
            blacklisted = entry.get("blacklisted")
            if blacklisted is not False:
                # True: do not call. Missing or odd: it may be, so it is left out as blacklisted too.
                if blacklisted is not True:
                    self._reject(vid, phone_field(kind), SkipReason.blacklisted)
                continue
            raw = entry.get("number")
            number = to_e164(raw, self._region) if isinstance(raw, str) else None
            if number is None:
                self._reject(vid, phone_field(kind), SkipReason.invalid_number)
            elif all(p.number != number for p in phones):
                phones.append(FoundPhone(number=number, kind=kind))
        position = attrs.get("position")
        if position is not None and not isinstance(position, dict):
            raise _MalformedRecord("position is not an object")
        # attributes.title is an honorific ("Dr."), not a job title: only position.title counts
        title = _text((position or {}).get("title"))
        names = [n for n in (_text(attrs.get("first_name")), _text(attrs.get("last_name"))) if n]
        relationships = record.get("relationships")
        ref = relationships.get("company") if isinstance(relationships, dict) else None
        company_id = ref.get("id") if isinstance(ref, dict) else None
        return dataclasses.replace(
            self._template(vid, fetched_at, Outcome.found),
            emails=tuple(emails),
            phones=tuple(phones),
            title=title,
            full_name=" ".join(names) or None,
            company=companies.get(str(company_id)) if company_id is not None else None,
        )


def _entries(attrs: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = attrs.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _MalformedRecord(f"{key} is not a list of objects")
    return value


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
