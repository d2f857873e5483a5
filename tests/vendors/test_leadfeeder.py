"""Contract tests: the Leadfeeder provider against the Leadfeeder simulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from syncd.errors import AuthError, MalformedResponse, OutOfCredits
from syncd.http import HttpSettings
from syncd.logs import MASK, redact
from syncd.merge import SkipReason
from syncd.model import EmailKind, LookupRequest, Outcome, PhoneKind, Vendor
from syncd.sim.dataset import LEADFEEDER_ID_BASE, Dataset, Route
from syncd.sim.faults import Faults
from syncd.sim.leadfeeder import LeadfeederSimulator
from syncd.sim.server import SimServer
from syncd.vendors.base import PHONE_FIELD, Provider
from syncd.vendors.leadfeeder import BURST, MAX_IDS, RATE_PER_SECOND, LeadfeederProvider

KEY = "lf-test-key-0123456789"
ACCOUNT = "123456"
DATASET = Dataset(900, seed=42)
LF_CIDS = [cid for cid in range(1, DATASET.size + 1) if DATASET.route(cid) is Route.leadfeeder]


def lf_id(cid: int) -> str:
    return str(LEADFEEDER_ID_BASE + cid)


def request_for(cid: int, vendor_id: str | None = "") -> LookupRequest:
    seed = DATASET.contact(cid - 1) if cid <= DATASET.size else None
    return LookupRequest(
        contact_id=cid,
        name=f"{seed.first_name} {seed.last_name}" if seed else "Nobody",
        company=seed.company if seed else "",
        vendor_id=lf_id(cid) if vendor_id == "" else vendor_id,
    )


def settings(url: str, **overrides: Any) -> HttpSettings:
    base: dict[str, Any] = {
        "service": "leadfeeder",
        "base_url": url,
        "rate_per_second": RATE_PER_SECOND,
        "burst": BURST,
        "backoff_base": 0.01,
        "backoff_cap": 0.2,
        "timeout": 10.0,
    }
    return HttpSettings(**{**base, **overrides})


def simulator(dataset: Dataset | None = DATASET, **kwargs: Any) -> LeadfeederSimulator:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("account_id", ACCOUNT)
    return LeadfeederSimulator(dataset, **kwargs)


@asynccontextmanager
async def serving(
    sim: LeadfeederSimulator,
    *,
    api_key: str = KEY,
    account_id: str = ACCOUNT,
    transport: httpx.AsyncBaseTransport | None = None,
    include_company: bool = False,
    **http: Any,
) -> AsyncIterator[LeadfeederProvider]:
    with SimServer(sim.app) as srv:
        provider = LeadfeederProvider(
            settings(srv.url, **http),
            api_key,
            account_id,
            transport=transport,
            include_company=include_company,
        )
        try:
            yield provider
        finally:
            await provider.aclose()


@contextmanager
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog events, plus stdlib records (httpx) as {'event': text}."""
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        yield events
    events.extend({"event": r.getMessage()} for r in caplog.records)


def events_named(events: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e.get("event") == name]


# --- the happy path -------------------------------------------------------------------------------


async def test_found_and_absent_ids() -> None:
    sim = simulator(blacklist_share=0.0)
    found = [c for c in LF_CIDS[:6] if not DATASET.person(c).garbage]
    not_leadfeeder = next(c for c in range(1, 50) if DATASET.route(c) is not Route.leadfeeder)
    requests = [
        *(request_for(c) for c in found),
        request_for(not_leadfeeder),  # an id of the right form nobody at Leadfeeder knows
        request_for(5_000, vendor_id=lf_id(5_000)),  # beyond the dataset
        request_for(7, vendor_id=None),  # no Leadfeeder id: cannot be looked up
        request_for(8, vendor_id="12,34"),  # not a usable id either
    ]
    async with serving(sim) as provider:
        assert isinstance(provider, Provider)
        assert provider.vendor is Vendor.leadfeeder
        assert provider.max_batch == MAX_IDS == 100
        assert [provider.can_lookup(r) for r in requests[-4:]] == [True, True, False, False]
        results = await provider.lookup(requests)

    assert [r.contact_id for r in results] == [r.contact_id for r in requests]
    assert all(r.vendor is Vendor.leadfeeder for r in results)
    for cid, result in zip(found, results, strict=False):
        person = DATASET.person(cid)
        assert result.outcome is Outcome.found
        assert result.vendor_id == lf_id(cid)
        assert [(e.address, e.kind, e.verification) for e in result.emails] == [
            (person.work_email, EmailKind.work, None)
        ]
        # the company's switchboard, when Leadfeeder lists it, comes after the person's own numbers
        office = [(person.office, PhoneKind.landline)] if person.office else []
        assert [(p.number, p.kind) for p in result.phones] == [
            (person.mobile, PhoneKind.mobile),
            (person.direct, PhoneKind.landline),
            *office,
        ]
        assert result.title == person.title
        assert result.full_name == person.full_name
        assert result.company is None  # include=company was not asked for
        assert result.matched_by is None
    absent = results[len(found) : len(found) + 2]
    assert [(r.outcome, r.credits) for r in absent] == [(Outcome.not_found, 0)] * 2
    assert [r.outcome for r in results[-2:]] == [Outcome.error, Outcome.error]
    assert sim.calls["contacts"] == 1


async def test_honorific_is_not_a_job_title() -> None:
    sim = simulator()
    with_honorific = [
        c for c in LF_CIDS[:60] if sim.contact_record(lf_id(c), DATASET.person(c))["attributes"]["title"]
    ]
    assert with_honorific
    async with serving(sim) as provider:
        results = await provider.lookup([request_for(c) for c in with_honorific])
    assert [r.title for r in results] == [DATASET.person(c).title for c in with_honorific]


async def test_include_company_names_the_company_and_costs_its_record() -> None:
    sim = simulator()
    cids = [c for c in LF_CIDS[:10] if not DATASET.person(c).garbage]
    requests = [request_for(c) for c in cids]
    async with serving(sim, include_company=True) as provider:
        assert provider.max_cost(requests) == 2 * len(cids)
        results = await provider.lookup(requests)
    assert [r.company for r in results] == [DATASET.person(c).company for c in cids]
    companies = {DATASET.person(c).company for c in cids}
    assert sim.credits_charged == len(cids) + len(companies)
    assert sum(r.credits for r in results) == sim.credits_charged


async def test_250_ids_take_three_calls() -> None:
    sim = simulator()
    requests = [request_for(c) for c in range(1, 251)]  # a third of them are Leadfeeder's
    async with serving(sim) as provider:
        assert provider.max_cost(requests) == 250
        results = await provider.lookup(requests)
    assert sim.calls["contacts"] == 3
    assert [r.contact_id for r in results] == list(range(1, 251))
    found = [r for r in results if r.outcome is Outcome.found]
    assert len(found) == sum(1 for c in range(1, 251) if DATASET.route(c) is Route.leadfeeder)
    assert all(
        r.outcome is Outcome.not_found for r in results if DATASET.route(r.contact_id) is not Route.leadfeeder
    )
    assert sum(r.credits for r in results) == sim.credits_charged == len(found)


async def test_duplicate_ids_are_asked_and_paid_once() -> None:
    sim = simulator()
    cid = LF_CIDS[0]
    twin = replace(request_for(cid), contact_id=10_001)
    async with serving(sim) as provider:
        assert provider.max_cost([request_for(cid), twin]) == 1
        results = await provider.lookup([request_for(cid), twin])
    assert [r.contact_id for r in results] == [cid, 10_001]
    assert [r.outcome for r in results] == [Outcome.found, Outcome.found]
    assert [r.credits for r in results] == [1, 0]
    assert sim.credits_charged == 1


# --- credits --------------------------------------------------------------------------------------


async def test_credits_come_from_meta_and_records_are_paid_once() -> None:
    sim = simulator()
    first = [request_for(c) for c in LF_CIDS[:20]]
    async with serving(sim) as provider:
        results = await provider.lookup(first)
        assert sum(r.credits for r in results) == sim.credits_charged == 20
        assert all(r.credits == 1 for r in results)

        again = await provider.lookup(first)
        assert [r.credits for r in again] == [0] * 20
        assert sim.credits_charged == 20

        # half old, half new: the charge is the new records', spread over the found results
        mixed = [request_for(c) for c in LF_CIDS[10:30]]
        results = await provider.lookup(mixed)
        assert sum(r.credits for r in results) == 10
        assert sim.credits_charged == 30


async def test_missing_meta_means_zero_credits_and_a_log_event(caplog: pytest.LogCaptureFixture) -> None:
    sim = simulator()
    sim.meta_credits = False
    with all_logs(caplog) as events:
        async with serving(sim) as provider:
            results = await provider.lookup([request_for(c) for c in LF_CIDS[:5]])
    assert all(r.outcome is Outcome.found for r in results)
    assert sum(r.credits for r in results) == 0
    assert sim.credits_charged == 5  # the vendor did charge; we could not know
    assert len(events_named(events, "vendor.credits_unknown")) == 1


@pytest.mark.parametrize("error_style", ["flat", "list"])
async def test_out_of_credits(error_style: str) -> None:
    sim = simulator(credits_available=3, error_style=error_style)
    async with serving(sim) as provider:
        with pytest.raises(OutOfCredits) as info:
            await provider.lookup([request_for(c) for c in LF_CIDS[:10]])
    assert info.value.code == "insufficient_credits"
    assert info.value.status == 403
    assert sim.credits_charged == 0
    assert sim.calls["contacts"] == 1  # not retried


async def test_credits_running_out_midway_keep_the_paid_batch(caplog: pytest.LogCaptureFixture) -> None:
    sim = simulator(credits_available=120)
    requests = [request_for(c) for c in LF_CIDS[:150]]  # two calls: 100 and 50 new records
    with all_logs(caplog) as events:
        async with serving(sim) as provider:
            results = await provider.lookup(requests)
            # the next call finds no credits at all
            with pytest.raises(OutOfCredits):
                await provider.lookup([request_for(c) for c in LF_CIDS[150:250]])
    found = [r for r in results if r.outcome is Outcome.found]
    failed = [r for r in results if r.outcome is Outcome.error]
    assert (len(found), len(failed)) in {(100, 50), (50, 100)}
    assert all("insufficient_credits" in (r.error or "") for r in failed)
    assert sum(r.credits for r in results) == sim.credits_charged == len(found)
    assert len(events_named(events, "vendor.batch_failed")) == 1


# --- phones and values ----------------------------------------------------------------------------


async def test_blacklisted_phones_are_skipped() -> None:
    sim = simulator(blacklist_share=0.5)
    cids = [c for c in LF_CIDS[:40] if not DATASET.person(c).garbage]
    async with serving(sim) as provider:
        results = await provider.lookup([request_for(c) for c in cids])
    skipped = kept = 0
    for cid, result in zip(cids, results, strict=True):
        person = DATASET.person(cid)
        expected = [
            (number, kind)
            for number, kind, wire in (
                (person.mobile, PhoneKind.mobile, "mobile"),
                (person.direct, PhoneKind.landline, "landline"),
                *([(person.office, PhoneKind.landline, "landline")] if person.office else []),
            )
            if not sim.is_blacklisted(lf_id(cid), wire)
        ]
        assert [(p.number, p.kind) for p in result.phones] == expected
        assert not any(p.blacklisted for p in result.phones)
        kept += len(expected)
        skipped += (3 if person.office else 2) - len(expected)
    assert kept and skipped


async def test_everything_blacklisted_leaves_no_phone() -> None:
    sim = simulator(blacklist_share=1.0)
    async with serving(sim) as provider:
        results = await provider.lookup([request_for(c) for c in LF_CIDS[:10]])
    assert all(r.outcome is Outcome.found and r.phones == () for r in results)


async def test_garbage_values_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    dataset = Dataset(300, seed=42, garbage_share=0.5)
    garbage = [p.contact_id for p in dataset.persons() if p.route is Route.leadfeeder and p.garbage][:5]
    assert garbage
    sim = simulator(dataset)
    with all_logs(caplog) as events:
        async with serving(sim) as provider:
            reqs = [LookupRequest(c, dataset.person(c).full_name, "y", vendor_id=lf_id(c)) for c in garbage]
            results = await provider.lookup(reqs)
    for cid, result in zip(garbage, results, strict=True):
        assert result.outcome is Outcome.found
        assert result.emails == ()
        assert result.phones == ()
        assert result.title == dataset.person(cid).title
        assert "n/a" not in repr(result) and "not-a-number" not in repr(result)
    rejected = events_named(events, "vendor.value_rejected")
    # syncd's field names and the merge's reasons, each rejection with the contact that got the record
    assert {(e["field"], e["reason"]) for e in rejected} <= {
        ("email", SkipReason.invalid_email.value),
        *((slot, SkipReason.invalid_number.value) for slot in PHONE_FIELD.values()),
    }
    assert {e["field"] for e in rejected} >= {"email"}
    assert len(rejected) == 2 * len(garbage)
    assert sorted(e["contact_id"] for e in rejected) == sorted(garbage * 2)
    assert all(e["vendor_id"] == lf_id(e["contact_id"]) for e in rejected)


async def test_malformed_record_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    sim = simulator()
    cids = LF_CIDS[:5]
    sim.malformed_ids = {lf_id(cids[2])}
    with all_logs(caplog) as events:
        async with serving(sim) as provider:
            results = await provider.lookup([request_for(c) for c in cids])
    assert [r.outcome for r in results] == [Outcome.found] * 2 + [Outcome.error] + [Outcome.found] * 2
    assert "malformed record" in (results[2].error or "")
    assert results[2].vendor_id == lf_id(cids[2])
    assert sum(r.credits for r in results) == sim.credits_charged == 5
    malformed = events_named(events, "vendor.malformed_record")
    assert [e["vendor_id"] for e in malformed] == [lf_id(cids[2])]


# --- auth and secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_key", "error_style", "auth_status", "code"),
    [
        ("", "flat", 403, "missing_token"),
        ("lf-wrong-key-9876543210", "flat", 403, "invalid_api_key"),
        ("lf-wrong-key-9876543210", "list", 403, "invalid_api_key"),
        ("lf-wrong-key-9876543210", "flat", 401, "invalid_api_key"),
    ],
)
async def test_refused_key_is_an_auth_error_without_the_key(
    api_key: str, error_style: str, auth_status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim = simulator(error_style=error_style, auth_status=auth_status)
    with all_logs(caplog) as events:
        async with serving(sim, api_key=api_key) as provider:
            with pytest.raises(AuthError) as info:
                await provider.lookup([request_for(c) for c in LF_CIDS[:3]])
    err = info.value
    assert err.code == code
    assert err.status == auth_status
    assert sim.calls["contacts"] == 1  # never retried
    if api_key:
        for text in (str(err), err.reason, repr(err.args), repr(events)):
            assert api_key not in text
        assert redact(f"key {api_key}") == f"key {MASK}"


async def test_wrong_account_is_an_auth_error() -> None:
    sim = simulator()
    async with serving(sim, account_id="999") as provider:
        with pytest.raises(AuthError) as info:
            await provider.lookup([request_for(LF_CIDS[0])])
    assert "account" in info.value.reason


class Recording(httpx.AsyncBaseTransport):
    """A real loopback transport that keeps every request it sends."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_key_travels_in_the_header_only() -> None:
    sim = simulator()
    recording = Recording()
    async with serving(sim, transport=recording) as provider:
        await provider.lookup([request_for(c) for c in LF_CIDS[:3]])
    (sent,) = recording.requests
    assert sent.headers["x-api-key"] == KEY
    assert KEY not in str(sent.url)
    assert sent.url.path == "/v1/contacts"
    assert sent.url.params["account_id"] == ACCOUNT
    assert sent.url.params["ids"] == ",".join(lf_id(c) for c in LF_CIDS[:3])
    assert "include" not in sent.url.params


# --- the transport's bad days ---------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [True, False])
async def test_429_storm_ends_in_success(retry_after: bool) -> None:
    # the vendor allows 4/s (burst 2); the client is told nothing and fires 8 calls at once
    sim = simulator(rate_per_second=4, burst=2, retry_after=retry_after)
    requests = [request_for(c) for c in range(1, 801)]
    async with serving(
        sim, rate_per_second=None, max_concurrency=8, max_attempts=15, backoff_base=0.05, backoff_cap=1.0
    ) as provider:
        results = await provider.lookup(requests)
        throttled = provider.client.stats.throttled
    assert len(results) == 800
    assert not [r for r in results if r.outcome is Outcome.error]
    assert sim.calls["status_429"] > 0
    assert throttled == sim.calls["status_429"]
    assert sim.calls["status_200"] == 8
    assert sum(r.credits for r in results) == sim.credits_charged


async def test_concurrent_lookups_at_the_documented_limit_all_succeed() -> None:
    sim = simulator()  # 10/s, burst 15: the client's settings carry the same numbers
    async with serving(sim) as provider:
        batches = [[request_for(c) for c in range(start, start + 100)] for start in range(1, 2001, 100)]
        answers = await asyncio.gather(*(provider.lookup(b) for b in batches))
    assert sum(len(a) for a in answers) == 2000
    assert sim.calls["status_200"] == 20


async def test_5xx_is_retried() -> None:
    faults = Faults(error_every=2, error_status=503)
    sim = simulator(faults=faults)
    async with serving(sim) as provider:
        results = await provider.lookup([request_for(c) for c in range(1, 301)])
        retries = provider.client.stats.retries
    assert faults.injected["error"] >= 1
    assert retries == faults.injected["error"]
    assert not [r for r in results if r.outcome is Outcome.error]


async def test_html_page_with_200_is_a_malformed_response() -> None:
    sim = simulator(faults=Faults(html_every=1))
    async with serving(sim) as provider:
        with pytest.raises(MalformedResponse):
            await provider.lookup([request_for(c) for c in LF_CIDS[:3]])


# --- the simulator's own contract (what the provider relies on) ----------------------------------


def test_simulator_refuses_more_than_100_ids_and_serves_accounts_and_single_contacts() -> None:
    sim = simulator()
    with SimServer(sim.app) as srv, httpx.Client(base_url=srv.url, headers={"X-Api-Key": KEY}) as http:
        too_many = ",".join(lf_id(c) for c in range(1, 102))
        r = http.get("/v1/contacts", params={"ids": too_many, "account_id": ACCOUNT})
        assert r.status_code == 400
        assert r.json()["code"] == "bad_request"

        one = lf_id(LF_CIDS[0])
        r = http.get(f"/v1/contacts/{one}", params={"account_id": ACCOUNT})
        assert r.status_code == 200
        body = r.json()
        assert body["data"]["id"] == one and body["data"]["type"] == "contact"
        assert body["meta"]["credits"] == {"charged": 1}

        r = http.get(f"/v1/contacts/{lf_id(5_000)}", params={"account_id": ACCOUNT})
        assert r.status_code == 404

        r = http.get("/v1/contacts", params={"ids": one, "account_id": "999"})
        assert (r.status_code, r.json()["code"]) == (404, "account_not_found")

        r = http.get("/v1/accounts")
        (account,) = r.json()["data"]
        assert account["id"] == ACCOUNT
        credits = account["attributes"]["credits"]
        assert (credits["available"], credits["used"], credits["remaining"]) == (100_000, 1, 99_999)
        assert credits["next_reset_on"]


@pytest.mark.parametrize("retry_after", [True, False])
def test_simulator_rate_limit_is_a_token_bucket_per_key(retry_after: bool) -> None:
    now = [0.0]
    sim = simulator(rate_per_second=10, burst=3, clock=lambda: now[0], retry_after=retry_after)
    with SimServer(sim.app) as srv, httpx.Client(base_url=srv.url, headers={"X-Api-Key": KEY}) as http:
        statuses = [http.get("/v1/accounts").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = http.get("/v1/accounts")
        assert r.json() == {
            "code": "too_many_requests",
            "message": "You've exceeded the maximum amount of allowed requests. Please try again later.",
        }
        assert ("retry-after" in r.headers) is retry_after
        now[0] += 0.1  # one token back
        assert [http.get("/v1/accounts").status_code for _ in range(2)] == [200, 429]
