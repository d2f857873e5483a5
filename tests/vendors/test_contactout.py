"""Contract tests: the ContactOut provider against the ContactOut simulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from functools import cache
from itertools import pairwise
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from syncd.errors import AuthError, MalformedResponse, OutOfCredits, ServiceUnavailable
from syncd.http import HttpSettings
from syncd.merge import SkipReason
from syncd.model import EmailKind, EnrichmentResult, LookupRequest, Outcome, PhoneKind, Vendor
from syncd.normalize import clean_email, fold_company, to_e164
from syncd.sim.contactout import RATE_CLASS, ContactOutSimulator, linkedin_slug
from syncd.sim.dataset import Dataset, Person, Route
from syncd.sim.faults import Faults
from syncd.sim.server import SimServer
from syncd.vendors.base import Provider
from syncd.vendors.contactout import (
    CHECKER_RATE,
    INCLUDE_ALL,
    V1_BATCH_MAX,
    V2_BATCH_MAX,
    BadRequest,
    ContactOutProvider,
    failure_of,
    phone_kind,
    title_from,
)

TOKEN = "co-test-token-0123456789"
DATASET = Dataset(2000, seed=42)
ORACLE = ContactOutSimulator(DATASET)  # the simulator's knowledge, read directly (pure functions)


@cache
def persons() -> list[Person]:
    return list(DATASET.persons())


def findable(p: Person) -> bool:
    return "contactout" in p.known_by


def pick(pred: Callable[[Person], bool], n: int = 1) -> list[Person]:
    chosen = [p for p in persons() if pred(p)][:n]
    assert len(chosen) == n, "the dataset has too few such persons"
    return chosen


def identity(p: Person) -> tuple[tuple[str, ...], str]:
    return tuple(sorted(p.full_name.casefold().split())), fold_company(p.company)


@cache
def identities() -> Counter[tuple[tuple[str, ...], str]]:
    return Counter(identity(p) for p in persons() if findable(p))


@cache
def held() -> Counter[str]:
    """How many findable persons ContactOut holds each email (lower case) and E.164 phone for."""
    counts: Counter[str] = Counter()
    for p in persons():
        if findable(p) and not p.garbage:
            info = ORACLE.contact_info(p)
            counts.update({e.lower() for e in info.emails} | expected_phones(p))
    return counts


def unique(p: Person) -> bool:
    """Findable, not garbage, and alone with its name + company (so a name lookup is unambiguous)."""
    return findable(p) and not p.garbage and identities()[identity(p)] == 1


def full_info(p: Person) -> bool:
    info = ORACLE.contact_info(p)
    return unique(p) and bool(info.work_emails and info.personal_emails and info.phones)


def ask(p: Person, **overrides: Any) -> LookupRequest:
    fields: dict[str, Any] = {"contact_id": p.contact_id, "name": p.full_name, "company": p.company}
    fields.update(overrides)
    return LookupRequest(**fields)


def known(p: Person) -> LookupRequest:
    return LookupRequest(
        contact_id=p.contact_id, name=p.full_name, company=p.company, vendor_id=p.linkedin_url
    )


def settings(url: str, **overrides: Any) -> HttpSettings:
    base: dict[str, Any] = {
        "service": "contactout",
        "base_url": url,
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "max_attempts": 4,
        "timeout": 10.0,
    }
    return HttpSettings(**{**base, **overrides})


def simulator(dataset: Dataset | None = DATASET, **kwargs: Any) -> ContactOutSimulator:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("batch_delay", 0.05)
    return ContactOutSimulator(dataset, **kwargs)


@asynccontextmanager
async def serving(
    sim: ContactOutSimulator, *, token: str = TOKEN, **kwargs: Any
) -> AsyncIterator[ContactOutProvider]:
    http = kwargs.pop("http", {})
    kwargs.setdefault("checker_rate", None)
    kwargs.setdefault("poll_interval", 0.02)
    with SimServer(sim.app) as srv:
        provider = ContactOutProvider(settings(srv.url, **http), token, **kwargs)
        try:
            yield provider
        finally:
            await provider.aclose()


class Recorder(httpx.AsyncBaseTransport):
    """Real loopback HTTP that also keeps the JSON body of every People Enrich request sent."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.enrich: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/people/enrich":
            self.enrich.append(json.loads(request.content))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def enrich_query(p: Person, *, include: bool = True, **identifiers: str) -> dict[str, Any]:
    """The People Enrich body the provider should send for `p` (`ask(p)`), with these identifiers."""
    body: dict[str, Any] = {"full_name": p.full_name, "company": [p.company], **identifiers}
    if include:
        body["include"] = list(INCLUDE_ALL)
    return body


@contextmanager
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog events, plus stdlib records (httpx) as {'event': text}."""
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        yield events
    events.extend({"event": r.getMessage()} for r in caplog.records)


def named(events: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e.get("event") == name]


def charged_total(sim: ContactOutSimulator) -> int:
    return sum(sim.charged.values())


def expected_phones(p: Person) -> set[str]:
    return {n for w in ORACLE.contact_info(p).phones if (n := to_e164(w, "US"))}


def assert_contact_data(result: EnrichmentResult, p: Person) -> None:
    info = ORACLE.contact_info(p)
    emails = {(e.address, e.kind) for e in result.emails}
    assert emails == {(a, EmailKind.work) for a in info.work_emails} | {
        (a, EmailKind.personal) for a in info.personal_emails
    }
    assert {ph.number for ph in result.phones} == expected_phones(p)
    for phone in result.phones:
        assert phone.number.startswith("+")
        assert phone.kind is phone_kind(phone.number)
    for email in result.emails:
        if email.kind is EmailKind.work:
            assert email.verification == ("verified" if p.email_verified else "unverified")


# --- the interface ------------------------------------------------------------------------------


async def test_provider_interface_can_lookup_and_max_cost() -> None:
    p = pick(unique)[0]
    async with serving(simulator(), contact_fetch="inline") as provider:
        assert isinstance(provider, Provider)
        assert provider.vendor is Vendor.contactout
        assert provider.max_batch == 100 and V2_BATCH_MAX == 1000
        assert provider.can_lookup(known(p))
        assert provider.can_lookup(ask(p))
        assert provider.can_lookup(ask(p, email="x@y.example", phones=("+12125550100",)))
        assert not provider.can_lookup(ask(p, company=""))  # nothing to confirm the match with
        assert not provider.can_lookup(ask(p, name="Jane"))  # a first name alone never matches
        assert not provider.can_lookup(ask(p, company="", email=p.work_email))  # email alone: same
        assert not provider.can_lookup(ask(p, vendor_id="12345"))  # not a LinkedIn URL
        # inline: search + email + phone per People Enrich profile; a contact with an email or a phone is
        # asked twice at worst (a profile of someone else found by email / phone is paid in full before
        # name + company finds the person), one with neither once; email + phone per known URL (shared
        # URLs once)
        with_ids = ask(p, email="x@y.example")
        assert provider.max_cost([ask(p), known(p), known(p)]) == 3 + 2
        assert provider.max_cost([with_ids, known(p)]) == 6 + 2
        # only the kinds still open are bought, and counted
        no_phone = replace(with_ids, need_phones=False)
        assert provider.max_cost([no_phone]) == 2 * 2
        assert provider.max_cost([replace(with_ids, need_email=False, need_phones=False)]) == 2  # title
        assert provider.max_cost([replace(known(p), need_phones=False)]) == 1  # a v2 job charges emails
        # Contact Info has nothing but emails and phones: a known URL needing neither is not asked
        assert not provider.can_lookup(replace(known(p), need_email=False, need_phones=False))
    async with serving(simulator(), verify_emails=True, contact_fetch="inline") as provider:
        assert provider.max_cost([with_ids, known(p)]) == 7 + 3
    async with serving(simulator(), contact_fetch="after_match") as provider:
        # search + email + phone, plus the search credit of the refused profile of someone else
        assert provider.max_cost([with_ids, known(p)]) == 4 + 2
        assert provider.max_cost([ask(p)]) == 3
    async with serving(simulator(), batch_mode="single") as provider:
        assert provider.max_cost([replace(known(p), need_phones=False)]) == 1
        assert provider.max_cost([replace(known(p), need_email=False)]) == 1
    async with serving(simulator(), batch_mode="v1") as provider:
        assert provider.max_cost([known(p)]) == 1  # v1 bulk: emails only
        assert not provider.can_lookup(replace(known(p), need_email=False))
    # the documented per-class limits, as the defaults of the provider's own limiters
    assert CHECKER_RATE * 60 == 150
    with pytest.raises(ValueError, match="batch_mode"):
        ContactOutProvider(settings("http://127.0.0.1:9"), TOKEN, batch_mode="v3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contact_fetch"):
        ContactOutProvider(settings("http://127.0.0.1:9"), TOKEN, contact_fetch="never")  # type: ignore[arg-type]


def test_title_from_headline() -> None:
    assert title_from("CTO at Acme Inc.", "Acme Inc.") == "CTO"
    assert title_from("Head of IT at ACME", "Acme Inc.") == "Head of IT"  # legal suffix aside
    assert title_from("Manager, Operations & Marketing at OBM", "Legros, Smitham and Kessler") == (
        "Manager, Operations & Marketing at OBM"  # the tail is not the profile's company: keep it all
    )
    assert title_from("CFO", "Acme") == "CFO"
    assert title_from("  ", "Acme") is None


def test_phone_kind_mapping() -> None:
    assert phone_kind("+4915112345678") is PhoneKind.mobile  # German mobile
    assert phone_kind("+447400123456") is PhoneKind.mobile  # UK mobile
    assert phone_kind("+493012345678") is PhoneKind.direct  # Berlin landline
    assert phone_kind("+14155550134") is PhoneKind.other  # US: fixed line or mobile, cannot tell
    assert phone_kind("+18005550199") is PhoneKind.corporate  # toll free


# --- identity matching ----------------------------------------------------------------------------


async def test_match_by_name_and_company() -> None:
    sim = simulator()
    recorder = Recorder()
    p = pick(full_info)[0]
    async with serving(sim, transport=recorder) as provider:
        [result] = await provider.lookup([ask(p)])
    assert result.outcome is Outcome.found
    assert result.contact_id == p.contact_id
    assert result.vendor_id == p.linkedin_url
    assert (result.matched_by, result.match_confidence) == ("name_company", 1.0)
    assert (result.full_name, result.company, result.title) == (p.full_name, p.company, p.title)
    assert_contact_data(result, p)
    # inline (the default): one People Enrich call that includes the contact data, nothing after it
    assert recorder.enrich == [enrich_query(p)]
    assert sim.calls["people_enrich"] == 1 and sim.calls["people_linkedin"] == 0
    assert sim.charged == Counter({"search": 1, "email": 1, "phone": 1})
    assert result.credits == 3 == charged_total(sim)


@pytest.mark.parametrize("contact_fetch", ["inline", "after_match"])
@pytest.mark.parametrize(("need_email", "need_phones"), [(True, False), (False, True), (False, False)])
async def test_only_the_kinds_still_open_are_bought(
    contact_fetch: str, need_email: bool, need_phones: bool
) -> None:
    sim = simulator()
    p = pick(full_info)[0]
    request = ask(p, need_email=need_email, need_phones=need_phones)
    async with serving(sim, contact_fetch=contact_fetch) as provider:
        [result] = await provider.lookup([request])
        worst = provider.max_cost([request])
    assert result.outcome is Outcome.found and result.title == p.title
    assert bool(result.emails) is need_email
    assert bool(result.phones) is need_phones
    # the simulator charges what it returned: the search, and only the kinds asked for
    assert sim.charged == Counter({"search": 1, "email": int(need_email), "phone": int(need_phones)})
    assert result.credits == charged_total(sim) <= worst
    if not (need_email or need_phones):
        assert sim.calls["people_linkedin"] == 0  # nothing left to fetch after the match


@pytest.mark.parametrize("batch_mode", ["single", "v2"])
async def test_a_refresh_buys_no_phone_for_a_contact_whose_numbers_are_closed(batch_mode: str) -> None:
    sim = simulator()
    people = pick(full_info, 2)
    requests = [replace(known(people[0]), need_phones=False), known(people[1])]
    async with serving(sim, batch_mode=batch_mode) as provider:
        results = await provider.lookup(requests)
        worst = provider.max_cost(requests)
    assert [bool(r.phones) for r in results] == [False, True]
    assert all(r.emails for r in results)
    assert sim.charged == Counter({"email": 2, "phone": 1})
    assert sum(r.credits for r in results) == charged_total(sim) <= worst


async def test_match_after_match_buys_the_contact_info_afterwards() -> None:
    sim = simulator()
    recorder = Recorder()
    p = pick(full_info)[0]
    async with serving(sim, transport=recorder, contact_fetch="after_match") as provider:
        [result] = await provider.lookup([ask(p, email=p.work_email)])
    assert result.outcome is Outcome.found and result.matched_by == "email+name_company"
    assert (result.full_name, result.company, result.title) == (p.full_name, p.company, p.title)
    assert_contact_data(result, p)
    # enrich without `include` (1 search credit), then the contact info by URL (email + phone)
    assert recorder.enrich == [enrich_query(p, include=False, email=p.work_email)]
    assert sim.calls["people_enrich"] == 1 and sim.calls["people_linkedin"] == 1
    assert sim.charged == Counter({"search": 1, "email": 1, "phone": 1})
    assert result.credits == 3 == charged_total(sim)


async def test_match_by_email() -> None:
    sim = simulator()
    recorder = Recorder()
    p = pick(full_info)[0]
    as_entered = p.personal_email.upper()
    async with serving(sim, transport=recorder) as provider:
        [result] = await provider.lookup([ask(p, email=as_entered)])
    assert result.outcome is Outcome.found
    assert result.matched_by == "email+name_company" and result.vendor_id == p.linkedin_url
    # the email goes cleaned, together with name + company, in one call
    assert recorder.enrich == [enrich_query(p, email=clean_email(as_entered) or "")]
    assert sim.calls["people_enrich"] == 1 and sim.calls["people_linkedin"] == 0
    assert result.credits == charged_total(sim) == 3


async def test_match_by_phone_as_entered_in_the_pbx() -> None:
    sim = simulator()
    recorder = Recorder()
    p = pick(lambda q: full_info(q) and q.mobile.startswith("+1") and q.mobile in expected_phones(q))[0]
    d = p.mobile[2:]
    as_entered = f"({d[:3]}){d[3:6]}-{d[6:]}"  # the way a person typed it into the PBX
    async with serving(sim, transport=recorder) as provider:
        [result] = await provider.lookup([ask(p, phones=("not a number", as_entered))])
    assert result.outcome is Outcome.found
    assert result.matched_by == "phone+name_company" and result.vendor_id == p.linkedin_url
    # the invalid entry is skipped; the number goes as E.164, with name + company
    assert recorder.enrich == [enrich_query(p, phone=p.mobile)]
    assert sim.calls["people_enrich"] == 1 and sim.calls["people_linkedin"] == 0
    assert result.credits == charged_total(sim) == 3


@pytest.mark.parametrize(
    ("case", "matched_by"),
    [
        ("email", "email+name_company"),
        ("phone", "phone+name_company"),
        ("unknown email, own phone", "email+phone+name_company"),  # the phone is used when the email fails
        ("own email, someone else's phone", "email+phone+name_company"),  # the email comes first
    ],
)
async def test_the_strongest_identifier_decides(case: str, matched_by: str) -> None:
    # name + company alone is ambiguous for `second`; its own email or phone finds exactly that person
    sim = simulator()
    recorder = Recorder()
    first, second, email, number = _ambiguous_pair_with_own_identifiers()
    other = pick(lambda q: unique(q) and q.mobile in expected_phones(q) and held()[q.mobile] == 1)[0]
    sent = {
        "email": {"email": email},
        "phone": {"phone": number},
        "unknown email, own phone": {"email": "reception@somewhere.example", "phone": number},
        "own email, someone else's phone": {"email": email, "phone": other.mobile},
    }[case]
    request = ask(second, email=sent.get("email", ""), phones=tuple(filter(None, [sent.get("phone")])))
    async with serving(sim, transport=recorder) as provider:
        [result] = await provider.lookup([request])
    assert result.outcome is Outcome.found, result.error
    assert result.vendor_id == second.linkedin_url != first.linkedin_url
    assert result.matched_by == matched_by
    assert recorder.enrich == [{**enrich_query(second), **sent}]
    assert sim.calls["people_enrich"] == 1
    assert result.credits == charged_total(sim)


async def test_unknown_email_and_switchboard_then_name_and_company_in_the_same_call() -> None:
    sim = simulator()
    recorder = Recorder()
    p = pick(full_info)[0]
    # valid numbers nobody at ContactOut holds (unknown persons' phones): a US switchboard and a mobile
    switchboard = pick(lambda q: q.route is Route.unknown and phone_kind(q.direct) is not PhoneKind.mobile)
    mobile = pick(lambda q: q.route is Route.unknown and phone_kind(q.mobile) is PhoneKind.mobile)
    phones = (switchboard[0].direct, mobile[0].mobile)
    request = ask(p, email="reception@somewhere.example", phones=phones)
    async with serving(sim, transport=recorder) as provider:
        [result] = await provider.lookup([request])
    assert result.outcome is Outcome.found and result.vendor_id == p.linkedin_url
    assert result.matched_by == "email+phone+name_company"
    # one call with every identifier; only the most person-like phone (the mobile) goes
    assert recorder.enrich == [enrich_query(p, email="reception@somewhere.example", phone=phones[1])]
    assert sim.calls["people_enrich"] == 1 and sim.calls["status_404"] == 0
    assert sim.charged == Counter({"search": 1, "email": 1, "phone": 1})
    assert result.credits == 3 == charged_total(sim)


@pytest.mark.parametrize(("contact_fetch", "credits"), [("after_match", 1), ("inline", 3)])
async def test_weak_matches_are_refused_with_a_reason(contact_fetch: str, credits: int) -> None:
    sim = simulator()
    recorder = Recorder()
    a = pick(full_info)[0]
    b = pick(lambda q: full_info(q) and q.first_name != a.first_name and q.last_name != a.last_name)[0]
    requests = [
        # b's email, but the PBX contact is someone else, whom name + company does not find either
        ask(a, name="Nobody Known", email=b.work_email),
        # a's own email, but the PBX holds another company for a (moved on, or a wrong entry)
        ask(a, contact_id=90_001, email=a.work_email, company="Totally Different Corp"),
        # a's email, but the PBX knows the first name only
        ask(a, contact_id=90_002, email=a.work_email, name=a.first_name),
    ]
    async with serving(sim, transport=recorder, contact_fetch=contact_fetch) as provider:
        results = await provider.lookup([requests[0], requests[1]])
        assert not provider.can_lookup(requests[2])
        [single] = await provider.lookup([requests[2]])
    for result in results:
        assert result.outcome is Outcome.not_found
        assert result.matched_by == "email+name_company"
        assert result.error is not None and result.error.startswith("match refused")
        assert result.emails == () and result.phones == () and result.title is None
        # after_match buys no contact data for a refusal (the search credit only); inline paid it all
        assert result.credits == credits
        assert result.match_confidence is not None and result.match_confidence < 1.0
    assert results[0].vendor_id == b.linkedin_url and results[0].full_name == b.full_name
    assert "name_mismatch" in (results[0].error or "")
    assert "company_mismatch" in (results[1].error or "")
    # b's profile is someone else's: name + company alone is asked once more (404); a company mismatch
    # is not, nor is a first name alone ever sent
    include = contact_fetch == "inline"
    assert sorted(recorder.enrich, key=repr) == sorted(
        [
            {**enrich_query(a, include=include, email=b.work_email), "full_name": "Nobody Known"},
            {**enrich_query(a, include=include), "full_name": "Nobody Known"},
            {
                **enrich_query(a, include=include, email=a.work_email),
                "company": ["Totally Different Corp"],
            },
        ],
        key=repr,
    )
    assert sim.calls["people_enrich"] == 3 and sim.calls["status_404"] == 1
    assert single.outcome is Outcome.error
    assert sim.calls["people_linkedin"] == 0
    assert charged_total(sim) == 2 * credits == sum(r.credits for r in results)


@pytest.mark.parametrize(("contact_fetch", "refused_credits"), [("after_match", 1), ("inline", 3)])
@pytest.mark.parametrize("identifier", ["email", "phone"])
async def test_someone_elses_email_or_phone_then_name_and_company_finds_the_person(
    identifier: str, contact_fetch: str, refused_credits: int
) -> None:
    sim = simulator()
    recorder = Recorder()
    a = pick(full_info)[0]
    b = pick(lambda q: full_info(q) and q.first_name != a.first_name and q.last_name != a.last_name)[0]
    if identifier == "email":  # a shared inbox, say
        request, sent = ask(a, email=b.work_email), {"email": b.work_email}
    else:  # a switchboard, say, that ContactOut holds as b's
        number = sorted(expected_phones(b))[0]
        request, sent = ask(a, phones=(number,)), {"phone": number}
    async with serving(sim, transport=recorder, contact_fetch=contact_fetch) as provider:
        [result] = await provider.lookup([request])
        worst_case = provider.max_cost([request])
    assert result.outcome is Outcome.found
    assert result.vendor_id == a.linkedin_url and result.matched_by == "name_company"
    assert_contact_data(result, a)
    include = contact_fetch == "inline"
    assert recorder.enrich == [
        enrich_query(a, include=include, **sent),
        enrich_query(a, include=include),  # name + company alone, once
    ]
    assert sim.calls["people_enrich"] == 2
    assert sim.calls["people_linkedin"] == (0 if include else 1)
    # b's profile is paid for too (its search credit; inline: its contact data as well): both are summed
    assert result.credits == refused_credits + 3 == charged_total(sim)
    assert result.credits <= worst_case  # the budget reservation covers it


async def test_a_404_ends_the_search() -> None:
    sim = simulator()
    recorder = Recorder()
    p = pick(full_info)[0]
    nobody = pick(lambda q: q.route is Route.unknown)[0]
    # nobody by email, by phone, nor by name + company: asked once, no identifier is tried on its own
    request = ask(p, name="Nobody Atall", email=nobody.work_email, phones=(nobody.mobile,))
    async with serving(sim, transport=recorder) as provider:
        [result] = await provider.lookup([request])
    assert result.outcome is Outcome.not_found
    assert (result.matched_by, result.error, result.vendor_id, result.credits) == (None, None, None, 0)
    assert recorder.enrich == [
        {**enrich_query(p, email=nobody.work_email, phone=nobody.mobile), "full_name": "Nobody Atall"}
    ]
    assert sim.calls["people_enrich"] == sim.calls["status_404"] == 1
    assert charged_total(sim) == 0


async def test_empty_results_end_the_search() -> None:
    # the docs' "empty results" (`{"profile": []}`) answer the whole query, like a 404
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"status_code": 200, "profile": []})

    p = pick(full_info)[0]
    provider = ContactOutProvider(
        settings("http://contactout.test"),
        TOKEN,
        checker_rate=None,
        transport=httpx.MockTransport(handler),
    )
    try:
        [result] = await provider.lookup([ask(p, email=p.work_email, phones=(p.mobile,))])
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.not_found and result.credits == 0
    assert sent == [enrich_query(p, email=p.work_email, phone=p.mobile)]


def _ambiguous_pair() -> tuple[Person, Person]:
    groups: dict[tuple[tuple[str, ...], str], list[Person]] = {}
    for p in persons():
        if findable(p):
            groups.setdefault(identity(p), []).append(p)
    for group in groups.values():
        infos = [ORACLE.contact_info(p) for p in group]
        if len(group) >= 2 and all(
            i.phones and i.emails and not p.garbage for i, p in zip(infos, group, strict=True)
        ):
            return group[0], group[1]
    raise AssertionError("no ambiguous name + company pair in the dataset")


def _ambiguous_pair_with_own_identifiers() -> tuple[Person, Person, str, str]:
    """Two persons sharing name + company, and an email and a phone ContactOut holds for the second
    only (duplicates in the dataset may share addresses)."""
    groups: dict[tuple[tuple[str, ...], str], list[Person]] = {}
    for p in persons():
        if findable(p) and not p.garbage:
            groups.setdefault(identity(p), []).append(p)
    for group in groups.values():
        for first, second in pairwise(group):
            emails = [e for e in ORACLE.contact_info(second).emails if held()[e.lower()] == 1]
            phones = sorted(n for n in expected_phones(second) if held()[n] == 1)
            if emails and phones:
                return first, second, emails[0], phones[0]
    raise AssertionError("no ambiguous pair with identifiers of its own in the dataset")


@pytest.mark.parametrize(("contact_fetch", "credits"), [("after_match", 1), ("inline", 3)])
async def test_ambiguous_name_and_company_is_refused(contact_fetch: str, credits: int) -> None:
    sim = simulator()
    first, second = _ambiguous_pair()
    async with serving(sim, contact_fetch=contact_fetch) as provider:
        [result] = await provider.lookup([ask(second)])
    assert result.outcome is Outcome.not_found
    assert result.matched_by == "name_company"
    assert result.error is not None and "ambiguous" in result.error
    assert result.vendor_id in {first.linkedin_url, second.linkedin_url}
    assert result.emails == () and result.phones == ()
    # inline pays search + email + phone for a profile it cannot use; after_match only the search
    assert result.credits == credits == charged_total(sim)


async def test_unknown_person_is_not_found_for_free() -> None:
    sim = simulator()
    nobody = pick(lambda p: p.route is Route.unknown)[0]
    async with serving(sim) as provider:
        results = await provider.lookup([ask(nobody), ask(nobody, contact_id=99_999, name="Nobody Atall")])
    for result in results:
        assert result.outcome is Outcome.not_found
        assert (result.matched_by, result.error, result.vendor_id, result.credits) == (None, None, None, 0)
    assert charged_total(sim) == 0


# --- refresh of known people ----------------------------------------------------------------------


async def test_refresh_single_by_known_url() -> None:
    sim = simulator()
    p = pick(full_info)[0]
    gone = pick(lambda q: q.route is Route.unknown)[0]  # a well-formed URL ContactOut does not know
    async with serving(sim) as provider:
        found, missing, bad = await provider.lookup(
            [known(p), known(gone), ask(p, contact_id=5, vendor_id="https://example.com/in/nobody")]
        )
    assert found.outcome is Outcome.found and found.vendor_id == p.linkedin_url
    assert found.matched_by is None and found.match_confidence is None
    assert_contact_data(found, p)
    assert found.credits == 2
    assert missing.outcome is Outcome.not_found and missing.credits == 0
    assert bad.outcome is Outcome.error and bad.contact_id == 5
    assert sim.calls["people_linkedin"] == 2 and sim.calls["people_enrich"] == 0
    assert sum(r.credits for r in (found, missing, bad)) == charged_total(sim)


async def test_refresh_v1_batch() -> None:
    sim = simulator()
    people = pick(lambda q: findable(q) and not q.garbage, 35)
    async with serving(sim, batch_mode="v1") as provider:
        results = await provider.lookup([known(p) for p in people])
    assert sim.calls["v1_batch"] == 2  # 30 + 5
    assert V1_BATCH_MAX == 30
    for p, result in zip(people, results, strict=True):
        info = ORACLE.contact_info(p)
        assert result.contact_id == p.contact_id
        if info.emails:
            assert result.outcome is Outcome.found
            assert {e.address for e in result.emails} == set(info.emails)
            assert all(e.kind is EmailKind.unknown for e in result.emails)  # v1 says nothing about kinds
            assert result.phones == () and result.credits == 1
        else:
            assert result.outcome is Outcome.not_found and result.credits == 0
    assert sim.charged == Counter({"email": sum(r.credits for r in results)})


class ManualClock:
    """Simulated time: the simulator reads it, the provider's sleeps move it (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_refresh_v2_async_batch_with_polling() -> None:
    clock = ManualClock()
    sim = simulator(batch_delay=1.0, clock=clock)
    people = pick(lambda q: findable(q) and not q.garbage, 40)
    gone = pick(lambda q: q.route is Route.unknown)[0]
    requests = [known(p) for p in people]
    requests.append(known(gone))
    requests.append(
        LookupRequest(contact_id=77_777, name="Dup", company="Dup", vendor_id=people[0].linkedin_url)
    )
    async with serving(sim, sleep=clock.sleep, poll_interval=0.25) as provider:  # "auto": 41 URLs -> v2
        results = await provider.lookup(requests)
    assert sim.calls["v2_batch"] == 1
    # polled with backoff: after 0.25 s and 0.75 s the job is still QUEUED, after 1.75 s it is SENT
    assert clock.sleeps == [0.25, 0.5, 1.0]
    assert sim.calls["v2_batch_poll"] == 3
    assert sim.calls["people_linkedin"] == 0
    for p, result in zip(people, results[:40], strict=True):
        info = ORACLE.contact_info(p)
        if info.emails or info.phones:
            assert result.outcome is Outcome.found
            assert {(e.address, e.kind) for e in result.emails} == {
                (a, EmailKind.work) for a in info.work_emails
            } | {(a, EmailKind.personal) for a in info.personal_emails}
            assert {ph.number for ph in result.phones} == expected_phones(p)
        else:
            assert result.outcome is Outcome.not_found
    assert results[40].outcome is Outcome.not_found
    duplicate = results[41]
    assert duplicate.contact_id == 77_777 and duplicate.emails == results[0].emails
    assert duplicate.credits == 0  # the shared URL is bought once
    assert sum(r.credits for r in results) == charged_total(sim)


async def test_fewer_than_31_known_urls_go_one_by_one() -> None:
    sim = simulator()
    people = pick(lambda q: findable(q) and not q.garbage, 30)
    async with serving(sim) as provider:
        await provider.lookup([known(p) for p in people])
    assert sim.calls["people_linkedin"] == 30 and sim.calls["v2_batch"] == 0


# --- credits and verification ---------------------------------------------------------------------


async def test_credits_per_result_add_up_to_what_the_vendor_charged() -> None:
    sim = simulator()
    people = pick(findable, 12)
    nobody = pick(lambda q: q.route is Route.unknown)[0]
    _first, second = _ambiguous_pair()
    requests = [ask(p) for p in people[:6]] + [known(p) for p in people[6:]]
    requests += [ask(nobody), ask(second, contact_id=88_888)]
    async with serving(sim) as provider:
        results = await provider.lookup(requests)
        usage = await provider.usage()
    assert sum(r.credits for r in results) == charged_total(sim)
    assert usage["search_count"] == sim.charged["search"]
    assert usage["count"] == sim.charged["email"]
    assert usage["phone_count"] == sim.charged["phone"]
    assert usage["remaining"] == usage["quota"] - usage["count"]


async def test_verification_off_calls_no_verifier() -> None:
    sim = simulator()
    people = pick(lambda q: full_info(q) and not q.email_verified, 3)
    async with serving(sim) as provider:
        results = await provider.lookup([ask(p) for p in people])
    assert all(r.outcome is Outcome.found for r in results)
    assert sim.calls["email_verify"] == sim.calls["email_verify_batch"] == 0
    assert sim.charged["verifier"] == 0
    work = [next(e for e in r.emails if e.kind is EmailKind.work) for r in results]
    assert {e.verification for e in work} == {"unverified"}


@pytest.mark.parametrize(("n", "batch"), [(1, False), (4, True)])
async def test_verification_on_checks_unverified_work_emails(n: int, batch: bool) -> None:
    sim = simulator()
    unverified = pick(lambda q: full_info(q) and not q.email_verified, n)
    verified = pick(lambda q: full_info(q) and q.email_verified)
    async with serving(sim, verify_emails=True) as provider:
        results = await provider.lookup([ask(p) for p in [*unverified, *verified]])
    assert (sim.calls["email_verify_batch"] > 0) is batch
    assert (sim.calls["email_verify"] > 0) is not batch
    for result in results[:n]:
        work = next(e for e in result.emails if e.kind is EmailKind.work)
        assert work.verification == "accept_all"  # the sim's verdict for an unverified work email
        assert result.credits == 4  # search + email + phone + verifier
    verified_work = next(e for e in results[n].emails if e.kind is EmailKind.work)
    assert verified_work.verification == "verified" and results[n].credits == 3  # not checked again
    assert sim.charged["verifier"] == n
    assert sum(r.credits for r in results) == charged_total(sim)


async def test_verifier_out_of_credits_keeps_the_results() -> None:
    sim = simulator(credits={"verifier": 0})
    p = pick(lambda q: full_info(q) and not q.email_verified)[0]
    async with serving(sim, verify_emails=True) as provider:
        [result] = await provider.lookup([ask(p)])
        [again] = await provider.lookup([ask(p)])
    assert result.outcome is Outcome.found and again.outcome is Outcome.found
    assert sim.calls["email_verify"] == 1  # then verification is off; the vendor is not
    assert provider.stopped is None


# --- failures -------------------------------------------------------------------------------------


async def test_out_of_credits_raises_then_no_further_calls() -> None:
    sim = simulator(credits={"search": 0})
    p = pick(full_info)[0]
    async with serving(sim) as provider:
        with pytest.raises(OutOfCredits, match="out of credits"):
            await provider.lookup([ask(p)])
        calls = sim.faults.calls
        with pytest.raises(OutOfCredits):
            await provider.lookup([known(p), ask(p)])
        assert sim.faults.calls == calls  # refused by the provider itself
        assert isinstance(provider.stopped, OutOfCredits)


async def test_credits_running_out_midway_keep_what_was_bought() -> None:
    sim = simulator(credits={"search": 1})
    a, b = pick(full_info, 2)
    async with serving(sim, http={"max_concurrency": 1}) as provider:
        first, second = await provider.lookup([ask(a), ask(b)])
        assert first.outcome is Outcome.found and first.credits == 3
        assert second.outcome is Outcome.error and "out of credits" in (second.error or "")
        calls = sim.faults.calls
        with pytest.raises(OutOfCredits):
            await provider.lookup([ask(b)])
        assert sim.faults.calls == calls


async def test_no_access_to_endpoint_is_out_of_credits() -> None:
    sim = simulator()
    sim.denied.add("v2_batch")
    people = pick(lambda q: findable(q) and not q.garbage, 31)
    async with serving(sim) as provider:
        with pytest.raises(OutOfCredits, match="No access to endpoint"):
            await provider.lookup([known(p) for p in people])


@pytest.mark.parametrize("doc_status_codes", [True, False])
async def test_bad_token_is_auth_error_without_the_token(
    doc_status_codes: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sim = simulator(doc_status_codes=doc_status_codes)
    wrong = "co-wrong-token-9876543210"
    p = pick(full_info)[0]
    with all_logs(caplog) as events:
        async with serving(sim, token=wrong) as provider:
            with pytest.raises(AuthError) as info:
                await provider.lookup([ask(p), known(p)])
            calls = sim.faults.calls
            with pytest.raises(AuthError) as again:
                await provider.lookup([ask(p)])
            assert sim.faults.calls == calls
    assert info.value.status == (400 if doc_status_codes else 401)
    for text in (str(info.value), repr(info.value), str(again.value), repr(events)):
        assert wrong not in text and TOKEN not in text
    assert "Bad credentials" in str(info.value)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (400, "Bad credentials or invalid headers", AuthError),  # the docs' table
        (401, "Bad request or invalid input", BadRequest),  # the docs' table: not a credentials problem
        (401, "Unauthorized", AuthError),  # the conventional reading
        (400, "Bad request or invalid input", BadRequest),
        (401, "", AuthError),
        (400, "", BadRequest),
        (403, "You're out of credits, please email your sales manager", OutOfCredits),
        (403, "No access to endpoint", OutOfCredits),
        (418, "teapot", MalformedResponse),
    ],
)
def test_error_classification(status: int, message: str, kind: type[Exception]) -> None:
    body = {"status_code": status, "message": message} if message else {}
    error = failure_of("contactout", httpx.Response(status, json=body))
    assert type(error) is kind
    assert error.status == status


async def test_bad_input_is_a_per_contact_error_not_an_auth_error() -> None:
    # the simulator refuses this URL as bad input (401 by the docs' table): only that contact fails
    sim = simulator()
    p = pick(full_info)[0]
    odd = "https://www.linkedin.com/in/x"
    async with serving(sim) as provider:
        results = await provider.lookup([ask(p), ask(p, contact_id=7, vendor_id=odd)])
    assert results[0].outcome is Outcome.found
    assert results[1].outcome in {Outcome.not_found, Outcome.error}
    assert provider.stopped is None


async def test_rate_limit_429_with_retry_after_then_success() -> None:
    t0 = time.monotonic()
    # People Enrich is in the general class ("other APIs"): one such request per minute, and a window
    # that ends a second after the first call
    sim = simulator(general_per_minute=1, clock=lambda: time.monotonic() - t0 + 59.0)
    a, b = pick(full_info, 2)
    async with serving(sim) as provider:
        results = await provider.lookup([ask(a), ask(b)])
    assert [r.outcome for r in results] == [Outcome.found, Outcome.found]
    assert sim.calls["status_429"] >= 1 and sim.calls["people_enrich"] == 2 + sim.calls["status_429"]
    assert provider.client.stats.throttled >= 1
    assert sum(r.credits for r in results) == charged_total(sim)


async def test_people_enrich_is_not_held_to_the_search_rate() -> None:
    # no People Search-class limiter (60/min) is applied to People Enrich
    clock = ManualClock()
    sim = simulator()
    people = pick(full_info, 3)
    async with serving(sim, sleep=clock.sleep) as provider:
        results = await provider.lookup([ask(p) for p in people])
    assert all(r.outcome is Outcome.found for r in results)
    assert sim.calls["people_enrich"] == 3
    assert clock.sleeps == []  # a 1/s limiter would have waited before the second and third call


async def test_injected_429_and_5xx_are_retried() -> None:
    sim = simulator(faults=Faults(throttle_every=3, retry_after=0.01, error_every=4))
    people = pick(full_info, 4)
    async with serving(sim) as provider:
        results = await provider.lookup([ask(p) for p in people])
    assert all(r.outcome is Outcome.found for r in results)
    assert sim.faults.injected["throttle"] >= 1 and sim.faults.injected["error"] >= 1
    assert provider.client.stats.retries >= 2
    assert sum(r.credits for r in results) == charged_total(sim)


async def test_service_down_raises_service_unavailable() -> None:
    sim = simulator(faults=Faults(error_every=1))
    p = pick(full_info)[0]
    async with serving(sim) as provider:
        with pytest.raises(ServiceUnavailable):
            await provider.lookup([ask(p), known(p)])
        assert provider.stopped is None  # try again later: not a reason to stop for good


async def test_garbage_values_are_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    sim = simulator()
    p = pick(lambda q: findable(q) and q.garbage and unique_garbage(q))[0]
    with all_logs(caplog) as events:
        async with serving(sim) as provider:
            [result] = await provider.lookup([ask(p)])
    assert result.outcome is Outcome.found and result.vendor_id == p.linkedin_url
    assert result.emails == () and result.phones == ()
    rejected = named(events, "vendor.value_rejected")
    # syncd's field names, the merge's reasons, and the contact the profile was found for
    assert {(e["field"], e["reason"]) for e in rejected} == {
        ("email", SkipReason.invalid_email.value),
        ("other_number", SkipReason.invalid_number.value),
    }
    assert {e["contact_id"] for e in rejected} == {p.contact_id}
    assert "n/a" not in repr(result) and "not-a-number" not in repr(result)
    assert result.credits == 3 == charged_total(sim)  # garbage is charged all the same


def unique_garbage(p: Person) -> bool:
    return identities()[identity(p)] == 1


async def test_html_page_instead_of_json() -> None:
    sim = simulator(faults=Faults(html_every=1))
    p = pick(full_info)[0]
    async with serving(sim) as provider:
        with pytest.raises(MalformedResponse, match="HTML"):
            await provider.lookup([ask(p)])
        assert provider.stopped is None


async def test_broken_json_is_a_per_contact_error_when_others_succeed() -> None:
    sim = simulator()
    sim.malformed.add("people_linkedin")
    a, b = pick(full_info, 2)
    async with serving(sim, contact_fetch="inline") as provider:
        fine, broken = await provider.lookup([ask(a), known(b)])
    assert fine.outcome is Outcome.found
    assert broken.outcome is Outcome.error and "invalid JSON" in (broken.error or "")


async def test_broken_bulk_job_body_raises_malformed() -> None:
    sim = simulator()
    sim.malformed.add("v2_batch_poll")
    people = pick(lambda q: findable(q) and not q.garbage, 31)
    async with serving(sim) as provider:
        with pytest.raises(MalformedResponse):
            await provider.lookup([known(p) for p in people])


# --- the simulator's own contract -----------------------------------------------------------------


@contextmanager
def raw(sim: ContactOutSimulator) -> Iterator[httpx.Client]:
    with SimServer(sim.app) as srv, httpx.Client(base_url=srv.url, headers={"token": TOKEN}) as client:
        yield client


def test_sim_auth_and_input_errors_follow_the_docs_table() -> None:
    sim = simulator()
    with raw(sim) as client:
        r = client.post("/v1/people/enrich", json={"email": "a@b.example"}, headers={"token": "nope"})
        assert (r.status_code, r.json()["message"]) == (400, "Bad credentials or invalid headers")
        r = client.get("/v1/stats", headers={"token": ""})
        assert r.status_code == 400
        r = client.post("/v1/people/enrich", json={"full_name": "Jane Doe"})  # name without a secondary
        assert (r.status_code, r.json()["message"]) == (401, "Bad request or invalid input")
        r = client.post("/v1/people/enrich", json={"first_name": "Jane", "company": ["Acme"]})
        assert r.status_code == 401
        r = client.post("/v1/people/enrich", json={"email": "a@b.example", "include": ["fax"]})
        assert r.status_code == 401
    conventional = simulator(doc_status_codes=False)
    with raw(conventional) as client:
        assert client.get("/v1/stats", headers={"token": "nope"}).status_code == 401
        assert client.post("/v1/people/enrich", json={}).status_code == 400


def test_sim_people_enrich_shape_and_charges() -> None:
    sim = simulator()
    p = pick(full_info)[0]
    _first, second = _ambiguous_pair()
    with raw(sim) as client:
        r = client.post(
            "/v1/people/enrich",
            json={
                "first_name": p.first_name,
                "last_name": p.last_name,
                "company": [p.company],
                "include": ["phone"],
            },
        )
        profile = r.json()["profile"]
        assert r.json()["status_code"] == 200
        assert profile["url"] == p.linkedin_url and profile["full_name"] == p.full_name
        assert profile["company"]["name"] == p.company
        assert profile["work_email"] == [] and profile["phone"] and profile["altMatches"] == []
        assert sim.charged == Counter({"search": 1, "phone": 1})
        r = client.post(
            "/v1/people/enrich", json={"full_name": second.full_name, "company": [second.company]}
        )
        alts = r.json()["profile"]["altMatches"]
        assert len(alts) >= 1 and {a["url"] for a in alts} <= {q.linkedin_url for q in persons()}
        r = client.post("/v1/people/enrich", json={"email": "nobody@nowhere.example"})
        assert (r.status_code, r.json()) == (404, {"status_code": 404, "message": "Not Found"})
        r = client.post("/v1/people/enrich", json={"linkedin_url": p.linkedin_url, "include": ["work_email"]})
        assert r.json()["profile"]["work_email_status"] == {
            p.work_email: "Verified" if p.email_verified else "Unverified"
        }
        r = client.post("/v1/people/enrich", json={"full_name": p.full_name, "location": "Berlin"})
        assert r.status_code == 404  # the sim knows no locations
        # every identifier given is used, strongest first: the first one that finds someone decides
        gone = pick(lambda q: q.route is Route.unknown)[0]
        other = pick(lambda q: full_info(q) and q.contact_id != p.contact_id)[0]
        r = client.post("/v1/people/enrich", json={"linkedin_url": gone.linkedin_url, "email": p.work_email})
        assert r.json()["profile"]["url"] == p.linkedin_url  # an unknown URL: the email decides
        r = client.post("/v1/people/enrich", json={"linkedin_url": p.linkedin_url, "email": other.work_email})
        assert r.json()["profile"]["url"] == p.linkedin_url  # the URL comes first
        r = client.post(
            "/v1/people/enrich",
            json={
                "email": "nobody@nowhere.example",
                "full_name": other.full_name,
                "company": [other.company],
            },
        )
        assert r.json()["profile"]["url"] == other.linkedin_url  # then name + company


def test_sim_contact_info_batches_and_jobs() -> None:
    sim = simulator(batch_delay=0.0)
    people = pick(lambda q: findable(q) and not q.garbage, 3)
    urls = [p.linkedin_url for p in people]
    with raw(sim) as client:
        r = client.get("/v1/people/linkedin", params={"profile": urls[0], "email_type": "none"})
        assert r.json()["profile"]["email"] == [] and "phone" in r.json()["profile"]
        assert (
            client.get("/v1/people/linkedin", params={"profile": "https://example.com/x"}).status_code == 401
        )
        r = client.post("/v1/people/linkedin/batch", json={"profiles": urls * 11})  # 33 > 30
        assert r.status_code == 401
        r = client.post("/v1/people/linkedin/batch", json={"profiles": urls})
        assert set(r.json()["profiles"]) == set(urls)
        r = client.post("/v2/people/linkedin/batch", json={"profiles": urls, "include_phone": True})
        assert r.json()["status"] == "QUEUED"
        data = client.get(f"/v2/people/linkedin/batch/{r.json()['job_id']}").json()["data"]
        assert data["status"] == "SENT" and set(data["result"]) == set(urls)
        assert set(data["result"][urls[0]]) == {"emails", "personal_emails", "work_emails", "phones"}
        assert client.get("/v2/people/linkedin/batch/no-such-job").status_code == 404
        r = client.get("/v1/people/linkedin/work_email_status", params={"profile": urls[0]})
        assert set(r.json()["profile"]) == {"email", "email_status"}
    assert sim.charged["search"] == 0


def test_sim_email_verifier_and_stats() -> None:
    sim = simulator(batch_delay=0.0, credits={"email": 5})
    p = pick(lambda q: full_info(q) and q.email_verified)[0]
    q = pick(lambda x: full_info(x) and not x.email_verified)[0]
    with raw(sim) as client:
        r = client.get("/v1/email/verify", params={"email": p.work_email})
        assert r.json() == {"status_code": 200, "data": {"status": "valid"}}
        emails = [q.work_email, "someone@unknown.example", "x@mailinator.com"]
        job = client.post("/v1/email/verify/batch", json={"emails": emails}).json()
        assert job["status"] == "QUEUED"
        data = client.get(f"/v1/email/verify/batch/{job['job_id']}").json()["data"]
        assert data["status"] == "DONE"
        assert data["result"] == {emails[0]: "accept_all", emails[1]: "invalid", emails[2]: "disposable"}
        assert sim.charged["verifier"] == 3  # disposable is free
        stats = client.get("/v1/stats", params={"period": "2023-02"}).json()
        assert stats["period"] == {"start": "2023-02-01", "end": "2023-02-28"}
        assert stats["usage"]["quota"] == 5 and stats["usage"]["count"] == 0
        assert set(stats["usage"]) == {
            f"{prefix}{key}"
            for prefix in ("", "phone_", "search_")
            for key in ("count", "quota", "remaining", "over_quota")
        }
        assert client.get("/v1/stats", params={"period": "2023-13"}).status_code == 401


def test_sim_rate_limit_classes_and_out_of_credits() -> None:
    # People Search 60/min is for the search endpoint; People Enrich is one of the "other APIs"
    assert RATE_CLASS["people_search"] == "search"
    assert RATE_CLASS.get("people_enrich", "general") == "general"
    assert RATE_CLASS.get("people_linkedin", "general") == "general"
    assert RATE_CLASS["email_verify"] == RATE_CLASS["email_verify_batch"] == "checker"
    # a fixed clock: every request falls in the window [960, 1020)
    sim = simulator(
        general_per_minute=4,
        search_per_minute=1,
        checker_per_minute=1,
        credits={"phone": 0},
        clock=lambda: 1000.0,
    )
    p = pick(full_info)[0]
    with raw(sim) as client:
        body = {"linkedin_url": p.linkedin_url}
        # more than the search class allows: People Enrich is not counted there
        assert client.post("/v1/people/enrich", json=body).status_code == 200
        assert client.post("/v1/people/enrich", json=body).status_code == 200
        # the checker class is counted apart
        assert client.get("/v1/email/verify", params={"email": p.work_email}).status_code == 200
        r = client.get("/v1/email/verify", params={"email": p.work_email})
        assert (r.status_code, r.headers["retry-after"]) == (429, "20")
        # the general class, shared by People Enrich and Contact Info: calls 3 and 4 of 4
        r = client.get("/v1/people/linkedin", params={"profile": p.linkedin_url, "include_phone": "true"})
        assert (r.status_code, r.json()["message"]) == (
            403,
            "You're out of credits, please email your sales manager",
        )
        assert client.get("/v1/people/linkedin", params={"profile": p.linkedin_url}).status_code == 200
        r = client.post("/v1/people/enrich", json=body)
        assert (r.status_code, r.headers["retry-after"]) == (429, "20")
        assert client.get("/v1/people/linkedin", params={"profile": p.linkedin_url}).status_code == 429
    assert sim.charged["phone"] == 0
    assert sim.calls["status_429"] == 3


def test_sim_findability_follows_the_dataset() -> None:
    for p in persons()[:60]:
        assert (ORACLE.person_for_url(p.linkedin_url) is not None) == (p.route is not Route.unknown)
    p = pick(findable)[0]
    assert ORACLE.person_for_url(p.linkedin_url.replace("https://www.", "http://").upper() + "/") is not None
    assert linkedin_slug("https://www.linkedin.com/sales/lead/123") is None
