"""The Yeastar client against the PBX simulator over real loopback HTTP.

Token lifecycle (expiry mid-run, 10004, refresh, cache reuse, revoke), credential failures (one login
attempt, no lockout, a clear error, exit 78 through the CLI), IP blocks, pagination at the page-size
boundary, and transient faults (503s, stalls) retried to success.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.engine import StoreTokenCache
from syncd.errors import ServiceUnavailable
from syncd.http import HttpSettings
from syncd.pbx.client import MAX_RENEWALS, MemoryTokenCache, YeastarClient
from syncd.pbx.errors import PbxAuthError, PbxError, PbxTokenUnavailable
from syncd.sim.dataset import Dataset
from syncd.sim.launch import PBX_CLIENT_ID, PBX_SECRET
from syncd.sim.pbx import PbxSimulator
from syncd.sim.server import SimServer
from syncd.store import StateStore
from tests.e2e.harness import EnvFactory, endpoint_of

LOOPBACK = "127.0.0.1"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def served(app: ASGIApp) -> Iterator[str]:
    with SimServer(app) as srv:
        yield srv.url


def settings(url: str, *, timeout: float = 5.0, attempts: int = 6) -> HttpSettings:
    return HttpSettings(
        service="pbx",
        base_url=url,
        timeout=timeout,
        connect_timeout=timeout,
        backoff_base=0.01,
        backoff_cap=0.05,
        max_attempts=attempts,
    )


def client(url: str, secret: str = PBX_SECRET, **kwargs: object) -> YeastarClient:
    timeout = kwargs.pop("timeout", 5.0)
    assert isinstance(timeout, float)
    return YeastarClient(settings(url, timeout=timeout), PBX_CLIENT_ID, secret, **kwargs)  # type: ignore[arg-type]


async def all_ids(pbx: YeastarClient, page_size: int = 10_000) -> list[int]:
    ids: list[int] = []
    async for page in pbx.iter_contact_pages(page_size):
        ids.extend(c.id for c in page)
    return ids


class AnswerExpired:
    """Answers errcode 10004 to the next `times` requests to `endpoint` (None: to every one)."""

    def __init__(self, app: ASGIApp, endpoint: str, times: int | None) -> None:
        self.app = app
        self.endpoint = endpoint
        self.times = times
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        due = self.times is None or self.answered < self.times
        if scope["type"] == "http" and endpoint_of(scope) == self.endpoint and due:
            self.answered += 1
            body = json.dumps({"errcode": 10004, "errmsg": "TOKEN EXPIRED"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


# --- tokens ---------------------------------------------------------------------------------------------


async def test_access_token_expiring_mid_listing_is_refreshed_and_the_listing_goes_on() -> None:
    clock = Clock()
    sim = PbxSimulator(Dataset(25), token_lifetime=1800, clock=clock)
    with served(sim.app) as url:
        pbx = client(url)
        pages = pbx.iter_contact_pages(10)
        ids = [c.id for c in await anext(pages)]
        clock.advance(1801)  # the PBX now refuses the token; the client still thinks it valid
        async for page in pages:
            ids.extend(c.id for c in page)
        await pbx.close(revoke=False)
    assert ids == list(range(1, 26))
    assert sim.calls["get_token"] == 1
    assert sim.calls["refresh_token"] == 1
    assert sim.calls["company_contact/list"] == 4  # 3 pages + the one answered 10004
    assert (pbx.logins, pbx.refreshes) == (1, 1)


async def test_expired_tokens_are_refreshed_between_calls_and_writes_go_through() -> None:
    sim = PbxSimulator(Dataset(5))
    with served(sim.app) as url:
        pbx = client(url)
        assert len(await pbx.query_contacts([1, 2, 3])) == 3
        sim.expire_tokens()
        await pbx.update_contact(2, {"email": "someone@example.com"})
        assert (await pbx.get_contact(2)) is not None
        await pbx.close(revoke=False)
    assert sim.contact(2)["email"] == "someone@example.com"
    assert len(sim.updates) == 1
    assert sim.calls["get_token"] == 1
    assert sim.calls["refresh_token"] == 1


async def test_token_near_its_expiry_is_refreshed_before_use() -> None:
    sim_clock, client_clock = Clock(), Clock()
    sim = PbxSimulator(Dataset(3), token_lifetime=600, clock=sim_clock)
    with served(sim.app) as url:
        pbx = client(url, clock=client_clock, refresh_margin=60)
        await pbx.query_contacts([1])
        client_clock.advance(541)  # inside the refresh margin, still valid at the PBX
        sim_clock.advance(541)
        await pbx.query_contacts([2])
        await pbx.close(revoke=False)
    assert sim.calls["refresh_token"] == 1
    assert sim.calls["company_contact/query"] == 2  # no call was answered 10004
    assert sim.live_tokens() == 1  # the refreshed pair replaced the old one


async def test_errcode_10004_refreshes_once_and_retries() -> None:
    sim = PbxSimulator(Dataset(3))
    gate = AnswerExpired(sim.app, "company_contact/query", times=1)
    with served(gate) as url:
        pbx = client(url)
        found = await pbx.query_contacts([1, 2])
        await pbx.close(revoke=False)
    assert sorted(found) == [1, 2]
    assert gate.answered == 1
    assert sim.calls["refresh_token"] == 1
    assert sim.calls["company_contact/query"] == 1  # the retry (the refused call never reached the app)
    assert (pbx.logins, pbx.refreshes) == (1, 1)


async def test_errcode_10004_on_every_answer_is_renewed_a_bounded_number_of_times_then_unavailable() -> None:
    sim = PbxSimulator(Dataset(3))
    gate = AnswerExpired(sim.app, "company_contact/query", times=None)
    with served(gate) as url:
        pbx = client(url)
        with pytest.raises(PbxTokenUnavailable) as caught:
            await pbx.query_contacts([1])
        await pbx.close(revoke=False)
    assert gate.answered == MAX_RENEWALS + 1  # the call and one retry after each renewal
    assert sim.calls["refresh_token"] == MAX_RENEWALS
    assert sim.calls["get_token"] == 1
    assert isinstance(caught.value, ServiceUnavailable)  # try later (75), never a rejected contact
    assert not isinstance(caught.value, PbxError)


# --- credentials -----------------------------------------------------------------------------------------


async def test_wrong_secret_is_one_login_attempt_a_clear_error_and_no_lockout() -> None:
    wrong = "wrong-secret-5f1c9e"
    sim = PbxSimulator(Dataset(3))
    with served(sim.app) as url:
        pbx = client(url, secret=wrong)
        with pytest.raises(PbxAuthError) as caught:
            await pbx.query_contacts([1])
        await pbx.close(revoke=False)
    message = str(caught.value)
    assert caught.value.errcode == 10005
    assert "client_secret" in message and "client_id" in message
    assert wrong not in message and wrong not in repr(caught.value)
    assert pbx.logins == 1
    assert sim.calls["get_token"] == 1
    assert sim.calls["company_contact/query"] == 0
    assert sim.failed_logins == {LOOPBACK: 1}
    assert sim.blocked == {}


@pytest.mark.parametrize("problem", ["wrong_secret", "ip_blocked"])
def test_cli_sync_with_refused_credentials_exits_78_without_the_secret(tmp_path: Path, problem: str) -> None:
    wrong = "wrong-secret-a8d2e4"
    factory = EnvFactory(tmp_path)
    try:
        env = factory(5)
        if problem == "wrong_secret":
            env.write_config(
                edit=lambda t: t.replace(f'client_secret = "{PBX_SECRET}"', f'client_secret = "{wrong}"')
            )
        else:
            env.pbx.blocked[LOOPBACK] = env.pbx.clock() + 600
        result = env.sync()
        vendor_calls = sum(sum(getattr(env.sims, v).calls.values()) for v in env.sims.vendors)
    finally:
        factory.close()
    assert result.code == 78
    everything = result.out + result.err
    assert wrong not in everything and PBX_SECRET not in everything
    assert "Traceback" not in everything
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("syncd: configuration error: pbx: errcode")
    if problem == "wrong_secret":
        assert "10005" in last and "client_secret" in last
        assert env.pbx.failed_logins == {LOOPBACK: 1}
    else:
        assert "70004" in last and "Blocked IPs" in last
    assert env.pbx.calls["get_token"] == 1
    assert env.pbx.calls["company_contact/list"] == 0
    assert vendor_calls == 0


async def test_blocked_ip_is_an_auth_error_with_the_admin_hint_and_is_not_retried() -> None:
    sim = PbxSimulator(Dataset(3))
    with served(sim.app) as url:
        pbx = client(url)
        await pbx.query_contacts([1])  # logged in before the block
        sim.blocked[LOOPBACK] = sim.clock() + 600
        with pytest.raises(PbxAuthError) as during:
            await pbx.query_contacts([2])
        fresh = client(url)
        with pytest.raises(PbxAuthError) as at_login:
            await fresh.query_contacts([2])
        await pbx.close(revoke=False)
        await fresh.close(revoke=False)
    for caught in (during, at_login):
        assert caught.value.errcode == 70004
        assert "administrator" in str(caught.value)
        assert "Security > Security Rules > Blocked IPs" in str(caught.value)
    assert sim.calls["company_contact/query"] == 2  # one each: never retried
    assert sim.calls["get_token"] == 2  # the first login, and the fresh client's one attempt


async def test_five_wrong_logins_block_the_ip_and_the_error_says_so() -> None:
    sim = PbxSimulator(Dataset(3), block_after=5)
    with served(sim.app) as url:
        for _ in range(5):
            bad = client(url, secret="not-the-secret")
            with pytest.raises(PbxAuthError):
                await bad.query_contacts([1])
            await bad.close(revoke=False)
        good = client(url)
        with pytest.raises(PbxAuthError) as caught:
            await good.query_contacts([1])
        await good.close(revoke=False)
    assert caught.value.errcode == 70004
    assert "Blocked IPs" in str(caught.value)


# --- token cache and revocation ---------------------------------------------------------------------


async def test_second_one_shot_client_reuses_the_token_cached_in_the_store(tmp_path: Path) -> None:
    sim = PbxSimulator(Dataset(3))
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with served(sim.app) as url:
            first = client(url, token_cache=StoreTokenCache(store))
            await first.query_contacts([1])
            await first.close(revoke=False)
            second = client(url, token_cache=StoreTokenCache(store))
            assert sorted(await second.query_contacts([1, 2])) == [1, 2]
            await second.close(revoke=False)
    finally:
        store.close()
    assert sim.calls["get_token"] == 1
    assert (first.logins, second.logins) == (1, 0)
    assert sim.live_tokens() == 1


async def test_close_with_revoke_revokes_the_token_and_forgets_it() -> None:
    sim = PbxSimulator(Dataset(3))
    cache = MemoryTokenCache()
    with served(sim.app) as url:
        pbx = client(url, token_cache=cache)
        await pbx.query_contacts([1])
        assert sim.live_tokens() == 1
        await pbx.close(revoke=True)
    assert sim.live_tokens() == 0
    assert sim.calls["del_token"] == 1
    assert cache.load() is None


async def test_close_without_revoke_keeps_the_token() -> None:
    sim = PbxSimulator(Dataset(3))
    cache = MemoryTokenCache()
    with served(sim.app) as url:
        pbx = client(url, token_cache=cache)
        await pbx.query_contacts([1])
        await pbx.close(revoke=False)
    assert sim.live_tokens() == 1
    assert sim.calls["del_token"] == 0
    assert cache.load() is not None


# --- pagination ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1])
async def test_small_phonebooks_are_one_list_call(size: int) -> None:
    sim = PbxSimulator(Dataset(size))
    with served(sim.app) as url:
        pbx = client(url)
        ids = await all_ids(pbx)
        await pbx.close(revoke=False)
    assert ids == list(range(1, size + 1))
    assert sim.calls["company_contact/list"] == 1


@pytest.fixture(scope="module")
def big_sim() -> Iterator[tuple[PbxSimulator, str]]:
    sim = PbxSimulator(Dataset(10_001))
    with served(sim.app) as url:
        yield sim, url


async def test_pagination_at_the_page_size_boundary(big_sim: tuple[PbxSimulator, str]) -> None:
    sim, url = big_sim
    pbx = client(url, timeout=30.0)
    try:
        before = sim.calls["company_contact/list"]
        ids = await all_ids(pbx)
        assert sim.calls["company_contact/list"] - before == 2
        assert ids == list(range(1, 10_002))

        sim.delete_contact(10_001)  # exactly one full page now
        before = sim.calls["company_contact/list"]
        ids = await all_ids(pbx)
        assert sim.calls["company_contact/list"] - before == 1
        assert ids == list(range(1, 10_001))
    finally:
        await pbx.close(revoke=False)


async def _pages(pbx: YeastarClient, size: int) -> AsyncIterator[list[int]]:
    async for page in pbx.iter_contact_pages(size):
        yield [c.id for c in page]


async def test_small_pages_cover_every_contact_once() -> None:
    sim = PbxSimulator(Dataset(23))
    with served(sim.app) as url:
        pbx = client(url)
        pages = [page async for page in _pages(pbx, 5)]
        await pbx.close(revoke=False)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == list(range(1, 24))
    assert sim.calls["company_contact/list"] == 5


# --- transient faults ------------------------------------------------------------------------------------


async def test_503s_are_retried_to_success_reads_and_writes() -> None:
    sim = PbxSimulator(Dataset(20))
    sim.faults.error_every = 3
    with served(sim.app) as url:
        pbx = client(url)
        ids = await all_ids(pbx, 5)
        found = await pbx.query_contacts(range(1, 21))
        await pbx.update_contact(7, {"email": "retried@example.com"})
        await pbx.close(revoke=False)
    assert ids == list(range(1, 21))
    assert sorted(found) == list(range(1, 21))
    assert sim.contact(7)["email"] == "retried@example.com"
    assert len(sim.updates) == 1  # a 503 from the front never reached the PBX's update
    injected = sim.faults.injected.get("error", 0)
    assert injected >= 2
    assert pbx.http.stats.retries == injected
    assert pbx.http.stats.statuses[503] == injected


async def test_stalls_time_out_and_are_retried_to_success() -> None:
    sim = PbxSimulator(Dataset(12))
    sim.faults.stall_every = 3
    sim.faults.stall_seconds = 1.0
    with served(sim.app) as url:
        pbx = client(url, timeout=0.25)
        ids = await all_ids(pbx, 4)
        found = await pbx.query_contacts(range(1, 13))
        await pbx.close(revoke=False)
    assert ids == list(range(1, 13))
    assert sorted(found) == list(range(1, 13))
    stalls = sim.faults.injected.get("stall", 0)
    assert stalls >= 1
    assert pbx.http.stats.errors["ReadTimeout"] == stalls
    assert pbx.http.stats.retries == stalls
