"""InsideView (Demandbase) provider: known InsideView contact ids -> work email, phones, title.

How it talks to InsideView (vendor docs in /work/shared/vendor-docs/insideview-*.txt, notes section 1):
- token: `POST {login}/Auth/login/v1/token.json?clientId=&clientSecret=&grantType=cred`; the client secret
  travels in the query string, so it and every minted token are registered with `register_secret` and never
  logged. The token is kept until shortly before its `expirationTime` ("Tue, Jul 21, 2015 09:08:17 PM GMT"),
  minted again once after a 401, and a second 401 in a row is an `AuthError`. A refused login is an
  `AuthError` at once (no retry).
- fewer than `job_threshold` distinct ids: Bulk Contact Fetch, `POST /api/v1/contact/bulk`, batches of 50,
  sent concurrently (the `ServiceClient` bounds concurrency and pauses the whole service on 429).
- `job_threshold` ids or more: Contact Details Jobs of at most `job_max_ids` ids, at most
  `max_running_jobs` at once, polled with doubling delays, results downloaded as CSV (columns: see
  `syncd.sim.insideview.CSV_COLUMNS`; ids absent from the CSV are not found).
- `Accept: application/json` is always sent; an XML answer is still understood (defusedxml, DTDs refused, so
  an entity-expansion bomb is a `MalformedResponse`, not a hang).

Per-id outcomes: a contact -> found; `404-602` or absent from the answer -> not found; `400-110` -> error
"invalid InsideView id"; a malformed record -> error for that contact only. A body that is unusable as a
whole -> `MalformedResponse`. HTTP 403/405, or a 400 about quota -> `OutOfCredits`.

Normalisation into `EnrichmentResult`:
- emails: `email` and every `emails[].email`, kind work. `emailValidationStatus` / `validationStatus` map as
  ValidEmail -> "verified" (mailbox confirmed), ValidDomain -> "unverified" (only the domain is known to take
  mail), Invalid* -> "invalid", AcceptAll / CatchAll -> "accept_all", any other word -> "unknown", no word
  -> None. `confidenceScore` becomes the confidence (0..1; a percentage above 1 is divided by 100).
- phones (E.164 in `default_region`): `directPhone` -> direct; `phone` -> direct when `phoneType` is DIRECT,
  corporate when CORPORATE (or when it equals `corporatePhone`), work otherwise; `corporatePhone` ->
  corporate. The same number twice is kept once, with the first (most specific) kind.
- values that fail `clean_email` / `to_e164` are dropped with a `vendor.value_rejected` event.
- title: first non-empty of `titles`; company: `companyName`; full_name: `fullName` (else first + last);
  vendor_id: the answer's `contactId`; credits: 1 per contact returned (the API reports no count).

When several batches or jobs run for one `lookup` and only some fail with `ServiceUnavailable` or
`MalformedResponse`, the others' (already paid) results are kept and the failed ids become error results;
when every batch fails, or on `AuthError` / `OutOfCredits`, the exception propagates.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from syncd.errors import AuthError, MalformedResponse, OutOfCredits, ServiceError, ServiceUnavailable
from syncd.http import HttpSettings, ServiceClient, json_body
from syncd.logs import get_logger, register_secret
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
from syncd.normalize import clean_email, to_e164
from syncd.vendors.base import EMAIL_FIELD, check_identities, error_result, log_rejected_value, phone_field

log = get_logger("syncd.vendors.insideview")

TOKEN_PATH = "/Auth/login/v1/token.json"  # noqa: S105 (a path, not a secret)
BULK_PATH = "/api/v1/contact/bulk"
JOB_PATH = "/api/v1/contact/job"
BULK_MAX = 50
JOB_MAX = 10_000

INVALID_ID_REASON = "invalid InsideView id"

# XML elements whose children form a list (see the XML shape in syncd.sim.insideview)
_XML_LISTS = frozenset(
    {
        "contactDetailsList",
        "titles",
        "sources",
        "emails",
        "jobLevels",
        "jobFunctions",
        "jobLevelsV2",
        "jobFunctionsV2",
        "education",
    }
)

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_EXPIRY_RE = re.compile(
    r"^\s*(?:[A-Za-z]{3,9},?\s+)?([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{1,2}),?\s+(\d{4})\s+"
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?\s*(?:GMT|UTC|Z)?\s*$"
)
_MAX_TOKEN_MARGIN = timedelta(minutes=5)
_TOKEN_RE = re.compile(r"[\x21-\x7e]{4,4096}")  # printable ASCII, as tokens are


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_expiration(text: str | None) -> datetime | None:
    """'Tue, Jul 21, 2015 09:08:17 PM GMT' -> aware UTC datetime; ISO 8601 is accepted too; else None."""
    if not text:
        return None
    m = _EXPIRY_RE.match(text)
    if m:
        month = _MONTHS.get(m.group(1).lower())
        if month is None:
            return None
        hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6) or 0)
        half = (m.group(7) or "").lower()
        if half:
            if not 1 <= hour <= 12:
                return None
            hour = hour % 12 + (12 if half == "pm" else 0)
        try:
            return datetime(int(m.group(3)), month, int(m.group(2)), hour, minute, second, tzinfo=UTC)
        except ValueError:
            return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def verification_word(status: str | None) -> str | None:
    """InsideView's email validation status -> the model's normalised word (see the module docstring)."""
    if status is None:
        return None
    word = re.sub(r"[^a-z]", "", status.lower())
    if not word:
        return None
    if word == "validemail":
        return "verified"
    if word == "validdomain":
        return "unverified"
    if word.startswith("invalid"):
        return "invalid"
    if word in {"acceptall", "catchall"}:
        return "accept_all"
    return "unknown"


def confidence_value(raw: Any) -> float | None:
    """confidenceScore (0..1, or a percentage) -> 0..1; None when absent or not a number."""
    if raw is None or isinstance(raw, bool) or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    if math.isnan(value) or value < 0:
        return None
    if value > 1:
        value = value / 100 if value <= 100 else 1.0
    return value


# --- parsing ----------------------------------------------------------------------------------


class _BadRecord(Exception):
    """One contact record is malformed (its reason is safe to show)."""


@dataclass(frozen=True)
class _Contact:
    contact_id: str
    emails: tuple[tuple[str, str, str | None], ...]  # (field, raw address, raw validation status)
    confidence: float | None
    phones: tuple[tuple[str, str, PhoneKind], ...]  # (field, raw number, kind)
    title: str | None
    company: str | None
    full_name: str | None


@dataclass(frozen=True)
class _Answer:
    kind: Literal["found", "not_found", "error"]
    contact: _Contact | None = None
    reason: str | None = None
    credits: int = 0


_NOT_FOUND = _Answer("not_found")


def _opt_str(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _BadRecord(f"field {key} has type {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _str_list(record: Mapping[str, Any], key: str) -> list[str]:
    value = record.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadRecord(f"field {key} is not a list of strings")
    return list(value)


def parse_contact(record: Any) -> _Contact:
    """Validate one Contact Details object (JSON, converted XML or a CSV row) into raw typed fields."""
    if not isinstance(record, Mapping):
        raise _BadRecord(f"contact is {type(record).__name__}, not an object")
    raw_id = record.get("contactId")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)) or not str(raw_id).strip().isdigit():
        raise _BadRecord("contactId missing or not a number")
    contact_id = str(int(str(raw_id).strip()))

    status = _opt_str(record, "emailValidationStatus")
    emails: list[tuple[str, str, str | None]] = []
    main_email = _opt_str(record, "email")
    if main_email:
        emails.append(("email", main_email, status))
    listed = record.get("emails")
    if listed is not None:
        if not isinstance(listed, list):
            raise _BadRecord("field emails is not a list")
        for item in listed:
            if not isinstance(item, Mapping):
                raise _BadRecord("an entry of emails is not an object")
            address = _opt_str(item, "email")
            if address:
                item_status = _opt_str(item, "validationStatus") or _opt_str(item, "emailValidationStatus")
                emails.append(("emails", address, item_status or status))

    corporate = _opt_str(record, "corporatePhone")
    phone = _opt_str(record, "phone")
    phone_type = (_opt_str(record, "phoneType") or "").upper()
    phones: list[tuple[str, str, PhoneKind]] = []
    direct = _opt_str(record, "directPhone")
    if direct:
        phones.append(("directPhone", direct, PhoneKind.direct))
    if phone:
        if phone_type == "DIRECT":
            kind = PhoneKind.direct
        elif phone_type == "CORPORATE" or phone == corporate:
            kind = PhoneKind.corporate
        else:
            kind = PhoneKind.work
        phones.append(("phone", phone, kind))
    if corporate:
        phones.append(("corporatePhone", corporate, PhoneKind.corporate))

    titles = [t.strip() for t in _str_list(record, "titles") if t.strip()]
    full_name = _opt_str(record, "fullName")
    if not full_name:
        parts = [_opt_str(record, "firstName"), _opt_str(record, "lastName")]
        full_name = " ".join(p for p in parts if p) or None
    else:
        _opt_str(record, "firstName")  # type-check the parts even when fullName is given
        _opt_str(record, "lastName")
    return _Contact(
        contact_id=contact_id,
        emails=tuple(emails),
        confidence=confidence_value(record.get("confidenceScore")),
        phones=tuple(phones),
        title=titles[0] if titles else None,
        company=_opt_str(record, "companyName"),
        full_name=full_name,
    )


_XML_MAX_DEPTH = 16  # the documented shapes are 5 deep


class _TooDeep(Exception):
    pass


def _xml_to_obj(element: Any, depth: int = 0) -> Any:
    if depth > _XML_MAX_DEPTH:
        raise _TooDeep
    children = list(element)
    if element.tag in _XML_LISTS:
        return [_xml_to_obj(child, depth + 1) for child in children]
    if not children:
        return (element.text or "").strip()
    return {child.tag: _xml_to_obj(child, depth + 1) for child in children}


def parse_xml(content: bytes, service: str) -> tuple[str, Any]:
    """(root tag, JSON-shaped value). DTDs and entities are refused: no expansion bomb can run."""
    try:
        root = SafeET.fromstring(content, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedResponse(service, f"XML refused ({type(exc).__name__})") from None
    except SafeET.ParseError:
        raise MalformedResponse(service, "invalid XML") from None
    try:
        return str(root.tag), _xml_to_obj(root)
    except _TooDeep:
        raise MalformedResponse(service, "XML nested deeper than any documented shape") from None


def decode_body(response: httpx.Response, service: str) -> tuple[str | None, Any]:
    """(XML root tag or None for JSON, body) of a JSON or XML answer; `MalformedResponse` otherwise."""
    ctype = response.headers.get("content-type", "").lower()
    if "html" in ctype:
        raise MalformedResponse(service, f"HTTP {response.status_code}: HTML page instead of JSON or XML")
    if "xml" in ctype or ("json" not in ctype and response.content.lstrip()[:1] == b"<"):
        return parse_xml(response.content, service)
    try:
        return None, json_body(response, service)
    except RecursionError:
        raise MalformedResponse(service, "JSON nested too deeply") from None


def _snippet(response: httpx.Response) -> str:
    text = response.content[:160].decode("utf-8", errors="replace")
    return " ".join(text.split())


# --- the provider -----------------------------------------------------------------------------


@dataclass
class _Token:
    value: str
    refresh_at: datetime | None  # None: no usable expiry, keep until a 401


class InsideViewProvider:
    vendor = Vendor.insideview
    max_batch = BULK_MAX

    def __init__(
        self,
        *,
        api: HttpSettings,
        login: HttpSettings,
        client_id: str,
        client_secret: str,
        job_threshold: int = 2000,
        job_poll_initial: float = 0.5,
        job_poll_max: float = 30.0,
        job_timeout: float = 3600.0,
        job_max_ids: int = JOB_MAX,
        max_running_jobs: int = 2,
        default_region: str = "US",
        api_transport: httpx.AsyncBaseTransport | None = None,
        login_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= job_max_ids <= JOB_MAX:
            raise ValueError(f"job_max_ids must be 1..{JOB_MAX}")
        register_secret(client_secret)
        self._client_id = client_id
        self._client_secret = client_secret
        self.job_threshold = job_threshold
        self.job_poll_initial = job_poll_initial
        self.job_poll_max = job_poll_max
        self.job_timeout = job_timeout
        self.job_max_ids = job_max_ids
        self.default_region = default_region
        self._clock = clock
        self._sleep = sleep
        self.api = ServiceClient(api, transport=api_transport, sleep=sleep)
        self.login = ServiceClient(login, transport=login_transport, sleep=sleep)
        self.service = api.service
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._job_slots = asyncio.Semaphore(max_running_jobs)
        self.tokens_minted = 0

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.login.aclose()

    # --- Provider protocol ------------------------------------------------------------------
    def can_lookup(self, request: LookupRequest) -> bool:
        return bool(request.vendor_id and request.vendor_id.strip())

    def max_cost(self, requests: Sequence[LookupRequest]) -> int:
        return len({r.vendor_id.strip() for r in requests if r.vendor_id and r.vendor_id.strip()})

    async def lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        # distinct ids in request order: several PBX contacts may be linked to one InsideView person
        ids = list(dict.fromkeys((r.vendor_id or "").strip() for r in requests if self.can_lookup(r)))
        answers: dict[str, _Answer] = {}
        if ids:
            if len(ids) >= self.job_threshold:
                answers = await self._via_jobs(ids)
            else:
                answers = await self._via_bulk(ids)
        now = self._clock()
        charged: set[str] = set()
        results: list[EnrichmentResult] = []
        for request in requests:
            if not self.can_lookup(request):
                results.append(self._error(request, "no InsideView id", now))
                continue
            vid = (request.vendor_id or "").strip()
            answer = answers.get(vid, _NOT_FOUND)
            credits = 0 if vid in charged else answer.credits  # one purchase, however many contacts share it
            charged.add(vid)
            results.append(self._result(request, answer, credits, now))
        return check_identities(requests, results)

    # --- results ----------------------------------------------------------------------------
    def _error(
        self, request: LookupRequest, reason: str, now: datetime, credits: int = 0
    ) -> EnrichmentResult:
        return error_result(self.vendor, request, now, reason, credits=credits)

    def _result(
        self, request: LookupRequest, answer: _Answer, credits: int, now: datetime
    ) -> EnrichmentResult:
        if answer.kind == "not_found":
            return EnrichmentResult(
                vendor=self.vendor,
                contact_id=request.contact_id,
                outcome=Outcome.not_found,
                fetched_at=now,
                vendor_id=request.vendor_id,
            )
        if answer.kind == "error" or answer.contact is None:
            return self._error(request, answer.reason or "error", now, credits)
        contact = answer.contact
        return EnrichmentResult(
            vendor=self.vendor,
            contact_id=request.contact_id,
            outcome=Outcome.found,
            fetched_at=now,
            emails=self._emails(request, contact),
            phones=self._phones(request, contact),
            title=contact.title,
            company=contact.company,
            full_name=contact.full_name,
            vendor_id=contact.contact_id,
            credits=credits,
        )

    def _rejected(
        self, request: LookupRequest, contact: _Contact, field_name: str, reason: SkipReason
    ) -> None:
        log_rejected_value(
            self.vendor, field_name, reason, contact_id=request.contact_id, vendor_id=contact.contact_id
        )

    def _emails(self, request: LookupRequest, contact: _Contact) -> tuple[FoundEmail, ...]:
        found: dict[str, FoundEmail] = {}
        for _, raw, status in contact.emails:
            address = clean_email(raw)
            if address is None:
                self._rejected(request, contact, EMAIL_FIELD, SkipReason.invalid_email)
                continue
            key = address.lower()
            if key not in found:
                found[key] = FoundEmail(
                    address=address,
                    kind=EmailKind.work,
                    verification=verification_word(status),
                    confidence=contact.confidence,
                )
        return tuple(found.values())

    def _phones(self, request: LookupRequest, contact: _Contact) -> tuple[FoundPhone, ...]:
        found: dict[str, FoundPhone] = {}
        for _, raw, kind in contact.phones:
            number = to_e164(raw, self.default_region)
            if number is None:
                self._rejected(request, contact, phone_field(kind), SkipReason.invalid_number)
                continue
            if number not in found:
                found[number] = FoundPhone(number=number, kind=kind)
        return tuple(found.values())

    # --- token ------------------------------------------------------------------------------
    async def _access_token(self) -> str:
        async with self._token_lock:
            token = self._token
            if token is not None and (token.refresh_at is None or self._clock() < token.refresh_at):
                return token.value
            self._token = await self._mint()
            return self._token.value

    async def _forget_token(self, value: str) -> None:
        async with self._token_lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    async def _mint(self) -> _Token:
        params = {"clientId": self._client_id, "clientSecret": self._client_secret, "grantType": "cred"}
        response = await self.login.request(
            "POST", TOKEN_PATH, params=params, headers={"Accept": "application/json"}
        )
        status = response.status_code
        service = self.login.service
        if status in {401, 403}:
            raise AuthError(
                service, f"login refused (HTTP {status}): check client_id and client_secret", status=status
            )
        if status != 200:
            raise MalformedResponse(service, f"login: unexpected HTTP {status}", status=status)
        tag, body = decode_body(response, service)
        details = body if tag == "accessTokenDetails" else None
        if tag is None and isinstance(body, Mapping):
            details = body.get("accessTokenDetails")
        if not isinstance(details, Mapping):
            raise MalformedResponse(service, "login: no accessTokenDetails in the answer")
        value = details.get("accessToken")
        if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value.strip()):
            # absent, or not a token (a megabyte of text, "null"): never registered as a secret
            raise MalformedResponse(service, "login: no usable accessToken in the answer")
        value = value.strip()
        register_secret(value, token=True)
        self.tokens_minted += 1
        raw_expiry = details.get("expirationTime")
        expiry = parse_expiration(raw_expiry if isinstance(raw_expiry, str) else None)
        now = self._clock()
        refresh_at: datetime | None = None
        if expiry is None:
            log.warning("insideview.token_expiry_unknown", service=service)
        elif expiry <= now:
            # our clock is ahead of theirs: use the token until it is refused
            log.warning("insideview.token_expiry_in_past", service=service, expires_at=expiry.isoformat())
        else:
            refresh_at = expiry - min(_MAX_TOKEN_MARGIN, (expiry - now) / 10)
        log.info(
            "insideview.token_minted",
            service=service,
            expires_at=expiry.isoformat() if expiry else None,
        )
        return _Token(value=value, refresh_at=refresh_at)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """An API call with the access token; one new token after a 401, `AuthError` on the second."""
        for attempt in (1, 2):
            token = await self._access_token()
            all_headers = {"Accept": "application/json", **(headers or {}), "accessToken": token}
            response = await self.api.request(method, url, json=json, content=content, headers=all_headers)
            if response.status_code != 401:
                return response
            log.warning("insideview.token_refused", service=self.service, attempt=attempt)
            await self._forget_token(token)
        raise AuthError(self.service, "access token refused again right after minting a new one", status=401)

    def _check(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status == 200:
            return
        text = _snippet(response)
        if status in {402, 403, 405} or (status == 400 and "quota" in text.lower()):
            raise OutOfCredits(self.service, f"{what}: HTTP {status}: {text}", status=status)
        raise MalformedResponse(self.service, f"{what}: unexpected HTTP {status}: {text}", status=status)

    # --- Bulk Contact Fetch -----------------------------------------------------------------
    async def _via_bulk(self, ids: list[str]) -> dict[str, _Answer]:
        chunks = [ids[i : i + BULK_MAX] for i in range(0, len(ids), BULK_MAX)]
        outcomes = await asyncio.gather(*(self._bulk(chunk) for chunk in chunks), return_exceptions=True)
        return self._gathered(chunks, outcomes, "bulk")

    def _gathered(
        self, chunks: list[list[str]], outcomes: list[dict[str, _Answer] | BaseException], what: str
    ) -> dict[str, _Answer]:
        answers: dict[str, _Answer] = {}
        failures: list[tuple[list[str], ServiceError]] = []
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, (AuthError, OutOfCredits)) or not isinstance(outcome, ServiceError):
                    raise outcome
                failures.append((chunk, outcome))
            else:
                answers.update(outcome)
        if failures and len(failures) == len(chunks):
            raise failures[0][1]
        for chunk, exc in failures:
            log.warning("insideview.batch_failed", service=self.service, kind=what, ids=len(chunk), error=exc)
            for vid in chunk:
                answers[vid] = _Answer("error", reason=f"{what} failed: {exc.reason}")
        return answers

    async def _bulk(self, ids: list[str]) -> dict[str, _Answer]:
        response = await self._call("POST", BULK_PATH, json={"contactIds": ids})
        self._check(response, "bulk contact fetch")
        _tag, body = decode_body(response, self.service)
        if not isinstance(body, list):
            raise MalformedResponse(self.service, "bulk contact fetch: the answer is not a list")
        wanted = set(ids)
        answers: dict[str, _Answer] = {}
        unexpected = 0
        for entry in body:
            requested = self._requested_id(entry)
            if requested is None or requested not in wanted or requested in answers:
                unexpected += 1
                continue
            answers[requested] = self._entry_answer(entry)
        if unexpected:
            log.warning("insideview.unexpected_entries", service=self.service, count=unexpected)
        for vid in ids:
            answers.setdefault(vid, _NOT_FOUND)  # absent from the answer: not found
        return answers

    @staticmethod
    def _requested_id(entry: Any) -> str | None:
        if not isinstance(entry, Mapping):
            return None
        requested = entry.get("requestedContactId")
        if requested is None:
            contact = entry.get("contact")
            requested = contact.get("contactId") if isinstance(contact, Mapping) else None
        if isinstance(requested, bool) or not isinstance(requested, (str, int)):
            return None
        return str(requested).strip()

    def _entry_answer(self, entry: Mapping[str, Any]) -> _Answer:
        if "contact" in entry:
            try:
                return _Answer("found", contact=parse_contact(entry["contact"]), credits=1)
            except _BadRecord as exc:
                # the vendor returned (and presumably charged for) a record we cannot read
                return _Answer("error", reason=f"malformed InsideView record: {exc}", credits=1)
        error = entry.get("error")
        code = error.get("errorCode") if isinstance(error, Mapping) else None
        code = str(code).strip() if code is not None else ""
        if code == "404-602" or code.startswith("404"):
            return _NOT_FOUND
        if code == "400-110":
            return _Answer("error", reason=INVALID_ID_REASON)
        if code:
            return _Answer("error", reason=f"InsideView error {code[:20]}")
        return _Answer("error", reason="malformed InsideView entry: neither contact nor error")

    # --- Contact Details Job ----------------------------------------------------------------
    async def _via_jobs(self, ids: list[str]) -> dict[str, _Answer]:
        answers: dict[str, _Answer] = {}
        numeric: list[str] = []
        for vid in ids:
            if vid.isdigit():
                numeric.append(vid)
            else:
                answers[vid] = _Answer("error", reason=INVALID_ID_REASON)  # a job would refuse them all
        chunks = [numeric[i : i + self.job_max_ids] for i in range(0, len(numeric), self.job_max_ids)]
        if chunks:
            outcomes = await asyncio.gather(*(self._job_in_slot(c) for c in chunks), return_exceptions=True)
            answers.update(self._gathered(chunks, outcomes, "job"))
        return answers

    async def _job_in_slot(self, ids: list[str]) -> dict[str, _Answer]:
        async with self._job_slots:
            return await self._job(ids)

    async def _job(self, ids: list[str]) -> dict[str, _Answer]:
        deadline = time.monotonic() + self.job_timeout
        job_id = await self._submit(ids, deadline)
        log.info("insideview.job_submitted", service=self.service, job_id=job_id, ids=len(ids))
        delay = self.job_poll_initial
        while True:
            if time.monotonic() + delay > deadline:
                raise ServiceUnavailable(
                    self.service, f"job {job_id} not finished after {self.job_timeout:.0f}s"
                )
            await self._sleep(delay)
            delay = min(delay * 2, self.job_poll_max)
            status = await self._job_status(job_id)
            if status == "finished":
                break
            if status in {"failed", "aborted", "not found", "notfound"}:
                raise ServiceUnavailable(self.service, f"job {job_id} ended as {status}")
        response = await self._call(
            "GET", f"{JOB_PATH}/{job_id}/results", headers={"Accept": "text/csv, application/json"}
        )
        self._check(response, "contact details job results")
        answers = self._parse_csv(response, ids)
        found = sum(1 for a in answers.values() if a.kind != "not_found")
        log.info("insideview.job_finished", service=self.service, job_id=job_id, ids=len(ids), rows=found)
        return answers

    async def _submit(self, ids: list[str], deadline: float) -> str:
        delay = self.job_poll_initial
        while True:
            response = await self._call(
                "POST", JOB_PATH, content="\n".join(ids), headers={"Content-Type": "text/plain"}
            )
            if response.status_code == 400 and "already running" in _snippet(response).lower():
                # the account's job slots are taken (perhaps by another client): wait for one
                if time.monotonic() + delay > deadline:
                    raise ServiceUnavailable(self.service, "job slots stayed busy until the job timeout")
                log.info("insideview.job_slots_busy", service=self.service, delay=delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.job_poll_max)
                continue
            self._check(response, "contact details job")
            _tag, body = decode_body(response, self.service)
            job_id = body.get("jobId") if isinstance(body, Mapping) else None
            if not isinstance(job_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job_id):
                raise MalformedResponse(self.service, "contact details job: no usable jobId in the answer")
            return job_id

    async def _job_status(self, job_id: str) -> str:
        response = await self._call("GET", f"{JOB_PATH}/{job_id}")
        if response.status_code == 404:
            return "not found"
        self._check(response, "contact details job status")
        _tag, body = decode_body(response, self.service)
        status = body.get("status") if isinstance(body, Mapping) else None
        if not isinstance(status, str):
            raise MalformedResponse(self.service, "contact details job status: no status in the answer")
        return status.strip().lower()

    def _parse_csv(self, response: httpx.Response, ids: list[str]) -> dict[str, _Answer]:
        if "html" in response.headers.get("content-type", "").lower():
            raise MalformedResponse(self.service, "job results: HTML page instead of CSV")
        try:
            text = response.content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MalformedResponse(self.service, "job results: not UTF-8") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            columns = reader.fieldnames or []
            if "contactId" not in columns:
                raise MalformedResponse(self.service, "job results: no contactId column in the CSV header")
            rows = list(reader)
        except csv.Error:
            raise MalformedResponse(self.service, "job results: unreadable CSV") from None
        wanted = set(ids)
        answers: dict[str, _Answer] = {}
        unexpected = 0
        for row in rows:
            record: dict[str, Any] = {
                k: v for k, v in row.items() if isinstance(k, str) and isinstance(v, str) and v.strip()
            }
            requested = (record.get("requestedContactId") or record.get("contactId") or "").strip()
            if requested not in wanted or requested in answers:
                unexpected += 1
                continue
            for list_field in ("titles", "sources"):
                if list_field in record:
                    record[list_field] = [p for p in record[list_field].split("|") if p.strip()]
            try:
                answers[requested] = _Answer("found", contact=parse_contact(record), credits=1)
            except _BadRecord as exc:
                answers[requested] = _Answer("error", reason=f"malformed InsideView record: {exc}", credits=1)
        if unexpected:
            log.warning("insideview.unexpected_entries", service=self.service, count=unexpected)
        for vid in ids:
            answers.setdefault(vid, _NOT_FOUND)
        return answers
