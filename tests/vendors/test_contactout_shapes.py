"""ContactOut as it really answers: values as arrays, lone strings or objects; names as the PBX holds them
(never a display string in the PBX's word order); sample payloads of a trial key never stored as data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from syncd.errors import AuthError
from syncd.model import EmailKind, LookupRequest, Outcome
from syncd.normalize import to_e164
from syncd.sim.contactout import INCLUDE_VALUES, SAMPLE_PROFILE
from syncd.sim.dataset import Person
from syncd.vendors.contactout import SampleData, _strings, is_sample, sample_markers, with_names
from tests.vendors.test_contactout import (
    ORACLE,
    Recorder,
    ask,
    assert_contact_data,
    full_info,
    known,
    persons,
    pick,
    serving,
    simulator,
)


def test_strings_reads_arrays_lone_strings_and_objects() -> None:
    assert _strings(["a@b.example", " ", 3, None]) == ["a@b.example"]
    assert _strings(" +61.438347437") == ["+61.438347437"]
    assert _strings([{"email": "a@b.example"}, {"email": None}, {"other": "x"}]) == ["a@b.example"]
    assert _strings({"email": "a@b.example"}) == ["a@b.example"]
    assert _strings("") == [] and _strings(None) == [] and _strings(42) == []
    assert to_e164(_strings(" +61.438347437")[0], "US") == "+61438347437"


@pytest.mark.parametrize("shape", ["arrays", "objects"])
async def test_every_value_of_a_matched_profile_is_read_in_any_array_shape(shape: str) -> None:
    people = pick(full_info, 5)
    async with serving(simulator(value_shape=shape)) as provider:
        results = await provider.lookup([ask(p) for p in people])
    for p, result in zip(people, results, strict=True):
        assert result.outcome is Outcome.found
        assert_contact_data(result, p)


def first_values(p: Person) -> tuple[set[tuple[str, EmailKind]], set[str]]:
    info = ORACLE.contact_info(p)
    emails = {(info.work_emails[0], EmailKind.work), (info.personal_emails[0], EmailKind.personal)}
    return emails, {n for n in [to_e164(info.phones[0], "US")] if n}


async def test_lone_string_values_are_read_phone_notation_and_all() -> None:
    people = pick(full_info, 5)
    sim = simulator(value_shape="strings")
    async with serving(sim) as provider:
        matched = await provider.lookup([ask(p) for p in people])
        refreshed = await provider.lookup([known(p) for p in people])
    for p, a, b in zip(people, matched, refreshed, strict=True):
        emails, phones = first_values(p)
        for result in (a, b):
            assert result.outcome is Outcome.found
            assert {(e.address, e.kind) for e in result.emails} == emails
            assert {ph.number for ph in result.phones} == phones
    # the answers really were lone strings like " +61.438347437"
    profile = sim._shaped(sim._profile(people[0], INCLUDE_VALUES, [])[0])
    assert isinstance(profile["phone"], str) and re.fullmatch(r" \+\d{1,3}\.\d+", profile["phone"])
    assert isinstance(profile["work_email"], str)


# --- names as the PBX holds them ------------------------------------------------------------------------


def last_first(p: Person) -> LookupRequest:
    """The request as a PBX that renders contact_name "Last First" gives it (the flat form)."""
    seed_first, _, seed_last = p.full_name.partition(" ")
    return ask(p, name=f"{seed_last} {seed_first}")


def simple_name(p: Person) -> bool:
    return full_info(p) and len(p.full_name.split()) == 2


async def test_a_last_first_display_name_finds_nobody_where_names_are_matched_in_order() -> None:
    people = pick(simple_name, 4)
    async with serving(simulator(name_order="given")) as provider:
        results = await provider.lookup([last_first(p) for p in people])
    assert [r.outcome for r in results] == [Outcome.not_found] * len(people)


async def test_first_and_last_name_from_the_pbx_are_sent_instead_of_the_display_name() -> None:
    people = pick(simple_name, 4)
    asked: list[list[int]] = []

    async def names(ids: Any) -> dict[int, tuple[str, str]]:
        asked.append(list(ids))
        by_id = {p.contact_id: p for p in persons()}
        return {cid: tuple(by_id[cid].full_name.split(" ", 1)) for cid in ids}  # type: ignore[misc]

    recorder = Recorder()
    sim = simulator(name_order="given")
    async with serving(sim, name_source=names, transport=recorder) as provider:
        results = await provider.lookup([last_first(p) for p in people])
    assert asked == [[p.contact_id for p in people]]  # one PBX query for the lookup
    for p, result in zip(people, results, strict=True):
        assert result.outcome is Outcome.found, result.error
        assert result.full_name == p.full_name
        assert_contact_data(result, p)
    first, last = people[0].full_name.split(" ", 1)
    sent = recorder.enrich[0]
    assert "full_name" not in sent
    assert (sent["first_name"], sent["last_name"]) == (first, last)


def test_with_names_keeps_the_request_when_the_pbx_lacks_a_part() -> None:
    request = LookupRequest(3, "Prichett Jay", "Acme")
    assert with_names(request, {}) is request
    assert with_names(request, {3: ("Jay", "")}) is request
    named = with_names(request, {3: (" Jay ", "Prichett")})
    assert (named.first_name, named.last_name, named.name) == ("Jay", "Prichett", "Jay Prichett")


# --- sample payloads ----------------------------------------------------------------------------------


# the docs' example answers (shared/vendor-docs/contactout-api.md), with their data fields verbatim
DOC_ENRICH = {
    "status_code": 200,
    "profile": {
        "url": "https://www.linkedin.com/in/example-person",
        "email": ["email1@example.com", "email2@gmail.com"],
        "work_email": ["email1@example.com"],
        "personal_email": ["email2@gmail.com"],
        "phone": ["+1234567891"],
        "github": ["github_name"],
        "twitter": ["twitter_username"],
        "full_name": "Example Person",
        "headline": "Manager, Business Operations & Marketing at OBM",
        "company": {"name": "Legros, Smitham and Kessler", "domain": "legros.com"},
    },
}
DOC_EMAIL_LOOKUP = {
    "status_code": 200,
    "profile": {
        "email": "0getfisher@gmail.com",
        "workEmail": "work-email@obm-international.com",
        "workEmailStatus": "Verified | Unverified",
        "fullName": "Bobbi Singh",
        "headline": "Manager, Business Operations & Marketing at OBM International",
        "linkedinUrl": "https://www.linkedin.com/in/bobbisingh",
        "profilePictureUrl": "https://images.contactout.com/profiles/ca33f14227b1e5d3a1d53b0b5ca36fc8",
        "altMatches": [],
        "phone": " +61.438347437",
        "company": {
            "name": "OBM International",
            "logo_url": "https://images.contactout.com/companies/voluptates",
        },
    },
}
DOC_CONTACT_INFO = {
    "status_code": 200,
    "profile": {
        "url": "https://www.linkedin.com/in/example-person",
        "email": ["email1@example.com", "email2@gmail.com"],
        "work_email": ["email1@example.com"],
        "work_email_status": {"email1@example.com": "Verified | Unverified"},
        "personal_email": ["email2@gmail.com"],
        "phone": ["phone number 1"],
        "github": ["github_name"],
    },
}
DOC_V2_RESULT = {
    "data": {
        "uuid": "x",
        "status": "SENT",
        "result": {
            "https://linkedin.com/in/at-JqjtXv": {
                "emails": ["test@gmail.com", "email1@example.com"],
                "personal_emails": ["test@gmail.com"],
                "work_emails": ["email1@example.com"],
                "phones": ["+123456789"],
            }
        },
    }
}


@pytest.mark.parametrize("body", [DOC_ENRICH, DOC_EMAIL_LOOKUP, DOC_CONTACT_INFO, DOC_V2_RESULT])
def test_every_example_answer_of_the_docs_is_recognised_as_sample_data(body: dict[str, Any]) -> None:
    assert is_sample(body), sorted(sample_markers(body))


def test_one_marker_alone_is_not_enough() -> None:
    assert not is_sample({"profile": {"full_name": "Example Person", "email": ["ann@acme.test"]}})
    assert not is_sample({"profile": {"work_email_status": {"a@acme.test": "Verified"}}})


def test_no_simulated_person_looks_like_sample_data() -> None:
    for p in persons()[:600]:
        profile, _, _ = ORACLE._profile(p, INCLUDE_VALUES, [])
        assert not is_sample({"status_code": 200, "profile": profile}), p.contact_id
    assert is_sample({"profile": SAMPLE_PROFILE})


async def test_a_sample_answer_stops_the_vendor_and_nothing_is_stored() -> None:
    people = pick(full_info, 3)
    sim = simulator(sample_payload=True)
    async with serving(sim) as provider:
        with pytest.raises(SampleData) as raised:
            await provider.lookup([ask(p) for p in people])
        assert isinstance(raised.value, AuthError)  # the waterfall stops the vendor for the run
        assert "sample data" in str(raised.value) and "production API key" in str(raised.value)
        calls = sum(sim.calls.values())
        with pytest.raises(SampleData):
            await provider.lookup([known(p) for p in people])
        assert sum(sim.calls.values()) == calls  # stopped: no further call
        assert provider.stopped is not None


async def test_a_sample_answer_to_a_refresh_stops_the_vendor_too() -> None:
    people = pick(full_info, 2)
    async with serving(simulator(sample_payload=True)) as provider:
        with pytest.raises(SampleData):
            await provider.lookup([known(p) for p in people])
