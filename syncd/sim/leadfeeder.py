"""A simulator of the Leadfeeder (Dealfront) v1 API: Retrieve Contacts, Get Contact Details, List Accounts.

What the public docs say, served faithfully (see /work/shared/vendor-docs/leadfeeder-retrieve-contacts.txt):
- auth by the `X-Api-Key` header; a missing key is 403 `{"code":"missing_token"}`, a wrong one 403
  `{"code":"invalid_api_key"}` (flat `{code,message}` error objects);
- per-key rate limit, a token bucket of `rate_per_second` and `burst` (documented: 10/s, burst 15); over it,
  429 `{"code":"too_many_requests"}` without rate-limit headers (none are documented);
- `GET /v1/contacts?ids=a,b&account_id=…[&include=company]` answers `{"data":[ContactV1…],
  "meta":{"credits":{"charged":N},"request_id":uuid}}`; an id nobody knows has no entry in `data`;
- credits are record subscriptions: a record accessed once is free afterwards (the docs say "within 12
  months"; the simulator lives far shorter than that, so: once accessed, free for the simulator's life).

Where the docs are silent, this is what the simulator assumes (the provider copes with each):
- more than 100 ids, or no `ids` at all, is 400 `{"code":"bad_request"}`;
- a missing or wrong `account_id` is 404 `{"code":"account_not_found"}`;
- a request whose new records would cost more than the credits left is refused whole with 403
  `{"code":"insufficient_credits"}`, and nothing is charged;
- `include=company` adds a top-level JSON:API `included` list of `{"type":"company","id",
  "attributes":{"name","domain"}}` and charges 1 credit per company record not accessed before;
- only the header carries the key (the docs also mention a query parameter, name unknown).

Knobs a test may change while the server runs (plain attributes): `retry_after` (send `Retry-After`
on 429s, in whole seconds), `error_style` ("flat" `{code,message}`, or "list" `{errors:[{code,title}],
meta}` as one public client mocks), `auth_status` (403, or 401 as one public client mocks),
`malformed_ids` (vendor ids whose record is sent with a broken shape), `meta_credits` (False: answers
carry no `meta.credits`), `faults` (the shared middleware).
`calls` counts requests per route name ("accounts", "contacts", "contact") and per status the simulator
answered ("status_200", "status_429", ...); faults the middleware injected are counted in `faults.injected`.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, Literal

import phonenumbers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.sim.dataset import Dataset, Person
from syncd.sim.faults import FaultInjector, Faults

MAX_IDS = 100
DEFAULT_API_KEY = "lf-demo-key"
DEFAULT_ACCOUNT_ID = "123456"

_COUNTRY_CODES = {
    "United States": "US",
    "Germany": "DE",
    "France": "FR",
    "United Kingdom": "GB",
    "Switzerland": "CH",
}
_TITLE_LANGUAGE = {"Geschäftsführer": "DE", "Directeur Commercial": "FR"}
_HONORIFICS = ("Dr.", "Prof.", "Dr. Ing.")
_SOURCES = ("fullenrich", "dealfront", "public_web")


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) derived from `parts` (stable across processes, unlike hash())."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def company_id_for(name: str) -> str:
    """A stable company id for a company name (the dataset only knows names)."""
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return str(100_000 + int.from_bytes(digest, "big") % 900_000)


def _spaced(e164: str) -> str:
    """'+4972150057501' -> '+49 721 50057501', the way the docs' example writes numbers."""
    parsed = phonenumbers.parse(e164, None)
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


class LeadfeederSimulator:
    """An ASGI app (`.app`, wrapped in the shared fault middleware) plus the state a test inspects."""

    def __init__(
        self,
        dataset: Dataset | None,
        *,
        api_key: str = DEFAULT_API_KEY,
        account_id: str = DEFAULT_ACCOUNT_ID,
        rate_per_second: float = 10,
        burst: int = 15,
        credits_available: int = 100_000,
        blacklist_share: float = 0.1,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_after: bool = False,
        error_style: Literal["flat", "list"] = "flat",
        auth_status: int = 403,
    ) -> None:
        self.dataset = dataset
        self.api_key = api_key
        self.account_id = account_id
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.credits_available = credits_available
        self.blacklist_share = blacklist_share
        self.clock = clock
        self.retry_after = retry_after
        self.error_style: Literal["flat", "list"] = error_style
        self.auth_status = auth_status
        self.malformed_ids: set[str] = set()
        self.meta_credits = True
        self.faults = faults if faults is not None else Faults()
        self.calls: Counter[str] = Counter()
        self.credits_charged = 0
        self.accessed: set[str] = set()  # "contact:<id>" / "company:<id>" records already paid for
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)
        self._lock = threading.Lock()  # the server runs in its own thread; tests read from theirs
        routes = [
            Route("/v1/accounts", self._accounts, methods=["GET"]),
            Route("/v1/contacts", self._contacts, methods=["GET"]),
            Route("/v1/contacts/{contact_id}", self._contact, methods=["GET"]),
        ]
        self.app = FaultInjector(Starlette(routes=routes), self.faults)

    # --- plumbing ---------------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        body: dict[str, Any]
        if self.error_style == "list":
            body = {"errors": [{"code": code, "title": message}], "meta": {"request_id": str(uuid.uuid4())}}
        else:
            body = {"code": code, "message": message}
        return self._respond(JSONResponse(body, status_code=status, headers=headers))

    def _respond(self, response: Response) -> Response:
        with self._lock:
            self.calls[f"status_{response.status_code}"] += 1
        return response

    def _take_token(self, key: str) -> float | None:
        """None if the request may pass, else the seconds until the bucket holds a token again."""
        with self._lock:
            now = self.clock()
            tokens, updated = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - updated) * self.rate_per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_second if self.rate_per_second > 0 else 60.0

    def _gate(self, request: Request, route: str) -> Response | None:
        """Auth, rate limit and account checks shared by every route; None when the request may go on."""
        with self._lock:
            self.calls[route] += 1
        key = request.headers.get("x-api-key")
        if not key:
            return self._error(self.auth_status, "missing_token", "Missing API key. Send it in X-Api-Key.")
        if key != self.api_key:
            return self._error(self.auth_status, "invalid_api_key", "The API key is invalid or was revoked.")
        wait = self._take_token(key)
        if wait is not None:
            headers = {"Retry-After": str(max(1, math.ceil(wait)))} if self.retry_after else None
            return self._error(
                429,
                "too_many_requests",
                "You've exceeded the maximum amount of allowed requests. Please try again later.",
                headers,
            )
        if route != "accounts" and request.query_params.get("account_id") != self.account_id:
            return self._error(
                404, "account_not_found", "Account not found, or this API key has no access to it."
            )
        return None

    def _meta(self, charged: int) -> dict[str, Any]:
        meta: dict[str, Any] = {"request_id": str(uuid.uuid4())}
        if self.meta_credits:
            meta["credits"] = {"charged": charged}
        return meta

    # --- data -------------------------------------------------------------------------------
    def person_for(self, vendor_id: str) -> Person | None:
        if self.dataset is None:
            return None
        cid = self.dataset.contact_for_leadfeeder_id(vendor_id)
        return None if cid is None else self.dataset.person(cid)

    def is_blacklisted(self, vendor_id: str, kind: str) -> bool:
        return _unit("blacklist", vendor_id, kind) < self.blacklist_share

    def contact_record(self, vendor_id: str, person: Person) -> dict[str, Any]:
        """The ContactV1 object for `person`, in the shape of the docs' example."""
        assert self.dataset is not None
        seed = self.dataset.contact(person.contact_id - 1)
        source = _SOURCES[int(_unit("source", vendor_id) * len(_SOURCES))]
        if person.garbage:
            emails = [{"address": "n/a", "source": source}]
            phones: list[dict[str, Any]] = [
                {"number": "not-a-number", "type": "mobile", "blacklisted": False, "source": source}
            ]
        else:
            emails = [{"address": person.work_email, "source": source}]
            phones = [
                {
                    "number": _spaced(number),
                    "type": kind,
                    "blacklisted": self.is_blacklisted(vendor_id, kind),
                    "source": source,
                }
                for number, kind in ((person.mobile, "mobile"), (person.direct, "landline"))
            ]
            if person.office is not None:
                # the company's switchboard, which Leadfeeder files as one more landline of the person
                phones.append(
                    {
                        "number": _spaced(person.office),
                        "type": "landline",
                        "blacklisted": self.is_blacklisted(vendor_id, "landline"),
                        "source": source,
                    }
                )
        honorific_pick = _unit("honorific", vendor_id)
        honorific = _HONORIFICS[int(honorific_pick * 10)] if honorific_pick < 0.3 else None
        attributes: dict[str, Any] = {
            "address": {
                "city": seed.city,
                "country_code": _COUNTRY_CODES.get(seed.country),
                "country": seed.country,
            },
            "affiliation": "employee",
            "custom_fields": {},
            "departments": [],
            "emails": emails,
            "first_name": person.first_name,
            "gender": None,
            "hierarchy_level": "employees",
            "last_name": person.last_name,
            "phones": phones,
            "position": {"title": person.title, "language_code": _TITLE_LANGUAGE.get(person.title, "EN")},
            "public_sources": [],
            "social_media_profiles": {
                "facebook": [],
                "instagram": [],
                "linkedin": [{"url": person.linkedin_url, "source": source}],
                "pinterest": [],
                "twitter": [],
                "xing": [],
                "youtube": [],
            },
            "title": honorific,
        }
        if vendor_id in self.malformed_ids:
            attributes["emails"] = {"address": person.work_email}  # an object where a list belongs
            attributes["phones"] = "n/a"
        return {
            "type": "contact",
            "id": vendor_id,
            "attributes": attributes,
            "relationships": {
                "company": {"id": company_id_for(person.company), "type": "company"},
                "lists": [],
                "buyer_personas": [],
            },
        }

    @staticmethod
    def company_record(person: Person) -> dict[str, Any]:
        domain = person.work_email.rpartition("@")[2]
        return {
            "type": "company",
            "id": company_id_for(person.company),
            "attributes": {"name": person.company, "domain": domain},
        }

    def _charge(self, records: Iterable[str]) -> int | None:
        """Charge one credit per record not accessed before; None (nothing charged) if credits run out."""
        with self._lock:
            new = {r for r in records if r not in self.accessed}
            if self.credits_charged + len(new) > self.credits_available:
                return None
            self.accessed |= new
            self.credits_charged += len(new)
            return len(new)

    def _found(self, ids: Iterable[str]) -> list[tuple[str, Person]]:
        found: list[tuple[str, Person]] = []
        for vendor_id in dict.fromkeys(ids):  # duplicates collapsed, order kept
            person = self.person_for(vendor_id)
            if person is not None:
                found.append((vendor_id, person))
        return found

    def _answer(self, found: list[tuple[str, Person]], include_company: bool) -> dict[str, Any] | Response:
        """The body for `found` after charging for it, or the error response when credits ran out."""
        records = [f"contact:{vid}" for vid, _ in found]
        if include_company:
            records += [f"company:{company_id_for(p.company)}" for _, p in found]
        charged = self._charge(records)
        if charged is None:
            return self._error(
                403, "insufficient_credits", "Not enough credits left on the account for this request."
            )
        data = [self.contact_record(vid, p) for vid, p in found]
        body: dict[str, Any] = {"data": data, "meta": self._meta(charged)}
        if include_company:
            companies = {company_id_for(p.company): self.company_record(p) for _, p in found}
            body["included"] = list(companies.values())
        return body

    # --- routes -----------------------------------------------------------------------------
    async def _accounts(self, request: Request) -> Response:
        refused = self._gate(request, "accounts")
        if refused is not None:
            return refused
        today = date.today()
        next_reset = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
        with self._lock:
            used = self.credits_charged
        account = {
            "type": "account",
            "id": self.account_id,
            "attributes": {
                "name": "Simulated account",
                "credits": {
                    "available": self.credits_available,
                    "used": used,
                    "remaining": max(0, self.credits_available - used),
                    "next_reset_on": next_reset.isoformat(),
                },
            },
        }
        return self._respond(JSONResponse({"data": [account], "meta": self._meta(0)}))

    async def _contacts(self, request: Request) -> Response:
        refused = self._gate(request, "contacts")
        if refused is not None:
            return refused
        raw = request.query_params.get("ids", "")
        ids = [i.strip() for i in raw.split(",") if i.strip()]
        if not ids:
            return self._error(400, "bad_request", "The ids parameter is required.")
        if len(ids) > MAX_IDS:
            return self._error(400, "bad_request", f"At most {MAX_IDS} ids per request.")
        include_company = "company" in request.query_params.get("include", "").split(",")
        return self._json(self._answer(self._found(ids), include_company))

    async def _contact(self, request: Request) -> Response:
        refused = self._gate(request, "contact")
        if refused is not None:
            return refused
        vendor_id = request.path_params["contact_id"]
        found = self._found([vendor_id])
        if not found:
            return self._error(404, "not_found", "Contact not found.")
        include_company = "company" in request.query_params.get("include", "").split(",")
        answer = self._answer(found, include_company)
        if isinstance(answer, dict):
            answer = {**answer, "data": answer["data"][0]}
        return self._json(answer)

    def _json(self, answer: Response | dict[str, Any]) -> Response:
        if isinstance(answer, Response):
            return answer
        return self._respond(JSONResponse(answer))
