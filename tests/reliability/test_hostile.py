"""Hostile and malformed answers from every service, generated with hypothesis.

Each service's client talks to its real simulator through an `httpx.MockTransport` that hands every
request to the simulator's ASGI app and then, as hypothesis decides, damages the answer before the client
sees it: a value anywhere in the document replaced (wrong types, missing, huge, NaN, unicode digits,
nesting), keys dropped, the body truncated, another status, another or no content type, an HTML error
page with 200, random bytes, absurdly deep JSON, XML entity bombs, unexpected errcodes. The flows are the
ones syncd runs: PBX login, paging, query, get, update, phonebooks, revoke; InsideView login, bulk and
jobs (JSON, XML, CSV); Leadfeeder's batches; ContactOut's matching, refresh (single, v1, v2) and verifier.

Whatever arrives, the client
- returns, or raises one of the documented errors (`ServiceError` and its subclasses: AuthError,
  OutOfCredits, ServiceUnavailable, MalformedResponse), naming the service: never anything else;
- yields no malformed value: every email passes `clean_email`, every phone `to_e164`, one result per
  request, errors with a reason;
- logs only well-formed JSON events, without any secret or token.
And a whole sync run against damaged answers of all four services stores and writes none of them.

`SYNCD_HOSTILE_EXAMPLES` scales the number of examples (default 1 = the CI budget).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from syncd.config import parse_config
from syncd.engine import SyncEngine
from syncd.errors import ServiceError
from syncd.http import HttpSettings
from syncd.logs import configure_logging
from syncd.model import Contact, EnrichmentResult, LookupRequest, NumberSlot, Outcome, Vendor
from syncd.normalize import clean_email, to_e164
from syncd.pbx.client import YeastarClient
from syncd.remark import TITLE_MAX, title_in
from syncd.sim.contactout import ContactOutSimulator
from syncd.sim.dataset import Dataset, Route
from syncd.sim.insideview import InsideViewSimulator
from syncd.sim.launch import CO_TOKEN, IV_CLIENT_ID, IV_SECRET, LF_ACCOUNT, LF_KEY, PBX_CLIENT_ID, PBX_SECRET
from syncd.sim.leadfeeder import LeadfeederSimulator
from syncd.sim.pbx import PbxSimulator
from syncd.store import Link, StateStore
from syncd.vendors.base import Provider
from syncd.vendors.contactout import ContactOutProvider
from syncd.vendors.insideview import InsideViewProvider
from syncd.vendors.leadfeeder import LeadfeederProvider
from tests.reliability.site import add_figure, add_secret, scan, scanned_on_the_spot

SCALE = int(os.environ.get("SYNCD_HOSTILE_EXAMPLES", "1"))
SIZE = 24
DATASET = Dataset(SIZE)
REGION = "US"

TRIED: Counter[str] = Counter()  # examples run, by service
DAMAGED: Counter[str] = Counter()  # damaged answers served, by damage


# Shrinking a case with megabyte bodies can take minutes: off unless asked for
PHASES = (
    tuple(Phase)
    if os.environ.get("SYNCD_HOSTILE_SHRINK")
    else (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.explain)
)


def hypothesis_settings(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        phases=PHASES,
        deadline=None,
        derandomize=True,  # the same cases on every CI run; raise SYNCD_HOSTILE_EXAMPLES to explore
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# --- damaging an answer ---------------------------------------------------------------------------

HUGE = "x" * 1_000_000
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    10**400,  # parses as a Python int, overflows float()
    1.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    "",
    " ",
    "null",
    "²³",  # str.isdigit() is true, int() refuses it
    "٣٤٥",  # Arabic-Indic digits: int() takes them
    "\x00",
    "<html><body>oops</body></html>",
    "a@b",
    "@",
    "+",
    "1" * 40,
    "x" * 5000,
    "Tue, Jul 21, 2015 09:08:17 PM GMT",
    "9999-12-31T23:59:59",
    [],
    {},
    [None],
    {"": None},
    [[[]]],
]
JSON_LEAF = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
STATUSES = [200, 201, 204, 301, 400, 401, 402, 403, 404, 405, 409, 415, 422, 429, 500, 502, 503]
CONTENT_TYPES = ["text/html", "text/plain", "application/xml", "", "application/octet-stream", "text/csv"]
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
XML_BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b"<contactDetailsList><contact><contactId>&lol3;</contactId></contact></contactDetailsList>"
)
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
DEEP_XML = b"<a>" * 50_000 + b"</a>" * 50_000

JSON_OPS = ["replace", "replace", "replace", "delete", "wrap", "huge"]
WHOLE_OPS = [
    "truncate",
    "truncate",
    "status",
    "content_type",
    "html",
    "garbage",
    "empty",
    "deep",
    "bomb",
    "retry_after",
    "lines",
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def edit_at(doc: Any, path: tuple[Any, ...], edit: Callable[[Any, Any], None], new: Any) -> Any:
    """A copy of `doc` with `edit(parent, key)` applied at `path` (the root is replaced by `new`)."""
    if not path:
        return new
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    edit(parent, path[-1])
    return doc


@dataclass(frozen=True)
class Step:
    """One damaging operation with every choice it needs, drawn before any request is served.

    Choices that depend on the answer (where in the document, where to cut) are fractions, turned into a
    position only when the answer is known."""

    op: str
    where: float = 0.0  # the JSON path, the truncation point, the junk line's position: a fraction
    value: Any = None  # the replacing JSON value
    status: int = 200
    content_type: str = ""
    garbage: bytes = b""
    retry_after: str = ""
    lines: str = "drop_first"


FRACTION = st.floats(0, 1, exclude_max=True)


@st.composite
def steps(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Step:
    op = draw(st.sampled_from([*JSON_OPS, *WHOLE_OPS]))
    where = draw(FRACTION)
    if op == "replace":
        return Step(op, where, value=draw(JSON_ANY))
    if op == "status":
        return Step(op, where, status=draw(st.sampled_from(STATUSES)))
    if op == "content_type":
        return Step(op, where, content_type=draw(st.sampled_from(CONTENT_TYPES)))
    if op == "garbage":
        return Step(op, where, garbage=draw(st.binary(max_size=64)))
    if op == "retry_after":
        value = draw(st.sampled_from(["0", "-5", "nan", "1e9", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"]))
        return Step(op, where, status=draw(st.sampled_from([429, 503])), retry_after=value)
    if op == "lines":
        return Step(op, where, lines=draw(st.sampled_from(["drop_first", "repeat", "reverse", "junk"])))
    return Step(op, where)


def position(fraction: float, count: int) -> int:
    """The index in `range(count)` a drawn fraction stands for."""
    return min(count - 1, int(fraction * count)) if count > 0 else 0


PLAN_SIZE = 8  # answers with a plan of their own; later answers reuse the plan


class Damage:
    """Damages what a simulator sent, answer by answer, following a plan drawn up front.

    Everything is drawn before the flow starts, because the flows serve answers concurrently and a
    replay would otherwise draw in another order (hypothesis: FlakyStrategyDefinition). The plan is
    keyed by the request (method, path, and how many times that request was made before), not by the
    order in which concurrent answers happen to arrive, so a replay damages the same answers."""

    def __init__(self, plan: Sequence[tuple[Step, ...]]) -> None:
        self.plan = list(plan) or [()]
        self.seen: Counter[str] = Counter()
        self.served = 0

    @classmethod
    def drawn(cls, data: st.DataObject, *, rate: int = 2) -> Damage:
        """A plan that damages one answer in `rate` on average."""
        answer = st.integers(1, rate).flatmap(
            lambda hit: st.lists(steps(), min_size=1, max_size=3).map(tuple) if hit == 1 else st.just(())
        )
        return cls(data.draw(st.lists(answer, min_size=PLAN_SIZE, max_size=PLAN_SIZE), label="damage plan"))

    def steps_for(self, request: httpx.Request) -> tuple[Step, ...]:
        key = f"{request.method} {request.url.host}{request.url.path}"
        nth = self.seen[key]
        self.seen[key] += 1
        digest = hashlib.sha256(f"{key} {nth}".encode()).digest()
        return self.plan[int.from_bytes(digest[:4], "big") % len(self.plan)]

    def __call__(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        plan = self.steps_for(request)
        if not plan:
            return response
        status = response.status_code
        headers = {"content-type": response.headers.get("content-type", "")}
        body = response.content
        for step in plan:
            status, headers, body = self._apply(step, status, headers, body)
            DAMAGED[step.op] += 1
        self.served += 1
        return httpx.Response(status, headers=headers, content=body)

    def _apply(
        self, step: Step, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        op = step.op
        if op in JSON_OPS:
            try:
                doc = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                op = "truncate"  # not JSON (XML, CSV, text): damage the bytes instead
            else:
                return status, headers, self._json_op(step, doc)
        if op == "truncate":
            return status, headers, body[: position(step.where, len(body))]
        if op == "status":
            return step.status, headers, body
        if op == "content_type":
            return status, {"content-type": step.content_type}, body
        if op == "html":
            return 200, {"content-type": "text/html"}, HTML_PAGE
        if op == "garbage":
            return status, headers, step.garbage
        if op == "empty":
            return status, headers, b""
        if op == "deep":
            xml = "xml" in headers.get("content-type", "")
            return status, headers, DEEP_XML if xml else DEEP_JSON
        if op == "bomb":
            return status, {"content-type": "application/xml"}, XML_BOMB
        if op == "retry_after":
            return step.status, {**headers, "retry-after": step.retry_after}, body
        # "lines": shuffle, drop or repeat lines (CSV job results, XML, pretty JSON)
        lines = body.split(b"\n")
        if step.lines == "drop_first":
            lines = lines[1:]
        elif step.lines == "repeat":
            lines = lines + lines[1:]
        elif step.lines == "reverse":
            lines.reverse()
        else:
            lines.insert(position(step.where, len(lines) + 1), b'"unterminated,quote\x00,\xff\xfe')
        return status, headers, b"\n".join(lines)

    def _json_op(self, step: Step, doc: Any) -> bytes:
        every = list(paths(doc))
        where = every[position(step.where, len(every))]
        if step.op == "replace":
            value = step.value
            doc = edit_at(doc, where, lambda parent, key: parent.__setitem__(key, value), value)
        elif step.op == "delete":

            def drop(parent: Any, key: Any) -> None:
                del parent[key]

            doc = edit_at(doc, where, drop, None)
        elif step.op == "wrap":

            def wrap(parent: Any, key: Any) -> None:
                parent[key] = [parent[key]]

            doc = edit_at(doc, where, wrap, [doc])
        else:  # huge: a 1 MB string where the value was

            def huge(parent: Any, key: Any) -> None:
                parent[key] = HUGE

            doc = edit_at(doc, where, huge, HUGE)
        return json.dumps(doc, allow_nan=True).encode()


def hostile_transport(app: Any, damage: Damage) -> httpx.MockTransport:
    """Every request goes to the simulator's ASGI `app`; its answer may be damaged on the way back."""
    upstream = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))

    async def handle(request: httpx.Request) -> httpx.Response:
        response = await upstream.handle_async_request(request)
        content = await response.aread()
        clean = httpx.Response(response.status_code, headers=response.headers, content=content)
        return damage(request, clean)

    return httpx.MockTransport(handle)


def test_damage_follows_the_request_not_the_order_answers_arrive_in() -> None:
    """Concurrent answers arrive in any order: the k-th answer to a request gets the same damage."""
    plan = [(Step("status", status=503),), (), (Step("truncate", where=0.5),), (Step("html"),), ()]
    requests = [httpx.Request("POST", f"http://sim.test/batch/{n % 3}", content=b"{}") for n in range(9)]

    def serve(order: Sequence[int]) -> dict[int, list[tuple[int, bytes]]]:
        damage = Damage(plan)
        by_path: dict[int, list[tuple[int, bytes]]] = {0: [], 1: [], 2: []}
        for n in order:
            answer = damage(requests[n], httpx.Response(200, json={"path": n % 3, "padding": "x" * 20}))
            by_path[n % 3].append((answer.status_code, answer.content))
        return by_path

    forward = serve(range(9))
    assert serve(range(8, -1, -1)) == forward
    assert serve([4, 0, 8, 2, 6, 1, 5, 3, 7]) == forward
    undamaged = (200, httpx.Response(200, json={"path": 0, "padding": "x" * 20}).content)
    assert any(
        answer[0] != 200 or len(answer[1]) != len(undamaged[1]) for a in forward.values() for answer in a
    )


def http(service: str) -> HttpSettings:
    """Settings for a test client: two attempts, no real waiting on retries or Retry-After."""
    return HttpSettings(
        service=service,
        base_url=f"http://{service}.test",
        timeout=5.0,
        max_attempts=2,
        backoff_base=0.0001,
        backoff_cap=0.001,
        max_retry_after=0.01,
    )


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


# --- what the client may do ------------------------------------------------------------------------

LOG = io.StringIO()


@pytest.fixture(scope="module", autouse=True)
def json_logs() -> Iterator[None]:
    configure_logging(json=True, verbosity=2, stream=LOG)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    yield
    configure_logging(json=True, verbosity=1)


def check_logs(secrets: Sequence[str]) -> None:
    text = LOG.getvalue()
    LOG.seek(0)
    LOG.truncate()
    for line in text.splitlines():
        if line.strip().startswith("{"):
            json.loads(line)  # every event is one well-formed JSON line
    leaked = scan(text, secrets) + scanned_on_the_spot(text)
    assert not leaked, f"a secret or token reached the log: {[s[:6] + '…' for s in leaked]}"


def check_error(exc: BaseException, service: str) -> None:
    assert isinstance(exc, ServiceError), f"undocumented exception escaped: {type(exc).__name__}: {exc!r}"
    if service != "run":  # a whole run may stop on any service's error
        assert exc.service.startswith(service), exc
    assert str(exc).strip(), "an error without a message"


def check_results(results: Any, requests: Sequence[LookupRequest], vendor: Vendor) -> None:
    assert isinstance(results, list) and len(results) == len(requests), "one result per request"
    wanted = Counter(r.contact_id for r in requests)
    assert Counter(r.contact_id for r in results) == wanted, "results for other contacts"
    for result in results:
        assert isinstance(result, EnrichmentResult) and result.vendor is vendor
        assert isinstance(result.outcome, Outcome)
        assert isinstance(result.credits, int) and result.credits >= 0
        if result.outcome is Outcome.error:
            assert result.error, "an error result without a reason"
        for email in result.emails:
            assert clean_email(email.address) == email.address, f"malformed email yielded: {email.address!r}"
        for phone in result.phones:
            assert to_e164(phone.number, REGION) == phone.number, f"malformed phone yielded: {phone.number!r}"
        for text in (result.title, result.company, result.full_name, result.vendor_id):
            assert text is None or isinstance(text, str)
        if result.match_confidence is not None:
            assert not math.isnan(result.match_confidence)


def check_contact(contact: Any) -> None:
    assert isinstance(contact, Contact) and isinstance(contact.id, int)
    for text in (contact.name, contact.company, contact.email, contact.remark):
        assert isinstance(text, str)
    for slot, number in contact.numbers:
        assert isinstance(slot, NumberSlot) and isinstance(number, str)
    assert all(isinstance(p, int) for p in contact.phonebook_ids)


def run_flow(service: str, flow: Awaitable[None], secrets: Sequence[str]) -> None:
    TRIED[service] += 1
    try:
        asyncio.run(asyncio.wait_for(flow, timeout=60))
    except ServiceError as exc:
        check_error(exc, service)
    finally:
        check_logs(secrets)


def persons(route: Route) -> list[int]:
    return [cid for cid in range(1, SIZE + 1) if DATASET.route(cid) is route]


def request_for(cid: int, vendor_id: str | None = None, *, with_contact_data: bool = True) -> LookupRequest:
    seed = DATASET.contact(cid - 1)
    return LookupRequest(
        contact_id=cid,
        name=f"{seed.first_name} {seed.last_name}",
        company=seed.company,
        email=seed.email if with_contact_data else "",
        phones=tuple(seed.numbers.values()) if with_contact_data else (),
        vendor_id=vendor_id,
    )


# --- the PBX -----------------------------------------------------------------------------------------


@hypothesis_settings(120)
@given(data=st.data())
def test_pbx_client_survives_hostile_answers(data: st.DataObject) -> None:
    sim = PbxSimulator(DATASET, client_id=PBX_CLIENT_ID, client_secret=PBX_SECRET)
    damage = Damage.drawn(data)
    minted: list[str] = []
    mint = sim._mint

    def recording() -> bytes:
        body = mint()
        token = json.loads(body)
        minted.extend((token["access_token"], token["refresh_token"]))
        return body

    sim._mint = recording  # type: ignore[method-assign]

    async def flow() -> None:
        client = YeastarClient(
            http("pbx"), PBX_CLIENT_ID, PBX_SECRET, transport=hostile_transport(sim.app, damage)
        )
        try:
            pages = 0
            async for page in client.iter_contact_pages(10):
                for contact in page:
                    check_contact(contact)
                pages += 1
                if pages > 12:  # a PBX whose pages never end: not this test's subject
                    break
            held = await client.query_contacts(range(1, 16))
            assert all(isinstance(k, int) for k in held)
            for contact in held.values():
                check_contact(contact)
            one = await client.get_contact(3)
            if one is not None:
                check_contact(one)
            sim.expire_tokens()
            await client.update_contact(3, {"email": "new.person@example.com"})
            books = await client.phonebook_ids(["Customers", "VIP"])
            assert all(isinstance(k, str) and isinstance(v, int) for k, v in books.items())
        finally:
            await client.close(revoke=True)

    run_flow("pbx", flow(), [PBX_SECRET, *minted])
    DAMAGED["answers"] += damage.served


# --- InsideView -------------------------------------------------------------------------------------

IV_IDS = {cid: str(DATASET.person(cid).insideview_id) for cid in persons(Route.insideview)}


@hypothesis_settings(120)
@given(data=st.data())
def test_insideview_provider_survives_hostile_answers(data: st.DataObject) -> None:
    sim = InsideViewSimulator(DATASET, client_id=IV_CLIENT_ID, client_secret=IV_SECRET, job_delay=0)
    sim.force_xml = data.draw(st.booleans())
    damage = Damage.drawn(data)
    transport = hostile_transport(sim.app, damage)
    cids = sorted(IV_IDS)
    requests = [request_for(cid, IV_IDS[cid]) for cid in cids]
    requests.append(request_for(persons(Route.leadfeeder)[0], IV_IDS[cids[0]]))  # an id shared by two
    requests.append(request_for(persons(Route.unknown)[0], "16000999"))  # an id InsideView lacks
    use_jobs = data.draw(st.booleans())

    async def flow() -> None:
        provider = InsideViewProvider(
            api=http("insideview"),
            login=http("insideview-login"),
            client_id=IV_CLIENT_ID,
            client_secret=IV_SECRET,
            job_threshold=3 if use_jobs else 2000,
            job_poll_initial=0.001,
            job_poll_max=0.002,
            job_timeout=2.0,
            job_max_ids=5,
            api_transport=transport,
            login_transport=transport,
            sleep=no_sleep,
        )
        try:
            check_results(await provider.lookup(requests), requests, Vendor.insideview)
        finally:
            await provider.aclose()

    run_flow("insideview", flow(), [IV_SECRET, *sim.tokens])
    DAMAGED["answers"] += damage.served


# --- Leadfeeder -------------------------------------------------------------------------------------

LF_IDS = {cid: str(DATASET.person(cid).leadfeeder_id) for cid in persons(Route.leadfeeder)}


@hypothesis_settings(120)
@given(data=st.data())
def test_leadfeeder_provider_survives_hostile_answers(data: st.DataObject) -> None:
    sim = LeadfeederSimulator(DATASET, api_key=LF_KEY, account_id=LF_ACCOUNT)
    sim.meta_credits = data.draw(st.booleans())
    damage = Damage.drawn(data)
    requests = [request_for(cid, vid) for cid, vid in sorted(LF_IDS.items())]
    requests.append(request_for(persons(Route.insideview)[0], requests[0].vendor_id))
    requests.append(request_for(persons(Route.unknown)[0], "3200099999"))
    include_company = data.draw(st.booleans())

    async def flow() -> None:
        provider = LeadfeederProvider(
            http("leadfeeder"),
            LF_KEY,
            LF_ACCOUNT,
            transport=hostile_transport(sim.app, damage),
            include_company=include_company,
        )
        try:
            check_results(await provider.lookup(requests), requests, Vendor.leadfeeder)
        finally:
            await provider.aclose()

    run_flow("leadfeeder", flow(), [LF_KEY])
    DAMAGED["answers"] += damage.served


# --- ContactOut -------------------------------------------------------------------------------------


@hypothesis_settings(120)
@given(data=st.data())
def test_contactout_provider_survives_hostile_answers(data: st.DataObject) -> None:
    sim = ContactOutSimulator(
        DATASET, token=CO_TOKEN, batch_delay=0, general_per_minute=10**6, search_per_minute=10**6
    )
    damage = Damage.drawn(data)
    refresh = data.draw(st.booleans())
    if refresh:
        requests = [request_for(cid, DATASET.person(cid).linkedin_url) for cid in range(1, SIZE + 1)]
    else:
        requests = [request_for(cid, with_contact_data=cid % 2 == 0) for cid in range(1, SIZE + 1)]
    verify_emails = data.draw(st.booleans())
    batch_mode = data.draw(st.sampled_from(["auto", "v1", "v2", "single"]))
    contact_fetch = data.draw(st.sampled_from(["after_match", "inline"]))

    async def flow() -> None:
        provider = ContactOutProvider(
            http("contactout"),
            CO_TOKEN,
            checker_rate=None,
            verify_emails=verify_emails,
            batch_mode=batch_mode,
            contact_fetch=contact_fetch,
            transport=hostile_transport(sim.app, damage),
            sleep=no_sleep,
            poll_interval=0.001,
            poll_timeout=0.05,
        )
        try:
            check_results(await provider.lookup(requests), requests, Vendor.contactout)
        finally:
            await provider.aclose()

    run_flow("contactout", flow(), [CO_TOKEN])
    DAMAGED["answers"] += damage.served


# --- a whole run: nothing damaged is stored or written ----------------------------------------------------

CONFIG = f"""
[sync]
state_url = "sqlite://"
mass_loss_min_known = 1000000

[pbx]
base_url = "http://pbx.test"
client_id = "{PBX_CLIENT_ID}"
client_secret = "{PBX_SECRET}"

[vendors.insideview]
base_url = "http://insideview.test"
login_url = "http://insideview.test"
client_id = "{IV_CLIENT_ID}"
client_secret = "{IV_SECRET}"

[vendors.leadfeeder]
base_url = "http://leadfeeder.test"
api_key = "{LF_KEY}"
account_id = "{LF_ACCOUNT}"

[vendors.contactout]
base_url = "http://contactout.test"
token = "{CO_TOKEN}"
"""


def build_providers(damage: Damage) -> tuple[dict[Vendor, Provider], list[str]]:
    iv = InsideViewSimulator(DATASET, client_id=IV_CLIENT_ID, client_secret=IV_SECRET, job_delay=0)
    lf = LeadfeederSimulator(DATASET, api_key=LF_KEY, account_id=LF_ACCOUNT)
    co = ContactOutSimulator(
        DATASET, token=CO_TOKEN, batch_delay=0, general_per_minute=10**6, search_per_minute=10**6
    )
    iv_transport = hostile_transport(iv.app, damage)
    providers: dict[Vendor, Provider] = {
        Vendor.insideview: InsideViewProvider(
            api=http("insideview"),
            login=http("insideview-login"),
            client_id=IV_CLIENT_ID,
            client_secret=IV_SECRET,
            api_transport=iv_transport,
            login_transport=iv_transport,
            sleep=no_sleep,
        ),
        Vendor.leadfeeder: LeadfeederProvider(
            http("leadfeeder"), LF_KEY, LF_ACCOUNT, transport=hostile_transport(lf.app, damage)
        ),
        Vendor.contactout: ContactOutProvider(
            http("contactout"),
            CO_TOKEN,
            checker_rate=None,
            transport=hostile_transport(co.app, damage),
            sleep=no_sleep,
            poll_interval=0.001,
            poll_timeout=0.05,
        ),
    }
    return providers, list(iv.tokens)


def check_written(sim: PbxSimulator, store: StateStore) -> None:
    """The PBX and the store hold no value that fails the checks the providers promise."""
    for cid in sim.contact_ids():
        now = sim.contact(cid)
        seed = DATASET.contact(cid - 1)
        if now["email"] != seed.email:
            assert clean_email(now["email"]) == now["email"], f"contact {cid}: bad email {now['email']!r}"
        seeded = set(seed.numbers.values())
        for item in now["number_list"]:
            if item["number"] not in seeded:
                assert to_e164(item["number"], REGION) == item["number"], f"contact {cid}: {item}"
        title = title_in(now["remark"])
        assert len(title) <= TITLE_MAX and "\n" not in title
    for change in store.history():
        if change.field == "email":
            assert clean_email(change.new) == change.new
        elif change.field in {s.value for s in NumberSlot}:
            assert to_e164(change.new, REGION) == change.new
    for vendor in Vendor:
        for entry in store.ledger(vendor, range(1, SIZE + 1)).values():
            if entry.result is None:
                continue
            for email in entry.result.emails:
                assert clean_email(email.address) == email.address
            for phone in entry.result.phones:
                assert to_e164(phone.number, REGION) == phone.number


@hypothesis_settings(20)
@given(data=st.data())
def test_a_run_against_hostile_answers_stores_and_writes_nothing_malformed(data: st.DataObject) -> None:
    sim = PbxSimulator(DATASET, client_id=PBX_CLIENT_ID, client_secret=PBX_SECRET)
    damage = Damage.drawn(data, rate=4)
    config = parse_config(CONFIG, source="hostile.toml")
    store = StateStore.open("sqlite://")
    providers, iv_tokens = build_providers(damage)

    async def flow() -> None:
        try:
            engine = SyncEngine(
                config, store, pbx_transport=hostile_transport(sim.app, damage), providers=providers
            )
            await engine.run()
        finally:
            for provider in providers.values():
                await provider.aclose()

    try:
        now = datetime.now(UTC)
        store.save_links(Link(cid, v, vid, "imported", 1.0, now) for cid, v, vid in DATASET.links())
        run_flow("run", flow(), [PBX_SECRET, IV_SECRET, LF_KEY, CO_TOKEN, *iv_tokens])
        check_written(sim, store)
    finally:
        store.close()
    DAMAGED["answers"] += damage.served


def test_zz_record_the_figures() -> None:
    """Not a check: puts the numbers of cases tried into the suite's figures."""
    for secret in (PBX_SECRET, IV_SECRET, LF_KEY, CO_TOKEN):
        add_secret(secret)
    add_figure("malformed_cases_tried", dict(TRIED))
    add_figure("malformed_answers_served", DAMAGED["answers"])
    add_figure("malformed_damage_kinds", {k: v for k, v in DAMAGED.items() if k != "answers"})
    print(f"hostile: examples {dict(TRIED)}, damaged answers {DAMAGED['answers']}, by kind {dict(DAMAGED)}")
