"""`syncd check`: reach every configured service once, with requests that buy nothing.

Per service, one request that proves reachability, TLS and credentials:
- PBX: one login (never retried: five failed logins block the caller's IP), a list call of page size 1,
  the API app's access to each endpoint syncd uses (read calls for the contact listed; company_contact/update
  probed with an empty request, which the PBX refuses as a parameter error and cannot apply), then the token
  is revoked;
- InsideView: a token;
- Leadfeeder: `GET /v1/accounts`, the configured account among them, and its remaining credits;
- ContactOut: the usage stats (`GET /v1/stats`) and the credits left where the plan reports them.

Every request is made once (no retries, short timeouts). The report names what failed in words an admin can
act on (wrong secret, IP not allowed, TLS, DNS, connection refused on host:port, no such account) and never a
secret. Exit status: 0 every service passed; 78 a credential, permission or configuration problem (wrong
secret, no access, wrong account, not the expected API at base_url); 75 a service is unreachable (and none
has a credential problem: fixing the config comes first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import httpx

from syncd.errors import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_TEMPFAIL,
    AuthError,
    MalformedResponse,
    OutOfCredits,
    ServiceError,
    ServiceUnavailable,
    SyncdError,
)
from syncd.http import HttpSettings, ServiceClient, json_body
from syncd.logs import redact, register_secret
from syncd.model import Vendor

if TYPE_CHECKING:
    from syncd.config import Config

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0

# what went wrong, by kind: which exit status it stands for
CREDENTIALS = "credentials"  # refused secret, IP blocked or not allowed, token cap
PERMISSION = "permission"  # the credentials work but lack access (an endpoint, credits)
CONFIG = "config"  # something else in the config is wrong (no such account, not the API at base_url)
UNREACHABLE = "unreachable"  # DNS, refused connection, TLS, timeouts, 5xx


@dataclass
class ServiceCheck:
    service: str
    endpoint: str  # host:port
    ok: bool = False
    latency_ms: float | None = None  # the first (proving) request's round trip
    problem: str | None = None  # in words an admin can act on
    kind: str | None = None  # CREDENTIALS, PERMISSION, CONFIG or UNREACHABLE
    detail: list[str] = field(default_factory=list)  # what was proven
    credits_left: dict[str, int] | None = None  # as the vendor reports them, per credit kind
    budget: dict[str, int | None] | None = None  # syncd's own accounting: budget, spent, left this month

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CheckReport:
    checks: list[ServiceCheck]

    @property
    def exit_code(self) -> int:
        kinds = {c.kind for c in self.checks if not c.ok}
        if kinds & {CREDENTIALS, PERMISSION, CONFIG}:
            return EXIT_CONFIG
        if kinds:
            return EXIT_TEMPFAIL
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": all(c.ok for c in self.checks),
            "exit_code": self.exit_code,
            "services": [c.as_dict() for c in self.checks],
        }


def host_port(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Recorder(httpx.AsyncBaseTransport):
    """The real transport, remembering the last transport error: its cause chain says what failed
    (refused, DNS, TLS) better than its message, which `ServiceClient` flattens into the reason."""

    def __init__(self, settings: HttpSettings) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=settings.verify)
        self.error: BaseException | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self.error = exc
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


def cause_words(error: BaseException | None, endpoint: str, timeout: float) -> str | None:
    """Words for a transport error, from the exceptions it wraps; None when none is recognised."""
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    seen: BaseException | None = error
    chain: list[BaseException] = []
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
                return f"TLS: the certificate of {endpoint} is for another host name (check base_url's host)"
            return (
                f"TLS: the certificate of {endpoint} is not trusted ({exc.verify_message}): set verify_tls "
                "to the path of a CA bundle that signs it, or fix base_url"
            )
    for exc in chain:
        if isinstance(exc, ssl.SSLError):
            return f"TLS: the handshake with {endpoint} failed (an http port behind an https:// base_url?)"
        if isinstance(exc, socket.gaierror):
            return f"DNS: the host name {host!r} does not resolve (check base_url)"
        if isinstance(exc, ConnectionRefusedError):
            return (
                f"connection refused on {endpoint}: nothing listens there (service down, or the wrong port "
                "in base_url)"
            )
        if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"no network route to {endpoint}"
        if isinstance(exc, httpx.ConnectTimeout):
            return (
                f"no answer from {endpoint} within {timeout:.0f}s (a firewall, or the wrong host in base_url)"
            )
    return None


def _quick(settings: HttpSettings) -> HttpSettings:
    """One attempt per request, short timeouts: a check answers in seconds, and never retries a login."""
    return dataclasses.replace(
        settings,
        max_attempts=1,
        connect_timeout=min(settings.connect_timeout, CONNECT_TIMEOUT),
        timeout=min(settings.timeout, READ_TIMEOUT),
    )


_DNS_WORDS = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated",
    "getaddrinfo",
    "name resolution",
)


def unreachable_words(reason: str, endpoint: str, timeout: float) -> str:
    """A transport failure (as `ServiceClient` reports it) in words naming host:port."""
    text = reason.lower()
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if "certificate" in text or "not trusted" in text:
        if "hostname" in text or "mismatch" in text or "doesn't match" in text:
            return f"TLS: the certificate of {endpoint} is for another host name (check base_url's host)"
        return (
            f"TLS: the certificate of {endpoint} is not trusted (self-signed or from another CA): set "
            "verify_tls to the path of a CA bundle that signs it, or fix base_url"
        )
    if "ssl" in text or "tls" in text or "wrong version number" in text:
        return f"TLS: the handshake with {endpoint} failed (is it an http port behind an https:// base_url?)"
    if any(w in text for w in _DNS_WORDS):
        return f"DNS: the host name {host!r} does not resolve (check base_url)"
    if "connection refused" in text or "errno 111" in text:
        return f"connection refused on {endpoint}: nothing listens there (service down, or the wrong port in base_url)"
    if "connecttimeout" in text:
        return f"no answer from {endpoint} within {timeout:.0f}s (a firewall, or the wrong host in base_url)"
    if "readtimeout" in text or "writetimeout" in text or "pooltimeout" in text:
        return f"{endpoint} accepted the connection but did not answer within {timeout:.0f}s"
    if "network is unreachable" in text or "no route to host" in text:
        return f"no network route to {endpoint}"
    if "remoteprotocolerror" in text or "disconnected" in text:
        return (
            f"{endpoint} closed the connection without an HTTP answer (an https port behind an http:// "
            "base_url?)"
        )
    if "throttled" in text or "http 429" in text:
        return f"{endpoint} is throttling these credentials (HTTP 429): try again in a minute"
    if "http 5" in text:
        return f"{endpoint} answered with a server error ({_status_of(text)}): the service is having trouble, try later"
    return f"cannot reach {endpoint}: {redact(reason)}"


def _status_of(text: str) -> str:
    index = text.find("http 5")
    return text[index : index + 8].upper() if index >= 0 else "HTTP 5xx"


def classify(
    exc: ServiceError, endpoint: str, timeout: float, transport: _Recorder | None = None
) -> tuple[str, str]:
    """(kind, words) for an error of a vendor (the PBX's own are read in `_pbx`)."""
    if isinstance(exc, ServiceUnavailable):
        words = cause_words(transport.error if transport else None, endpoint, timeout)
        return UNREACHABLE, words or unreachable_words(exc.reason, endpoint, timeout)
    if isinstance(exc, AuthError):
        return CREDENTIALS, f"the credentials were refused ({exc.reason})"
    if isinstance(exc, OutOfCredits):
        reason = exc.reason.lower()
        if "access" in reason or "entitle" in reason or "permission" in reason:
            return PERMISSION, f"this key has no access to the endpoint syncd needs ({exc.reason})"
        return PERMISSION, f"the account has no credits left ({exc.reason})"
    if isinstance(exc, MalformedResponse):
        return CONFIG, f"{endpoint} did not answer as this service's API would ({exc.reason}): check base_url"
    return CONFIG, exc.reason


# --- the services ---------------------------------------------------------------------------------


class _Timer:
    def __init__(self, check: ServiceCheck) -> None:
        self.check = check

    async def first(self, call: Awaitable[Any]) -> Any:
        """Await the proving request, recording its round trip (even when it fails)."""
        started = time.monotonic()
        try:
            return await call
        finally:
            if self.check.latency_ms is None:
                self.check.latency_ms = round((time.monotonic() - started) * 1000, 1)


PBX_HINTS = {
    10005: "wrong client_id or client_secret: the PBX refused the login (check [pbx] client_id and the secret)",
    70004: (
        "the PBX has blocked this host's IP after failed logins: fix the secret, then have an administrator "
        "remove the IP under Security > Security Rules > Blocked IPs"
    ),
    70087: "IP not allowed: this host's IP is not in the API application's allowed-IP list on the PBX",
    60002: (
        "the API application already holds its maximum of 8 access tokens: revoke another tool's tokens or "
        "wait 30 minutes"
    ),
}


async def _pbx(config: Config, check: ServiceCheck) -> None:
    from syncd.pbx.client import MemoryTokenCache, YeastarClient
    from syncd.pbx.errors import PbxAuthError, PbxError, PbxPermissionError

    settings = _quick(config.pbx.http_settings())
    transport = _Recorder(settings)
    client = YeastarClient(
        settings,
        config.pbx.client_id,
        config.pbx.client_secret,
        token_cache=MemoryTokenCache(),
        transport=transport,
    )
    timer = _Timer(check)
    logged_in = False
    try:
        try:
            await timer.first(client.get_token())  # one attempt: never retried
        except PbxAuthError as exc:
            check.kind = CREDENTIALS
            check.problem = PBX_HINTS.get(exc.errcode, f"the PBX refused the login ({exc.reason})")
            return
        logged_in = True
        check.detail.append("login accepted")

        async def probe(
            endpoint: str, call: Callable[[], Awaitable[dict[str, Any]]]
        ) -> dict[str, Any] | None:
            try:
                return await call()
            except PbxPermissionError:
                check.kind = PERMISSION
                check.problem = (
                    f"the API application has no permission for {endpoint} (errcode 10005): allow it in "
                    "the PBX's API settings"
                )
                raise _Stop from None
            except PbxAuthError as exc:
                check.kind = CREDENTIALS
                check.problem = PBX_HINTS.get(exc.errcode, exc.reason)
                raise _Stop from None
            except PbxError:
                return None  # any other errcode: the call reached the endpoint's own checks

        try:
            listed = await probe(
                "company_contact/list",
                lambda: client.call("GET", "company_contact/list", params={"page": 1, "page_size": 1}),
            )
            total = (listed or {}).get("total_number")
            data = (listed or {}).get("data") or []
            check.detail.append(f"company_contact/list: {total} contact(s)")
            first = data[0].get("id") if data and isinstance(data[0], dict) else None
            if isinstance(first, int) and not isinstance(first, bool):
                await probe(
                    "company_contact/query",
                    lambda: client.call("GET", "company_contact/query", params={"ids": str(first)}),
                )
                await probe(
                    "company_contact/get",
                    lambda: client.call("GET", "company_contact/get", params={"id": first}),
                )
                check.detail.append("company_contact/query, company_contact/get: allowed")
            if config.sync.phonebooks:
                await probe(
                    "phonebook/list",
                    lambda: client.call("GET", "phonebook/list", params={"page": 1, "page_size": 1}),
                )
                check.detail.append("phonebook/list: allowed")
            # an update without an id is refused as a parameter error by an app that may update, and
            # with 10005 by one that may not; it can change nothing either way
            await probe(
                "company_contact/update", lambda: client.call("POST", "company_contact/update", json={})
            )
            check.detail.append(
                "company_contact/update: allowed (probed with an empty request, nothing written)"
            )
        except _Stop:
            return
        check.ok = True
    except ServiceError as exc:
        if not isinstance(exc, MalformedResponse):
            check.kind, check.problem = classify(exc, check.endpoint, settings.timeout, transport)
        else:
            check.kind = CONFIG
            check.problem = (
                f"{check.endpoint} did not answer as a Yeastar P-Series OpenAPI would ({exc.reason}): check "
                "base_url"
            )
    finally:
        await client.close(revoke=logged_in)  # best effort: a token not revoked expires on its own
        if logged_in:
            check.detail.append("token revoked")


class _Stop(Exception):
    """A probe failed: the check's problem is set."""


async def _insideview(config: Config, check: ServiceCheck) -> None:
    from syncd.config import InsideViewConfig
    from syncd.vendors.insideview import InsideViewProvider

    section = config.vendor(Vendor.insideview)
    assert isinstance(section, InsideViewConfig)
    login = _quick(section.login_http_settings())
    check.endpoint = host_port(login.base_url)
    transport = _Recorder(login)
    provider = InsideViewProvider(
        api=_quick(section.http_settings()),
        login=login,
        client_id=section.client_id,
        client_secret=section.client_secret,
        login_transport=transport,
    )
    try:
        await _Timer(check).first(provider._mint())  # a token: proves the credentials, costs nothing
        check.detail.append("access token issued")
        check.ok = True
    except AuthError:
        check.kind = CREDENTIALS
        check.problem = "wrong client_id or client_secret: InsideView refused the login"
    except ServiceError as exc:
        check.kind, check.problem = classify(exc, check.endpoint, login.timeout, transport)
    finally:
        await provider.aclose()


async def _leadfeeder(config: Config, check: ServiceCheck) -> None:
    from syncd.config import LeadfeederConfig
    from syncd.vendors.leadfeeder import LeadfeederProvider

    section = config.vendor(Vendor.leadfeeder)
    assert isinstance(section, LeadfeederConfig)
    settings = _quick(section.http_settings())
    register_secret(section.api_key)
    transport = _Recorder(settings)
    provider = LeadfeederProvider(settings, section.api_key, section.account_id, transport=transport)
    client: ServiceClient = provider.client
    headers = {"X-Api-Key": section.api_key, "Accept": "application/json"}
    try:
        response = await _Timer(check).first(client.request("GET", "/v1/accounts", headers=headers))
        if response.status_code != 200:
            error = provider._failure(response)
            if isinstance(error, AuthError) and response.status_code in (401, 403):
                check.kind = CREDENTIALS
                check.problem = f"wrong api_key: Leadfeeder refused it ({error.reason})"
            else:
                check.kind, check.problem = classify(error, check.endpoint, settings.timeout)
            return
        body = json_body(response, check.service)
        accounts = body.get("data") if isinstance(body, dict) else None
        if not isinstance(accounts, list):
            raise MalformedResponse(check.service, "GET /v1/accounts: no `data` list")
        ids = [str(a.get("id")) for a in accounts if isinstance(a, dict)]
        account = next(
            (a for a in accounts if isinstance(a, dict) and str(a.get("id")) == section.account_id), None
        )
        if account is None:
            check.kind = CONFIG
            seen = ", ".join(ids[:10]) or "none"
            check.problem = (
                f"no such account: account_id {section.account_id!r} is not among the accounts this key can "
                f"see ({seen})"
            )
            return
        check.detail.append(f"account {section.account_id} accessible")
        attrs = account.get("attributes")
        credits = attrs.get("credits") if isinstance(attrs, dict) else None
        if isinstance(credits, dict):
            left = {k: v for k, v in credits.items() if isinstance(v, int) and not isinstance(v, bool)}
            if "remaining" in left:
                check.credits_left = {"credits": left["remaining"]}
        check.ok = True
    except ServiceError as exc:
        check.kind, check.problem = classify(exc, check.endpoint, settings.timeout, transport)
    finally:
        await provider.aclose()


async def _contactout(config: Config, check: ServiceCheck) -> None:
    from syncd.config import ContactOutConfig
    from syncd.vendors.contactout import ContactOutProvider

    section = config.vendor(Vendor.contactout)
    assert isinstance(section, ContactOutConfig)
    settings = _quick(section.http_settings())
    transport = _Recorder(settings)
    provider = ContactOutProvider(settings, section.token, checker_rate=None, transport=transport)
    try:
        usage = await _Timer(check).first(provider.usage())
        check.detail.append("usage stats readable")
        left: dict[str, int] = {}
        for kind, prefix in (("email", ""), ("phone", "phone_"), ("search", "search_")):
            # postpaid plans report `remaining`; on prepaid ones `quota` is what remains
            value = usage.get(f"{prefix}remaining", usage.get(f"{prefix}quota"))
            if value is not None:
                left[kind] = value
        check.credits_left = left or None
        check.ok = True
    except AuthError:
        check.kind = CREDENTIALS
        check.problem = "wrong token: ContactOut refused it"
    except ServiceError as exc:
        check.kind, check.problem = classify(exc, check.endpoint, settings.timeout, transport)
    finally:
        await provider.aclose()


_CHECKS: dict[Vendor, Callable[[Config, ServiceCheck], Awaitable[None]]] = {
    Vendor.insideview: _insideview,
    Vendor.leadfeeder: _leadfeeder,
    Vendor.contactout: _contactout,
}


def _budgets(config: Config, checks: list[ServiceCheck]) -> None:
    """syncd's own accounting of each vendor's month against its budget (left out if the store cannot open)."""
    from syncd.store import StateStore, month_of

    try:
        store = StateStore.open(config.sync.state_url)
    except SyncdError:
        return
    try:
        spent = store.credits_for_month(month_of(datetime.now(UTC)))
    finally:
        store.close()
    for check in checks:
        section = config.vendor(check.service) if check.service in {v.value for v in Vendor} else None
        if section is None:
            continue
        budget = section.monthly_credit_budget
        used = spent.get(check.service, 0)
        check.budget = {
            "monthly_budget": budget,
            "spent_this_month": used,
            "left": None if budget is None else budget - used,
        }


async def run_checks(config: Config) -> CheckReport:
    checks = [ServiceCheck("pbx", host_port(str(config.pbx.base_url)))]
    jobs: list[Awaitable[None]] = [_pbx(config, checks[0])]
    for vendor in config.vendors.configured():
        section = config.vendor(vendor)
        assert section is not None
        check = ServiceCheck(vendor.value, host_port(str(section.base_url)))
        checks.append(check)
        jobs.append(_CHECKS[vendor](config, check))
    for job in jobs:  # one after the other: each latency is its own request's, not the event loop's
        await job
    for check in checks:
        if check.problem is not None:
            check.problem = redact(check.problem)
    return CheckReport(checks)


# --- output ---------------------------------------------------------------------------------------


def _credits_text(check: ServiceCheck) -> str:
    parts: list[str] = []
    if check.credits_left:
        kinds = ", ".join(f"{v:,}" if k == "credits" else f"{k} {v:,}" for k, v in check.credits_left.items())
        parts.append(f"{kinds} left at the vendor")
    if check.budget is not None:
        budget, used, left = (
            check.budget["monthly_budget"],
            check.budget["spent_this_month"],
            check.budget["left"],
        )
        if budget is None:
            parts.append(f"no monthly budget ({used:,} spent)")
        elif left is not None and left < 0:
            parts.append(f"budget {budget:,}: over by {-left:,}")
        else:
            parts.append(f"budget {budget:,}: {left:,} left")
    return "; ".join(parts) or "-"


def print_report(report: CheckReport, stream: TextIO | None = None, *, as_json: bool | None = None) -> None:
    out = stream or sys.stdout
    if as_json or (as_json is None and not out.isatty()):
        out.write(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=out, highlight=False, soft_wrap=True)
    width = max(len(c.service) for c in report.checks)
    for c in report.checks:
        result = "[green]ok    [/green]" if c.ok else "[red]FAILED[/red]"
        latency = f"{c.latency_ms:.0f} ms" if c.latency_ms is not None else "-"
        console.print(f"{result}  {c.service:<{width}}  {c.endpoint}  {latency}")
        if c.problem:
            console.print(f"        [red]{escape(c.problem)}[/red]")
        if c.detail:
            console.print(f"        {escape('; '.join(c.detail))}")
        credits = _credits_text(c)
        if credits != "-":
            console.print(f"        credits: {escape(credits)}")
    verdict = {
        EXIT_OK: "all services reachable, credentials accepted",
        EXIT_CONFIG: "a credential, permission or configuration problem: fix the config, then check again",
        EXIT_TEMPFAIL: "a service is unreachable: check the network and the service, then check again",
    }[report.exit_code]
    console.print(verdict)


def check_services(config: Config, stream: TextIO | None = None, *, as_json: bool | None = None) -> int:
    report = asyncio.run(run_checks(config))
    _budgets(config, report.checks)
    print_report(report, stream, as_json=as_json)
    return report.exit_code
