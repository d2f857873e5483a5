"""ContactOut: find people by identity (People Enrich) and refresh known people (Contact Info by LinkedIn URL).

The token travels in the `token` header only (never in a URL) and is registered with the log redactor.

Identity matching (a request without `vendor_id`): ONE `POST /v1/people/enrich` with every identifier
the contact has: its email (if valid), its most person-like phone (a mobile before a switchboard) and its
name + company. The name is `first_name` + `last_name` as the PBX holds them (`name_source`, which the
engine points at the PBX's detailed form: one query per lookup), never the flat form's display name, whose
word order depends on the PBX ("Last First" on some); only a contact the PBX gives no first and last name
for is asked by `full_name`; the API answers with the profile the strongest identifier finds. The profile is accepted
only by `syncd.vendors.matching.accept_match` (full name and company agree, no `altMatches`). Should the
email or phone have found someone else (a shared inbox, a switchboard), name + company alone is asked
once more. A 404 ends the search (every identifier was in the query). Accepted -> `Outcome.found`,
`vendor_id` = the profile's LinkedIn URL, `matched_by` = the identifiers sent ("email+phone+name_company"),
`match_confidence`. Refused (weak, partial, ambiguous) -> `Outcome.not_found` with `matched_by`, the
confidence and `error` = "match refused: <reason>", but no contact data.

Where the contact data comes from (`contact_fetch`):
- "after_match": People Enrich is asked without `include` (1 search credit when found), and the
  emails and phones of an accepted profile are bought afterwards with `GET /v1/people/linkedin?profile=
  &include_phone=true` (1 email + 1 phone credit when found). A refused match then costs 1 credit, not 3.
- "inline" (default): People Enrich with `include: [work_email, personal_email, phone]`: one call per
  contact, but a refused or ambiguous profile is paid in full (search + email + phone). Measured on the
  2,000-contact demo: 1,587 credits against 1,575 for "after_match" (21 against 9 on the 9 refused
  matches), 0.8% more, within 2%, for 622 fewer calls: inline stays the default.
Either way only the kinds the contact still needs are bought (`LookupRequest.need_email` / `need_phones`:
`include`, `include_phone`, `email_type=none`); a known URL that needs neither is not asked.

Refresh of known people (`vendor_id` = a LinkedIn profile URL), by `batch_mode`:
- "auto": 31 or more distinct URLs in one lookup -> v2 async bulk (`POST /v2/people/linkedin/batch`, at most
  1000 per job, `include_phone: true`, polled with backoff); fewer -> one `GET /v1/people/linkedin
  ?include_phone=true` each; "v2" / "single" force either; "v1" -> `POST /v1/people/linkedin/batch` (at most
  30 per call; emails only, untyped: `EmailKind.unknown`, no phones).
  An empty answer (no email, no phone) is `Outcome.not_found`; so is a 404.

Linked answers (a known LinkedIn URL) pass `vendors.base.check_identities` like every vendor's; Contact
Info answers carry no name, so for them the link alone stands.

Values arrive as arrays of strings, as lone strings (the email-lookup shape: `"phone": " +61.438347437"`)
or, for emails, as objects with an `email` key: all are read (`_strings`). An answer made of the API docs'
example data (two or more of its tell-tale values: "Example Person", `email1@example.com`, "Verified |
Unverified", the sample picture hash, ...; what a trial or demo key returns) raises `SampleData` (an
`AuthError`): nothing of it is stored and the provider makes no further call.

Mapping: title from `headline` with a trailing " at <company>" removed; company from `company.name`;
`work_email` -> `EmailKind.work` with `verification` from `work_email_status` ("Verified" -> "verified",
"Unverified" -> "unverified"), `personal_email` -> `EmailKind.personal`, any other address -> unknown.
Phones by `phonenumbers.number_type` of the E.164 form: MOBILE, PAGER -> mobile; FIXED_LINE, VOIP,
PERSONAL_NUMBER -> direct; TOLL_FREE, SHARED_COST, UAN, PREMIUM_RATE -> corporate; FIXED_LINE_OR_MOBILE
(every US/CA number), VOICEMAIL, UNKNOWN -> other (it cannot be told). Values failing `clean_email` /
`to_e164` are dropped with a `vendor.value_rejected` event.

Email verification (`verify_emails=True`): a found result's first work email that is not "verified" is
checked with `GET /v1/email/verify` (fewer than `VERIFY_BATCH_MIN` addresses) or `POST /v1/email/verify/batch`
(at most `VERIFY_BATCH_MAX` per job, polled); its `verification` becomes the verdict ("valid", "invalid",
"accept_all", "disposable", "unknown"). Verification failing never fails the lookup (the data is paid
for); running out of verifier credits turns verification off for the provider's life.

Credits: each result carries what the docs say the call charged for it: 1 search credit per profile found
by People Enrich, 1 email credit when an email was returned (garbage included: it was charged), 1 phone
credit when a phone was returned, 1 verifier credit per valid / invalid / accept_all verdict. A URL that
several contacts share is fetched once and charged to the first of them.

Rate limits: the `HttpSettings` rate is the general 1000/min class ("other APIs"), which covers People
Enrich and Contact Info; the email verifier also gets a `checker_rate` limiter (Contact Checker class,
150/min). syncd calls no People Search endpoint (the 60/min class).

Errors: 400/401 naming bad credentials (the docs' table gives 400 for those) or a bare 401 -> `AuthError`;
400/401 naming bad input -> that contact's `Outcome.error`; 403 (out of credits, no access to endpoint)
-> `OutOfCredits`. After an `AuthError` or `OutOfCredits` the provider makes no further call: every later
`lookup` raises the same error at once. 429 and 5xx are retried by the `ServiceClient` (Retry-After
honoured). Several units of work (one per contact to match, one per refresh call or bulk job) run
concurrently; when some fail, the others' results (already paid for) are kept and the failed units'
contacts get `Outcome.error`; the call raises only when every unit failed, or on `AuthError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import phonenumbers

from syncd.errors import AuthError, MalformedResponse, OutOfCredits, ServiceError, ServiceUnavailable
from syncd.http import HttpSettings, RateLimiter, ServiceClient, json_body
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
from syncd.normalize import clean_email, email_key, fold_company, fold_text, to_e164
from syncd.vendors import matching
from syncd.vendors.base import (
    EMAIL_FIELD,
    check_identities,
    error_result,
    log_rejected_value,
    phone_field,
    rejections_by_contact,
    result_template,
)
from syncd.vendors.matching import accept_match

log = get_logger("syncd.vendors.contactout")

ENRICH_PATH = "/v1/people/enrich"
LINKEDIN_PATH = "/v1/people/linkedin"
V1_BATCH_PATH = "/v1/people/linkedin/batch"
V2_BATCH_PATH = "/v2/people/linkedin/batch"
VERIFY_PATH = "/v1/email/verify"
VERIFY_BATCH_PATH = "/v1/email/verify/batch"
STATS_PATH = "/v1/stats"

V1_BATCH_MAX = 30
V2_BATCH_MAX = 1000
LOOKUP_BATCH = 100
V2_THRESHOLD = 31  # "auto": this many distinct URLs or more go to the v2 bulk
VERIFY_BATCH_MAX = 100  # the docs allow 1000; public clients send 100
VERIFY_BATCH_MIN = 3  # fewer addresses are verified one by one (no job to poll)
CHECKER_RATE = 2.5  # Contact Checker class: 150/min
GENERAL_RATE = 1000 / 60  # other APIs: 1000/min, for the HttpSettings the config builds
INCLUDE_ALL = ("work_email", "personal_email", "phone")
PENDING_STATUSES = frozenset({"QUEUED", "PENDING", "PROCESSING", "IN_PROGRESS", "RUNNING"})
DONE_STATUSES = frozenset({"SENT", "DONE", "COMPLETED", "FINISHED", "SUCCESS"})
CHARGED_VERDICTS = frozenset({"valid", "invalid", "accept_all"})
# refusals meaning "the profile is another person", after which name + company is still worth asking
OTHER_PERSON = frozenset({matching.NAME_MISMATCH})

BatchMode = Literal["auto", "v1", "v2", "single"]
ContactFetch = Literal["after_match", "inline"]

_LINKEDIN_RE = re.compile(r"^https?://(?:[a-z]{2,3}\.)?linkedin\.com/(?:in|pub)/[^/?#\s]+", re.IGNORECASE)
_MAX_MESSAGE = 200
_JOB_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_VERIFICATION = {"verified": "verified", "unverified": "unverified"}
_PHONE_KINDS = {
    phonenumbers.PhoneNumberType.MOBILE: PhoneKind.mobile,
    phonenumbers.PhoneNumberType.PAGER: PhoneKind.mobile,
    phonenumbers.PhoneNumberType.FIXED_LINE: PhoneKind.direct,
    phonenumbers.PhoneNumberType.VOIP: PhoneKind.direct,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER: PhoneKind.direct,
    phonenumbers.PhoneNumberType.TOLL_FREE: PhoneKind.corporate,
    phonenumbers.PhoneNumberType.SHARED_COST: PhoneKind.corporate,
    phonenumbers.PhoneNumberType.UAN: PhoneKind.corporate,
    phonenumbers.PhoneNumberType.PREMIUM_RATE: PhoneKind.corporate,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def with_names(request: LookupRequest, names: Mapping[int, tuple[str, str]]) -> LookupRequest:
    """The request with the contact's first and last name, when the PBX holds both (its `name` becomes
    "First Last" too, so the profile is judged against the name the PBX holds, in its own order)."""
    first, last = names.get(request.contact_id, ("", ""))
    if not (first.strip() and last.strip()):
        return request
    first, last = first.strip(), last.strip()
    return dataclasses.replace(request, first_name=first, last_name=last, name=f"{first} {last}")


def linkedin_url_of(request: LookupRequest) -> str | None:
    """The request's known LinkedIn profile URL, if `vendor_id` holds a usable one."""
    vid = (request.vendor_id or "").strip()
    return vid if _LINKEDIN_RE.match(vid) else None


def matchable(request: LookupRequest) -> bool:
    """Whether a profile found for this contact could ever be accepted (full name and company known)."""
    return len(fold_text(request.name).split()) >= 2 and bool(fold_company(request.company))


def phone_kind(e164: str) -> PhoneKind:
    """The kind of a valid E.164 number, by its number type (see the module docstring)."""
    kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    return _PHONE_KINDS.get(kind, PhoneKind.other)


def title_from(headline: str | None, company: str | None) -> str | None:
    """'CTO at Acme Inc.' -> 'CTO' when the tail is the profile's company; the headline otherwise."""
    text = (headline or "").strip()
    if not text:
        return None
    head, sep, tail = text.rpartition(" at ")
    if sep and head.strip() and company and fold_company(tail) == fold_company(company):
        return head.strip()
    return text


def message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep JSON
        return ""
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return ""


def failure_of(service: str, response: httpx.Response) -> ServiceError:
    """The error an unsuccessful answer (not 404, not retried) stands for."""
    status = response.status_code
    message = message_of(response)
    reason = f"HTTP {status}" + (f": {redact(message)[:_MAX_MESSAGE]}" if message else "")
    text = message.lower()
    if status in (402, 403):
        # "You're out of credits, please email your sales manager" / "No access to endpoint"
        return OutOfCredits(service, reason, status=status)
    if status in (400, 401):
        # the docs' table: 400 "Bad credentials or invalid headers", 401 "Bad request or invalid input";
        # read the message, since the two codes may well be the other way round in practice
        credentials = any(w in text for w in ("credential", "header", "token", "unauthori", "api key"))
        bad_input = any(w in text for w in ("invalid input", "bad request", "validation", "required"))
        if credentials or (status == 401 and not bad_input):
            return AuthError(service, reason, status=status)
        return BadRequest(service, reason, status=status)
    return MalformedResponse(service, f"unexpected {reason}", status=status)


class BadRequest(ServiceError):
    """The vendor refused the input of one call (a per-contact problem, never a reason to stop)."""


class _Aborted(Exception):
    """Another unit of the same lookup hit an error that makes further calls pointless."""

    def __init__(self, cause: ServiceError) -> None:
        super().__init__(cause.reason)
        self.cause = cause


class _Run:
    """Shared state of one `lookup`: failures seen and whether to stop calling."""

    def __init__(self) -> None:
        self.failures: list[ServiceError] = []
        self.abort: ServiceError | None = None
        self.succeeded = 0

    def check(self) -> None:
        if self.abort is not None:
            raise _Aborted(self.abort)


@dataclasses.dataclass(frozen=True, slots=True)
class _Values:
    emails: tuple[FoundEmail, ...] = ()
    phones: tuple[FoundPhone, ...] = ()
    email_returned: bool = False  # as charged: whatever the vendor sent, garbage included
    phone_returned: bool = False

    @property
    def credits(self) -> int:
        return int(self.email_returned) + int(self.phone_returned)

    @property
    def empty(self) -> bool:
        return not (self.email_returned or self.phone_returned)


Unit = Callable[[_Run], Awaitable[dict[int, EnrichmentResult]]]
# contact ids -> (first_name, last_name) as the PBX holds them (its detailed form)
NameSource = Callable[[Sequence[int]], Awaitable[Mapping[int, tuple[str, str]]]]


class ContactOutProvider:
    vendor = Vendor.contactout
    # Requests per lookup the waterfall should send. Not the v2 maximum (1000): contacts to match go one
    # People Enrich call each at ~1/s, and a lookup's answers are only recorded when it returns, so 100
    # keeps paid answers from waiting long in memory and the budget reservation (max_cost) modest.
    # Larger lookups still work (v2 jobs take up to 1000 URLs).
    max_batch = LOOKUP_BATCH

    def __init__(
        self,
        http: HttpSettings,
        token: str,
        *,
        checker_rate: float | None = CHECKER_RATE,
        default_region: str = "US",
        verify_emails: bool = False,
        batch_mode: BatchMode = "auto",
        contact_fetch: ContactFetch = "inline",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_interval: float = 0.25,
        poll_timeout: float = 600.0,
        name_source: NameSource | None = None,
    ) -> None:
        if batch_mode not in ("auto", "v1", "v2", "single"):
            raise ValueError(f"batch_mode must be auto, v1, v2 or single, not {batch_mode!r}")
        if contact_fetch not in ("after_match", "inline"):
            raise ValueError(f"contact_fetch must be after_match or inline, not {contact_fetch!r}")
        register_secret(token)
        self.service = http.service
        self._client = ServiceClient(http, transport=transport, sleep=sleep)
        self._headers = {"token": token, "Accept": "application/json"}
        self._region = default_region
        self._verify = verify_emails
        self._batch_mode = batch_mode
        self._contact_fetch = contact_fetch
        self._clock = clock
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._poll_timeout = poll_timeout
        self._checker_limiter = RateLimiter(checker_rate, sleep=sleep) if checker_rate else None
        # set by AuthError / OutOfCredits: no further call is made for the provider's life
        self._stopped: ServiceError | None = None
        self._verify_off = False
        # where first and last names come from (the engine sets the PBX's detailed form); without one,
        # or for a contact it does not know, the request's name is sent as `full_name`
        self.name_source = name_source

    @property
    def client(self) -> ServiceClient:
        """The underlying HTTP client (its `stats` count requests, retries and throttling)."""
        return self._client

    @property
    def stopped(self) -> ServiceError | None:
        """The AuthError or OutOfCredits that made the provider stop calling, if any."""
        return self._stopped

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- Provider ---------------------------------------------------------------------------
    def can_lookup(self, request: LookupRequest) -> bool:
        if request.vendor_id:
            # Contact Info returns emails and phones only (v1 bulk: emails only): nothing else to refresh
            if self._batch_mode == "v1":
                return request.need_email and linkedin_url_of(request) is not None
            return (request.need_email or request.need_phones) and linkedin_url_of(request) is not None
        # email / phone alone are not enough: the profile found must also agree on name and company
        return matchable(request)

    def max_cost(self, requests: Sequence[LookupRequest]) -> int:
        """Worst case, counted as ContactOut charges: search + email + phone (+ verifier), for the kinds
        each request still needs. Never less than a batch of the same requests costs."""
        urls: set[str] = set()
        cost = 0
        for request in requests:
            email, phone = int(request.need_email), int(request.need_phones)
            verify = email if self._verify else 0
            url = linkedin_url_of(request)
            if url is not None:
                if url not in urls:
                    urls.add(url)
                    if self._batch_mode == "v1":
                        cost += email + verify
                    elif self._batch_mode == "single":
                        cost += email + phone + verify
                    else:  # a v2 job returns (and charges) emails whatever is needed
                        cost += 1 + phone + verify
            elif not request.vendor_id and matchable(request):
                # each attempt's profile costs its search credit (inline: and the contact data), and a
                # profile of someone else found by email or phone is followed by name + company once
                attempts = len(self._attempts(request))
                if self._contact_fetch == "inline":
                    cost += attempts * (1 + email + phone) + verify
                else:
                    cost += attempts + email + phone + verify
        return cost

    async def lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        with rejections_by_contact(self.vendor) as done:
            results = await self._lookup(requests)
            done.extend(results)
        return results

    async def _lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        self._raise_if_stopped()
        fetched_at = self._clock()
        results: list[EnrichmentResult | None] = [None] * len(requests)
        by_url: dict[str, list[int]] = {}
        units: list[tuple[list[int], Unit]] = []
        for pos, request in enumerate(requests):
            url = linkedin_url_of(request)
            if url is not None:
                by_url.setdefault(url, []).append(pos)
            elif request.vendor_id:
                results[pos] = self._error(request, fetched_at, "vendor id is not a LinkedIn profile URL")
            elif not matchable(request):
                results[pos] = self._error(request, fetched_at, "needs a full name and a company to match")
            else:
                units.append(([pos], self._match_unit(pos, request, fetched_at)))
        if units and self.name_source is not None:
            names = await self._names([requests[pos] for positions, _ in units for pos in positions])
            units = [
                ([pos], self._match_unit(pos, with_names(requests[pos], names), fetched_at))
                for positions, _ in units
                for pos in positions
            ]
        units[:0] = self._refresh_units(requests, by_url, fetched_at)
        run = _Run()
        answers = await asyncio.gather(*(self._guarded(run, unit) for _, unit in units))
        for (positions, _), answer in zip(units, answers, strict=True):
            for pos in positions:
                if isinstance(answer, ServiceError):
                    results[pos] = self._error(requests[pos], fetched_at, answer.reason)
                else:
                    results[pos] = answer.get(pos) or self._error(requests[pos], fetched_at, "no answer")
        if run.failures:
            auth = [f for f in run.failures if isinstance(f, AuthError)]
            if auth:
                raise auth[0]
            if run.succeeded == 0:
                raise next((f for f in run.failures if isinstance(f, OutOfCredits)), run.failures[0])
            for failure in run.failures:
                log.warning(
                    "vendor.batch_failed",
                    vendor=self.vendor.value,
                    error=type(failure).__name__,
                    reason=failure.reason,
                )
        done = [r for r in results if r is not None]
        assert len(done) == len(requests), "every request gets a result"
        done = check_identities(requests, done)
        if self._verify and not self._verify_off:
            done = await self._verify_results(done)
        return done

    async def usage(self, period: str | None = None) -> dict[str, int]:
        """`GET /v1/stats`: the month's usage counters (`count`, `quota`, `search_count`, ...)."""
        body = await self._call(
            "GET", STATS_PATH, _Run(), gate=True, params={"period": period} if period else None
        )
        usage = body.get("usage") if body is not None else None
        if not isinstance(usage, dict):
            raise MalformedResponse(self.service, "HTTP 200: no `usage` object in the stats", status=200)
        return {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}

    async def _names(self, requests: Sequence[LookupRequest]) -> Mapping[int, tuple[str, str]]:
        assert self.name_source is not None
        try:
            return await self.name_source([r.contact_id for r in requests])
        except ServiceError as exc:
            # the PBX's detailed form is a refinement: without it the display name is sent as before
            log.warning("vendor.names_unavailable", vendor=self.vendor.value, error=type(exc).__name__)
            return {}

    # --- plumbing ---------------------------------------------------------------------------
    def _raise_if_stopped(self) -> None:
        stopped = self._stopped
        if stopped is not None:
            raise type(stopped)(
                self.service, f"{stopped.reason} (no further calls this run)", status=stopped.status
            )

    async def _call(
        self,
        method: str,
        path: str,
        run: _Run,
        *,
        gate: bool = False,
        limiter: RateLimiter | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> dict[str, Any] | None:
        """One call: its JSON object, None for 404; raises the classified error otherwise.

        A gated call starts something that may be charged: it is not made once the lookup was aborted or
        the provider stopped. Calls that finish what was already paid for (the contact info of an accepted
        match, polling a bulk job) are not gated.
        """
        if gate:
            run.check()
            self._raise_if_stopped()
        if limiter is not None:
            await limiter.acquire()
            if gate:
                run.check()
                self._raise_if_stopped()
        response = await self._client.request(method, path, params=params, json=json, headers=self._headers)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise failure_of(self.service, response)
        body = json_body(response, self.service)
        if not isinstance(body, dict):
            raise MalformedResponse(self.service, f"{method} {path}: the body is not an object", status=200)
        if is_sample(body):
            raise SampleData(
                self.service,
                f"{path} answered with the API docs' sample data (a trial or demo key?): nothing was stored; "
                "use a production API key",
                status=200,
            )
        return body

    async def _guarded(self, run: _Run, unit: Unit) -> dict[int, EnrichmentResult] | ServiceError:
        """Run one unit; record its failure (and stop the lookup, or the provider, when it must)."""
        try:
            answer = await unit(run)
        except _Aborted as aborted:
            return aborted.cause
        except ServiceError as exc:
            if isinstance(exc, BadRequest):
                exc = MalformedResponse(self.service, f"request refused as bad input ({exc.reason})")
            run.failures.append(exc)
            if isinstance(exc, (AuthError, OutOfCredits)):
                if self._stopped is None:
                    self._stopped = exc
                    log.warning(
                        "vendor.stopped",
                        vendor=self.vendor.value,
                        error=type(exc).__name__,
                        reason=exc.reason,
                    )
                run.abort = exc
            elif isinstance(exc, ServiceUnavailable):
                run.abort = exc
            return exc
        run.succeeded += 1
        return answer

    def _template(
        self,
        fetched_at: datetime,
        outcome: Outcome,
        *,
        vendor_id: str | None = None,
        error: str | None = None,
    ) -> EnrichmentResult:
        return result_template(self.vendor, fetched_at, outcome, vendor_id=vendor_id, error=error)

    def _error(self, request: LookupRequest, fetched_at: datetime, reason: str) -> EnrichmentResult:
        return error_result(self.vendor, request, fetched_at, reason)

    def _reject(self, vendor_id: str | None, field: str, reason: SkipReason) -> None:
        log_rejected_value(self.vendor, field, reason, vendor_id=vendor_id)

    def _values(
        self,
        vendor_id: str | None,
        *,
        work: Iterable[str] = (),
        personal: Iterable[str] = (),
        other: Iterable[str] = (),
        phones: Iterable[str] = (),
        statuses: Mapping[str, Any] | None = None,
    ) -> _Values:
        """Normalised, de-duplicated emails and phones; what the vendor sent decides the charge."""
        status_by_key = {email_key(k): str(v) for k, v in (statuses or {}).items() if isinstance(k, str)}
        emails: list[FoundEmail] = []
        seen: set[str] = set()
        sent_email = False
        for kind, addresses in (
            (EmailKind.work, work),
            (EmailKind.personal, personal),
            (EmailKind.unknown, other),
        ):
            for raw in addresses:
                sent_email = True
                address = clean_email(raw)
                if address is None:
                    self._reject(vendor_id, EMAIL_FIELD, SkipReason.invalid_email)
                    continue
                if email_key(address) in seen:
                    continue
                seen.add(email_key(address))
                verification = None
                if kind is EmailKind.work:
                    word = status_by_key.get(email_key(raw), "").strip().lower()
                    verification = _VERIFICATION.get(word)
                emails.append(FoundEmail(address=address, kind=kind, verification=verification))
        found_phones: list[FoundPhone] = []
        sent_phone = False
        for raw in phones:
            sent_phone = True
            number = to_e164(raw, self._region)
            if number is None:
                # too broken to have a kind: filed as the merge files a number of unknown kind
                self._reject(vendor_id, phone_field(None), SkipReason.invalid_number)
            elif all(p.number != number for p in found_phones):
                found_phones.append(FoundPhone(number=number, kind=phone_kind(number)))
        return _Values(tuple(emails), tuple(found_phones), sent_email, sent_phone)

    # --- identity matching ------------------------------------------------------------------
    def _attempts(self, request: LookupRequest) -> list[tuple[str, dict[str, Any]]]:
        """One People Enrich query with every identifier the contact has (the API uses the strongest
        that finds someone), then name + company alone in case that profile is someone else's."""
        by_name: dict[str, Any] = {"full_name": request.name.strip(), "company": [request.company.strip()]}
        if request.first_name and request.last_name:
            # as the PBX holds them: the display name's word order depends on the PBX
            by_name = {
                "first_name": request.first_name,
                "last_name": request.last_name,
                "company": [request.company.strip()],
            }
        combined: dict[str, Any] = dict(by_name)
        kinds: list[str] = []
        email = clean_email(request.email)
        if email is not None:
            combined["email"] = email
            kinds.append("email")
        numbers: list[str] = []
        for raw in request.phones:
            number = to_e164(raw, self._region)
            if number is not None and number not in numbers:
                numbers.append(number)
        # a mobile identifies a person; a business number is often a switchboard shared by many
        numbers.sort(key=lambda n: phone_kind(n) is not PhoneKind.mobile)
        if numbers:
            combined["phone"] = numbers[0]
            kinds.append("phone")
        if not kinds:
            return [("name_company", by_name)]
        return [("+".join([*kinds, "name_company"]), combined), ("name_company", by_name)]

    def _match_unit(self, pos: int, request: LookupRequest, fetched_at: datetime) -> Unit:
        async def unit(run: _Run) -> dict[int, EnrichmentResult]:
            return {pos: await self._match_one(request, fetched_at, run)}

        return unit

    async def _match_one(self, request: LookupRequest, fetched_at: datetime, run: _Run) -> EnrichmentResult:
        inline = self._contact_fetch == "inline"
        attempts = self._attempts(request)
        # only what can still be written is bought
        include = [
            kind for kind in INCLUDE_ALL if (request.need_phones if kind == "phone" else request.need_email)
        ]
        refused: EnrichmentResult | None = None  # a profile of someone else, found by email or phone
        while attempts:
            matched_by, query = attempts.pop(0)
            payload = {**query, "include": include} if inline and include else query
            try:
                # People Enrich is in the docs' "other APIs" class: the general rate limit applies
                body = await self._call("POST", ENRICH_PATH, run, gate=True, json=payload)
            except BadRequest as exc:
                log.info(
                    "vendor.query_refused", vendor=self.vendor.value, matched_by=matched_by, reason=exc.reason
                )
                continue
            if body is None:
                break  # 404: every identifier was tried at once; nobody by them
            profile = body.get("profile")
            if not isinstance(profile, dict) or not profile:
                break  # `{"profile": []}`: the docs' "empty results", for every identifier, like a 404
            result, reason = await self._judge(
                request, fetched_at, run, matched_by=matched_by, profile=profile, inline=inline
            )
            if refused is None and attempts and reason in OTHER_PERSON and matched_by != "name_company":
                # the email or phone belongs to someone else (a shared inbox, a switchboard): that says
                # nothing about this contact, so ask by name + company once more, and nothing else
                refused, attempts = result, attempts[-1:]
                continue
            if refused is not None:
                result = dataclasses.replace(result, credits=result.credits + refused.credits)
            return result
        if refused is not None:
            return refused
        return dataclasses.replace(
            self._template(fetched_at, Outcome.not_found), contact_id=request.contact_id
        )

    async def _judge(
        self,
        request: LookupRequest,
        fetched_at: datetime,
        run: _Run,
        *,
        matched_by: str,
        profile: Mapping[str, Any],
        inline: bool,
    ) -> tuple[EnrichmentResult, str | None]:
        """The result for a profile found by `matched_by`, and the refusal reason when refused."""
        url = _text(profile.get("url")) or _text(profile.get("linkedinUrl"))
        full_name = _text(profile.get("full_name")) or _text(profile.get("fullName"))
        company_obj = profile.get("company")
        company = _text(company_obj.get("name")) if isinstance(company_obj, dict) else _text(company_obj)
        alternatives = profile.get("altMatches")
        n_alt = len(alternatives) if isinstance(alternatives, list) else 0
        credits = 1  # the search credit of a found profile
        values = _Values()
        if inline:
            values = self._profile_values(url, profile)
            credits += values.credits
        decision = accept_match(request.name, request.company, full_name, company, n_alt)
        base = dataclasses.replace(
            self._template(fetched_at, Outcome.found, vendor_id=url),
            contact_id=request.contact_id,
            full_name=full_name,
            company=company,
            matched_by=matched_by,
            match_confidence=decision.confidence,
        )
        if not decision.accepted or url is None or _LINKEDIN_RE.match(url) is None:
            reason = "no_linkedin_url" if decision.accepted else decision.reason
            log.info(
                "vendor.match_refused",
                vendor=self.vendor.value,
                contact_id=request.contact_id,
                matched_by=matched_by,
                reason=reason,
                alternatives=n_alt,
            )
            refusal = dataclasses.replace(
                base, outcome=Outcome.not_found, error=f"match refused: {reason}", credits=credits
            )
            return refusal, reason
        title = title_from(_text(profile.get("headline")), company)
        if not inline and (request.need_email or request.need_phones):
            try:
                contact = await self._call(
                    "GET",
                    LINKEDIN_PATH,
                    run,
                    params=_contact_params(url, request.need_email, request.need_phones),
                )
            except BadRequest as exc:
                failed = dataclasses.replace(
                    base, outcome=Outcome.error, error=f"contact info refused: {exc.reason}", credits=credits
                )
                return failed, None
            info = contact.get("profile") if contact is not None else None
            if isinstance(info, dict):
                values = self._profile_values(url, info)
                credits += values.credits
        found = dataclasses.replace(
            base, title=title, emails=values.emails, phones=values.phones, credits=credits
        )
        return found, None

    def _profile_values(self, url: str | None, profile: Mapping[str, Any]) -> _Values:
        work = _strings(profile.get("work_email")) + _strings(profile.get("workEmail"))
        personal = _strings(profile.get("personal_email"))
        listed = _strings(profile.get("email"))
        known = {email_key(e) for e in work + personal}
        other = [e for e in listed if email_key(e) not in known]
        statuses = profile.get("work_email_status")
        if not isinstance(statuses, dict):
            single = _text(profile.get("workEmailStatus"))
            statuses = {work[0]: single} if work and single else {}
        return self._values(
            url,
            work=work,
            personal=personal,
            other=other,
            phones=_strings(profile.get("phone")),
            statuses=statuses,
        )

    # --- refresh of known people ------------------------------------------------------------
    def _refresh_units(
        self, requests: Sequence[LookupRequest], by_url: dict[str, list[int]], fetched_at: datetime
    ) -> list[tuple[list[int], Unit]]:
        urls = list(by_url)
        mode = self._batch_mode
        if mode == "auto":
            mode = "v2" if len(urls) >= V2_THRESHOLD else "single"
        size = {"v1": V1_BATCH_MAX, "v2": V2_BATCH_MAX, "single": 1}[mode]
        needs: dict[str, tuple[bool, bool]] = {
            url: (
                any(requests[pos].need_email for pos in positions),
                any(requests[pos].need_phones for pos in positions),
            )
            for url, positions in by_url.items()
        }
        units: list[tuple[list[int], Unit]] = []
        # a job's include_phone holds for all of it: URLs that need a phone and those that do not apart
        for phones in (True, False):
            group = [url for url in urls if needs[url][1] is phones]
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                positions = [pos for url in chunk for pos in by_url[url]]
                unit = self._refresh_unit(mode, chunk, by_url, requests, fetched_at, needs=needs)
                units.append((positions, unit))
        return units

    def _refresh_unit(
        self,
        mode: str,
        chunk: list[str],
        by_url: dict[str, list[int]],
        requests: Sequence[LookupRequest],
        fetched_at: datetime,
        *,
        needs: Mapping[str, tuple[bool, bool]],
    ) -> Unit:
        async def unit(run: _Run) -> dict[int, EnrichmentResult]:
            if mode == "v1":
                templates = await self._refresh_v1(chunk, fetched_at, run)
            elif mode == "v2":
                templates = await self._refresh_v2(chunk, fetched_at, run, phones=needs[chunk[0]][1])
            else:
                email, phones = needs[chunk[0]]
                templates = {
                    chunk[0]: await self._refresh_single(
                        chunk[0], fetched_at, run, email=email, phones=phones
                    )
                }
            out: dict[int, EnrichmentResult] = {}
            for url in chunk:
                for n, pos in enumerate(by_url[url]):
                    template = templates.get(url) or self._template(
                        fetched_at, Outcome.not_found, vendor_id=url
                    )
                    # bought once; further contacts holding the same URL get it for free
                    out[pos] = dataclasses.replace(
                        template,
                        contact_id=requests[pos].contact_id,
                        credits=template.credits if n == 0 else 0,
                    )
            return out

        return unit

    def _refreshed(self, url: str, fetched_at: datetime, values: _Values) -> EnrichmentResult:
        outcome = Outcome.not_found if values.empty else Outcome.found
        return dataclasses.replace(
            self._template(fetched_at, outcome, vendor_id=url),
            emails=values.emails,
            phones=values.phones,
            credits=values.credits,
        )

    async def _refresh_single(
        self, url: str, fetched_at: datetime, run: _Run, *, email: bool = True, phones: bool = True
    ) -> EnrichmentResult:
        try:
            body = await self._call(
                "GET", LINKEDIN_PATH, run, gate=True, params=_contact_params(url, email, phones)
            )
        except BadRequest as exc:
            return self._template(fetched_at, Outcome.error, vendor_id=url, error=exc.reason)
        profile = body.get("profile") if body is not None else None
        if not isinstance(profile, dict):
            return self._template(fetched_at, Outcome.not_found, vendor_id=url)
        return self._refreshed(url, fetched_at, self._profile_values(url, profile))

    async def _refresh_v1(
        self, chunk: list[str], fetched_at: datetime, run: _Run
    ) -> dict[str, EnrichmentResult]:
        body = await self._call("POST", V1_BATCH_PATH, run, gate=True, json={"profiles": chunk})
        profiles = body.get("profiles") if body is not None else {}
        if isinstance(profiles, list) and not profiles:
            profiles = {}  # `"profiles": []`: nothing found
        if not isinstance(profiles, dict):
            raise MalformedResponse(self.service, "v1 bulk: no `profiles` object", status=200)
        found = _by_slug(profiles)
        out: dict[str, EnrichmentResult] = {}
        for url in chunk:
            emails = found.get(_slug(url))
            values = self._values(url, other=_strings(emails)) if emails is not None else _Values()
            out[url] = self._refreshed(url, fetched_at, values)
        return out

    async def _refresh_v2(
        self, chunk: list[str], fetched_at: datetime, run: _Run, *, phones: bool = True
    ) -> dict[str, EnrichmentResult]:
        body = await self._call(
            "POST", V2_BATCH_PATH, run, gate=True, json={"profiles": chunk, "include_phone": phones}
        )
        job_id = (_text(body.get("job_id")) or _text(body.get("uuid"))) if body is not None else None
        if job_id is None:
            raise MalformedResponse(self.service, "v2 bulk: no `job_id` in the answer", status=200)
        result = await self._poll(V2_BATCH_PATH, job_id, run)
        found = _by_slug(result)
        out: dict[str, EnrichmentResult] = {}
        for url in chunk:
            entry = found.get(_slug(url))
            values = _Values()
            if isinstance(entry, dict):
                work = _strings(entry.get("work_emails"))
                personal = _strings(entry.get("personal_emails"))
                known = {email_key(e) for e in work + personal}
                other = [e for e in _strings(entry.get("emails")) if email_key(e) not in known]
                values = self._values(
                    url, work=work, personal=personal, other=other, phones=_strings(entry.get("phones"))
                )
            elif entry is not None:
                raise MalformedResponse(self.service, "v2 bulk: a result entry is not an object", status=200)
            out[url] = self._refreshed(url, fetched_at, values)
        return out

    async def _poll(self, path: str, job_id: str, run: _Run) -> dict[str, Any]:
        """Poll a bulk job until it has a result; backoff doubling up to 10 s, `poll_timeout` in all."""
        if not _JOB_ID_RE.fullmatch(job_id):
            # it goes into the URL: a megabyte of text or a path would make a request we cannot send
            raise MalformedResponse(self.service, "bulk job: the job id is not an id", status=200)
        delay = self._poll_interval
        waited = 0.0
        while True:
            await self._sleep(delay)
            waited += delay
            body = await self._call("GET", f"{path}/{job_id}", run)
            if body is None:
                raise MalformedResponse(
                    self.service, f"bulk job {job_id} is unknown to the vendor", status=404
                )
            data = body.get("data")
            if not isinstance(data, dict):
                raise MalformedResponse(self.service, "bulk job: no `data` object", status=200)
            status = str(data.get("status") or "").upper()
            result = data.get("result")
            if status not in PENDING_STATUSES:
                if isinstance(result, dict):
                    return result
                if isinstance(result, list) and not result:
                    return {}
                if status in DONE_STATUSES or not status:
                    raise MalformedResponse(self.service, f"bulk job {status or 'without status'}, no result")
                # a failure state (none is documented): the job can be tried again later
                raise ServiceUnavailable(self.service, f"bulk job ended with status {status}")
            if waited >= self._poll_timeout:
                raise ServiceUnavailable(self.service, f"bulk job not done after {waited:.0f}s")
            delay = min(delay * 2, 10.0)

    # --- email verification -----------------------------------------------------------------
    async def _verify_results(self, results: list[EnrichmentResult]) -> list[EnrichmentResult]:
        wanted: dict[str, str] = {}  # email key -> address
        for result in results:
            chosen = _chosen_work_email(result)
            if chosen is not None:
                wanted.setdefault(email_key(chosen.address), chosen.address)
        if not wanted:
            return results
        verdicts = await self._verdicts(list(wanted.values()))
        charged: set[str] = set()
        out: list[EnrichmentResult] = []
        for result in results:
            chosen = _chosen_work_email(result)
            verdict = verdicts.get(email_key(chosen.address)) if chosen is not None else None
            if chosen is None or verdict is None:
                out.append(result)
                continue
            credits = result.credits
            if verdict in CHARGED_VERDICTS and email_key(chosen.address) not in charged:
                charged.add(email_key(chosen.address))
                credits += 1
            emails = tuple(
                dataclasses.replace(e, verification=verdict) if e is chosen else e for e in result.emails
            )
            out.append(dataclasses.replace(result, emails=emails, credits=credits))
        return out

    async def _verdicts(self, addresses: list[str]) -> dict[str, str]:
        """email key -> verdict for the addresses the vendor could verify; failures only logged."""
        verdicts: dict[str, str] = {}
        run = _Run()
        if len(addresses) < VERIFY_BATCH_MIN:
            chunks: list[list[str]] = [[a] for a in addresses]
        else:
            chunks = [addresses[i : i + VERIFY_BATCH_MAX] for i in range(0, len(addresses), VERIFY_BATCH_MAX)]
        for chunk in chunks:
            if self._verify_off:
                break
            try:
                if len(chunk) == 1 and len(addresses) < VERIFY_BATCH_MIN:
                    body = await self._call(
                        "GET",
                        VERIFY_PATH,
                        run,
                        gate=True,
                        limiter=self._checker_limiter,
                        params={"email": chunk[0]},
                    )
                    data = body.get("data") if body is not None else None
                    status = data.get("status") if isinstance(data, dict) else None
                    if isinstance(status, str) and status.strip():
                        verdicts[email_key(chunk[0])] = status.strip().lower()
                else:
                    body = await self._call(
                        "POST",
                        VERIFY_BATCH_PATH,
                        run,
                        gate=True,
                        limiter=self._checker_limiter,
                        json={"emails": chunk},
                    )
                    job_id = _text(body.get("job_id")) if body is not None else None
                    if job_id is None:
                        raise MalformedResponse(
                            self.service, "verify bulk: no `job_id` in the answer", status=200
                        )
                    result = await self._poll(VERIFY_BATCH_PATH, job_id, run)
                    for address, status in result.items():
                        if isinstance(address, str) and isinstance(status, str) and status.strip():
                            verdicts[email_key(address)] = status.strip().lower()
            except ServiceError as exc:
                if isinstance(exc, OutOfCredits):
                    self._verify_off = True
                log.warning(
                    "vendor.verify_failed",
                    vendor=self.vendor.value,
                    error=type(exc).__name__,
                    reason=exc.reason,
                    disabled=self._verify_off,
                )
        return verdicts


def _contact_params(url: str, email: bool, phones: bool) -> dict[str, str]:
    """Contact Info's query for what is needed: `include_phone` buys phones, `email_type=none` no email."""
    params = {"profile": url, "include_phone": "true" if phones else "false"}
    if not email:
        params["email_type"] = "none"
    return params


def _chosen_work_email(result: EnrichmentResult) -> FoundEmail | None:
    if result.outcome is not Outcome.found:
        return None
    work = next((e for e in result.emails if e.kind is EmailKind.work), None)
    if work is None or work.verification == "verified":
        return None
    return work


def _text(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


_VALUE_KEYS = ("email", "phone", "number", "value")


def _strings(value: object) -> list[str]:
    """The values of an array field as ContactOut writes them: an array of strings, a lone string (the
    email-lookup endpoint's `"phone": " +61.438347437"`), or objects holding the value under `email`
    (`[{"email": "a@b.c"}]`; `phone` / `number` / `value` likewise). Anything else is empty."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        text = item
        if isinstance(item, dict):
            text = next((item[k] for k in _VALUE_KEYS if isinstance(item.get(k), str)), None)
        if isinstance(text, str) and text.strip():
            out.append(text.strip())
    return out


# --- sample payloads --------------------------------------------------------------------------------
# A trial or demo key answers with the docs' example data instead of the person asked about. Markers: values
# of the docs' examples that no real profile carries together (one alone could be a coincidence).
_SAMPLE_VALUES = frozenset(
    {
        "example person",
        "https://www.linkedin.com/in/example-person",
        "legros, smitham and kessler",
        "+1234567891",
        "+123456789",
        "phone number 1",
        "email1@example.com",
        "email2@gmail.com",
        "test@gmail.com",
        "work-email@obm-international.com",
        "0getfisher@gmail.com",
        "github_name",
        "twitter_username",
    }
)
_SAMPLE_FRAGMENTS = ("ca33f14227b1e5d3a1d53b0b5ca36fc8", "contactout.com/companies/voluptates")
_RESERVED_EMAIL = re.compile(r"@(?:[a-z0-9-]+\.)*example\.(?:com|net|org)$", re.IGNORECASE)
_MAX_SCANNED = 5000


def sample_markers(body: object) -> set[str]:
    """The docs'-example values found in an answer (strings only, the first `_MAX_SCANNED` looked at)."""
    found: set[str] = set()
    stack: list[object] = [body]
    scanned = 0
    while stack and scanned < _MAX_SCANNED:
        item = stack.pop()
        scanned += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            text = item.strip().lower()
            if text in _SAMPLE_VALUES:
                found.add(text)
            if "|" in text and "verified" in text:
                found.add("status template")  # "Verified | Unverified": the docs' placeholder
            if _RESERVED_EMAIL.search(text):
                found.add("reserved example domain")
            found.update(f for f in _SAMPLE_FRAGMENTS if f in text)
    return found


def is_sample(body: object) -> bool:
    """An answer built from the docs' example data (two markers or more): never stored as data."""
    return len(sample_markers(body)) >= 2


class SampleData(AuthError):
    """ContactOut answered with sample data (a trial or demo key): the provider stops, nothing is stored."""


def _slug(url: str) -> str:
    """Comparison key of a profile URL: the part after /in/ or /pub/, lower-case, no trailing slash."""
    path = url.strip().split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return path.rsplit("/", 1)[-1].lower()


def _by_slug(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {_slug(k): v for k, v in mapping.items() if isinstance(k, str)}
