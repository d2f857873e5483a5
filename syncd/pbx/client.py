"""Yeastar P-Series OpenAPI client: token lifecycle, company contacts, phonebooks.

Token policy (five failed logins block the caller's IP, and an app may hold at most 8 tokens):
- a credential failure is never retried;
- a still-valid token from the cache is reused, refreshed before expiry, and on errcode 10004 the call
  is retried once after one refresh;
- at most one live token: every new token replaces the cached one, and `close(revoke=True)` revokes it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from syncd.errors import MalformedResponse
from syncd.http import HttpSettings, ServiceClient, json_body
from syncd.logs import get_logger, register_secret
from syncd.model import SLOT_FOR_FLAT, Contact, NumberSlot
from syncd.pbx.errors import AUTH_HINTS, SERVICE, PbxAuthError, PbxError, TokenExpired, error_for

log = get_logger("syncd.pbx")

API = "/openapi/v1.0/"
MAX_PAGE_SIZE = 10_000
MAX_QUERY_IDS = 100


@dataclass(frozen=True, slots=True)
class PbxToken:
    access_token: str
    access_expires_at: float  # epoch seconds
    refresh_token: str
    refresh_expires_at: float


class TokenCache(Protocol):
    def load(self) -> PbxToken | None: ...
    def save(self, token: PbxToken) -> None: ...
    def clear(self) -> None: ...


class MemoryTokenCache:
    def __init__(self) -> None:
        self.token: PbxToken | None = None

    def load(self) -> PbxToken | None:
        return self.token

    def save(self, token: PbxToken) -> None:
        self.token = token

    def clear(self) -> None:
        self.token = None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


_INT_RE = re.compile(r"-?[0-9]{1,19}")


def _int(value: Any) -> int:
    """A JSON integer (or a string of ASCII digits). ValueError for anything else: a bool, a float (1.5,
    NaN, infinity), other text; `int()` alone would take True as 1 and raise OverflowError on infinity."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value)
    raise ValueError(f"expected an integer, got {type(value).__name__}")


_TOKEN_RE = re.compile(r"[\x21-\x7e]{4,1024}")


def _token_text(value: Any) -> str:
    """A token as the PBX mints it (32 hex digits): printable ASCII, 4 to 1024 characters. Anything else
    (a number, a megabyte of text, "null") is a malformed answer, and is never registered as a secret."""
    if isinstance(value, str) and _TOKEN_RE.fullmatch(value):
        return value
    raise ValueError("not a token")


def parse_flat(record: Mapping[str, Any]) -> Contact:
    """A contact in the flat form of company_contact/list."""
    numbers = {
        slot: _text(record.get(flat))
        for flat, slot in SLOT_FOR_FLAT.items()
        if _text(record.get(flat)).strip()
    }
    books = record.get("phonebook_list") or []
    if not isinstance(books, list):
        raise ValueError("phonebook_list is not a list")
    title = record.get("job_title")
    return Contact.build(
        _int(record["id"]),
        name=_text(record.get("contact_name")),
        company=_text(record.get("company")),
        email=_text(record.get("email")),
        remark=_text(record.get("remark")),
        numbers=numbers,
        phonebook_ids=[_int(b["id"]) for b in books],
        job_title=None if title is None else _text(title),
    )


def parse_detailed(record: Mapping[str, Any]) -> Contact:
    """A contact in the detailed form of company_contact/get and /query."""
    numbers: dict[NumberSlot, str] = {}
    listed = record.get("number_list") or []
    if not isinstance(listed, list):
        raise ValueError("number_list is not a list")
    for item in listed:
        number = _text(item.get("number"))
        if number.strip():
            numbers[NumberSlot(item["num_type"])] = number
    books = record.get("phonebook_list") or []
    if not isinstance(books, list):
        raise ValueError("phonebook_list is not a list")
    name = " ".join(p for p in (_text(record.get("first_name")), _text(record.get("last_name"))) if p)
    title = record.get("job_title")
    return Contact.build(
        _int(record["id"]),
        name=name,
        company=_text(record.get("company")),
        email=_text(record.get("email")),
        remark=_text(record.get("remark")),
        numbers=numbers,
        phonebook_ids=[_int(b["id"]) for b in books],
        job_title=None if title is None else _text(title),
    )


class YeastarClient:
    def __init__(
        self,
        http: HttpSettings,
        client_id: str,
        client_secret: str,
        *,
        token_cache: TokenCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 60.0,
    ) -> None:
        register_secret(client_secret)
        self._client_id = client_id
        self._client_secret = client_secret
        self._cache = token_cache or MemoryTokenCache()
        self._clock = clock
        self._margin = refresh_margin
        self._token_lock = asyncio.Lock()
        self._token: PbxToken | None = None
        self.http = ServiceClient(http, transport=transport)
        self.logins = 0  # get_token calls made (tests and the lockout guard read it)
        self.refreshes = 0

    # --- tokens ---------------------------------------------------------------------------------
    def _remember(self, body: Mapping[str, Any]) -> PbxToken:
        try:
            now = self._clock()
            token = PbxToken(
                access_token=_token_text(body["access_token"]),
                access_expires_at=now + float(body.get("access_token_expire_time", 1800)),
                refresh_token=_token_text(body["refresh_token"]),
                refresh_expires_at=now + float(body.get("refresh_token_expire_time", 86400)),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            raise MalformedResponse(SERVICE, "token response without access_token/refresh_token") from None
        register_secret(token.access_token, token=True)
        register_secret(token.refresh_token, token=True)
        self._token = token
        self._cache.save(token)
        return token

    async def _post_envelope(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.http.request("POST", API + endpoint, json=body)
        return self._envelope(response, endpoint)

    def _envelope(self, response: httpx.Response, endpoint: str) -> dict[str, Any]:
        body = json_body(response, SERVICE)
        if not isinstance(body, dict) or "errcode" not in body:
            raise MalformedResponse(
                SERVICE, f"{endpoint}: HTTP {response.status_code}, no errcode in response"
            )
        try:
            body["errcode"] = _int(body["errcode"])  # callers read it with int(): only integers pass
        except ValueError:
            raise MalformedResponse(
                SERVICE, f"{endpoint}: HTTP {response.status_code}, errcode is not an integer"
            ) from None
        return body

    async def get_token(self) -> PbxToken:
        """Log in. Any refusal raises PbxAuthError at once: a retry could get the IP blocked."""
        self.logins += 1
        body = await self._post_envelope(
            "get_token", {"username": self._client_id, "password": self._client_secret}
        )
        code = int(body.get("errcode", -1))
        if code != 0:
            hint = AUTH_HINTS.get(code, "the PBX refused the login (check [pbx] client_id and client_secret)")
            raise PbxAuthError(code, str(body.get("errmsg", "")), hint)
        log.info("pbx.token_issued")
        return self._remember(body)

    async def refresh_token(self) -> PbxToken:
        token = self._token
        if token is None or token.refresh_expires_at - self._margin <= self._clock():
            return await self.get_token()
        self.refreshes += 1
        body = await self._post_envelope("refresh_token", {"refresh_token": token.refresh_token})
        if int(body.get("errcode", -1)) != 0:
            # the refresh token was refused (expired early, revoked): one fresh login
            log.info("pbx.refresh_refused", errcode=body.get("errcode"))
            return await self.get_token()
        log.info("pbx.token_refreshed")
        return self._remember(body)

    async def del_token(self) -> None:
        token = self._token
        self._token = None
        self._cache.clear()
        if token is None or token.access_expires_at <= self._clock():
            return
        try:
            response = await self.http.request(
                "GET", API + "del_token", params={"access_token": token.access_token}, retry=False
            )
            body = self._envelope(response, "del_token")
            if int(body.get("errcode", -1)) == 0:
                log.info("pbx.token_revoked")
        except Exception as exc:  # revoking is best effort: the token expires on its own
            log.warning("pbx.revoke_failed", error=str(exc))

    async def ensure_token(self) -> str:
        async with self._token_lock:
            if self._token is None:
                self._token = self._cache.load()
                if self._token is not None:
                    register_secret(self._token.access_token, token=True)
                    register_secret(self._token.refresh_token, token=True)
            token = self._token
            now = self._clock()
            if token is None:
                token = await self.get_token()
            elif token.access_expires_at - self._margin <= now:
                token = await self.refresh_token()
            return token.access_token

    async def _renew_after_expiry(self, stale: str) -> None:
        async with self._token_lock:
            if self._token is not None and self._token.access_token != stale:
                return  # another task already renewed it
            await self.refresh_token()

    # --- calls ----------------------------------------------------------------------------------
    async def call(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One API call; raises a typed PbxError for a non-zero errcode."""
        for attempt in range(2):
            token = await self.ensure_token()
            query = {**(params or {}), "access_token": token}
            response = await self.http.request(method, API + endpoint, params=query, json=json)
            body = self._envelope(response, endpoint)
            code = int(body.get("errcode", -1))
            if code == 0:
                return body
            error = error_for(code, str(body.get("errmsg", "")), endpoint)
            if isinstance(error, TokenExpired) and attempt == 0:
                log.info("pbx.token_expired", endpoint=endpoint)
                await self._renew_after_expiry(token)
                continue
            if code in (70004, 70087):  # the IP is blocked or not allowed: no point going on
                raise PbxAuthError(code, str(body.get("errmsg", "")), AUTH_HINTS[code])
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    # --- contacts -------------------------------------------------------------------------------
    async def iter_contact_pages(self, page_size: int = MAX_PAGE_SIZE) -> AsyncIterator[list[Contact]]:
        """Every company contact, a page at a time (flat form).

        Stops when page x page_size >= total_number (or on an empty page, so a PBX that misreports
        its total cannot loop us forever). Malformed records are logged and skipped.
        """
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        page = 1
        while True:
            body = await self.call(
                "GET",
                "company_contact/list",
                params={"page": page, "page_size": size, "sort_by": "id", "order_by": "asc"},
            )
            try:
                total = _int(body.get("total_number", 0))
            except ValueError:
                raise MalformedResponse(
                    SERVICE, "company_contact/list: total_number is not a number"
                ) from None
            data = body.get("data") or []
            if not isinstance(data, list):
                raise MalformedResponse(SERVICE, "company_contact/list: data is not a list")
            contacts: list[Contact] = []
            for record in data:
                try:
                    contacts.append(parse_flat(record))
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    rid = record.get("id") if isinstance(record, dict) else None
                    log.warning("pbx.malformed_contact", contact_id=rid, error=type(exc).__name__)
            yield contacts
            if page * size >= total or not data:
                return
            page += 1

    async def query_contacts(self, ids: Iterable[int]) -> dict[int, Contact]:
        """Detailed records of `ids`, in chunks of at most 100; unknown ids are absent."""
        wanted = sorted(set(ids))
        out: dict[int, Contact] = {}
        for start in range(0, len(wanted), MAX_QUERY_IDS):
            chunk = wanted[start : start + MAX_QUERY_IDS]
            body = await self.call(
                "GET", "company_contact/query", params={"ids": ",".join(str(i) for i in chunk)}
            )
            data = body.get("data") or []
            if not isinstance(data, list):
                raise MalformedResponse(SERVICE, "company_contact/query: data is not a list")
            for record in data:
                try:
                    contact = parse_detailed(record)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    rid = record.get("id") if isinstance(record, dict) else None
                    log.warning("pbx.malformed_contact", contact_id=rid, error=type(exc).__name__)
                    continue
                out[contact.id] = contact
        return out

    async def contact_names(self, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """(first_name, last_name) of `ids` as the PBX holds them (detailed form): the flat form's
        `contact_name` is a display string whose word order depends on the PBX."""
        wanted = sorted(set(ids))
        out: dict[int, tuple[str, str]] = {}
        for start in range(0, len(wanted), MAX_QUERY_IDS):
            chunk = wanted[start : start + MAX_QUERY_IDS]
            body = await self.call(
                "GET", "company_contact/query", params={"ids": ",".join(str(i) for i in chunk)}
            )
            data = body.get("data") or []
            if not isinstance(data, list):
                raise MalformedResponse(SERVICE, "company_contact/query: data is not a list")
            for record in data:
                try:
                    out[_int(record["id"])] = (
                        _text(record.get("first_name")).strip(),
                        _text(record.get("last_name")).strip(),
                    )
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue
        return out

    async def get_contact(self, contact_id: int) -> Contact | None:
        try:
            body = await self.call("GET", "company_contact/get", params={"id": contact_id})
        except PbxError as exc:
            if exc.errcode == 60001:
                return None
            raise
        data = body.get("data")
        if not isinstance(data, dict):
            raise MalformedResponse(SERVICE, "company_contact/get: data is not an object")
        if "id" not in data:
            data = {**data, "id": contact_id}
        try:
            return parse_detailed(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(
                SERVICE, f"company_contact/get: malformed contact ({type(exc).__name__})"
            ) from None

    async def update_contact(self, contact_id: int, fields: Mapping[str, Any]) -> None:
        """company_contact/update with `fields`; lists (number_list, phonebook_id_list) must be complete."""
        await self.call("POST", "company_contact/update", json={"id": contact_id, **fields})

    async def phonebook_ids(self, names: Sequence[str]) -> dict[str, int]:
        """Phonebook name -> id for the configured names (case-insensitive); missing names are absent."""
        wanted = {n.casefold(): n for n in names}
        found: dict[str, int] = {}
        page = 1
        while wanted:
            body = await self.call("GET", "phonebook/list", params={"page": page, "page_size": 1000})
            data = body.get("data") or []
            try:
                if not isinstance(data, list):
                    raise ValueError("data is not a list")
                for book in data:
                    key = str(book.get("name", "")).casefold()
                    if key in wanted:
                        found[wanted.pop(key)] = _int(book["id"])
                total = _int(body.get("total_number", 0))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise MalformedResponse(SERVICE, f"phonebook/list: {exc}") from None
            if page * 1000 >= total or not data:
                break
            page += 1
        return found

    async def close(self, *, revoke: bool) -> None:
        """Revoke our token (daemon shutdown) or keep it cached for the next run (one-shot)."""
        if revoke:
            await self.del_token()
        await self.http.aclose()
