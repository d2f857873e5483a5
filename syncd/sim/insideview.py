"""InsideView (Demandbase) API simulator: token login, Bulk Contact Fetch, Contact Details, Contact Details Job.

One ASGI app serves both hosts' paths (`login.insideview.com` and `api.insideview.com`), wrapped in the shared
`FaultInjector`. Everything documented in /work/shared/vendor-docs/insideview-*.txt is reproduced; where the
docs are silent the choices below are ours (marked ASSUMPTION), and the provider is tested against them.

Endpoints
- `POST /Auth/login/v1/token.json?clientId=&clientSecret=&grantType=cred` -> `{"accessTokenDetails":
  {"accessToken", "tokenType": "bearer", "expirationTime": "Tue, Jul 21, 2015 09:08:17 PM GMT"}}`; without
  `.json` the same as XML (`<accessTokenDetails>…`). Bad credentials -> 401, other grant types -> 400.
- Every `/api/...` call needs the `accessToken` header: missing, unknown or expired -> 401 (doc text).
- `POST /api/v1/contact/bulk` (Content-Type JSON, `{"contactIds": [...]}`, at most 50, duplicates collapsed):
  one entry per distinct id, in request order, `{"requestedContactId", "contact": {...}}` or
  `{"requestedContactId", "error": {"errorCode": "404-602" | "400-110", "errorMessage"}}`.
- `GET /api/v1/contact/{id}[?fields=a,b]`: the contact object itself; 404 / 400 with the doc's text.
- `POST /api/v1/contact/job` (text/plain or application/octet-stream; ids comma- or newline-separated,
  at most 10,000) -> `{"jobId", "status": "accepted", "type": "contacts"}`.
  `GET /api/v1/contact/job/{jobId}` -> `{"jobId", "status", "type", "totalProcessed"}`: "accepted" for the
  first fifth of `job_delay`, "processing" until `job_delay`, then "finished". Unknown job -> 404.
  `GET /api/v1/contact/job/{jobId}/results` -> CSV (see `CSV_COLUMNS`); before "finished" -> 400.

Content types: JSON when `Accept` names application/json, else XML (the API's documented default).

XML shapes (ASSUMPTION: the docs show only fragments such as `<titles><title>…</title></titles>`):

    <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
    <contactDetailsList>                                  (bulk; one <contactDetails> per requested id)
      <contactDetails>
        <requestedContactId>16000001</requestedContactId>
        <contact>
          <contactId>16000001</contactId> <firstName>…</firstName> … <active>true</active>
          <titles><title>CTO</title></titles>
          <sources><source>InsideView</source></sources>
          <emails><emailDetails><email>…</email><validationStatus>ValidEmail</validationStatus></emailDetails></emails>
        </contact>
      </contactDetails>
      <contactDetails>
        <requestedContactId>16000002</requestedContactId>
        <error><errorCode>404-602</errorCode><errorMessage>contact not found.</errorMessage></error>
      </contactDetails>
    </contactDetailsList>

  Single contact: `<contact>…</contact>`; job submit/status: `<BulkLeadEnrichmentStatus>` (as documented).

Job results CSV (ASSUMPTION: the results page of the docs could not be read). Header row, then one row per
*found* contact, in request order; ids that are not found are omitted (the client treats an absent id as
not found). Columns are the Contact Details field names, plus `requestedContactId` first so that a row
can be matched to its request; list fields (`titles`, `sources`) are joined with "|". The per-email list
`emails` is not in the CSV: `email` + `emailValidationStatus` carry the same information.

Credits (ASSUMPTION; contracts differ): 1 credit per contact returned by Bulk Contact Fetch or Contact
Details (not-found and invalid ids are free); a job charges 1 credit per found contact when it finishes
(downloading the results again is free).

Throttling (docs: counted per token over a window, 5 minutes at present; a throttled token is refused for
the rest of the window, and so are the account's other tokens): when `throttle_limit` is set, each token
gets a window of `throttle_window` seconds starting at its first request; the request that exceeds the
limit is answered 429 and so is every request of every token until that window ends. The real API's
`Retry-After` is unconfirmed: it is sent (whole seconds left in the window) only when
`throttle_retry_after` is true.

Test knobs (plain attributes, changeable while serving): `omit_ids` (ids left out of every answer),
`malformed_ids` (ids answered with a broken record), `force_xml` (answer XML whatever `Accept` says),
`xml_bomb` (bulk answers an entity-expansion document), `accept_tokens` (False: every API call -> 401),
`credit_quota` (400 "Insufficient transaction quota" once that many credits are charged).
"""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
import threading
import time
import xml.etree.ElementTree as ET  # building only; parsing is never done here
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from syncd.normalize import to_e164
from syncd.sim.dataset import Dataset, Person
from syncd.sim.faults import FaultInjector, Faults

MAX_BULK_IDS = 50
MAX_JOB_IDS = 10_000

NOT_FOUND = {"errorCode": "404-602", "errorMessage": "contact not found."}
INVALID_ID = {"errorCode": "400-110", "errorMessage": "Contact id is not valid."}
UNAUTHORIZED_TEXT = "Unauthorized Error - Cannot use API's without setting a valid accessToken in the header."
THROTTLED_TEXT = "Request is throttled."
QUOTA_TEXT = "Insufficient transaction quota available."

# Job results CSV header (see the module docstring).
CSV_COLUMNS = (
    "requestedContactId",
    "contactId",
    "firstName",
    "lastName",
    "fullName",
    "companyId",
    "companyName",
    "email",
    "emailValidationStatus",
    "confidenceScore",
    "phone",
    "phoneType",
    "corporatePhone",
    "titles",
    "linkedinHandle",
    "sources",
    "active",
)

# list field -> XML item element name
XML_ITEMS = {
    "titles": "title",
    "sources": "source",
    "emails": "emailDetails",
    "jobLevels": "jobLevel",
    "jobFunctions": "jobFunction",
    "jobLevelsV2": "jobLevelV2",
    "jobFunctionsV2": "jobFunctionV2",
    "education": "educationDetails",
}

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

XML_BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + "]>\n<contactDetailsList><contactDetails><requestedContactId>&lol9;</requestedContactId>"
    "</contactDetails></contactDetailsList>"
)

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_expiration(epoch: float) -> str:
    """The doc's expirationTime format, in GMT: 'Tue, Jul 21, 2015 09:08:17 PM GMT' (English names)."""
    d = datetime.fromtimestamp(epoch, UTC)
    hour12 = d.hour % 12 or 12
    half = "AM" if d.hour < 12 else "PM"
    return (
        f"{_DAYS[d.weekday()]}, {_MONTHS[d.month - 1]} {d.day:02d}, {d.year} "
        f"{hour12:02d}:{d.minute:02d}:{d.second:02d} {half} GMT"
    )


def spaced(e164: str) -> str:
    """'+12122100100' -> '+1 212 210 0100', the way the docs' examples write numbers."""
    import phonenumbers

    parsed = phonenumbers.parse(e164, None)
    text = str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
    return text.replace("-", " ")


class JobStatus:
    accepted = "accepted"
    processing = "processing"
    finished = "finished"


@dataclass
class Job:
    id: str
    ids: list[str]
    created: float
    charged: bool = False
    rows: list[dict[str, str]] | None = None  # computed when the job finishes


@dataclass
class _Window:
    start: float
    count: int = 0


@dataclass
class _State:
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch seconds)
    windows: dict[str, _Window] = field(default_factory=dict)
    blocked_until: float = 0.0


class InsideViewSimulator:
    def __init__(
        self,
        dataset: Dataset | None,
        *,
        client_id: str = "iv-demo-client",
        client_secret: str = "iv-demo-secret",  # noqa: S107 (the simulator's demo account)
        token_lifetime: float = 365 * 86400,
        throttle_limit: int | None = None,
        throttle_window: float = 300,
        throttle_retry_after: bool = False,
        job_delay: float = 0.5,
        max_running_jobs: int = 2,
        max_job_ids: int = MAX_JOB_IDS,
        credit_quota: int | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dataset = dataset or Dataset(0)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.throttle_limit = throttle_limit
        self.throttle_window = throttle_window
        self.throttle_retry_after = throttle_retry_after
        self.job_delay = job_delay
        self.max_running_jobs = max_running_jobs
        self.max_job_ids = max_job_ids
        self.credit_quota = credit_quota
        self.clock = clock
        self.faults = faults or Faults()
        # knobs (see the module docstring)
        self.omit_ids: set[str] = set()
        self.malformed_ids: set[str] = set()
        self.force_xml = False
        self.xml_bomb = False
        self.accept_tokens = True
        # observations
        self.calls: Counter[str] = Counter()
        self.credits_charged = 0
        self.jobs: dict[str, Job] = {}
        self.peak_running_jobs = 0
        self.throttled = 0  # 429s answered by the simulator itself (not by the fault injector)
        self.bulk_sizes: list[int] = []  # distinct ids per Bulk Contact Fetch that was answered
        self._state = _State()
        self._lock = threading.Lock()
        routes = [
            HttpRoute("/Auth/login/v1/token.json", self._token_json, methods=["POST"]),
            HttpRoute("/Auth/login/v1/token", self._token_xml, methods=["POST"]),
            HttpRoute("/api/v1/contact/bulk", self._bulk, methods=["POST"]),
            HttpRoute("/api/v1/contact/job", self._job_submit, methods=["POST"]),
            HttpRoute("/api/v1/contact/job/{job_id}", self._job_status, methods=["GET"]),
            HttpRoute("/api/v1/contact/job/{job_id}/results", self._job_results, methods=["GET"]),
            HttpRoute("/api/v1/contact/{contact_id}", self._contact, methods=["GET"]),
        ]
        self.starlette = Starlette(routes=routes)
        self.app = FaultInjector(self.starlette, self.faults)

    # --- helpers for tests ------------------------------------------------------------------
    @property
    def tokens(self) -> dict[str, float]:
        """Minted tokens and their expiry (epoch seconds)."""
        return self._state.tokens

    def expire_tokens(self) -> None:
        """Every token minted so far is expired from now on (clients see 401 and must mint again)."""
        now = self.clock()
        with self._lock:
            for token in self._state.tokens:
                self._state.tokens[token] = min(self._state.tokens[token], now - 1)

    def unblock(self) -> None:
        """End any throttling block and forget the per-token request counts."""
        with self._lock:
            self._state.windows.clear()
            self._state.blocked_until = 0.0

    def running_jobs(self) -> int:
        now = self.clock()
        with self._lock:
            jobs = list(self.jobs.values())
        return sum(1 for job in jobs if self._job_status_at(job, now) != JobStatus.finished)

    def insideview_id(self, contact_id: int) -> str | None:
        """The InsideView id of PBX contact `contact_id` (None unless its route is insideview)."""
        return self.dataset.person(contact_id).insideview_id

    # --- the contact record -----------------------------------------------------------------
    def contact_record(self, vendor_id: str) -> dict[str, Any] | None:
        """The Contact Details object for `vendor_id`, or None when InsideView does not know it."""
        cid = self.dataset.contact_for_insideview_id(vendor_id)
        if cid is None:
            return None
        person = self.dataset.person(cid)
        if person.insideview_id is None:
            return None
        if vendor_id in self.malformed_ids:
            # a broken record: id is not a number, titles is not a list, names are not strings
            return {"contactId": "corrupted", "firstName": 17, "titles": 42, "emails": "oops"}
        return self._record(person, cid)

    def _record(self, person: Person, cid: int) -> dict[str, Any]:
        assert person.insideview_id is not None
        verified = "ValidEmail" if person.email_verified else "ValidDomain"
        if person.garbage:
            email, direct, corporate = "n/a", "not-a-number", "not-a-number"
        else:
            email = person.work_email
            direct = spaced(person.direct)
            corporate = self._corporate_phone(cid) or direct
        company_id = 1_000_000 + zlib.crc32(person.company.encode()) % 9_000_000
        confidence = round(0.55 + (cid * 37 % 45) / 100, 2)
        return {
            "contactId": int(person.insideview_id),
            "firstName": person.first_name,
            "lastName": person.last_name,
            "fullName": person.full_name,
            "imageUrl": "",
            "companyId": company_id,
            "companyName": person.company,
            "email": email,
            "emailValidationStatus": verified,
            "emails": [{"email": email, "validationStatus": verified}],
            "phone": direct,
            "phoneType": "DIRECT",
            "corporatePhone": corporate,
            "twitterHandle": "",
            "linkedinHandle": person.linkedin_url,
            "active": True,
            "peopleId": f"P{zlib.crc32(person.insideview_id.encode()):08x}{cid:x}",
            "confidenceScore": confidence,
            "sources": ["InsideView"],
            "titles": [person.title],
        }

    def _corporate_phone(self, cid: int) -> str | None:
        """The switchboard: the number the PBX holds as business_number, as InsideView would write it."""
        raw = self.dataset.contact(cid - 1).numbers.get("business_number")
        e164 = to_e164(raw, "US") if raw else None
        return spaced(e164) if e164 else None

    # --- auth, throttling, credits ----------------------------------------------------------
    def _check(self, request: Request) -> Response | None:
        """401 for a bad token, 429 when throttled; None when the call may proceed."""
        token = request.headers.get("accessToken", "")
        now = self.clock()
        with self._lock:
            expiry = self._state.tokens.get(token)
            if not token or expiry is None or expiry <= now or not self.accept_tokens:
                return Response(UNAUTHORIZED_TEXT, 401, media_type="text/plain")
            if self.throttle_limit is None:
                return None
            state = self._state
            if now < state.blocked_until:
                return self._throttled(state.blocked_until - now)
            window = state.windows.get(token)
            if window is None or now >= window.start + self.throttle_window:
                window = state.windows[token] = _Window(start=now)
            window.count += 1
            if window.count > self.throttle_limit:
                # the whole account is refused until this token's window ends
                state.blocked_until = window.start + self.throttle_window
                state.windows.clear()
                return self._throttled(state.blocked_until - now)
        return None

    def _throttled(self, remaining: float) -> Response:
        self.throttled += 1
        headers = {"Retry-After": str(max(1, math.ceil(remaining)))} if self.throttle_retry_after else {}
        return Response(THROTTLED_TEXT, 429, headers=headers, media_type="text/plain")

    def _out_of_quota(self, wanted: int = 1) -> bool:
        return self.credit_quota is not None and self.credits_charged + wanted > self.credit_quota

    # --- rendering ----------------------------------------------------------------------------
    def _wants_json(self, request: Request) -> bool:
        return not self.force_xml and "application/json" in request.headers.get("accept", "").lower()

    def _render(self, request: Request, payload: Any, root: str, status: int = 200) -> Response:
        if self._wants_json(request):
            return Response(json.dumps(payload), status, media_type="application/json")
        return Response(to_xml(root, payload), status, media_type="application/xml")

    # --- endpoints ----------------------------------------------------------------------------
    async def _token_json(self, request: Request) -> Response:
        return self._token(request, as_json=True)

    async def _token_xml(self, request: Request) -> Response:
        return self._token(request, as_json=False)

    def _token(self, request: Request, *, as_json: bool) -> Response:
        self.calls["token"] += 1
        q = request.query_params
        if q.get("grantType") != "cred":
            return Response("grantType must be cred", 400, media_type="text/plain")
        if not (
            secrets.compare_digest(q.get("clientId", ""), self.client_id)
            and secrets.compare_digest(q.get("clientSecret", ""), self.client_secret)
        ):
            return Response("Unauthorized Error - invalid client credentials.", 401, media_type="text/plain")
        token = secrets.token_urlsafe(32)
        expiry = self.clock() + self.token_lifetime
        with self._lock:
            self._state.tokens[token] = expiry
        details = {"accessToken": token, "tokenType": "bearer", "expirationTime": format_expiration(expiry)}
        if as_json:
            return Response(json.dumps({"accessTokenDetails": details}), media_type="application/json")
        return Response(to_xml("accessTokenDetails", details), media_type="application/xml")

    async def _bulk(self, request: Request) -> Response:
        self.calls["bulk"] += 1
        if (refused := self._check(request)) is not None:
            return refused
        if "json" not in request.headers.get("content-type", "").lower():
            return Response(
                "The Content-Type mandatory header is not provided.", 415, media_type="text/plain"
            )
        try:
            body = json.loads(await request.body())
        except ValueError:
            return Response("Validation of input data failed.", 400, media_type="text/plain")
        raw_ids = body.get("contactIds") if isinstance(body, dict) else None
        if not isinstance(raw_ids, list) or not raw_ids:
            return Response("Validation of input data failed: contactIds.", 400, media_type="text/plain")
        if len(raw_ids) > MAX_BULK_IDS:
            return Response(
                f"Validation of input data failed: at most {MAX_BULK_IDS} contactIds.",
                400,
                media_type="text/plain",
            )
        ids = list(dict.fromkeys(str(i) for i in raw_ids))  # duplicates: only one is accepted
        if self.xml_bomb:
            return Response(XML_BOMB, media_type="application/xml")
        entries: list[dict[str, Any]] = []
        found = 0
        for vid in ids:
            if vid in self.omit_ids:
                continue
            if not vid.isdigit():
                entries.append({"requestedContactId": vid, "error": dict(INVALID_ID)})
                continue
            record = self.contact_record(vid)
            if record is None:
                entries.append({"requestedContactId": vid, "error": dict(NOT_FOUND)})
            else:
                entries.append({"requestedContactId": vid, "contact": record})
                found += 1
        with self._lock:
            if self._out_of_quota(found):
                return Response(QUOTA_TEXT, 400, media_type="text/plain")
            self.credits_charged += found  # 1 credit per contact returned (ASSUMPTION, see docstring)
        self.bulk_sizes.append(len(ids))
        return self._render(request, entries, "contactDetailsList")

    async def _contact(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        if contact_id in {"bulk", "job"}:
            return Response("Method Not Allowed", 405, media_type="text/plain")
        self.calls["contact"] += 1
        if (refused := self._check(request)) is not None:
            return refused
        if not contact_id.isdigit():
            return Response("Contact Id is not valid.", 400, media_type="text/plain")
        record = None if contact_id in self.omit_ids else self.contact_record(contact_id)
        if record is None:
            return Response(
                "Invalid ID, record not present. Contact not present.", 404, media_type="text/plain"
            )
        with self._lock:
            if self._out_of_quota():
                return Response(QUOTA_TEXT, 400, media_type="text/plain")
            self.credits_charged += 1
        fields = request.query_params.get("fields")
        if fields:
            wanted = {f.strip() for f in fields.split(",")} | {"contactId"}
            record = {k: v for k, v in record.items() if k in wanted}
        return self._render(request, record, "contact")

    async def _job_submit(self, request: Request) -> Response:
        self.calls["job_submit"] += 1
        if (refused := self._check(request)) is not None:
            return refused
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in {"text/plain", "application/octet-stream"}:
            return Response(
                "The Content-Type mandatory header is not provided.", 415, media_type="text/plain"
            )
        text = (await request.body()).decode("utf-8", errors="replace")
        ids = [part.strip() for part in text.replace("\r", "\n").replace(",", "\n").split("\n")]
        ids = [i for i in ids if i]
        if not ids:
            return Response("Validation of input data failed: no contact ids.", 400, media_type="text/plain")
        if len(ids) > self.max_job_ids:
            return Response(
                f"Validation of input data failed: at most {self.max_job_ids} contact ids.",
                400,
                media_type="text/plain",
            )
        bad = next((i for i in ids if not i.isdigit()), None)
        if bad is not None:
            return Response(
                "Validation of input data failed: contact id is not valid.", 400, media_type="text/plain"
            )
        if self._out_of_quota():
            return Response(QUOTA_TEXT, 400, media_type="text/plain")
        now = self.clock()
        with self._lock:
            self._settle_jobs(now)
            running = sum(1 for j in self.jobs.values() if self._job_status_at(j, now) != JobStatus.finished)
            if running >= self.max_running_jobs:
                return Response(
                    f"{running} jobs are already running. Please wait for a job to finish "
                    "before submitting a new one.",
                    400,
                    media_type="text/plain",
                )
            job = Job(id=_job_id(), ids=list(dict.fromkeys(ids)), created=now)
            self.jobs[job.id] = job
            self.peak_running_jobs = max(self.peak_running_jobs, running + 1)
        payload = {"jobId": job.id, "status": JobStatus.accepted, "type": "contacts"}
        return self._render(request, payload, "BulkLeadEnrichmentStatus")

    async def _job_status(self, request: Request) -> Response:
        self.calls["job_status"] += 1
        if (refused := self._check(request)) is not None:
            return refused
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return Response("Job not found.", 404, media_type="text/plain")
        now = self.clock()
        with self._lock:
            self._settle_jobs(now)
        status = self._job_status_at(job, now)
        if status == JobStatus.finished:
            processed = len(job.ids)
        elif status == JobStatus.processing:
            processed = min(len(job.ids) - 1, int(len(job.ids) * (now - job.created) / self.job_delay))
        else:
            processed = 0
        payload = {"jobId": job.id, "status": status, "type": "contacts", "totalProcessed": processed}
        return self._render(request, payload, "BulkLeadEnrichmentStatus")

    async def _job_results(self, request: Request) -> Response:
        self.calls["job_results"] += 1
        if (refused := self._check(request)) is not None:
            return refused
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return Response("Job not found.", 404, media_type="text/plain")
        now = self.clock()
        with self._lock:
            self._settle_jobs(now)
        if job.rows is None:
            return Response("Job is not finished yet.", 400, media_type="text/plain")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(job.rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")

    # --- jobs -------------------------------------------------------------------------------
    def _job_status_at(self, job: Job, now: float) -> str:
        elapsed = now - job.created
        if elapsed >= self.job_delay:
            return JobStatus.finished
        if elapsed >= self.job_delay / 5:
            return JobStatus.processing
        return JobStatus.accepted

    def _settle_jobs(self, now: float) -> None:
        """Compute the results of, and charge for, every job that has finished by `now` (lock held)."""
        for job in self.jobs.values():
            if job.charged or self._job_status_at(job, now) != JobStatus.finished:
                continue
            rows: list[dict[str, str]] = []
            for vid in job.ids:
                if vid in self.omit_ids:
                    continue
                record = self.contact_record(vid)
                if record is not None:
                    rows.append(csv_row(vid, record))
            job.rows = rows
            job.charged = True
            self.credits_charged += len(rows)  # 1 credit per found contact (ASSUMPTION)


def _job_id() -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuv"
    return "".join(secrets.choice(alphabet) for _ in range(20))


def csv_row(requested: str, record: Mapping[str, Any]) -> dict[str, str]:
    row: dict[str, str] = {"requestedContactId": requested}
    for column in CSV_COLUMNS[1:]:
        value = record.get(column)
        if value is None:
            row[column] = ""
        elif isinstance(value, bool):
            row[column] = "true" if value else "false"
        elif isinstance(value, list):
            row[column] = "|".join(str(v) for v in value)
        else:
            row[column] = str(value)
    return row


def to_xml(root: str, payload: Any) -> str:
    """Render a JSON-shaped payload as the XML described in the module docstring."""
    element = ET.Element(root)
    if isinstance(payload, list):
        item = "contactDetails" if root == "contactDetailsList" else XML_ITEMS.get(root, "item")
        for entry in payload:
            _fill(ET.SubElement(element, item), entry)
    else:
        _fill(element, payload)
    return XML_DECLARATION + ET.tostring(element, encoding="unicode")


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if sub is None:
                continue
            if isinstance(sub, list):
                container = ET.SubElement(element, key)
                _fill_list(container, XML_ITEMS.get(key, "item"), sub)
            else:
                _fill(ET.SubElement(element, key), sub)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)


def _fill_list(container: ET.Element, item: str, values: Iterable[Any]) -> None:
    for value in values:
        _fill(ET.SubElement(container, item), value)
