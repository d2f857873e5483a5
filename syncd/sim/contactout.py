"""A simulator of the ContactOut API: People Enrich, Contact Info (single, v1 and v2 bulk), the contact
checkers, the Email Verifier (single and bulk) and the usage stats.

What /work/shared/vendor-docs/contactout-api.md says, served as written:
- auth by the `token` header. The docs' error table reads "400 Bad credentials or invalid headers" and
  "401 Bad request or invalid input": the descriptions of 400 and 401 look swapped, but the table is the
  only source, so by default a missing or wrong token is 400 and a bad input 401
  (`doc_status_codes=False` serves the conventional reading: 401 bad credentials, 400 bad input). Every
  error body is `{"status_code": N, "message": "<the table's text>"}`;
- 403 "No access to endpoint" (endpoints named in `denied`), 403 "You're out of credits, please email your
  sales manager" (a credit kind the request may charge is used up);
- rate limits per token: People Search 60/min, Contact Checker APIs 150/min, other APIs 1000/min, in fixed
  one-minute windows of `clock`; over a limit, 429 with `retry-after: <seconds until the window ends>`;
- `POST /v1/people/enrich` (JSON): one primary identifier (`linkedin_url`, `email`, `phone`) or a name
  (`full_name`, or `first_name` + `last_name`) plus a secondary one (`company` array, `company_domain`,
  `location`, `education`); `include` lists `work_email`, `personal_email`, `phone`. Found: `{"status_code":
  200, "profile": {…}}` in the shape of the docs' example (snake_case `url`, `email`, `work_email`,
  `personal_email`, `phone`, `full_name`, `headline`, `company{name,…}`, …) plus `work_email_status` and
  `altMatches`; not found: 404 `{"status_code": 404, "message": "Not Found"}`. Charges 1 search credit when
  found, 1 email credit when an email is returned, 1 phone credit when a phone is returned;
- `GET /v1/people/linkedin?profile=&include_phone=&email_type=`: contact info only (`url`, `email`,
  `work_email`, `work_email_status`, `personal_email`, `phone`, `github`); 1 email credit when an email is
  returned, 1 phone credit when a phone is returned (only with `include_phone=true`);
- `POST /v1/people/linkedin/batch {profiles: ≤30}` -> `{"status_code": 200, "profiles": {url: [emails]}}`,
  1 email credit per profile with emails (no phones in v1);
- `POST /v2/people/linkedin/batch {profiles: ≤1000, include_phone}` -> `{"status": "QUEUED", "job_id"}`;
  `GET /v2/people/linkedin/batch/{job_id}` -> `{"data": {"uuid", "status": "QUEUED"}}` until `batch_delay`
  has passed, then `{"data": {"uuid", "status": "SENT", "result": {url: {emails, personal_emails,
  work_emails, phones}}}}`; credits for hits only (1 email / 1 phone per profile);
- `GET /v1/email/verify?email=` -> `{"status_code": 200, "data": {"status": verdict}}`; `POST
  /v1/email/verify/batch {emails: ≤1000}` -> QUEUED job; `GET /v1/email/verify/batch/{uuid}` -> `{"data":
  {"uuid", "status": "DONE", "result": {email: verdict}}}`. 1 verifier credit per valid / invalid /
  accept_all verdict (disposable and unknown are free);
- the free checkers `GET /v1/people/linkedin/{personal_email_status,work_email_status,phone_status}`;
- `GET /v1/stats?period=YYYY-MM` -> the postpaid shape (`count`, `quota`, `remaining`, `over_quota` and the
  `phone_` / `search_` variants).

Where the docs are silent, the simulator assumes (the provider copes with each):
- which endpoints fall in the "People Search" and "Contact Checker" rate-limit classes is not said:
  People Search counts as search (People Enrich is its own API in the docs, so "other APIs"), the Email
  Verifier calls (single, and submitting a bulk job) count as checkers with the three contact checkers;
  polls and the rest are "other";
- who is findable: persons whose `known_by` holds "contactout". What ContactOut holds about each is drawn
  per person (`contact_info`): a work email for 95%, a personal one for 60%, the mobile for 80% and the
  direct line for 40%; phones are written E.164 or in international notation ("+1 415-555-0134").
  Garbage persons answer `n/a` as their email and `not-a-number` as their phone (charged all the same);
- name lookups ignore word order (unless `name_order="given"`) and compare companies with `fold_company`; the sim knows no locations or
  schools, so a name with only `location` / `education` is not found. Same name + company for several
  persons (common in large datasets): the best profile (an exact company spelling first, then the lowest
  contact id) is returned and the others are listed in `altMatches`;
- a request whose credit kinds (search; email unless no email can be returned; phone when asked for) has
  a used-up balance is refused whole with 403 and charges nothing; otherwise charges go through even if
  they overdraw the last credits (balance floors at 0);
- bulk jobs are computed and charged when submitted, and served once `batch_delay` has passed; an unknown
  job id is 404. More profiles or emails than allowed, or a URL that is not `http…linkedin.com/in|pub/…`,
  fails the whole request as bad input;
- verdicts: a person's work email is `valid` when `email_verified`, `accept_all` otherwise; a personal
  email is `valid`; addresses at well-known disposable domains are `disposable`; anything else `invalid`;
- `stats` reports what was charged in the requested calendar month (UTC); `quota` is the initial balance of
  a limited credit kind, 1,000,000 for an unlimited one.

Knobs a test may change while the server runs (plain attributes): `denied` (endpoint names answering 403
no access), `malformed` (endpoint names whose 200 answers are cut-off JSON, still charged), `credits`
(balances), `faults` (the shared middleware), and the readings of what the docs leave open:
`value_shape` ("arrays" as the People Enrich example, "strings" as the email-lookup example with phones
written " +61.438347437", "objects" with emails as `{"email": ...}`), `sample_payload` (a trial key: every
found profile is the docs' example profile) and `name_order` ("any" word order, or "given": the name must
be the person's "First Last" in that order, as `full_name` or `first_name` + `last_name`). `calls` counts requests per endpoint name and per answered
status ("status_200", "status_429", …); `charged` counts credits per kind.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import phonenumbers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.normalize import fold_company, fold_text, to_e164
from syncd.sim.dataset import Dataset, Person
from syncd.sim.faults import FaultInjector, Faults

DEFAULT_TOKEN = "co-demo-token"  # noqa: S105 (the simulator's demo token, not a secret)
V1_BATCH_MAX = 30
V2_BATCH_MAX = 1000
VERIFY_BATCH_MAX = 1000
LIST_PARAM_MAX = 10  # company, company_domain, education: "array, optional, max:10"
UNLIMITED_QUOTA = 1_000_000
CREDIT_KINDS = ("email", "phone", "search", "verifier")

MSG_BAD_CREDENTIALS = "Bad credentials or invalid headers"
MSG_BAD_INPUT = "Bad request or invalid input"
MSG_OUT_OF_CREDITS = "You're out of credits, please email your sales manager"
MSG_NO_ACCESS = "No access to endpoint"
MSG_RATE_LIMIT = (
    "Rate limit reached. Check header retry-after: <time_in_seconds> for when rate limit will reset"
)
MSG_NOT_FOUND = "Not Found"
VALUE_SHAPES = ("arrays", "strings", "objects")
# The docs' People Enrich example profile, served for every found person under `sample_payload`
SAMPLE_PROFILE: dict[str, Any] = {
    "url": "https://www.linkedin.com/in/example-person",
    "email": ["email1@example.com", "email2@gmail.com"],
    "work_email": ["email1@example.com"],
    "personal_email": ["email2@gmail.com"],
    "phone": ["+1234567891"],
    "github": ["github_name"],
    "twitter": ["twitter_username"],
    "full_name": "Example Person",
    "headline": "Manager, Business Operations & Marketing at OBM",
    "industry": "Broadcast Media",
    "company": {
        "name": "Legros, Smitham and Kessler",
        "url": "https://www.linkedin.com/company/legros-smitham-and-kessler",
        "domain": "legros.com",
        "logo_url": "https://images.contactout.com/companies/voluptates",
    },
    "location": "Bermuda",
    "profile_picture_url": "https://images.contactout.com/profiles/ca33f14227b1e5d3a1d53b0b5ca36fc8",
    "updated_at": "2024-01-01 00:00:00",
}

# endpoint name -> rate-limit class ("general" when absent); see the module docstring
RATE_CLASS = {
    # People Enrich is its own API in the docs, so it counts in "other APIs" (1000/min); the 60/min
    # class is the People Search API (/v1/people/search)
    "people_search": "search",
    "email_verify": "checker",
    "email_verify_batch": "checker",
    "personal_email_status": "checker",
    "work_email_status": "checker",
    "phone_status": "checker",
}
INCLUDE_VALUES = frozenset({"work_email", "personal_email", "phone"})
DISPOSABLE_DOMAINS = frozenset({"mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com"})
CHARGED_VERDICTS = frozenset({"valid", "invalid", "accept_all"})

_LINKEDIN_RE = re.compile(r"^https?://(?:[a-z]{2,3}\.)?linkedin\.com/(?:in|pub)/([^/?#]+)", re.IGNORECASE)
_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")
_GARBAGE_EMAIL = "n/a"
_GARBAGE_PHONE = "not-a-number"


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) derived from `parts` (stable across processes, unlike hash())."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def linkedin_slug(url: str) -> str | None:
    """'https://www.linkedin.com/in/jane-doe-12/' -> 'jane-doe-12'; None for anything else."""
    match = _LINKEDIN_RE.match((url or "").strip())
    return unquote(match.group(1)).strip().lower() if match else None


def _domain_of(text: str) -> str:
    """'http://www.Stripe.com/about' -> 'stripe.com'."""
    text = text.strip().lower()
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    return host.removeprefix("www.")


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """What ContactOut holds about a person, written the way the API returns it."""

    work_emails: tuple[str, ...]
    personal_emails: tuple[str, ...]
    phones: tuple[str, ...]
    work_email_verified: bool

    @property
    def emails(self) -> tuple[str, ...]:
        return self.work_emails + self.personal_emails


@dataclass
class _Job:
    kind: str  # "v2" or "verify"
    ready_at: float
    result: dict[str, Any]


@dataclass
class _Indexes:
    by_name: dict[tuple[str, ...], list[int]]  # sorted folded name words -> contact ids
    by_email: dict[str, list[int]]
    by_phone: dict[str, list[int]]  # E.164
    email_owner: dict[str, tuple[int, str]]  # address -> (contact id, "work" | "personal")


class _BadInput(Exception):
    pass


# Indexes depend on the dataset only: simulators of one dataset (tests, benchmark rounds) share them.
_INDEX_CACHE: weakref.WeakKeyDictionary[Dataset, _Indexes] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


class ContactOutSimulator:
    """An ASGI app (`.app`, wrapped in the shared fault middleware) plus the state a test inspects."""

    def __init__(
        self,
        dataset: Dataset | None,
        *,
        token: str = DEFAULT_TOKEN,
        general_per_minute: int = 1000,
        search_per_minute: int = 60,
        checker_per_minute: int = 150,
        credits: Mapping[str, int] | None = None,
        batch_delay: float = 0.3,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
        doc_status_codes: bool = True,
        value_shape: str = "arrays",
        sample_payload: bool = False,
        name_order: str = "any",
    ) -> None:
        if value_shape not in VALUE_SHAPES:
            raise ValueError(f"value_shape must be one of {VALUE_SHAPES}, not {value_shape!r}")
        if name_order not in ("any", "given"):
            raise ValueError(f"name_order must be any or given, not {name_order!r}")
        unknown = set(credits or {}) - set(CREDIT_KINDS)
        if unknown:
            raise ValueError(f"unknown credit kinds: {sorted(unknown)}")
        self.dataset = dataset
        self.token = token
        self.per_minute = {
            "general": general_per_minute,
            "search": search_per_minute,
            "checker": checker_per_minute,
        }
        # balances of the limited credit kinds; a kind not named here is unlimited
        self.credits: dict[str, int] = dict(credits or {})
        self._initial_credits = dict(self.credits)
        self.batch_delay = batch_delay
        self.clock = clock
        self.auth_status, self.input_status = (400, 401) if doc_status_codes else (401, 400)
        # How a profile's emails and phones are written (People Enrich and Contact Info): "arrays" (the docs'
        # People Enrich example), "strings" (one lone string each, the way the docs' email-lookup example
        # answers: `"phone": " +61.438347437"`) or "objects" (emails as `[{"email": ...}]`).
        self.value_shape = value_shape
        # A trial or demo key: every found profile is the docs' example profile (still charged).
        self.sample_payload = sample_payload
        # "any": name lookups ignore word order; "given": the name must be "First Last" as the person
        # holds it (`full_name` in that order, or `first_name` + `last_name` each), as a real index would.
        self.name_order = name_order
        self.denied: set[str] = set()
        self.malformed: set[str] = set()
        self.faults = faults if faults is not None else Faults()
        self.calls: Counter[str] = Counter()
        self.charged: Counter[str] = Counter()
        self._usage: Counter[tuple[str, str]] = Counter()  # (YYYY-MM, kind) -> credits
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}  # (token, class) -> (window, count)
        self._jobs: dict[str, _Job] = {}
        self._indexes: _Indexes | None = None
        self._lock = threading.RLock()  # the server runs in its own thread; tests read from theirs
        routes = [
            Route("/v1/people/enrich", self._people_enrich, methods=["POST"]),
            Route("/v1/people/linkedin", self._people_linkedin, methods=["GET"]),
            Route("/v1/people/linkedin/batch", self._v1_batch, methods=["POST"]),
            Route("/v2/people/linkedin/batch", self._v2_batch, methods=["POST"]),
            Route("/v2/people/linkedin/batch/{job_id}", self._v2_batch_poll, methods=["GET"]),
            Route("/v1/people/linkedin/personal_email_status", self._personal_email_status, methods=["GET"]),
            Route("/v1/people/linkedin/work_email_status", self._work_email_status, methods=["GET"]),
            Route("/v1/people/linkedin/phone_status", self._phone_status, methods=["GET"]),
            Route("/v1/email/verify", self._email_verify, methods=["GET"]),
            Route("/v1/email/verify/batch", self._email_verify_batch, methods=["POST"]),
            Route("/v1/email/verify/batch/{job_id}", self._email_verify_poll, methods=["GET"]),
            Route("/v1/stats", self._stats, methods=["GET"]),
        ]
        self.app = FaultInjector(Starlette(routes=routes), self.faults)

    # --- what the vendor knows --------------------------------------------------------------
    @staticmethod
    def findable(person: Person) -> bool:
        return "contactout" in person.known_by

    def contact_info(self, person: Person) -> ContactInfo:
        """The emails and phones ContactOut holds for `person` (deterministic per person)."""
        if person.garbage:
            return ContactInfo((_GARBAGE_EMAIL,), (), (_GARBAGE_PHONE,), False)
        work, personal, phones = self._holdings(person)
        seed = self.dataset.seed if self.dataset is not None else 0
        written = tuple(self._written(n, _unit("co-format", n, seed, person.contact_id)) for n in phones)
        return ContactInfo(work, personal, written, person.email_verified)

    def _holdings(self, person: Person) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """(work emails, personal emails, E.164 phones) held for a person who is not garbage."""
        cid = person.contact_id
        seed = self.dataset.seed if self.dataset is not None else 0
        work = (person.work_email,) if _unit("co-work", seed, cid) < 0.95 else ()
        personal = (person.personal_email,) if _unit("co-personal", seed, cid) < 0.6 else ()
        phones = tuple(
            number
            for kind, number, share in (("mobile", person.mobile, 0.8), ("direct", person.direct, 0.4))
            if _unit("co-phone", kind, seed, cid) < share
        )
        return work, personal, phones

    @staticmethod
    def _written(e164: str, u: float) -> str:
        if u < 0.5:
            return e164
        parsed = phonenumbers.parse(e164, None)
        return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL))

    def person_for_url(self, url: str) -> Person | None:
        """The findable person behind a LinkedIn profile URL, or None."""
        slug = linkedin_slug(url)
        if slug is None or self.dataset is None:
            return None
        tail = slug.rsplit("-", 1)[-1]
        if not tail.isdigit():
            return None
        cid = int(tail)
        if not 1 <= cid <= self.dataset.size:
            return None
        person = self.dataset.person(cid)
        if not self.findable(person) or linkedin_slug(person.linkedin_url) != slug:
            return None
        return person

    def build_indexes(self) -> None:
        """Build the lookup indexes now (they are built on first use otherwise)."""
        self._index()

    def _index(self) -> _Indexes:
        """Name, email and phone indexes over the findable persons (one pass over the dataset: about
        as long as generating every person, ~80 s for 500,000; `build_indexes` does it up front)."""
        if self._indexes is not None:
            return self._indexes
        with _INDEX_LOCK:
            cached = _INDEX_CACHE.get(self.dataset) if self.dataset is not None else None
            if cached is not None:
                self._indexes = cached
                return cached
            idx = _Indexes({}, {}, {}, {})
            for person in self.dataset.persons() if self.dataset is not None else ():
                if not self.findable(person):
                    continue
                cid = person.contact_id
                idx.by_name.setdefault(_name_key(person.full_name), []).append(cid)
                if person.garbage:
                    continue
                work, personal, phones = self._holdings(person)
                for kind, addresses in (("work", work), ("personal", personal)):
                    for address in addresses:
                        idx.by_email.setdefault(address.lower(), []).append(cid)
                        idx.email_owner.setdefault(address.lower(), (cid, kind))
                for e164 in phones:
                    idx.by_phone.setdefault(e164, []).append(cid)
            if self.dataset is not None:
                _INDEX_CACHE[self.dataset] = idx
            self._indexes = idx
            return idx

    def verdict(self, email: str) -> str:
        """What the Email Verifier answers for `email`."""
        address = email.strip().lower()
        if address.rpartition("@")[2] in DISPOSABLE_DOMAINS:
            return "disposable"
        owner = self._index().email_owner.get(address)
        if owner is None or self.dataset is None:
            return "invalid"
        cid, kind = owner
        if kind == "work":
            return "valid" if self.dataset.person(cid).email_verified else "accept_all"
        return "valid"

    # --- plumbing ---------------------------------------------------------------------------
    def _respond(self, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        with self._lock:
            self.calls[f"status_{status}"] += 1
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def _error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        return self._respond({"status_code": status, "message": message}, status, headers)

    def _ok(self, endpoint: str, body: Any) -> Response:
        if endpoint in self.malformed:
            with self._lock:
                self.calls["status_200"] += 1
            text = json.dumps(body)
            return Response(text[: max(1, len(text) // 2)], media_type="application/json")
        return self._respond(body)

    def _gate(self, request: Request, endpoint: str) -> Response | None:
        """Auth, access and rate limit, shared by every endpoint; None when the request may go on."""
        with self._lock:
            self.calls[endpoint] += 1
        token = request.headers.get("token")
        if token != self.token:
            return self._error(self.auth_status, MSG_BAD_CREDENTIALS)
        if endpoint in self.denied:
            return self._error(403, MSG_NO_ACCESS)
        cls = RATE_CLASS.get(endpoint, "general")
        with self._lock:
            now = self.clock()
            window = math.floor(now / 60.0)
            seen_window, count = self._windows.get((token, cls), (window, 0))
            if seen_window != window:
                count = 0
            if count >= self.per_minute[cls]:
                wait = max(1, math.ceil((window + 1) * 60.0 - now))
                return self._error(429, MSG_RATE_LIMIT, {"retry-after": str(wait)})
            self._windows[(token, cls)] = (window, count + 1)
        return None

    def _short_of(self, kinds: Iterable[str]) -> Response | None:
        """403 out of credits when one of the kinds the request may charge is used up."""
        with self._lock:
            if any(kind in self.credits and self.credits[kind] <= 0 for kind in kinds):
                return self._error(403, MSG_OUT_OF_CREDITS)
        return None

    def _charge(self, kind: str, n: int = 1) -> None:
        if n <= 0:
            return
        period = datetime.now(UTC).strftime("%Y-%m")
        with self._lock:
            self.charged[kind] += n
            self._usage[(period, kind)] += n
            if kind in self.credits:
                self.credits[kind] = max(0, self.credits[kind] - n)

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise _BadInput from None
        if not isinstance(body, dict):
            raise _BadInput
        return body

    def _bad_input(self) -> Response:
        return self._error(self.input_status, MSG_BAD_INPUT)

    def _new_job(self, kind: str, result: dict[str, Any]) -> str:
        job_id = str(uuid.uuid4())
        with self._lock:
            self._jobs[job_id] = _Job(kind, self.clock() + self.batch_delay, result)
        return job_id

    def _job(self, kind: str, job_id: str) -> tuple[bool, dict[str, Any]] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.kind != kind:
                return None
            return self.clock() >= job.ready_at, job.result

    # --- People Enrich ----------------------------------------------------------------------
    async def _people_enrich(self, request: Request) -> Response:
        endpoint = "people_enrich"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        try:
            body = await self._json(request)
            query = _EnrichQuery.parse(body)
        except _BadInput:
            return self._bad_input()
        kinds = ["search"]
        if query.include & {"work_email", "personal_email"}:
            kinds.append("email")
        if "phone" in query.include:
            kinds.append("phone")
        if (short := self._short_of(kinds)) is not None:
            return short
        candidates = self._find(query)
        if not candidates:
            return self._error(404, MSG_NOT_FOUND)
        best, alternatives = candidates[0], candidates[1:]
        profile, email_found, phone_found = self._profile(best, query.include, alternatives)
        self._charge("search")
        self._charge("email", int(email_found))
        self._charge("phone", int(phone_found))
        return self._ok(endpoint, {"status_code": 200, "profile": self._shaped(profile)})

    def _find(self, query: _EnrichQuery) -> list[Person]:
        if self.dataset is None:
            return []
        idx = self._index()
        ids: list[int] = []
        # every identifier given is used, strongest first: the first one that finds someone decides
        if query.linkedin_url:
            person = self.person_for_url(query.linkedin_url)
            if person is not None:
                return [person]
        if query.email:
            ids = idx.by_email.get(query.email.strip().lower(), [])
        if not ids and query.phone:
            e164 = to_e164(query.phone, "US")
            ids = idx.by_phone.get(e164, []) if e164 else []
        if not ids and query.name:
            persons = [self.dataset.person(cid) for cid in idx.by_name.get(_name_key(query.name), [])]
            if self.name_order == "given":
                words = fold_text(query.name).split()
                persons = [p for p in persons if fold_text(p.full_name).split() == words]
            wanted = {fold_company(c) for c in query.companies} - {""}
            domains = {_domain_of(d) for d in query.domains} - {""}
            exact = {c.strip().casefold() for c in query.companies}
            chosen = [
                p
                for p in persons
                if fold_company(p.company) in wanted or p.work_email.rpartition("@")[2] in domains
            ]
            # the best candidate first: the company spelled exactly as asked, then the lowest id
            chosen.sort(key=lambda p: (p.company.strip().casefold() not in exact, p.contact_id))
            return chosen
        return [self.dataset.person(cid) for cid in ids]

    def _profile(
        self, person: Person, include: frozenset[str], alternatives: list[Person]
    ) -> tuple[dict[str, Any], bool, bool]:
        """(profile, an email was returned, a phone was returned) for People Enrich."""
        info = self.contact_info(person)
        work = list(info.work_emails) if "work_email" in include else []
        personal = list(info.personal_emails) if "personal_email" in include else []
        phones = list(info.phones) if "phone" in include else []
        profile = {
            "url": person.linkedin_url,
            "email": work + personal,
            "work_email": work,
            "personal_email": personal,
            "phone": phones,
            "work_email_status": self._work_status(info) if work else {},
            "github": [],
            "twitter": [],
            **self._details(person),
            "altMatches": [self._summary(p) for p in alternatives],
        }
        return profile, bool(work or personal), bool(phones)

    def _shaped(self, profile: dict[str, Any]) -> dict[str, Any]:
        """The profile in the switched shape (`value_shape`, `sample_payload`)."""
        if self.sample_payload:
            return {**SAMPLE_PROFILE, **({"altMatches": []} if "altMatches" in profile else {})}
        if self.value_shape == "arrays":
            return profile
        out = dict(profile)
        for key in ("email", "work_email", "personal_email"):
            values = [v for v in profile.get(key) or [] if isinstance(v, str)]
            if self.value_shape == "objects":
                out[key] = [{"email": v} for v in values]
            else:
                out[key] = values[0] if values else ""
        if self.value_shape == "strings":
            phones = [v for v in profile.get("phone") or [] if isinstance(v, str)]
            out["phone"] = _dotted(phones[0]) if phones else ""
        return out

    def _details(self, person: Person) -> dict[str, Any]:
        seed = self.dataset.contact(person.contact_id - 1) if self.dataset is not None else None
        domain = person.work_email.rpartition("@")[2]
        slug = fold_text(person.company).replace(" ", "-") or "company"
        headline = (
            f"{person.title} at {person.company}"
            if _unit("co-headline", person.contact_id) < 0.8
            else person.title
        )
        return {
            "full_name": person.full_name,
            "headline": headline,
            "industry": "Computer Software",
            "company": {
                "name": person.company,
                "url": f"https://www.linkedin.com/company/{slug}",
                "linkedin_company_id": 10_000_000 + int(_unit("co-company", slug) * 9_000_000),
                "domain": domain,
                "email_domain": domain,
                "website": f"http://{domain}",
                "headquarter": seed.city if seed else "",
                "country": seed.country if seed else "",
            },
            "location": seed.city if seed else "",
            "country": seed.country if seed else "",
            "summary": "",
            "experience": [
                {
                    "title": person.title,
                    "company_name": person.company,
                    "linkedin_url": f"https://www.linkedin.com/company/{slug}",
                    "start_date_year": 2015 + person.contact_id % 9,
                    "start_date_month": 1 + person.contact_id % 12,
                    "end_date_year": None,
                    "end_date_month": None,
                    "is_current": True,
                }
            ],
            "education": [],
            "skills": [],
            "followers": person.contact_id % 5000,
            "job_function": None,
            "seniority": None,
            "work_status": None,
            "profile_picture_url": None,
            "updated_at": "2024-01-01 00:00:00",
        }

    def _summary(self, person: Person) -> dict[str, Any]:
        details = self._details(person)
        return {
            "url": person.linkedin_url,
            "full_name": details["full_name"],
            "headline": details["headline"],
            "company": {"name": person.company},
        }

    @staticmethod
    def _work_status(info: ContactInfo) -> dict[str, str]:
        status = "Verified" if info.work_email_verified else "Unverified"
        return {address: status for address in info.work_emails}

    # --- Contact Info -----------------------------------------------------------------------
    async def _people_linkedin(self, request: Request) -> Response:
        endpoint = "people_linkedin"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        params = request.query_params
        profile_url = params.get("profile", "")
        include_phone = _truthy(params.get("include_phone"))
        email_type = params.get("email_type", "personal,work").replace(" ", "").lower()
        types = set(email_type.split(",")) - {""}
        if linkedin_slug(profile_url) is None or not types <= {"personal", "work", "none"}:
            return self._bad_input()
        if "none" in types:
            types = set()
        kinds = (["email"] if types else []) + (["phone"] if include_phone else [])
        if (short := self._short_of(kinds)) is not None:
            return short
        person = self.person_for_url(profile_url)
        if person is None:
            return self._error(404, MSG_NOT_FOUND)
        info = self.contact_info(person)
        work = list(info.work_emails) if "work" in types else []
        personal = list(info.personal_emails) if "personal" in types else []
        phones = list(info.phones) if include_phone else []
        self._charge("email", int(bool(work or personal)))
        self._charge("phone", int(bool(phones)))
        profile = {
            "url": person.linkedin_url,
            "email": work + personal,
            "work_email": work,
            "work_email_status": self._work_status(info) if work else {},
            "personal_email": personal,
            "phone": phones,
            "github": [],
        }
        return self._ok(endpoint, {"status_code": 200, "profile": self._shaped(profile)})

    async def _profiles_param(self, request: Request, limit: int) -> tuple[dict[str, Any], list[str]]:
        body = await self._json(request)
        profiles = body.get("profiles")
        if (
            not isinstance(profiles, list)
            or not 1 <= len(profiles) <= limit
            or not all(isinstance(p, str) and linkedin_slug(p) is not None for p in profiles)
        ):
            raise _BadInput
        return body, profiles

    async def _v1_batch(self, request: Request) -> Response:
        endpoint = "v1_batch"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        try:
            _body, profiles = await self._profiles_param(request, V1_BATCH_MAX)
        except _BadInput:
            return self._bad_input()
        if (short := self._short_of(["email"])) is not None:
            return short
        answer: dict[str, list[str]] = {}
        for url in profiles:
            person = self.person_for_url(url)
            answer[url] = list(self.contact_info(person).emails) if person is not None else []
        self._charge("email", sum(1 for emails in answer.values() if emails))
        return self._ok(endpoint, {"status_code": 200, "profiles": answer})

    async def _v2_batch(self, request: Request) -> Response:
        endpoint = "v2_batch"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        try:
            body, profiles = await self._profiles_param(request, V2_BATCH_MAX)
        except _BadInput:
            return self._bad_input()
        include_phone = body.get("include_phone") is True or _truthy(str(body.get("include_phone", "")))
        if (short := self._short_of(["email", "phone"] if include_phone else ["email"])) is not None:
            return short
        result: dict[str, dict[str, list[str]]] = {}
        for url in profiles:
            person = self.person_for_url(url)
            info = self.contact_info(person) if person is not None else ContactInfo((), (), (), False)
            phones = list(info.phones) if include_phone else []
            result[url] = {
                "emails": list(info.emails),
                "personal_emails": list(info.personal_emails),
                "work_emails": list(info.work_emails),
                "phones": phones,
            }
            self._charge("email", int(bool(info.emails)))
            self._charge("phone", int(bool(phones)))
        job_id = self._new_job("v2", result)
        return self._ok(endpoint, {"status": "QUEUED", "job_id": job_id})

    async def _v2_batch_poll(self, request: Request) -> Response:
        endpoint = "v2_batch_poll"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        job_id = request.path_params["job_id"]
        state = self._job("v2", job_id)
        if state is None:
            return self._error(404, MSG_NOT_FOUND)
        done, result = state
        data: dict[str, Any] = {"uuid": job_id, "status": "SENT" if done else "QUEUED"}
        if done:
            data["result"] = result
        return self._ok(endpoint, {"data": data})

    # --- Contact Checkers (free) ------------------------------------------------------------
    async def _checker(self, request: Request, endpoint: str) -> Response | ContactInfo:
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        url = request.query_params.get("profile", "")
        if linkedin_slug(url) is None:
            return self._bad_input()
        person = self.person_for_url(url)
        if person is None:
            return self._error(404, MSG_NOT_FOUND)
        return self.contact_info(person)

    async def _personal_email_status(self, request: Request) -> Response:
        info = await self._checker(request, "personal_email_status")
        if isinstance(info, Response):
            return info
        profile = {"email": bool(info.personal_emails)}
        return self._ok("personal_email_status", {"status_code": 200, "profile": profile})

    async def _work_email_status(self, request: Request) -> Response:
        info = await self._checker(request, "work_email_status")
        if isinstance(info, Response):
            return info
        status = ("Verified" if info.work_email_verified else "Unverified") if info.work_emails else None
        profile = {"email": bool(info.work_emails), "email_status": status}
        return self._ok("work_email_status", {"status_code": 200, "profile": profile})

    async def _phone_status(self, request: Request) -> Response:
        info = await self._checker(request, "phone_status")
        if isinstance(info, Response):
            return info
        return self._ok("phone_status", {"status_code": 200, "profile": {"phone": bool(info.phones)}})

    # --- Email Verifier ---------------------------------------------------------------------
    def _verify_charged(self, verdicts: Iterable[str]) -> None:
        self._charge("verifier", sum(1 for v in verdicts if v in CHARGED_VERDICTS))

    async def _email_verify(self, request: Request) -> Response:
        endpoint = "email_verify"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        email = request.query_params.get("email", "").strip()
        if not email:
            return self._bad_input()
        if (short := self._short_of(["verifier"])) is not None:
            return short
        verdict = self.verdict(email)
        self._verify_charged([verdict])
        return self._ok(endpoint, {"status_code": 200, "data": {"status": verdict}})

    async def _email_verify_batch(self, request: Request) -> Response:
        endpoint = "email_verify_batch"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        try:
            body = await self._json(request)
        except _BadInput:
            return self._bad_input()
        emails = body.get("emails")
        if (
            not isinstance(emails, list)
            or not 1 <= len(emails) <= VERIFY_BATCH_MAX
            or not all(isinstance(e, str) and e.strip() for e in emails)
        ):
            return self._bad_input()
        if (short := self._short_of(["verifier"])) is not None:
            return short
        result = {email: self.verdict(email) for email in emails}
        self._verify_charged(result.values())
        job_id = self._new_job("verify", result)
        return self._ok(endpoint, {"status": "QUEUED", "job_id": job_id})

    async def _email_verify_poll(self, request: Request) -> Response:
        endpoint = "email_verify_poll"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        job_id = request.path_params["job_id"]
        state = self._job("verify", job_id)
        if state is None:
            return self._error(404, MSG_NOT_FOUND)
        done, result = state
        data: dict[str, Any] = {"uuid": job_id, "status": "DONE" if done else "QUEUED"}
        if done:
            data["result"] = result
        return self._ok(endpoint, {"data": data})

    # --- API Usage Stats --------------------------------------------------------------------
    async def _stats(self, request: Request) -> Response:
        endpoint = "stats"
        if (refused := self._gate(request, endpoint)) is not None:
            return refused
        period = request.query_params.get("period") or datetime.now(UTC).strftime("%Y-%m")
        match = _PERIOD_RE.match(period)
        if match is None or not 1 <= int(match.group(2)) <= 12:
            return self._bad_input()
        year, month = int(match.group(1)), int(match.group(2))
        start = date(year, month, 1)
        end = date.fromordinal(date(year + month // 12, month % 12 + 1, 1).toordinal() - 1)
        usage: dict[str, int] = {}
        with self._lock:
            for kind, prefix in (("email", ""), ("phone", "phone_"), ("search", "search_")):
                count = self._usage[(period, kind)]
                quota = self._initial_credits.get(kind, UNLIMITED_QUOTA)
                usage[f"{prefix}count"] = count
                usage[f"{prefix}quota"] = quota
                usage[f"{prefix}remaining"] = max(0, quota - count)
                usage[f"{prefix}over_quota"] = max(0, count - quota)
        body = {
            "status_code": 200,
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "usage": usage,
        }
        return self._ok(endpoint, body)


def _dotted(number: str) -> str:
    """' +61.438347437': a number the way the docs' email-lookup example writes it (garbage as it is)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return f" +{parsed.country_code}.{parsed.national_number}"


def _name_key(name: str) -> tuple[str, ...]:
    return tuple(sorted(fold_text(name).split()))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1", "yes"}


def _strings(value: Any, *, limit: int = LIST_PARAM_MAX) -> list[str]:
    """An `array` parameter (a lone string is accepted too, as the docs' own example sends one)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) for v in value):
        raise _BadInput
    return [v for v in value if v.strip()]


def _text_param(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadInput
    return value.strip()


@dataclass(frozen=True, slots=True)
class _EnrichQuery:
    linkedin_url: str
    email: str
    phone: str
    name: str
    companies: list[str]
    domains: list[str]
    include: frozenset[str]

    @staticmethod
    def parse(body: Mapping[str, Any]) -> _EnrichQuery:
        linkedin_url = _text_param(body, "linkedin_url")
        if linkedin_url and linkedin_slug(linkedin_url) is None:
            raise _BadInput
        email, phone = _text_param(body, "email"), _text_param(body, "phone")
        full = _text_param(body, "full_name")
        first, last = _text_param(body, "first_name"), _text_param(body, "last_name")
        if bool(first) != bool(last):
            raise _BadInput  # first_name must be used with last_name, and the other way round
        name = full or f"{first} {last}".strip()
        companies = _strings(body.get("company"))
        domains = _strings(body.get("company_domain"))
        education = _strings(body.get("education"))
        location = _text_param(body, "location")
        include = frozenset(_strings(body.get("include"), limit=len(INCLUDE_VALUES)))
        if not include <= INCLUDE_VALUES:
            raise _BadInput
        secondary = bool(companies or domains or education or location)
        if not (linkedin_url or email or phone or (name and secondary)):
            raise _BadInput
        return _EnrichQuery(linkedin_url, email, phone, name, companies, domains, include)
