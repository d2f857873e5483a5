"""The client against the PBX behaviours the docs leave open, each reading behind a simulator switch.

Token storms (tokens dying after a few uses while requests are in flight, 503s on refresh_token), refused
refresh tokens, `company_contact/query`'s `ids=` vs `id=`, the sel_all "All Company Contacts" phonebook,
"Last First" contact names, and 10005 / 20002 refusals.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from syncd.errors import EXIT_CONFIG, ServiceUnavailable
from syncd.pbx.client import detailed_name
from syncd.pbx.errors import PbxAuthError, PbxPermissionError, PbxTokenUnavailable
from syncd.sim.dataset import Dataset
from syncd.sim.pbx import PbxSimulator
from tests.pbx.test_client import AnswerExpired, all_ids, client, served

# --- token storms ----------------------------------------------------------------------------------------


async def test_a_token_storm_with_four_updates_in_flight_writes_every_contact() -> None:
    sim = PbxSimulator(Dataset(40), token_uses=3)
    sim.faults.error_every = 11  # an occasional 503 on any call
    sim.unavailable_every = {"refresh_token": 2}  # and every other refresh answered 503 first
    emails = {cid: f"storm{cid}@example.com" for cid in range(1, 41)}
    with served(sim.app) as url:
        pbx = client(url)
        semaphore = asyncio.Semaphore(4)

        async def write(cid: int) -> None:
            async with semaphore:
                await pbx.update_contact(cid, {"email": emails[cid]})

        await asyncio.gather(*(write(cid) for cid in emails))
        await pbx.close(revoke=False)
    assert {cid: sim.contact(cid)["email"] for cid in emails} == emails
    assert len(sim.updates) == 40  # each update accepted exactly once
    assert sim.unavailable["refresh_token"] >= 1 and sim.faults.injected.get("error", 0) >= 1
    assert pbx.refreshes >= 10  # 40 writes on tokens good for 3 calls each
    assert pbx.logins == 1  # every refresh succeeded in the end: no new login
    # one refresh at a time: every refresh answered replaced the one live token
    assert sim.live_tokens() == 1


async def test_a_refused_refresh_token_falls_back_to_one_login_never_more() -> None:
    sim = PbxSimulator(Dataset(5))
    with served(AnswerExpired(sim.app, "refresh_token", None)) as url:  # every refresh token refused
        pbx = client(url)
        await pbx.query_contacts([1])
        sim.expire_tokens()
        assert sorted(await pbx.query_contacts([1, 2])) == [1, 2]  # refresh refused -> one new login
        assert (pbx.logins, sim.calls["get_token"]) == (2, 2)
        sim.expire_tokens()
        with pytest.raises(PbxTokenUnavailable) as caught:
            await pbx.query_contacts([3])
        await pbx.close(revoke=False)
    assert isinstance(caught.value, ServiceUnavailable)
    assert sim.calls["get_token"] == 2  # the second refusal did not log in again


async def test_concurrent_calls_meeting_one_stale_token_share_one_refresh() -> None:
    sim = PbxSimulator(Dataset(20))
    with served(sim.app) as url:
        pbx = client(url)
        await pbx.query_contacts([1])
        sim.expire_tokens()
        found = await asyncio.gather(*(pbx.get_contact(cid) for cid in range(1, 9)))
        await pbx.close(revoke=False)
    assert [c.id for c in found if c is not None] == list(range(1, 9))
    assert sim.calls["refresh_token"] == 1
    assert pbx.logins == 1


# --- company_contact/query: ids= or id= ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "unknown", "first_calls"),
    [
        ("both", "error", 1),
        ("ids", "error", 1),
        ("ids", "ignore", 1),
        ("id", "error", 2),  # ids= refused with 40002, then id=
        ("id", "ignore", 2),  # ids= ignored (no asked id answered), then id=
    ],
)
async def test_query_finds_the_parameter_the_pbx_honours_and_remembers_it(
    reading: str, unknown: str, first_calls: int
) -> None:
    sim = PbxSimulator(Dataset(8), query_param=reading, unknown_query_param=unknown)
    memory: dict[str, str] = {}  # what the engine keeps for the process (QUERY_PARAM_MEMORY)
    with served(sim.app) as url:
        first = client(url, query_memory=memory)
        assert sorted(await first.query_contacts([1, 2, 3])) == [1, 2, 3]
        assert sim.calls["company_contact/query"] == first_calls
        assert sorted(await first.query_contacts([4])) == [4]
        second = client(url, query_memory=memory)  # the same PBX, a later run of this process
        assert sorted(await second.query_contacts([5, 6])) == [5, 6]
        await first.close(revoke=False)
        await second.close(revoke=False)
    assert sim.calls["company_contact/query"] == first_calls + 2  # remembered: one call each
    assert memory == {url.rstrip("/"): "id" if reading == "id" else "ids"}


@pytest.mark.parametrize("reading", ["ids", "id"])
async def test_query_for_deleted_contacts_answers_none_under_either_reading(reading: str) -> None:
    sim = PbxSimulator(Dataset(4), query_param=reading, unknown_query_param="ignore")
    with served(sim.app) as url:
        pbx = client(url)
        sim.delete_contact(2)
        sim.delete_contact(3)
        assert await pbx.query_contacts([2, 3]) == {}
        assert sorted(await pbx.query_contacts([1, 2, 4])) == [1, 4]
        await pbx.close(revoke=False)


# --- the "All Company Contacts" phonebook ----------------------------------------------------------------


@pytest.mark.parametrize("refuse", [True, False])
async def test_phonebook_id_list_never_names_the_sel_all_phonebook(refuse: bool) -> None:
    sim = PbxSimulator(Dataset(6))
    every = sim.all_contacts_phonebook(refuse_members=refuse)
    with served(sim.app) as url:
        pbx = client(url)
        for cid in (1, 2, 3):
            held = await pbx.get_contact(cid)
            assert held is not None and every in held.phonebook_ids  # listed in every contact
            specific = [p for p in held.phonebook_ids if p != every]
            await pbx.update_contact(
                cid,
                {
                    "number_list": [{"num_type": "other_number", "number": f"+1555000{cid}"}],
                    "phonebook_id_list": list(held.phonebook_ids),
                },
            )
            after = await pbx.get_contact(cid)
            assert after is not None and after.phonebook_ids == held.phonebook_ids
            assert sim.updates[-1]["phonebook_id_list"] == specific
        assert await pbx.sel_all_phonebook_ids() == {every}
        await pbx.close(revoke=False)
    assert sim.refused_members == 0
    assert sim.calls["phonebook/list"] == 1  # read once per client (per run)


# --- contact_name rendered "Last First" ------------------------------------------------------------------


@pytest.mark.parametrize("order", ["first_last", "last_first"])
async def test_a_contact_read_back_has_the_name_the_listing_gives(order: str) -> None:
    sim = PbxSimulator(Dataset(12), name_order=order)
    with served(sim.app) as url:
        pbx = client(url)
        listed = {}
        async for page in pbx.iter_contact_pages():
            listed.update({c.id: c for c in page})
        queried = await pbx.query_contacts(listed)
        single = await pbx.get_contact(5)
        await pbx.close(revoke=False)
    assert queried == listed  # every field syncd reads, names included, in one form
    assert single == listed[5]
    first, last = sim.contact(5)["first_name"], sim.contact(5)["last_name"]
    expected = f"{last} {first}" if order == "last_first" else f"{first} {last}"
    assert listed[5].name == expected


def test_detailed_name_takes_the_listing_form_only_for_the_same_words() -> None:
    assert detailed_name("Ada", "Lovelace", "Lovelace Ada") == "Lovelace Ada"
    assert detailed_name("Ada", "Lovelace", "Ada Lovelace") == "Ada Lovelace"
    assert detailed_name("Ada", "Byron", "Lovelace Ada") == "Ada Byron"  # renamed since the listing
    assert detailed_name("Ada", "Byron", None, last_first=True) == "Byron Ada"
    assert detailed_name("Ada", "", "Ada") == "Ada"


_part = st.text(st.characters(categories=["L"]), min_size=1, max_size=8)


@given(first=_part, last=_part, last_first=st.booleans())
def test_detailed_name_always_matches_the_listing_of_the_same_contact(
    first: str, last: str, last_first: bool
) -> None:
    listed = f"{last} {first}" if last_first else f"{first} {last}"
    assert detailed_name(first, last, listed) == listed
    assert detailed_name(first, last, None, last_first=last_first) == listed


@given(first=_part, last=_part, other=_part)
def test_detailed_name_never_takes_a_listing_of_other_words(first: str, last: str, other: str) -> None:
    assume(sorted(other.casefold().split()) != sorted(last.casefold().split()))
    assert detailed_name(first, last, f"{other} {first}") == f"{first} {last}"


# --- 10005 and 20002 ---------------------------------------------------------------------------------------


async def test_login_refused_with_20002_is_one_attempt_and_a_credential_error() -> None:
    sim = PbxSimulator(Dataset(3), login_refusal_errcode=20002)
    with served(sim.app) as url:
        pbx = client(url, secret="not-the-secret-20002")
        with pytest.raises(PbxAuthError) as caught:
            await pbx.query_contacts([1])
        await pbx.close(revoke=False)
    assert caught.value.errcode == 20002 and caught.value.exit_code == EXIT_CONFIG
    assert "client_secret" in str(caught.value)
    assert "not-the-secret-20002" not in str(caught.value)
    assert sim.calls["get_token"] == 1


@pytest.mark.parametrize(
    ("endpoint", "permission"),
    [("company_contact/update", "Contacts (write)"), ("company_contact/list", "Contacts (read)")],
)
async def test_10005_on_a_data_call_names_the_missing_permission_and_is_not_retried(
    endpoint: str, permission: str
) -> None:
    sim = PbxSimulator(Dataset(3))
    sim.denied = {endpoint}
    with served(sim.app) as url:
        pbx = client(url)
        with pytest.raises(PbxPermissionError) as caught:
            if endpoint == "company_contact/update":
                await pbx.update_contact(1, {"email": "a@example.com"})
            else:
                await all_ids(pbx)
        with pytest.raises(PbxPermissionError):  # known refused: not asked again in this run
            await pbx.update_contact(2, {"email": "b@example.com"}) if endpoint.endswith(
                "update"
            ) else await all_ids(pbx)
        await pbx.close(revoke=False)
    assert caught.value.errcode == 10005 and caught.value.exit_code == EXIT_CONFIG
    assert isinstance(caught.value, PbxAuthError)  # the daemon pauses on it as on a refused login
    assert permission in str(caught.value) and endpoint in str(caught.value)
    assert sim.calls[endpoint] == 1
    assert sim.calls["get_token"] == 1 and sim.calls["refresh_token"] == 0
