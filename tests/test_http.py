"""The shared HTTP layer: retries, Retry-After, backoff, rate limit, concurrency, redaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.errors import MalformedResponse, ServiceUnavailable
from syncd.http import HttpSettings, RateLimiter, ServiceClient, json_body, parse_retry_after
from syncd.logs import register_secret
from syncd.sim.faults import FaultInjector, Faults
from syncd.sim.server import SimServer


class Sleeps:
    """Records requested sleeps and advances a fake clock instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def settings(**kw: object) -> HttpSettings:
    base = {"service": "svc", "base_url": "http://svc.test", "backoff_base": 0.5, "backoff_cap": 4.0}
    base.update(kw)
    return HttpSettings(**base)  # type: ignore[arg-type]


def scripted(statuses: list[tuple[int, dict[str, str]]]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, headers = statuses[min(len(seen) - 1, len(statuses) - 1)]
        return httpx.Response(status, headers=headers, json={"n": len(seen)})

    return httpx.MockTransport(handler), seen


async def test_retries_5xx_then_succeeds_with_jittered_backoff() -> None:
    transport, seen = scripted([(503, {}), (502, {}), (200, {})])
    sleeps = Sleeps()
    client = ServiceClient(settings(), transport=transport, sleep=sleeps, clock=sleeps.clock, rng=lambda: 1.0)
    response = await client.request("GET", "/x")
    assert response.status_code == 200
    assert len(seen) == 3
    assert sleeps.calls == [0.5, 1.0]  # base * 2**attempt, full jitter at its maximum
    assert client.stats.retries == 2
    await client.aclose()


async def test_backoff_is_capped() -> None:
    transport, _ = scripted([(500, {})] * 5 + [(200, {})])
    sleeps = Sleeps()
    client = ServiceClient(
        settings(max_attempts=6), transport=transport, sleep=sleeps, clock=sleeps.clock, rng=lambda: 1.0
    )
    await client.request("GET", "/x")
    assert sleeps.calls == [0.5, 1.0, 2.0, 4.0, 4.0]
    await client.aclose()


async def test_429_honours_retry_after_seconds() -> None:
    transport, _ = scripted([(429, {"Retry-After": "7"}), (200, {})])
    sleeps = Sleeps()
    client = ServiceClient(settings(), transport=transport, sleep=sleeps, clock=sleeps.clock, rng=lambda: 1.0)
    assert (await client.request("GET", "/x")).status_code == 200
    # the pause is applied through the service-wide limiter: ~7 s, not the 0.5 s backoff
    assert any(6.9 < s <= 7.0 for s in sleeps.calls)
    assert client.stats.throttled == 1
    await client.aclose()


async def test_429_without_retry_after_uses_backoff() -> None:
    transport, _ = scripted([(429, {}), (429, {}), (200, {})])
    sleeps = Sleeps()
    client = ServiceClient(settings(), transport=transport, sleep=sleeps, clock=sleeps.clock, rng=lambda: 1.0)
    assert (await client.request("GET", "/x")).status_code == 200
    assert sum(sleeps.calls) == pytest.approx(1.5, abs=0.05)
    await client.aclose()


async def test_gives_up_after_max_attempts_with_service_and_reason() -> None:
    transport, seen = scripted([(503, {})])
    client = ServiceClient(settings(max_attempts=3), transport=transport, sleep=Sleeps())
    with pytest.raises(ServiceUnavailable) as err:
        await client.request("GET", "/path", params={"access_token": "tok-SECRET-123"})
    assert len(seen) == 3
    text = str(err.value)
    assert "svc" in text and "HTTP 503" in text and "/path" in text
    assert "tok-SECRET-123" not in text and "access_token" not in text
    await client.aclose()


async def test_retry_after_too_long_gives_up_at_once() -> None:
    transport, seen = scripted([(429, {"Retry-After": "86400"})])
    client = ServiceClient(settings(max_retry_after=600), transport=transport, sleep=Sleeps())
    with pytest.raises(ServiceUnavailable, match="throttled"):
        await client.request("GET", "/x")
    assert len(seen) == 1
    await client.aclose()


async def test_client_errors_are_returned_not_retried() -> None:
    transport, seen = scripted([(404, {})])
    client = ServiceClient(settings(), transport=transport, sleep=Sleeps())
    assert (await client.request("GET", "/x")).status_code == 404
    assert len(seen) == 1
    await client.aclose()


async def test_transport_errors_are_retried_and_redacted() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise httpx.ConnectError(f"boom connecting to {request.url}", request=request)

    register_secret("very-secret-token-value")
    client = ServiceClient(settings(max_attempts=2), transport=httpx.MockTransport(handler), sleep=Sleeps())
    with pytest.raises(ServiceUnavailable) as err:
        await client.request("GET", "/x", params={"access_token": "very-secret-token-value"})
    assert calls["n"] == 2
    assert "ConnectError" in str(err.value)
    assert "very-secret-token-value" not in str(err.value)
    await client.aclose()


async def test_user_agent_and_base_url() -> None:
    transport, seen = scripted([(200, {})])
    client = ServiceClient(settings(user_agent="syncd-test/1"), transport=transport)
    await client.request("GET", "/x")
    assert seen[0].headers["User-Agent"] == "syncd-test/1"
    assert str(seen[0].url) == "http://svc.test/x"
    await client.aclose()


async def test_concurrency_is_bounded() -> None:
    active = {"now": 0, "max": 0}

    async def slow(request: Request) -> JSONResponse:
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        await asyncio.sleep(0.02)
        active["now"] -= 1
        return JSONResponse({})

    app = Starlette(routes=[Route("/x", slow)])
    client = ServiceClient(settings(max_concurrency=3), transport=httpx.ASGITransport(app=app))
    await asyncio.gather(*(client.request("GET", "/x") for _ in range(12)))
    assert active["max"] == 3
    await client.aclose()


async def test_rate_limiter_spaces_requests() -> None:
    now = {"t": 0.0}

    async def fake_sleep(seconds: float) -> None:
        now["t"] += seconds

    limiter = RateLimiter(10.0, burst=2, clock=lambda: now["t"], sleep=fake_sleep)
    for _ in range(12):
        await limiter.acquire()
    # two from the burst, then ten more at 10/s
    assert now["t"] == pytest.approx(1.0, abs=1e-6)


async def test_rate_limiter_pause_holds_everyone() -> None:
    now = {"t": 0.0}

    async def fake_sleep(seconds: float) -> None:
        now["t"] += seconds

    limiter = RateLimiter(None, clock=lambda: now["t"], sleep=fake_sleep)
    limiter.pause(30)
    await limiter.acquire()
    assert now["t"] == pytest.approx(30.0)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(90.0)


def test_json_body_rejects_html_and_garbage() -> None:
    html = httpx.Response(200, headers={"content-type": "text/html"}, text="<html>oops</html>")
    with pytest.raises(MalformedResponse, match="HTML"):
        json_body(html, "svc")
    broken = httpx.Response(200, headers={"content-type": "application/json"}, content=b'{"a":')
    with pytest.raises(MalformedResponse, match="invalid JSON"):
        json_body(broken, "svc")


async def test_real_loopback_faults_are_survived() -> None:
    """Against a real server: 503s, 429s, a dropped connection and a stall, then success."""

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    faults = Faults()
    app = FaultInjector(Starlette(routes=[Route("/x", ok)]), faults)
    with SimServer(app) as server:
        client = ServiceClient(
            settings(base_url=server.url, timeout=0.5, backoff_base=0.01, max_attempts=4),
        )
        for kind in ("error_every", "throttle_every", "drop_every", "stall_every"):
            faults.reset()
            setattr(faults, kind, 2)  # every other request fails
            faults.retry_after = 0
            faults.stall_seconds = 2
            faults.calls = 1  # the next request is the 2nd: it fails, the retry succeeds
            response = await client.request("GET", "/x")
            assert response.json() == {"ok": True}, kind
        assert client.stats.retries >= 4
        await client.aclose()


async def test_a_refused_connection_names_host_port_and_the_reason() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed on leaving the block: nothing listens there
    register_secret("refused-secret-token")
    client = ServiceClient(HttpSettings("pbx", f"http://127.0.0.1:{port}", max_attempts=1))
    with pytest.raises(ServiceUnavailable) as err:
        await client.request("GET", "/openapi/v1.0/x", params={"access_token": "refused-secret-token"})
    await client.aclose()
    message = str(err.value)
    assert f"GET /openapi/v1.0/x on 127.0.0.1:{port}: ConnectError" in message
    assert "(Connection refused)" in message
    assert "refused-secret-token" not in message


# --- the circuit breaker ------------------------------------------------------------------------------


def refusing() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A service whose port is closed: every connection is refused."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    return httpx.MockTransport(handler), seen


async def test_a_closed_port_trips_the_breaker_after_a_few_attempts_for_all_calls() -> None:
    transport, seen = refusing()
    client = ServiceClient(
        settings(max_attempts=6, max_concurrency=4, breaker_threshold=5), transport=transport, sleep=Sleeps()
    )
    outcomes = await asyncio.gather(
        *(client.request("GET", f"/p/{i}") for i in range(50)), return_exceptions=True
    )
    assert all(isinstance(o, ServiceUnavailable) for o in outcomes)
    # five refused connections trip it; the calls already past the breaker finish their one attempt
    assert 5 <= len(seen) <= 5 + 4
    assert client.tripped is not None and "Connection refused" in client.tripped
    assert client.stats.short_circuited >= 50 - len(seen)
    before = len(seen)
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await client.request("GET", "/later")
    assert len(seen) == before  # open for the client's life: no further request goes out
    await client.aclose()


async def test_5xx_trip_the_breaker_only_once_a_whole_retry_ladder_failed() -> None:
    transport, seen = scripted([(503, {})])
    client = ServiceClient(settings(max_attempts=3, breaker_threshold=5), transport=transport, sleep=Sleeps())
    with pytest.raises(ServiceUnavailable, match="gave up after 3 attempts"):
        await client.request("GET", "/a")
    assert len(seen) == 3 and client.tripped is None  # a streak of 3 < 5
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await client.request("GET", "/b")
    assert len(seen) == 5 and client.tripped is not None  # the 5th failure in a row, after a give-up
    with pytest.raises(ServiceUnavailable, match="no further calls"):
        await client.request("GET", "/c")
    assert len(seen) == 5
    await client.aclose()


async def test_a_burst_of_5xx_that_a_retry_gets_through_never_trips_it() -> None:
    transport, seen = scripted([(500, {})] * 7 + [(200, {})])
    client = ServiceClient(
        settings(max_attempts=10, breaker_threshold=5), transport=transport, sleep=Sleeps()
    )
    assert (await client.request("GET", "/x")).status_code == 200
    assert len(seen) == 8 and client.tripped is None
    assert client.breaker.streak == 0  # the answer reset the count
    await client.aclose()


async def test_refused_connections_with_a_success_between_them_never_trip_it() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] % 4 == 0:
            return httpx.Response(200, json={})
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = ServiceClient(
        settings(max_attempts=6, breaker_threshold=5), transport=httpx.MockTransport(handler), sleep=Sleeps()
    )
    for _ in range(10):
        assert (await client.request("GET", "/x")).status_code == 200
    assert calls["n"] == 40 and client.tripped is None
    await client.aclose()


async def test_throttling_never_trips_the_breaker() -> None:
    transport, seen = scripted([(429, {"Retry-After": "0"})] * 12 + [(200, {})])
    client = ServiceClient(
        settings(max_attempts=20, breaker_threshold=3), transport=transport, sleep=Sleeps()
    )
    assert (await client.request("GET", "/x")).status_code == 200
    assert len(seen) == 13 and client.tripped is None
    await client.aclose()


async def test_breaker_off_retries_every_call_in_full() -> None:
    transport, seen = refusing()
    client = ServiceClient(
        settings(max_attempts=3, breaker_threshold=None), transport=transport, sleep=Sleeps()
    )
    for _ in range(4):
        with pytest.raises(ServiceUnavailable, match="gave up after 3 attempts"):
            await client.request("GET", "/x")
    assert len(seen) == 12 and client.tripped is None
    await client.aclose()
