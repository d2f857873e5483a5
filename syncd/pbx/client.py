"""Yeastar P-Series OpenAPI client: token lifecycle, company contacts, phonebooks.

Token policy (five failed logins block the caller's IP, and an app may hold at most 8 tokens):
- a credential failure (any login refusal, 10005 and 20002 included) is never retried;
- a still-valid token from the cache is reused and refreshed before expiry;
- errcode 10004: one refresh at a time; the calls that met the same stale token wait for it and retry
  with the new token. A call that meets 10004 again is renewed again, at most MAX_RENEWALS times, then
  it fails as "unavailable" (retry later, never a rejected contact). A refresh that fails transiently is
  retried like any call; a refused refresh token falls back to one new login per client, never more;
- at most one live token: every new token replaces the cached one, and `close(revoke=True)` revokes it.

PBX behaviours the docs leave open, handled both ways:
- `company_contact/query` takes `ids=` (parameter table) or `id=` (the docs' example): the one the PBX
  honours is detected (40002, or none of the asked ids answered) and remembered per PBX;
- an "All Company Contacts" phonebook (`member_select: sel_all`) takes no explicit members: it is never
  sent in `phonebook_id_list` (phonebook/list is read once per client, i.e. per run);
- `contact_name` (flat form) may render "Last First": the detailed form's name is given in the form the
  listing rendered, so a contact read back after a write compares equal to the next listing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from syncd.errors import MalformedResponse
from syncd.http import HttpSettings, ServiceClient, json_body
from syncd.logs import get_logger, register_secret
from syncd.model import SLOT_FOR_FLAT, Contact, NumberSlot
from syncd.pbx.errors import (
    AUTH_HINTS,
    SERVICE,
    PbxAuthError,
    PbxError,
    PbxPermissionError,
    PbxRejected,
    PbxTokenUnavailable,
    error_for,
)

log = get_logger("syncd.pbx")

API = "/openapi/v1.0/"
MAX_PAGE_SIZE = 10_000
MAX_QUERY_IDS = 100
MAX_RENEWALS = 16  # 10004 answers one call may meet (each followed by a renewal) before it gives up
QUERY_PARAMS = ("ids", "id")
SEL_ALL = "sel_all"

# base URL -> the company_contact/query parameter that PBX honours ("ids" or "id"): the engine hands this
# process-wide memory to each run's client; a client built without one remembers for itself only
QUERY_PARAM_MEMORY: dict[str, str] = {}


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


def _asked(record: Any, asked: set[int]) -> bool | None:
    """Is `record` one of the `asked` ids (None: it has no readable id)?"""
    try:
        return _int(record.get("id")) in asked
    except (AttributeError, ValueError):
        return None


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


def _words(text: str) -> list[str]:
    return sorted(text.casefold().split())


def detailed_name(first: str, last: str, listed: str | None, *, last_first: bool = False) -> str:
    """The name of a detailed-form contact in the form the flat listing renders it.

    `listed` is the `contact_name` the listing gave for this contact: when it is made of the same words
    as first + last (in either order), it is the name (syncd never writes names, and the listing is what
    the next run compares with). Otherwise the parts are joined in the order the PBX was seen to use.
    """
    parts = [p for p in ((last, first) if last_first else (first, last)) if p]
    joined = " ".join(parts)
    if listed is not None and listed != joined and _words(listed) == _words(joined):
        return listed
    return joined


def parse_detailed(
    record: Mapping[str, Any], listed: str | None = None, *, last_first: bool = False
) -> Contact:
    """A contact in the detailed form of company_contact/get and /query (`listed`: see detailed_name)."""
    numbers: dict[NumberSlot, str] = {}
    number_list = record.get("number_list") or []
    if not isinstance(number_list, list):
        raise ValueError("number_list is not a list")
    for item in number_list:
        number = _text(item.get("number"))
        if number.strip():
            numbers[NumberSlot(item["num_type"])] = number
    books = record.get("phonebook_list") or []
    if not isinstance(books, list):
        raise ValueError("phonebook_list is not a list")
    name = detailed_name(
        _text(record.get("first_name")), _text(record.get("last_name")), listed, last_first=last_first
    )
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
        query_memory: MutableMapping[str, str] | None = None,
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
        self.renewals = 0  # 10004 answers met (each followed by a renewal or a wait for one)
        self._fallback_login_used = False  # a refused refresh token buys one new login per client
        self._pbx_key = http.base_url.rstrip("/")
        self._query_memory: MutableMapping[str, str] = {} if query_memory is None else query_memory
        self._listed_names: dict[int, str] = {}  # contact_name of each contact the listing gave
        self._last_first = False  # the listing was seen to render contact_name as "Last First"
        self._phonebooks: list[dict[str, Any]] | None = None  # phonebook/list, read once per client
        self._phonebooks_lock = asyncio.Lock()  # concurrent updates wait for the one read
        self._denied: dict[str, PbxPermissionError] = {}  # endpoint -> the 10005 it got: not asked again

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
            # every refusal is final: the credential codes (10005, 20002) as much as the others
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
            # the refresh token was refused (expired early, revoked): one fresh login, never more
            log.info("pbx.refresh_refused", errcode=body.get("errcode"))
            if self._fallback_login_used:
                raise PbxTokenUnavailable(
                    SERVICE,
                    f"refresh_token: errcode {body.get('errcode')} again after a new login; "
                    "not logging in again in this run",
                    code=str(body.get("errcode")),
                )
            self._fallback_login_used = True
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
        """One API call; raises a typed PbxError for a non-zero errcode.

        10004 is never raised: the call is renewed and retried up to MAX_RENEWALS times, then fails with
        PbxTokenUnavailable (a ServiceUnavailable: the caller keeps its work pending and tries later).
        """
        renewals = 0
        while True:
            if endpoint in self._denied:
                raise self._denied[endpoint]
            token = await self.ensure_token()
            query = {**(params or {}), "access_token": token}
            response = await self.http.request(method, API + endpoint, params=query, json=json)
            body = self._envelope(response, endpoint)
            code = int(body.get("errcode", -1))
            if code == 0:
                return body
            errmsg = str(body.get("errmsg", ""))
            if code == 10004:
                if renewals >= MAX_RENEWALS:
                    raise PbxTokenUnavailable(
                        SERVICE,
                        f"{endpoint}: errcode 10004 TOKEN EXPIRED after {renewals} token renewals",
                        code="10004",
                    )
                renewals += 1
                self.renewals += 1
                log.info("pbx.token_expired", endpoint=endpoint, renewal=renewals)
                await self._renew_after_expiry(token)
                continue
            if code in (70004, 70087):  # the IP is blocked or not allowed: no point going on
                raise PbxAuthError(code, errmsg, AUTH_HINTS[code])
            if code == 10005:  # ACCESS DENIED on a data call: the API app lacks a permission
                denied = self._denied[endpoint] = PbxPermissionError(code, errmsg, endpoint)
                raise denied
            raise error_for(code, errmsg, endpoint)

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
                    contact = parse_flat(record)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    rid = record.get("id") if isinstance(record, dict) else None
                    log.warning("pbx.malformed_contact", contact_id=rid, error=type(exc).__name__)
                    continue
                contacts.append(contact)
                self._listed_names[contact.id] = contact.name
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
            for record in await self._query_chunk(chunk):
                try:
                    contact = self._parse_detailed(record)
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
            for record in await self._query_chunk(chunk):
                try:
                    out[_int(record["id"])] = (
                        _text(record.get("first_name")).strip(),
                        _text(record.get("last_name")).strip(),
                    )
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue
        return out

    async def _query_chunk(self, chunk: Sequence[int]) -> list[Any]:
        """company_contact/query for `chunk`, with the parameter this PBX honours.

        The remembered parameter is tried first, the other one after it when the answer is 40002 or holds
        none of the asked ids (a PBX that ignores a parameter it does not know). Only an answer holding
        some of the asked ids settles which parameter the PBX honours.
        """
        known = self._query_memory.get(self._pbx_key)
        order = (known, *(p for p in QUERY_PARAMS if p != known)) if known else QUERY_PARAMS
        asked = set(chunk)
        joined = ",".join(str(i) for i in chunk)
        records: list[Any] = []
        for index, name in enumerate(order):
            last = index + 1 == len(order)
            try:
                body = await self.call("GET", "company_contact/query", params={name: joined})
            except PbxRejected as exc:
                if exc.errcode != 40002 or last:
                    raise
                log.info("pbx.query_param_refused", param=name, errcode=exc.errcode)
                continue
            data = body.get("data") or []
            if not isinstance(data, list):
                raise MalformedResponse(SERVICE, "company_contact/query: data is not a list")
            # unasked contacts are dropped; records without a readable id are kept (logged as malformed)
            records = [r for r in data if _asked(r, asked) is not False]
            if any(_asked(r, asked) for r in records):
                if known != name:
                    log.info("pbx.query_param", param=name)
                self._query_memory[self._pbx_key] = name
                return records
            if not last:
                log.info("pbx.query_param_unanswered", param=name, asked=len(chunk))
        return records

    def _parse_detailed(self, record: Mapping[str, Any]) -> Contact:
        rid = record.get("id")
        listed = self._listed_names.get(rid) if isinstance(rid, int) else None
        if listed is not None and not self._last_first:
            first, last = _text(record.get("first_name")), _text(record.get("last_name"))
            if first and last and listed == f"{last} {first}" != f"{first} {last}":
                self._last_first = True
                log.info("pbx.name_order", order="last first")
        return parse_detailed(record, listed, last_first=self._last_first)

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
            return self._parse_detailed(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(
                SERVICE, f"company_contact/get: malformed contact ({type(exc).__name__})"
            ) from None

    async def update_contact(self, contact_id: int, fields: Mapping[str, Any]) -> None:
        """company_contact/update with `fields`; lists (number_list, phonebook_id_list) must be complete.

        `phonebook_id_list` is sent without the "all contacts" phonebooks (sel_all): they hold every
        contact and take no explicit members, so the list holds only the contact's sel_specific ones.
        """
        body = {"id": contact_id, **fields}
        if "phonebook_id_list" in body:
            every = await self.sel_all_phonebook_ids()
            body["phonebook_id_list"] = [p for p in body["phonebook_id_list"] if p not in every]
        await self.call("POST", "company_contact/update", json=body)

    async def phonebooks(self) -> list[dict[str, Any]]:
        """Every phonebook (id, name, member_select), read with phonebook/list once per client."""
        async with self._phonebooks_lock:
            if self._phonebooks is None:
                self._phonebooks = await self._list_phonebooks()
            return self._phonebooks

    async def _list_phonebooks(self) -> list[dict[str, Any]]:
        books: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self.call("GET", "phonebook/list", params={"page": page, "page_size": 1000})
            data = body.get("data") or []
            try:
                if not isinstance(data, list):
                    raise ValueError("data is not a list")
                for book in data:
                    books.append(
                        {
                            "id": _int(book["id"]),
                            "name": str(book.get("name", "")),
                            "member_select": str(book.get("member_select", "")),
                        }
                    )
                total = _int(body.get("total_number", 0))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise MalformedResponse(SERVICE, f"phonebook/list: {exc}") from None
            if page * 1000 >= total or not data:
                break
            page += 1
        return books

    async def sel_all_phonebook_ids(self) -> frozenset[int]:
        return frozenset(b["id"] for b in await self.phonebooks() if b["member_select"] == SEL_ALL)

    async def phonebook_ids(self, names: Sequence[str]) -> dict[str, int]:
        """Phonebook name -> id for the configured names (case-insensitive); missing names are absent."""
        wanted = {n.casefold(): n for n in names}
        found: dict[str, int] = {}
        for book in await self.phonebooks():
            key = book["name"].casefold()
            if key in wanted:
                found[wanted.pop(key)] = book["id"]
        return found

    async def close(self, *, revoke: bool) -> None:
        """Revoke our token (daemon shutdown) or keep it cached for the next run (one-shot)."""
        if revoke:
            await self.del_token()
        await self.http.aclose()
