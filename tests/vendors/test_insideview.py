"""Contract tests: the InsideView provider against the InsideView simulator, over real loopback HTTP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from defusedxml import ElementTree as SafeET
from structlog.testing import capture_logs

from syncd.errors import AuthError, MalformedResponse, OutOfCredits, ServiceUnavailable
from syncd.http import HttpSettings
from syncd.merge import SkipReason
from syncd.model import EmailKind, EnrichmentResult, LookupRequest, Outcome, PhoneKind, Vendor
from syncd.normalize import to_e164
from syncd.sim.dataset import INSIDEVIEW_ID_BASE, Dataset, Route
from syncd.sim.faults import Faults
from syncd.sim.insideview import XML_BOMB, InsideViewSimulator, format_expiration
from syncd.sim.server import SimServer
from syncd.vendors.base import PHONE_FIELD, Provider
from syncd.vendors.insideview import (
    InsideViewProvider,
    _BadRecord,
    confidence_value,
    parse_contact,
    parse_expiration,
    parse_xml,
    verification_word,
)

CLIENT_ID = "iv-test-client"
SECRET = "iv-test-secret-9f8e7d6c5b4a"
FIXED_NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

DS = Dataset(600, seed=11)
IV_CIDS = [c for c in range(1, DS.size + 1) if DS.route(c) is Route.insideview]
CLEAN_CIDS = [c for c in IV_CIDS if not DS.person(c).garbage]
OTHER_CIDS = [c for c in range(1, DS.size + 1) if DS.route(c) is not Route.insideview]


def iv_id(cid: int) -> str:
    return str(INSIDEVIEW_ID_BASE + cid)


def req(cid: int, vendor_id: str | None = None) -> LookupRequest:
    person = DS.person(cid)
    return LookupRequest(
        contact_id=cid,
        name=person.full_name,
        company=person.company,
        vendor_id=vendor_id if vendor_id is not None else iv_id(cid),
    )


def sim(dataset: Dataset = DS, **kwargs: Any) -> InsideViewSimulator:
    kwargs.setdefault("client_id", CLIENT_ID)
    kwargs.setdefault("client_secret", SECRET)
    kwargs.setdefault("job_delay", 0.15)
    return InsideViewSimulator(dataset, **kwargs)


@contextmanager
def serving(simulator: InsideViewSimulator) -> Iterator[str]:
    with SimServer(simulator.app) as server:
        yield server.url


def settings(url: str, service: str, **kwargs: Any) -> HttpSettings:
    base: dict[str, Any] = {
        "timeout": 10.0,
        "max_attempts": 4,
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
    }
    base.update(kwargs)
    return HttpSettings(service=service, base_url=url, **base)


def provider(
    url: str,
    *,
    secret: str = SECRET,
    api: dict[str, Any] | None = None,
    clock: Callable[[], datetime] = lambda: FIXED_NOW,
    **kwargs: Any,
) -> InsideViewProvider:
    kwargs.setdefault("job_poll_initial", 0.05)
    kwargs.setdefault("job_poll_max", 0.2)
    kwargs.setdefault("job_timeout", 30)
    return InsideViewProvider(
        api=settings(url, "insideview", **(api or {})),
        login=settings(url, "insideview-login"),
        client_id=CLIENT_ID,
        client_secret=secret,
        clock=clock,
        **kwargs,
    )


def by_contact(results: list[EnrichmentResult]) -> dict[int, EnrichmentResult]:
    return {r.contact_id: r for r in results}


def assert_matches_dataset(result: EnrichmentResult) -> None:
    """A found result for a clean person carries exactly what the dataset says InsideView knows."""
    person = DS.person(result.contact_id)
    assert result.outcome is Outcome.found
    assert result.vendor is Vendor.insideview
    assert result.vendor_id == person.insideview_id
    assert result.full_name == person.full_name
    assert result.company == person.company
    assert result.title == person.title
    assert result.credits == 1
    assert result.fetched_at == FIXED_NOW
    [email] = result.emails
    assert email.address == person.work_email
    assert email.kind is EmailKind.work
    assert email.verification == ("verified" if person.email_verified else "unverified")
    assert email.confidence is not None and 0 < email.confidence <= 1
    kinds = {p.number: p.kind for p in result.phones}
    assert kinds[person.direct] is PhoneKind.direct
    switchboard = to_e164(DS.contact(result.contact_id - 1).numbers["business_number"], "US")
    if switchboard and switchboard != person.direct:
        assert kinds[switchboard] is PhoneKind.corporate
    for phone in result.phones:
        assert phone.number.startswith("+")


# --- the Provider protocol --------------------------------------------------------------------


async def test_is_a_provider_with_id_based_lookups() -> None:
    p = provider("http://127.0.0.1:9")
    try:
        assert isinstance(p, Provider)
        assert p.vendor is Vendor.insideview
        assert p.max_batch == 50
        assert p.can_lookup(req(1))
        assert not p.can_lookup(req(1, vendor_id=""))
        assert not p.can_lookup(replace(req(1), vendor_id=None))
        reqs = [req(1), req(4), replace(req(7), vendor_id=iv_id(4)), replace(req(10), vendor_id=None)]
        assert p.max_cost(reqs) == 2
    finally:
        await p.aclose()


# --- Bulk Contact Fetch -----------------------------------------------------------------------


def mixed_batch(s: InsideViewSimulator) -> tuple[list[LookupRequest], dict[str, list[int]]]:
    """50 requests: found, 404-602 (an id InsideView does not know), 400-110 (non-numeric), absent."""
    found = CLEAN_CIDS[:40]
    not_found = OTHER_CIDS[:5]
    invalid = [OTHER_CIDS[5], OTHER_CIDS[6], OTHER_CIDS[7]]
    absent = CLEAN_CIDS[40:42]
    s.omit_ids.update(iv_id(c) for c in absent)
    reqs = [req(c) for c in found]
    reqs += [req(c) for c in not_found]  # numeric, but not InsideView's: 404-602
    reqs += [req(c, vendor_id=v) for c, v in zip(invalid, ["abc12", "x", "12ab"], strict=True)]
    reqs += [req(c) for c in absent]
    assert len(reqs) == 50
    return reqs, {"found": found, "not_found": not_found, "invalid": invalid, "absent": absent}


@pytest.mark.parametrize("answer", ["json", "xml"])
async def test_bulk_batch_of_50_found_not_found_invalid_absent(answer: str) -> None:
    s = sim()
    s.force_xml = answer == "xml"
    reqs, groups = mixed_batch(s)
    with serving(s) as url:
        p = provider(url)
        try:
            results = await p.lookup(reqs)
        finally:
            await p.aclose()
    assert [r.contact_id for r in results] == [r.contact_id for r in reqs]
    got = by_contact(results)
    for cid in groups["found"]:
        assert_matches_dataset(got[cid])
    for cid in groups["not_found"] + groups["absent"]:
        assert got[cid].outcome is Outcome.not_found
        assert got[cid].credits == 0
    for cid in groups["invalid"]:
        assert got[cid].outcome is Outcome.error
        assert got[cid].error == "invalid InsideView id"
        assert got[cid].credits == 0
    assert s.calls["bulk"] == 1
    assert s.calls["token"] == 1
    assert sum(r.credits for r in results) == s.credits_charged == len(groups["found"])


async def test_json_and_xml_answers_give_identical_results() -> None:
    reqs = [req(c) for c in IV_CIDS[:30]] + [req(c) for c in OTHER_CIDS[:5]]
    outcomes = []
    for force_xml in (False, True):
        s = sim()
        s.force_xml = force_xml
        with serving(s) as url:
            p = provider(url)
            try:
                outcomes.append(await p.lookup(reqs))
            finally:
                await p.aclose()
    assert outcomes[0] == outcomes[1]


async def test_120_ids_are_three_bulk_calls_of_at_most_50() -> None:
    s = sim()
    reqs = [req(c) for c in IV_CIDS[:120]]
    with serving(s) as url:
        p = provider(url)
        try:
            results = await p.lookup(reqs)
        finally:
            await p.aclose()
    assert s.calls["bulk"] == 3
    assert sorted(s.bulk_sizes) == [20, 50, 50]
    assert all(r.outcome is Outcome.found for r in results)
    assert s.calls["token"] == 1  # three concurrent batches, one token


async def test_duplicate_ids_are_fetched_and_paid_once() -> None:
    s = sim()
    cid = CLEAN_CIDS[0]
    reqs = [req(cid), replace(req(cid), contact_id=9001)]  # two PBX contacts linked to one person
    with serving(s) as url:
        p = provider(url)
        try:
            results = await p.lookup(reqs)
        finally:
            await p.aclose()
    assert [r.contact_id for r in results] == [cid, 9001]
    assert all(r.outcome is Outcome.found for r in results)
    assert [r.credits for r in results] == [1, 0]
    assert s.bulk_sizes == [1]
    assert s.credits_charged == 1


async def test_a_malformed_record_fails_only_its_contact() -> None:
    s = sim()
    bad = CLEAN_CIDS[3]
    s.malformed_ids.add(iv_id(bad))
    reqs = [req(c) for c in CLEAN_CIDS[:8]]
    with serving(s) as url:
        p = provider(url)
        try:
            results = by_contact(await p.lookup(reqs))
        finally:
            await p.aclose()
    assert results[bad].outcome is Outcome.error
    assert "malformed" in (results[bad].error or "")
    for cid in CLEAN_CIDS[:8]:
        if cid != bad:
            assert_matches_dataset(results[cid])


async def test_garbage_values_never_come_out() -> None:
    ds = Dataset(300, seed=5, garbage_share=0.5)
    garbage = [c for c in range(1, 301) if ds.route(c) is Route.insideview and ds.person(c).garbage][:5]
    assert garbage
    s = sim(ds)
    reqs = [LookupRequest(contact_id=c, name="", company="", vendor_id=iv_id(c)) for c in garbage]
    with serving(s) as url, capture_logs() as logs:
        p = provider(url)
        try:
            results = await p.lookup(reqs)
        finally:
            await p.aclose()
    for result in results:
        assert result.outcome is Outcome.found
        assert result.emails == ()
        assert result.phones == ()
        assert result.title == ds.person(result.contact_id).title
    rejected = [e for e in logs if e["event"] == "vendor.value_rejected"]
    assert {e["contact_id"] for e in rejected} == set(garbage)
    # syncd's field names (never the vendor's corporatePhone/directPhone) and the merge's reasons
    assert {e["field"] for e in rejected} >= {"email", "business_number"}
    assert {e["field"] for e in rejected} <= {"email", *PHONE_FIELD.values()}
    assert all(e["vendor"] == "insideview" for e in rejected)
    assert {e["reason"] for e in rejected} <= {
        SkipReason.invalid_email.value,
        SkipReason.invalid_number.value,
    }


async def test_html_instead_of_json_is_malformed() -> None:
    s = sim(faults=Faults(html_every=2))  # request 1 mints the token, request 2 is the bulk call
    with serving(s) as url:
        p = provider(url)
        try:
            with pytest.raises(MalformedResponse):
                await p.lookup([req(c) for c in CLEAN_CIDS[:3]])
        finally:
            await p.aclose()


async def test_xml_bomb_is_malformed_not_a_hang() -> None:
    s = sim()
    s.xml_bomb = True
    with serving(s) as url:
        p = provider(url)
        try:
            with pytest.raises(MalformedResponse) as caught:
                await p.lookup([req(c) for c in CLEAN_CIDS[:3]])
        finally:
            await p.aclose()
    assert "XML refused" in str(caught.value)
    with pytest.raises(MalformedResponse):
        parse_xml(XML_BOMB.encode(), "insideview")
    with pytest.raises(MalformedResponse):
        parse_xml(b"<a>" * 5000 + b"</a>" * 5000, "insideview")
    with pytest.raises(MalformedResponse):
        parse_xml(b"<contactDetailsList><unclosed></contactDetailsList>", "insideview")


async def test_out_of_quota_is_out_of_credits() -> None:
    s = sim(credit_quota=3)
    with serving(s) as url:
        p = provider(url)
        try:
            with pytest.raises(OutOfCredits):
                await p.lookup([req(c) for c in CLEAN_CIDS[:10]])
        finally:
            await p.aclose()
    assert s.credits_charged == 0


# --- tokens -----------------------------------------------------------------------------------


async def test_token_is_minted_once_and_reused() -> None:
    s = sim()
    with serving(s) as url:
        p = provider(url)
        try:
            for chunk in (CLEAN_CIDS[:5], CLEAN_CIDS[5:10], CLEAN_CIDS[10:15]):
                await p.lookup([req(c) for c in chunk])
        finally:
            await p.aclose()
    assert s.calls["token"] == 1
    assert s.calls["bulk"] == 3


async def test_token_is_renewed_shortly_before_its_expiration_time() -> None:
    s = sim(token_lifetime=3600)
    now = [datetime.now(UTC)]
    with serving(s) as url, capture_logs() as logs:
        p = provider(url, clock=lambda: now[0])
        try:
            await p.lookup([req(CLEAN_CIDS[0])])
            now[0] += timedelta(seconds=3599)  # inside the safety margin: mint before the server refuses
            await p.lookup([req(CLEAN_CIDS[1])])
        finally:
            await p.aclose()
    assert s.calls["token"] == 2
    assert not [e for e in logs if e["event"] == "insideview.token_refused"]


async def test_expired_token_is_reminted_once_after_a_401() -> None:
    s = sim()
    with serving(s) as url, capture_logs() as logs:
        p = provider(url)
        try:
            await p.lookup([req(c) for c in CLEAN_CIDS[:3]])
            s.expire_tokens()
            results = await p.lookup([req(c) for c in CLEAN_CIDS[:150]])  # three concurrent batches
        finally:
            await p.aclose()
    assert all(r.outcome is Outcome.found for r in results)
    assert s.calls["token"] == 2  # one new token, however many batches saw the 401
    assert 1 <= len([e for e in logs if e["event"] == "insideview.token_refused"]) <= 3


async def test_a_second_401_in_a_row_is_an_auth_error() -> None:
    s = sim()
    s.accept_tokens = False
    with serving(s) as url:
        p = provider(url)
        try:
            with pytest.raises(AuthError) as caught:
                await p.lookup([req(CLEAN_CIDS[0])])
        finally:
            await p.aclose()
    assert s.calls["token"] == 2
    assert caught.value.status == 401


async def test_wrong_secret_is_an_auth_error_without_the_secret() -> None:
    s = sim()
    wrong = "iv-wrong-secret-0a1b2c3d4e"
    with serving(s) as url, capture_logs() as logs:
        p = provider(url, secret=wrong)
        try:
            with pytest.raises(AuthError) as caught:
                await p.lookup([req(CLEAN_CIDS[0])])
        finally:
            await p.aclose()
    assert s.calls["token"] == 1  # a refused login is never retried
    assert s.calls["bulk"] == 0
    message = f"{caught.value} {caught.value.reason!r} {caught.value.args!r}"
    assert wrong not in message
    assert SECRET not in message
    assert wrong not in repr(logs)


# --- throttling and server errors -------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [False, True])
async def test_a_429_storm_pauses_and_then_succeeds(retry_after: bool) -> None:
    s = sim(throttle_limit=2, throttle_window=0.3, throttle_retry_after=retry_after)
    reqs = [req(c) for c in IV_CIDS[:180]]  # four bulk calls against a limit of two per window
    with serving(s) as url:
        p = provider(url, api={"max_attempts": 12, "backoff_base": 0.05, "backoff_cap": 0.4})
        try:
            results = await p.lookup(reqs)
        finally:
            await p.aclose()
    assert s.throttled >= 1
    assert p.api.stats.throttled >= 1
    assert all(r.outcome is Outcome.found for r in results)
    assert s.credits_charged == len(reqs)


async def test_throttled_until_retries_run_out_is_service_unavailable() -> None:
    s = sim(throttle_limit=0, throttle_window=0.05)
    with serving(s) as url:
        p = provider(url, api={"max_attempts": 3})
        try:
            with pytest.raises(ServiceUnavailable):
                await p.lookup([req(CLEAN_CIDS[0])])
        finally:
            await p.aclose()
    assert s.throttled == 3


async def test_503s_are_retried() -> None:
    s = sim(faults=Faults(error_every=2))
    reqs = [req(c) for c in CLEAN_CIDS[:60]]
    with serving(s) as url:
        p = provider(url)
        try:
            results = by_contact(await p.lookup(reqs))
        finally:
            await p.aclose()
    assert s.faults.injected.get("error", 0) >= 1
    for r in reqs:
        assert_matches_dataset(results[r.contact_id])


async def test_503_until_retries_run_out_is_service_unavailable() -> None:
    s = sim()
    with serving(s) as url:
        p = provider(url, api={"max_attempts": 2})
        try:
            await p.lookup([req(CLEAN_CIDS[0])])  # mint while the server is healthy
            s.faults.error_every = 1
            with pytest.raises(ServiceUnavailable):
                await p.lookup([req(CLEAN_CIDS[1])])
        finally:
            await p.aclose()


async def test_one_failed_batch_keeps_the_paid_results_of_the_others() -> None:
    s = sim()
    reqs = [req(c) for c in CLEAN_CIDS[:100]]
    with serving(s) as url:
        p = provider(url, api={"max_attempts": 1, "max_concurrency": 1})
        try:
            await p.lookup([req(CLEAN_CIDS[0])])  # requests 1 and 2: the token and one bulk call
            s.faults.error_every = 3  # request 3, the first of the next two bulk calls, answers 503
            results = by_contact(await p.lookup(reqs))
        finally:
            await p.aclose()
    outcomes = [results[r.contact_id].outcome for r in reqs]
    assert outcomes.count(Outcome.found) == 50
    assert outcomes.count(Outcome.error) == 50
    failed = [results[r.contact_id] for r in reqs if results[r.contact_id].outcome is Outcome.error]
    assert all(r.error and "HTTP 503" in r.error and r.credits == 0 for r in failed)


# --- Contact Details Job ----------------------------------------------------------------------


async def test_job_flow_for_many_ids_with_two_jobs_at_most() -> None:
    s = sim(job_delay=0.2, max_running_jobs=2)
    found = CLEAN_CIDS[:9]
    bad = found[4]
    s.malformed_ids.add(iv_id(bad))
    reqs = [req(c) for c in found] + [req(OTHER_CIDS[0]), req(OTHER_CIDS[1], vendor_id="not-an-id")]
    with serving(s) as url:
        p = provider(url, job_threshold=5, job_max_ids=4)
        try:
            results = by_contact(await p.lookup(reqs))
        finally:
            await p.aclose()
    assert s.calls["bulk"] == 0
    assert s.calls["job_submit"] == 3  # 10 numeric ids in jobs of 4: three jobs
    assert s.peak_running_jobs == 2  # never a third while two are running
    assert s.calls["job_results"] == 3
    assert s.calls["job_status"] >= 3
    for cid in found:
        if cid == bad:
            assert results[cid].outcome is Outcome.error
            assert "malformed" in (results[cid].error or "")
        else:
            assert_matches_dataset(results[cid])
    assert results[OTHER_CIDS[0]].outcome is Outcome.not_found
    assert results[OTHER_CIDS[1]].outcome is Outcome.error
    assert results[OTHER_CIDS[1]].error == "invalid InsideView id"
    assert sum(r.credits for r in results.values()) == s.credits_charged == len(found)


@pytest.mark.parametrize("answer", ["json", "xml"])
async def test_job_and_bulk_results_agree(answer: str) -> None:
    reqs = [req(c) for c in IV_CIDS[:12]] + [req(c) for c in OTHER_CIDS[:3]]
    outcomes = []
    for threshold in (2000, 5):
        s = sim()
        s.force_xml = answer == "xml"  # job submit and status answers in XML too
        with serving(s) as url:
            p = provider(url, job_threshold=threshold)
            try:
                outcomes.append(await p.lookup(reqs))
            finally:
                await p.aclose()
    assert outcomes[0] == outcomes[1]


async def test_busy_job_slots_are_waited_for() -> None:
    s = sim(job_delay=0.15, max_running_jobs=1)  # the account has fewer slots than the provider expects
    reqs = [req(c) for c in CLEAN_CIDS[:8]]
    with serving(s) as url, capture_logs() as logs:
        p = provider(url, job_threshold=5, job_max_ids=4)
        try:
            results = await p.lookup(reqs)
        finally:
            await p.aclose()
    assert all(r.outcome is Outcome.found for r in results)
    assert s.peak_running_jobs == 1
    assert len(s.jobs) == 2
    assert any(e["event"] == "insideview.job_slots_busy" for e in logs)


async def test_job_not_finished_in_time_is_service_unavailable() -> None:
    s = sim(job_delay=60)
    with serving(s) as url:
        p = provider(url, job_threshold=1, job_timeout=0.3)
        try:
            with pytest.raises(ServiceUnavailable):
                await p.lookup([req(CLEAN_CIDS[0])])
        finally:
            await p.aclose()


# --- secrets ----------------------------------------------------------------------------------


async def test_secrets_and_tokens_never_reach_any_log(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncd")
    s = sim(faults=Faults(error_every=3))
    with serving(s) as url, capture_logs() as logs:
        p = provider(url)
        try:
            await p.lookup([req(c) for c in CLEAN_CIDS[:120]])
            s.expire_tokens()
            await p.lookup([req(c) for c in CLEAN_CIDS[:60]])
            s.accept_tokens = False
            with pytest.raises(AuthError) as first:
                await p.lookup([req(CLEAN_CIDS[0])])
        finally:
            await p.aclose()
        wrong = provider(url, secret="iv-other-wrong-secret-77")
        s.faults.error_every = 0
        try:
            with pytest.raises(AuthError) as second:
                await wrong.lookup([req(CLEAN_CIDS[0])])
        finally:
            await wrong.aclose()
    assert len(s.tokens) >= 3
    captured = capsys.readouterr()
    everything = "\n".join(
        [repr(logs), caplog.text, captured.out, captured.err, str(first.value), str(second.value)]
    )
    assert logs  # something was logged: retries, refused tokens, minted tokens
    for secret in [SECRET, "iv-other-wrong-secret-77", *s.tokens]:
        assert secret not in everything


# --- the simulator's own contract -------------------------------------------------------------


def test_simulator_speaks_the_documented_protocol() -> None:
    s = sim()
    with serving(s) as url, httpx.Client(base_url=url) as client:
        creds = {"clientId": CLIENT_ID, "clientSecret": SECRET, "grantType": "cred"}
        assert (
            client.post("/Auth/login/v1/token.json", params={**creds, "clientSecret": "no"}).status_code
            == 401
        )
        assert (
            client.post("/Auth/login/v1/token.json", params={**creds, "grantType": "code"}).status_code == 400
        )
        xml_login = client.post("/Auth/login/v1/token", params=creds)
        assert SafeET.fromstring(xml_login.content).find("tokenType").text == "bearer"
        details = client.post("/Auth/login/v1/token.json", params=creds).json()["accessTokenDetails"]
        assert details["tokenType"] == "bearer"
        assert parse_expiration(details["expirationTime"]) is not None
        token = details["accessToken"]
        auth = {"accessToken": token}

        assert client.post("/api/v1/contact/bulk", json={"contactIds": ["1"]}).status_code == 401
        found, other = iv_id(CLEAN_CIDS[0]), iv_id(OTHER_CIDS[0])
        body = {"contactIds": [found, found, other, "56778f"]}
        xml = client.post("/api/v1/contact/bulk", json=body, headers=auth)  # XML is the default
        assert xml.headers["content-type"].startswith("application/xml")
        root = SafeET.fromstring(xml.content)
        assert root.tag == "contactDetailsList"
        assert [e.findtext("requestedContactId") for e in root] == [found, other, "56778f"]
        assert root[0].find("contact/titles/title") is not None
        answer = client.post(
            "/api/v1/contact/bulk", json=body, headers={**auth, "Accept": "application/json"}
        )
        entries = answer.json()
        assert [e["requestedContactId"] for e in entries] == [found, other, "56778f"]
        assert entries[0]["contact"]["contactId"] == int(found)
        assert entries[1]["error"] == {"errorCode": "404-602", "errorMessage": "contact not found."}
        assert entries[2]["error"] == {"errorCode": "400-110", "errorMessage": "Contact id is not valid."}
        too_many = {"contactIds": [str(INSIDEVIEW_ID_BASE + i) for i in range(51)]}
        assert client.post("/api/v1/contact/bulk", json=too_many, headers=auth).status_code == 400
        assert client.get("/api/v1/contact/bulk", headers=auth).status_code == 405

        single = client.get(f"/api/v1/contact/{found}", headers={**auth, "Accept": "application/json"})
        assert single.json()["contactId"] == int(found)
        assert client.get(f"/api/v1/contact/{other}", headers=auth).status_code == 404
        assert client.get("/api/v1/contact/12ab", headers=auth).status_code == 400
        assert s.credits_charged == 3  # two bulk answers with one contact each, one single fetch

        plain = {**auth, "Content-Type": "text/plain", "Accept": "application/json"}
        assert client.post("/api/v1/contact/job", content=found, headers={**auth}).status_code == 415
        assert client.post("/api/v1/contact/job", content="1,x", headers=plain).status_code == 400
        jobs = [
            client.post("/api/v1/contact/job", content=f"{found},{other}\n", headers=plain) for _ in range(2)
        ]
        assert [j.json()["status"] for j in jobs] == ["accepted", "accepted"]
        third = client.post("/api/v1/contact/job", content=found, headers=plain)
        assert third.status_code == 400 and "2 jobs are already running" in third.text
        job_id = jobs[0].json()["jobId"]
        assert client.get(f"/api/v1/contact/job/{job_id}/results", headers=auth).status_code == 400
        assert client.get("/api/v1/contact/job/nope", headers=auth).status_code == 404
        status = client.get(f"/api/v1/contact/job/{job_id}", headers=auth)
        assert SafeET.fromstring(status.content).tag == "BulkLeadEnrichmentStatus"
        s.jobs[job_id].created -= 10  # let it finish
        done = client.get(
            f"/api/v1/contact/job/{job_id}", headers={**auth, "Accept": "application/json"}
        ).json()
        assert done == {"jobId": job_id, "status": "finished", "type": "contacts", "totalProcessed": 2}
        csv_text = client.get(f"/api/v1/contact/job/{job_id}/results", headers=auth).text
        header, *rows = csv_text.strip().splitlines()
        assert header.startswith("requestedContactId,contactId,")
        assert len(rows) == 1 and rows[0].startswith(f"{found},{found},")

        s.expire_tokens()
        assert client.get(f"/api/v1/contact/{found}", headers=auth).status_code == 401


def test_simulator_throttles_the_whole_account() -> None:
    s = sim(throttle_limit=1, throttle_window=60, throttle_retry_after=True)
    with serving(s) as url, httpx.Client(base_url=url) as client:
        creds = {"clientId": CLIENT_ID, "clientSecret": SECRET, "grantType": "cred"}
        tokens = [
            client.post("/Auth/login/v1/token.json", params=creds).json()["accessTokenDetails"]["accessToken"]
            for _ in range(2)
        ]
        path = f"/api/v1/contact/{iv_id(CLEAN_CIDS[0])}"
        assert client.get(path, headers={"accessToken": tokens[0]}).status_code == 200
        throttled = client.get(path, headers={"accessToken": tokens[0]})
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        assert client.get(path, headers={"accessToken": tokens[1]}).status_code == 429  # the other token too
        s.unblock()
        assert client.get(path, headers={"accessToken": tokens[1]}).status_code == 200


# --- parsing units ----------------------------------------------------------------------------


def test_expiration_time_in_the_documented_format() -> None:
    assert parse_expiration("Tue, Jul 21, 2015 09:08:17 PM GMT") == datetime(
        2015, 7, 21, 21, 8, 17, tzinfo=UTC
    )
    assert parse_expiration("Wed, Jan 01, 2025 12:00:00 AM GMT") == datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_expiration("2025-01-01T10:00:00Z") == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert parse_expiration("soon") is None
    assert parse_expiration("") is None
    moment = datetime(2031, 3, 4, 15, 6, 7, tzinfo=UTC)
    assert parse_expiration(format_expiration(moment.timestamp())) == moment


def test_verification_and_confidence_mapping() -> None:
    assert verification_word("ValidEmail") == "verified"
    assert verification_word("ValidDomain") == "unverified"
    assert verification_word("InvalidEmail") == "invalid"
    assert verification_word("AcceptAll") == "accept_all"
    assert verification_word("Guessed") == "unknown"
    assert verification_word(None) is None
    assert confidence_value(0.8) == 0.8
    assert confidence_value("85") == 0.85
    assert confidence_value("n/a") is None
    assert confidence_value(True) is None


def test_phone_kinds_from_the_record() -> None:
    corporate_only = parse_contact(
        {"contactId": 9879814, "phone": "91 80 6616 8000", "corporatePhone": "91 80 6616 8000"}
    )
    assert [kind for _f, _n, kind in corporate_only.phones] == [PhoneKind.corporate, PhoneKind.corporate]
    typed = parse_contact(
        {
            "contactId": "1",
            "phone": "+1 212 210 0101",
            "phoneType": "CORPORATE",
            "directPhone": "+1 212 210 0102",
        }
    )
    assert [kind for _f, _n, kind in typed.phones] == [PhoneKind.direct, PhoneKind.corporate]
    untyped = parse_contact({"contactId": 2, "phone": "+1 212 210 0101"})
    assert [kind for _f, _n, kind in untyped.phones] == [PhoneKind.work]
    for broken in (
        "text",
        {"contactId": "x1"},
        {"contactId": 1, "titles": 42},
        {"contactId": 1, "emails": "a"},
    ):
        with pytest.raises(_BadRecord):
            parse_contact(broken)
