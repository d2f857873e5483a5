"""The one way syncd talks HTTP.

Every service (the PBX and each vendor) gets a `ServiceClient`: one long-lived `httpx.AsyncClient` with
its base URL, timeouts, User-Agent and TLS settings, plus
- bounded concurrency (a semaphore) and its own rate limit (a token bucket);
- retries on 429 (honouring Retry-After, and pausing the whole service, since vendors throttle per
  account), on 5xx, timeouts and broken connections, with full-jitter exponential backoff and a cap;
- errors that name the service and the reason, never a URL's query string, a header or a body;
- a circuit breaker (`CircuitBreaker`): once the service looks down, every further request of this
  client fails at once with `ServiceUnavailable` instead of walking its own retry ladder.
Responses with other statuses are returned for the caller to interpret.

The breaker counts failed exchanges in a row (connection failures, timeouts, broken connections, 5xx;
not 429, which says the service is up and busy). Any other answer resets the count. It trips when the
count reaches `breaker_threshold` and either every failure of the streak was a refused connection (the
port is closed: nothing listens) or a call has already given up during the streak (its whole retry
ladder failed). So a service that is down costs one retry ladder, not one per request, while a burst
of 5xx that a retry gets through never trips it. A tripped breaker stays open for the client's life:
one run (callers build their clients per run), so the next run asks again.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import math
import os
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from syncd import __version__
from syncd.errors import MalformedResponse, ServiceUnavailable
from syncd.logs import get_logger, redact

log = get_logger("syncd.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpSettings:
    service: str
    base_url: str
    timeout: float = 30.0  # read/write/pool timeout per request, seconds
    connect_timeout: float = 10.0
    verify: bool | str = True  # False, True or a CA bundle path
    rate_per_second: float | None = None  # None = unlimited
    burst: int = 1
    max_concurrency: int = 8
    max_attempts: int = 6  # first try included
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 900.0  # a longer Retry-After means "try later": give up instead
    user_agent: str = f"syncd/{__version__}"
    retry_statuses: frozenset[int] = RETRY_STATUSES
    breaker_threshold: int | None = 5  # failed exchanges in a row that trip the breaker; None = never


class CircuitBreaker:
    """Trips after `threshold` failed exchanges in a row (see the module's docstring)."""

    def __init__(self, threshold: int | None) -> None:
        self.threshold = threshold
        self.streak = 0  # failed exchanges in a row
        self.refused_only = True  # every failure of the streak was a refused connection
        self.gave_up = False  # a call exhausted its attempts during the streak
        self.last_reason = ""
        self.tripped: str | None = None  # why, once open

    def success(self) -> None:
        if self.tripped is None:
            self.streak, self.refused_only, self.gave_up = 0, True, False

    def failure(self, reason: str, *, refused: bool) -> bool:
        """Count one failed exchange; True when this one trips the breaker."""
        self.streak += 1
        self.refused_only = self.refused_only and refused
        self.last_reason = reason
        return self._check()

    def give_up(self) -> bool:
        self.gave_up = True
        return self._check()

    def _check(self) -> bool:
        if self.tripped is not None or self.threshold is None or self.streak < self.threshold:
            return False
        if not (self.refused_only or self.gave_up):
            return False
        self.tripped = f"{self.streak} failed requests in a row, the last: {self.last_reason}"
        return True


class RateLimiter:
    """Async token bucket with a service-wide pause (used when the service answers 429)."""

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._tokens = 0.0  # after a 429, don't burst straight back in

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                if self.rate is None:
                    return
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
                await self._sleep(wait)
                # the wait accrued exactly one token; consume it here rather than recomputing, which
                # could spin on float rounding
                self._tokens = 0.0
                self._updated = now + wait
                if self._clock() >= self._paused_until:
                    return


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def host_port(url: httpx.URL) -> str:
    """'pbx.example.com:8088' (the scheme's default port when the URL names none): never a path or query."""
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _root_cause(exc: BaseException) -> str:
    """The innermost OS-level reason ('Connection refused', 'Name or service not known'), else the message:
    httpx's own ('All connection attempts failed') names no reason an admin can act on."""
    text = str(exc)
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and (seen.strerror or seen.errno):
            # asyncio's "Connect call failed (...)" hides ECONNREFUSED: name the errno's meaning
            why = os.strerror(seen.errno) if isinstance(seen.errno, int) and seen.errno > 0 else seen.strerror
            return f"{text} ({why})" if why and why not in text else text
        seen = seen.__cause__ or seen.__context__
    return text


def describe(request: httpx.Request) -> str:
    """'GET /openapi/v1.0/company_contact/list': method and path only, never the query string."""
    return f"{request.method} {request.url.path}"


@dataclass
class CallStats:
    requests: int = 0  # HTTP exchanges attempted (retries included)
    calls: int = 0  # logical calls made through `request`
    retries: int = 0
    throttled: int = 0
    short_circuited: int = 0  # calls refused at once because the breaker was open
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class ServiceClient:
    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        on_request: Callable[[str, int | None, str | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.service = settings.service
        self._sleep = sleep
        self._rng = rng
        self._on_request = on_request
        self.stats = CallStats()
        self.limiter = RateLimiter(settings.rate_per_second, settings.burst, clock=clock, sleep=sleep)
        self.breaker = CircuitBreaker(settings.breaker_threshold)
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        timeout = httpx.Timeout(settings.timeout, connect=settings.connect_timeout)
        limits = httpx.Limits(
            max_connections=settings.max_concurrency, max_keepalive_connections=settings.max_concurrency
        )
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=timeout,
            verify=settings.verify,
            headers={"User-Agent": settings.user_agent},
            transport=transport,
            limits=limits,
            follow_redirects=False,
        )
        self._where = host_port(self._client.base_url)  # named in errors: host and port, never a path

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def tripped(self) -> str | None:
        """Why the breaker is open (the service looked down), or None."""
        return self.breaker.tripped

    def _check_breaker(self, what: str) -> None:
        reason = self.breaker.tripped
        if reason is not None:
            self.stats.short_circuited += 1
            raise ServiceUnavailable(
                self.service, f"{what} on {self._where}: unreachable ({reason}); no further calls this run"
            )

    def _failed(self, reason: str, *, refused: bool = False, gave_up: bool = False) -> None:
        tripped = self.breaker.failure(reason, refused=refused)
        if gave_up:
            tripped = self.breaker.give_up() or tripped
        if tripped:
            log.error(
                "http.circuit_open",
                service=self.service,
                failures=self.breaker.streak,
                reason=reason,
                hint="the service is treated as down for the rest of this run",
            )

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        return float(self._rng() * min(s.backoff_cap, s.backoff_base * 2.0**attempt))

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send with rate limit, concurrency bound and retries; return the final response.

        Raises `ServiceUnavailable` when retries are exhausted or the service is unreachable.
        Statuses outside `retry_statuses` are returned as they are.
        """
        s = self.settings
        self.stats.calls += 1
        attempts = s.max_attempts if retry else 1
        last_reason = "no attempt made"
        asked = f"{method} {_path_of(url)}"
        for attempt in range(attempts):
            self._check_breaker(asked)
            async with self._semaphore:
                await self.limiter.acquire()
                self._check_breaker(asked)
                try:
                    request = self._client.build_request(
                        method, url, params=params, json=json, content=content, headers=headers
                    )
                except httpx.InvalidURL as exc:
                    # a value taken from an answer (a job id, a profile URL) made an impossible request
                    raise MalformedResponse(
                        self.service, f"{method} {url[:80]}: cannot build the request ({exc})"
                    ) from None
                what = describe(request)
                self.stats.requests += 1
                try:
                    response = await self._client.send(request)
                    await response.aread()
                except httpx.TransportError as exc:
                    kind = type(exc).__name__
                    self.stats.errors[kind] += 1
                    self._notify(None, kind)
                    last_reason = f"{what} on {host_port(request.url)}: {kind}: {redact(_root_cause(exc)) or 'no detail'}"
                    untrusted = _untrusted_certificate(exc)
                    self._failed(
                        last_reason,
                        refused=isinstance(exc, httpx.ConnectError),
                        gave_up=untrusted or attempt + 1 >= attempts,
                    )
                    if untrusted:
                        # retrying cannot make a certificate trusted: say so at once
                        raise ServiceUnavailable(
                            self.service,
                            f"{last_reason} (the server's TLS certificate is not trusted: check "
                            "base_url, or set verify_tls to a CA bundle that signs it)",
                        ) from None
                    delay = self._backoff(attempt)
                    if attempt + 1 < attempts:
                        self._check_breaker(what)  # tripped: no point in waiting to try again
                        self.stats.retries += 1
                        log.warning(
                            "http.retry",
                            service=self.service,
                            request=what,
                            error=kind,
                            attempt=attempt + 1,
                            delay=round(delay, 3),
                        )
                        await self._sleep(delay)
                    continue
            status = response.status_code
            self.stats.statuses[status] += 1
            self._notify(status, None)
            if status not in s.retry_statuses:
                self.breaker.success()
                return response
            if status == 429:
                self.breaker.success()  # throttled: the service is up
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == 429:
                self.stats.throttled += 1
            else:
                self._failed(
                    f"{what}: HTTP {status}",
                    gave_up=attempt + 1 >= attempts
                    or (retry_after is not None and retry_after > s.max_retry_after),
                )
            if retry_after is not None and retry_after > s.max_retry_after:
                # a longer wait than we ever sleep through means "try later", on a 503 as on a 429
                what_happened = "throttled" if status == 429 else f"HTTP {status}"
                raise ServiceUnavailable(
                    self.service, f"{what}: {what_happened}, Retry-After {retry_after:.0f}s", status=status
                )
            last_reason = f"{what}: HTTP {status}"
            if attempt + 1 >= attempts:
                break
            self._check_breaker(what)
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if status == 429:
                # throttling is per account at these vendors: hold every request of this service
                self.limiter.pause(delay)
            self.stats.retries += 1
            log.warning(
                "http.retry",
                service=self.service,
                request=what,
                status=status,
                attempt=attempt + 1,
                delay=round(delay, 3),
                retry_after=retry_after,
            )
            if status != 429:
                await self._sleep(delay)
        raise ServiceUnavailable(self.service, f"{last_reason} (gave up after {attempts} attempts)")

    def _notify(self, status: int | None, error: str | None) -> None:
        if self._on_request is not None:
            self._on_request(self.service, status, error)


def _path_of(url: str) -> str:
    """A request target's path only (never its query string), for messages."""
    try:
        return httpx.URL(url).path[:120]
    except (httpx.InvalidURL, TypeError):
        return "(unparsable URL)"


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether a transport error is a failed TLS certificate verification."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore's error, which wraps ssl's
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def json_body(response: httpx.Response, service: str) -> Any:
    """The response's JSON, or `MalformedResponse` for HTML pages, bad JSON or wrong content types."""
    ctype = response.headers.get("content-type", "")
    if "html" in ctype:
        raise MalformedResponse(service, f"HTTP {response.status_code}: HTML page instead of JSON")
    try:
        return jsonlib.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedResponse(
            service, f"HTTP {response.status_code}: invalid JSON ({type(exc).__name__})"
        ) from None
