"""A fake Yeastar P-Series PBX: the OpenAPI v1.0 token, company-contact and phonebook endpoints.

Faithful to /work/shared/notes/yeastar-pbx-api.md where the docs are clear, and deliberately strict where
they are not (each such choice is commented, marked UNCONFIRMED). Every answer is HTTP 200 with a JSON
envelope `{"errcode": 0, "errmsg": "SUCCESS", ...}`; only the fault middleware produces other statuses.

Built for volume: a contact is one compact record (small-vocabulary strings interned, shared empty
strings) plus its flat-form JSON encoded once, so a 10,000-contact list page is a join of cached bytes.
Seeding runs at construction (the dataset's ~40 µs per contact), never per request.

Thread-safety: the app runs in uvicorn's thread while tests inspect and edit from theirs; every read and
write of the state holds `_lock` (a plain Lock: internal helpers assume it is held, never take it).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from syncd.sim.dataset import Dataset, Phonebook, SeedContact
from syncd.sim.faults import FaultInjector, Faults

API_PREFIX = "/openapi/v1.0/"

ERRMSG: dict[int, str] = {
    0: "SUCCESS",
    -2: "INTERNAL SERVER ERROR",
    10001: "INTERFACE NOT EXISTED",
    10004: "TOKEN EXPIRED",
    10005: "ACCESS DENIED",
    20002: "LOGIN FAILED",
    40001: "PARAMETER SYNTAX ERROR",
    40002: "PARAMETER ERROR",
    60001: "DATA NOT FOUND",
    60002: "MAX LIMITATION EXCEEDED",
    70004: "ACCOUNT IP BLOCKED",
    70087: "IP FORBIDDEN",
    70093: "PHONEBOOK_NOT_EXISTED",
}

MAX_PAGE_SIZE = 10_000  # company_contact/list: default and maximum page_size
MAX_QUERY_IDS = 100  # company_contact/query and phonebook/query
SORT_FIELDS = ("id", "contact_name", "company", "email", "business", "mobile", "home", "business_fax")
PHONEBOOK_SORT_FIELDS = ("id", "name", "total")

# Field rules (P-Series CSV import spec; that the API enforces the same is UNCONFIRMED, we enforce them).
# Written independently of syncd.normalize on purpose: a client bug must not be mirrored here.
TEXT_LIMITS: dict[str, int] = {
    "first_name": 63,
    "last_name": 63,
    "company": 127,
    "email": 255,
    "remark": 1024,
    "zip_code": 255,
    "street": 255,
    "city": 255,
    "state": 255,
    "country": 255,
}
JOB_TITLE_MAX = 127  # newer firmware's job_title: limit UNCONFIRMED
NUMBER_RE = re.compile(r"[0-9A-Za-z().+*#-]{1,31}")
EMAIL_CHARS_RE = re.compile(r"[A-Za-z0-9@_.'-]+")
EMAIL_SHAPE_RE = re.compile(r"[^@]+@[^@]+\.[^@]{2,}")  # XXX@XXX.XX

# The nine number types: the detailed form's `num_type` (company_contact/get, Table 5) and the flat form's
# field for it (company_contact/list). Written out from the vendor docs, not taken from the client.
NUMBER_TYPES: tuple[tuple[str, str], ...] = (
    ("business_number", "business"),
    ("business_number2", "business2"),
    ("mobile_number", "mobile"),
    ("mobile_number2", "mobile2"),
    ("home_number", "home"),
    ("home_number2", "home2"),
    ("business_fax", "business_fax"),
    ("home_fax", "home_fax"),
    ("other_number", "other"),
)
SLOTS: tuple[str, ...] = tuple(num_type for num_type, _ in NUMBER_TYPES)
SLOT_INDEX: dict[str, int] = {s: i for i, s in enumerate(SLOTS)}
FLAT_NAMES: tuple[str, ...] = tuple(flat for _, flat in NUMBER_TYPES)
_EMPTY_NUMBERS: tuple[str, ...] = ("",) * len(SLOTS)
_INT_RE = re.compile(r"-?[0-9]{1,18}")

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class PbxError(Exception):
    """An API error: `errcode` plus the documented `errmsg` (with a detail for parameter errors)."""

    def __init__(self, errcode: int, detail: str = "", **extra: Any) -> None:
        self.errcode = errcode
        self.errmsg = ERRMSG[errcode] + (f": {detail}" if detail else "")
        self.extra = extra
        super().__init__(f"{errcode} {self.errmsg}")

    def body(self) -> bytes:
        return _encode({"errcode": self.errcode, "errmsg": self.errmsg, **self.extra}).encode()


class _Rec(NamedTuple):
    """One company contact as the PBX stores it (the id is the key it is stored under)."""

    first_name: str
    last_name: str
    company: str
    email: str
    remark: str
    numbers: tuple[str, ...]  # one per number type, in NUMBER_TYPES order; "" = empty slot
    phonebooks: tuple[int, ...]  # sorted ids
    zip_code: str
    street: str
    city: str
    state: str
    country: str
    job_title: str  # kept "" unless the simulated firmware has the field


# small-vocabulary fields, interned so that 500,000 contacts share their strings
_POOLED = ("first_name", "last_name", "company", "remark", "zip_code", "street", "city", "state", "country")
_BLANK = _Rec("", "", "", "", "", _EMPTY_NUMBERS, (), "", "", "", "", "", "")


def _contact_name(r: _Rec) -> str:
    # The flat form's single name. UNCONFIRMED how the PBX joins an empty part: we drop it, so a
    # contact without a last name is "Jay", not "Jay ".
    if r.first_name and r.last_name:
        return f"{r.first_name} {r.last_name}"
    return r.first_name or r.last_name


_SORT_KEYS: dict[str, Callable[[_Rec], str]] = {
    "contact_name": _contact_name,
    "company": lambda r: r.company,
    "email": lambda r: r.email,
    "business": lambda r: r.numbers[SLOT_INDEX["business_number"]],
    "mobile": lambda r: r.numbers[SLOT_INDEX["mobile_number"]],
    "home": lambda r: r.numbers[SLOT_INDEX["home_number"]],
    "business_fax": lambda r: r.numbers[SLOT_INDEX["business_fax"]],
}


@dataclass(slots=True)
class _TokenPair:
    access: str
    refresh: str
    access_expires: float
    refresh_expires: float
    uses: int = 0  # authenticated calls made with the access token


NAME_ORDERS = ("first_last", "last_first")
QUERY_PARAM_READINGS = ("both", "ids", "id")
UNKNOWN_PARAM_READINGS = ("error", "ignore")


@dataclass(frozen=True, slots=True)
class _Endpoint:
    method: str
    handler: Callable[[Mapping[str, str], dict[str, Any], str], bytes]
    auth: bool = True


def _lifetime(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


class PbxSimulator:
    """The PBX's state plus its ASGI app (`app`, wrapped in the shared fault middleware)."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        client_id: str = "syncd-demo-client",
        client_secret: str = "syncd-demo-secret",  # noqa: S107 (the demo PBX's published credential)
        token_lifetime: float = 1800,
        refresh_lifetime: float = 86400,
        max_tokens: int = 8,
        block_after: int = 5,
        block_seconds: float = 600,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
        firmware_job_title: bool = False,
        max_contacts: int = 500_000,
        token_uses: int = 0,
        name_order: str = "first_last",
        query_param: str = "both",
        unknown_query_param: str = "error",
        login_refusal_errcode: int = 10005,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.max_tokens = max_tokens
        self.block_after = block_after
        self.block_seconds = block_seconds
        self.clock = clock
        # Newer firmware adds `job_title` to the contact (flat and detailed forms, create and update).
        # Without it, a `job_title` sent in create/update is ignored like any unknown key (UNCONFIRMED).
        self.firmware_job_title = firmware_job_title
        self.max_contacts = max_contacts  # P570 / large Software edition: 500,000 company contacts
        # --- switches for what the docs leave open (each reading of an UNCONFIRMED behaviour) ---
        # An access token dies after this many authenticated calls (0 = only its lifetime counts):
        # a "token storm" where tokens expire while requests are in flight.
        self.token_uses = token_uses
        # How the flat form's contact_name joins the parts: nothing documents the word order.
        if name_order not in NAME_ORDERS:
            raise ValueError(f"name_order: one of {NAME_ORDERS}")
        self.name_order = name_order
        # company_contact/query: the parameter table says `ids=`, the docs' example `id=`. "both" honours
        # either; "ids"/"id" honours only that one. The other name is then either refused as a missing
        # parameter ("error": 40002) or ignored like any unknown parameter ("ignore": an empty answer).
        if query_param not in QUERY_PARAM_READINGS or unknown_query_param not in UNKNOWN_PARAM_READINGS:
            raise ValueError("query_param / unknown_query_param: not a known reading")
        self.query_param = query_param
        self.unknown_query_param = unknown_query_param
        # The errcode a refused login gets: 10005 ACCESS DENIED (the table's closest) or 20002 (a public
        # Node client reports wrong credentials so).
        self.login_refusal_errcode = login_refusal_errcode
        # Endpoint -> N: every Nth request to it answers HTTP 503 (e.g. {"refresh_token": 2}).
        self.unavailable_every: dict[str, int] = {}
        self.unavailable: Counter[str] = Counter()  # 503s answered that way, by endpoint
        self._seen: Counter[str] = Counter()
        # The "All Company Contacts" phonebook (member_select sel_all): see all_contacts_phonebook().
        self.sel_all_id: int | None = None
        self.refuse_sel_all_members = True
        self.sel_all_listed = True
        self.refused_members = 0  # updates refused for naming the sel_all phonebook
        self.faults = faults or Faults()
        self.calls: Counter[str] = Counter()  # every request that reached the app, by endpoint name
        self.updates: list[dict[str, Any]] = []  # every accepted company_contact/update body, in order
        self.failed_logins: dict[str, int] = {}  # ip -> consecutive failed get_token calls
        self.blocked: dict[str, float] = {}  # ip -> clock() time the block ends
        # The API app's settings (knobs a test may change while the server runs): endpoint names the app
        # has no permission for answer 10005 ACCESS DENIED ("No access permission" in the docs' table) once
        # the token is checked; with an allowed-IP list, other IPs get 70087 IP FORBIDDEN on every
        # endpoint, get_token included (which endpoints the list guards is UNCONFIRMED: we guard all).
        self.denied: set[str] = set()
        self.allowed_ips: set[str] | None = None

        self._lock = threading.Lock()
        self._tokens: dict[str, _TokenPair] = {}  # by access token
        self._refresh: dict[str, _TokenPair] = {}  # by refresh token
        self._phonebooks: dict[int, Phonebook] = {}
        self._pb_total: Counter[int] = Counter()
        self._recs: dict[int, _Rec] = {}
        self._flat: dict[int, bytes] = {}  # cached flat-form JSON of each contact
        self._sorted: dict[tuple[str, str], list[int]] = {}  # (sort_by, order_by) -> ids; cleared on change
        self._pool: dict[str, str] = {}  # interned small-vocabulary strings
        self._pb_tuples: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._next_id = 1
        if dataset is not None:
            self._phonebooks = {p.id: p for p in dataset.phonebooks}
            for seed in dataset.contacts():
                self._put(seed.id, self._from_seed(seed))
            self._next_id = max(self._recs, default=0) + 1

        self._endpoints: dict[str, _Endpoint] = {
            "get_token": _Endpoint("POST", self._get_token, auth=False),
            "refresh_token": _Endpoint("POST", self._refresh_token, auth=False),
            "del_token": _Endpoint("GET", self._del_token),
            "company_contact/list": _Endpoint("GET", self._contact_list),
            "company_contact/search": _Endpoint("GET", self._contact_search),
            "company_contact/get": _Endpoint("GET", self._contact_get),
            "company_contact/query": _Endpoint("GET", self._contact_query),
            "company_contact/create": _Endpoint("POST", self._contact_create),
            "company_contact/update": _Endpoint("POST", self._contact_update),
            "company_contact/delete": _Endpoint("GET", self._contact_delete),
            "phonebook/list": _Endpoint("GET", self._phonebook_list),
            "phonebook/get": _Endpoint("GET", self._phonebook_get),
            "phonebook/query": _Endpoint("GET", self._phonebook_query),
        }
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        router = Router(
            routes=[
                Route(API_PREFIX + "{endpoint:path}", self._handle, methods=methods),
                Route("/{path:path}", self._handle, methods=methods),
            ]
        )
        self.app: ASGIApp = FaultInjector(router, self.faults)

    # --- inspection and manipulation (tests: "a person edits the PBX") ------------------------------
    def contact(self, contact_id: int) -> dict[str, Any]:
        """The contact in detailed form, as company_contact/get returns it; KeyError if absent."""
        with self._lock:
            return self._detail(contact_id, self._recs[contact_id])

    def edit_contact(self, contact_id: int, **fields: Any) -> None:
        """Change a contact with company_contact/update's fields and rules (raises PbxError)."""
        with self._lock:
            base = self._recs[contact_id]
            self._put(contact_id, self._validated(fields, base))

    def add_contact(self, **fields: Any) -> int:
        """Create a contact with company_contact/create's fields and rules; returns its id."""
        with self._lock:
            return self._create(fields)

    def delete_contact(self, contact_id: int) -> None:
        with self._lock:
            self._remove(contact_id)

    def backup(self) -> dict[int, Any]:
        """The company contacts as they are now (what a PBX backup keeps of the phonebook)."""
        with self._lock:
            return dict(self._recs)

    def phonebook_json(self) -> dict[str, Any]:
        """The company contacts as plain JSON (`syncd demo --keep` saves them, `--resume` loads them)."""
        with self._lock:
            contacts = {str(cid): rec._asdict() for cid, rec in self._recs.items()}
            return {"next_id": self._next_id, "contacts": contacts}

    def load_phonebook_json(self, data: Mapping[str, Any]) -> None:
        """Hold exactly the contacts `phonebook_json` saved (ids unchanged), as a restored backup."""
        backup: dict[int, _Rec] = {}
        for cid, fields in data["contacts"].items():
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
            backup[int(cid)] = _Rec(**values)
        self.restore(backup)
        with self._lock:
            self._next_id = max(self._next_id, int(data["next_id"]))

    def restore(self, backup: Mapping[int, Any]) -> None:
        """Put the company contacts back as `backup` held them (a PBX restored from a backup): contacts
        created since are gone, every other contact has its backed-up values again, ids unchanged."""
        with self._lock:
            for cid in [c for c in self._recs if c not in backup]:
                self._remove(cid)
            for cid, rec in backup.items():
                self._put(cid, rec)
            self._next_id = max(self._next_id, max(backup, default=0) + 1)

    def contact_count(self) -> int:
        with self._lock:
            return len(self._recs)

    def contact_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._recs)

    def live_tokens(self) -> int:
        """Access tokens valid now."""
        with self._lock:
            now = self.clock()
            return sum(1 for t in self._tokens.values() if t.access_expires > now)

    def expire_tokens(self) -> None:
        """Make every access token expired now (refresh tokens stay valid)."""
        with self._lock:
            now = self.clock()
            for pair in self._tokens.values():
                pair.access_expires = min(pair.access_expires, now)

    def all_contacts_phonebook(
        self, name: str = "All Company Contacts", *, refuse_members: bool = True, listed: bool = True
    ) -> int:
        """Add the "All Company Contacts" phonebook (`member_select: sel_all`): it lists every contact
        (in each contact's phonebook_list too, as the docs' get example shows) and has no explicit members.

        Whether create/update accept its id in `phonebook_id_list` is UNCONFIRMED: `refuse_members`
        answers 40002 to such a request; otherwise the id is accepted and ignored. Whether a contact's
        phonebook_list names it is UNCONFIRMED too (the docs' get example does): `listed`. Returns its id.
        """
        with self._lock:
            pid = max(self._phonebooks, default=0) + 1
            self._phonebooks[pid] = Phonebook(id=pid, name=name)
            self.sel_all_id = pid
            self.refuse_sel_all_members = refuse_members
            self.sel_all_listed = listed
            self._refresh_flat()
            return pid

    def set_name_order(self, order: str) -> None:
        """Switch how the listing renders contact_name ("first_last" or "last_first")."""
        if order not in NAME_ORDERS:
            raise ValueError(f"name_order: one of {NAME_ORDERS}")
        with self._lock:
            self.name_order = order
            self._refresh_flat()

    def unblock(self, ip: str = "127.0.0.1") -> None:
        """What an admin does under Security > Blocked IPs: lift the block and forget the failures."""
        with self._lock:
            self.blocked.pop(ip, None)
            self.failed_logins.pop(ip, None)

    # --- storage (lock held) -----------------------------------------------------------------------
    def _intern(self, text: str) -> str:
        return self._pool.setdefault(text, text) if text else ""

    def _from_seed(self, s: SeedContact) -> _Rec:
        numbers = list(_EMPTY_NUMBERS)
        for slot, number in s.numbers.items():
            numbers[SLOT_INDEX[slot]] = number
        books = self._pb_tuples.setdefault(s.phonebook_ids, s.phonebook_ids)
        it = self._intern
        return _Rec(
            it(s.first_name),
            it(s.last_name),
            it(s.company),
            s.email,
            it(s.remark),
            tuple(numbers),
            books,
            it(s.zip_code),
            it(s.street),
            it(s.city),
            it(s.state),
            it(s.country),
            "",
        )

    def _refresh_flat(self) -> None:
        for cid, rec in self._recs.items():
            self._flat[cid] = self._flat_bytes(cid, rec)
        self._sorted.clear()

    def _books(self, r: _Rec) -> list[dict[str, Any]]:
        """A contact's phonebook_list: its explicit phonebooks, then the sel_all one (if any)."""
        books = [{"id": p, "name": self._phonebooks[p].name} for p in r.phonebooks]
        if self.sel_all_id is not None and self.sel_all_listed:
            books.append({"id": self.sel_all_id, "name": self._phonebooks[self.sel_all_id].name})
        return books

    def _contact_name(self, r: _Rec) -> str:
        if self.name_order == "last_first" and r.first_name and r.last_name:
            return f"{r.last_name} {r.first_name}"
        return _contact_name(r)

    def _put(self, cid: int, rec: _Rec) -> None:
        old = self._recs.get(cid)
        if old is not None:
            self._pb_total.subtract(old.phonebooks)
        self._pb_total.update(rec.phonebooks)
        self._recs[cid] = rec
        self._flat[cid] = self._flat_bytes(cid, rec)
        if old is None:
            self._sorted.clear()
        else:
            for key in [k for k in self._sorted if k[0] != "id"]:
                del self._sorted[key]

    def _remove(self, cid: int) -> None:
        rec = self._recs.pop(cid)
        del self._flat[cid]
        self._pb_total.subtract(rec.phonebooks)
        self._sorted.clear()

    def _create(self, fields: Mapping[str, Any]) -> int:
        rec = self._validated(fields, None)
        if len(self._recs) >= self.max_contacts:
            raise PbxError(60002)
        cid = self._next_id
        self._next_id += 1
        self._put(cid, rec)
        return cid

    def _flat_bytes(self, cid: int, r: _Rec) -> bytes:
        d: dict[str, Any] = {
            "id": cid,
            "contact_name": self._contact_name(r),
            "company": r.company,
            "email": r.email,
            "phonebook_list": self._books(r),
            "remark": r.remark,
        }
        d.update(zip(FLAT_NAMES, r.numbers, strict=True))
        if self.firmware_job_title:
            d["job_title"] = r.job_title
        return _encode(d).encode()

    def _detail(self, cid: int, r: _Rec) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": cid,
            "first_name": r.first_name,
            "last_name": r.last_name,
            "company": r.company,
            "email": r.email,
            "phonebook_list": self._books(r),
            "remark": r.remark,
            "number_list": [{"num_type": SLOTS[i], "number": n} for i, n in enumerate(r.numbers) if n],
            "zip_code": r.zip_code,
            "street": r.street,
            "city": r.city,
            "state": r.state,
            "country": r.country,
        }
        if self.firmware_job_title:
            d["job_title"] = r.job_title
        return d

    def _sorted_ids(self, sort_by: str, order: str) -> list[int]:
        key = (sort_by, order)
        ids = self._sorted.get(key)
        if ids is None:
            if sort_by == "id":
                ids = sorted(self._recs)
            else:
                field_of = _SORT_KEYS[sort_by]
                recs = self._recs
                ids = sorted(recs, key=lambda cid: (field_of(recs[cid]), cid))
            if order == "desc":
                ids.reverse()
            self._sorted[key] = ids
        return ids

    # --- validation (create / update / edit_contact) -----------------------------------------------
    def _validated(self, fields: Mapping[str, Any], base: _Rec | None) -> _Rec:
        """The record `fields` make of `base` (None = create); PbxError naming the field otherwise."""
        values = (base or _BLANK)._asdict()
        for name, limit in TEXT_LIMITS.items():
            if name in fields:
                values[name] = _text(fields[name], name, limit)
        if self.firmware_job_title and "job_title" in fields:
            values["job_title"] = _text(fields["job_title"], "job_title", JOB_TITLE_MAX)
        if not values["first_name"]:
            raise PbxError(40002, "first_name: required")
        email = values["email"]
        if email and not (EMAIL_CHARS_RE.fullmatch(email) and EMAIL_SHAPE_RE.fullmatch(email)):
            raise PbxError(40002, "email: invalid characters or not of the form XXX@XXX.XX")
        if "number_list" in fields:
            values["numbers"] = _numbers(fields["number_list"])
        elif base is None:
            raise PbxError(40002, "number_list: required")
        if not any(values["numbers"]):
            raise PbxError(40002, "number_list: at least one number is required")
        if "phonebook_id_list" in fields:
            ids = _int_list(fields["phonebook_id_list"], "phonebook_id_list")
            missing = [p for p in ids if p not in self._phonebooks]
            if missing:
                raise PbxError(70093, f"phonebook_id_list: {missing[0]}")
            if self.sel_all_id in ids:
                if self.refuse_sel_all_members:
                    self.refused_members += 1
                    raise PbxError(40002, f"phonebook_id_list: {self.sel_all_id} takes no explicit members")
                ids = [p for p in ids if p != self.sel_all_id]
            books = tuple(sorted(set(ids)))
            values["phonebooks"] = self._pb_tuples.setdefault(books, books)
        it = self._intern
        for name in _POOLED:
            values[name] = it(values[name])
        return _Rec(**values)

    # --- HTTP ---------------------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        name = request.path_params.get("endpoint") or request.url.path
        every = self.unavailable_every.get(name)
        if every:
            with self._lock:
                self._seen[name] += 1
                due = self._seen[name] % every == 0
                if due:
                    self.unavailable[name] += 1
            if due:
                return Response(b"Service Unavailable", status_code=503, media_type="text/plain")
        try:
            payload = await self._dispatch(request, name)
        except PbxError as exc:
            payload = exc.body()
        return Response(payload, media_type="application/json")

    async def _dispatch(self, request: Request, name: str) -> bytes:
        ip = request.client.host if request.client else ""
        with self._lock:
            self.calls[name] += 1
            # a blocked IP is refused before anything else is looked at, like a firewall rule
            self._check_block(ip)
        # The docs require a User-Agent on every request but name no error for its absence; we answer
        # 40001 PARAMETER SYNTAX ERROR (a malformed request) - UNCONFIRMED.
        if not request.headers.get("user-agent"):
            raise PbxError(40001, "User-Agent header is required")
        endpoint = self._endpoints.get(name)
        # An existing endpoint called with the wrong method is treated as an unknown interface.
        if endpoint is None or request.method != endpoint.method:
            raise PbxError(10001)
        body: dict[str, Any] = {}
        if endpoint.method == "POST":
            raw = await request.body()
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError):
                raise PbxError(40001, "body is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise PbxError(40001, "body must be a JSON object")
            body = parsed
        query = request.query_params
        with self._lock:
            if self.allowed_ips is not None and ip not in self.allowed_ips:
                raise PbxError(70087)
            if endpoint.auth:
                self._check_token(query.get("access_token"))
                if name in self.denied:
                    raise PbxError(10005, "No access permission")
            return endpoint.handler(query, body, ip)

    def _check_block(self, ip: str) -> None:
        until = self.blocked.get(ip)
        if until is None:
            return
        remaining = until - self.clock()
        if remaining <= 0:
            del self.blocked[ip]
            self.failed_logins.pop(ip, None)
            return
        # block_expire_time's unit is UNCONFIRMED (one public client prints it); we send the Unix time
        # (seconds) at which the block ends.
        raise PbxError(70004, block_expire_time=int(time.time() + remaining + 0.999))

    def _check_token(self, token: str | None) -> None:
        pair = self._tokens.get(token or "")
        if pair is None or pair.access_expires <= self.clock():
            raise PbxError(10004)
        pair.uses += 1
        if self.token_uses and pair.uses > self.token_uses:
            raise PbxError(10004)

    # --- tokens ---------------------------------------------------------------------------------------
    def _mint(self) -> bytes:
        now = self.clock()
        pair = _TokenPair(
            access=secrets.token_hex(16),
            refresh=secrets.token_hex(16),
            access_expires=now + self.token_lifetime,
            refresh_expires=now + self.refresh_lifetime,
        )
        self._tokens[pair.access] = pair
        self._refresh[pair.refresh] = pair
        return _ok(
            access_token=pair.access,
            access_token_expire_time=_lifetime(self.token_lifetime),
            refresh_token=pair.refresh,
            refresh_token_expire_time=_lifetime(self.refresh_lifetime),
        )

    def _live_count(self) -> int:
        now = self.clock()
        for pair in [p for p in self._tokens.values() if p.access_expires <= now]:
            if pair.refresh_expires <= now:  # both halves dead: forget the pair
                self._revoke(pair)
        return sum(1 for p in self._tokens.values() if p.access_expires > now)

    def _revoke(self, pair: _TokenPair) -> None:
        self._tokens.pop(pair.access, None)
        self._refresh.pop(pair.refresh, None)

    def _get_token(self, _q: Mapping[str, str], body: dict[str, Any], ip: str) -> bytes:
        if body.get("username") != self.client_id or body.get("password") != self.client_secret:
            count = self.failed_logins.get(ip, 0) + 1
            self.failed_logins[ip] = count
            if count >= self.block_after:
                self.blocked[ip] = self.clock() + self.block_seconds
            # The errcode for wrong credentials is UNCONFIRMED: 10005 ACCESS DENIED (the table's closest)
            # by default, 20002 with login_refusal_errcode.
            raise PbxError(self.login_refusal_errcode)
        self.failed_logins.pop(ip, None)
        if self._live_count() >= self.max_tokens:
            raise PbxError(60002)
        return self._mint()

    def _refresh_token(self, _q: Mapping[str, str], body: dict[str, Any], _ip: str) -> bytes:
        token = body.get("refresh_token")
        pair = self._refresh.get(token) if isinstance(token, str) else None
        if pair is None or pair.refresh_expires <= self.clock():
            raise PbxError(10004)
        # Stricter than the (UNCONFIRMED) real behaviour: the old pair dies, access token included, so a
        # client that keeps using the old access token after a refresh is caught.
        live = self._live_count() - (pair.access_expires > self.clock())  # the old one is replaced
        if live >= self.max_tokens:
            raise PbxError(60002)
        self._revoke(pair)
        return self._mint()

    def _del_token(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        self._revoke(self._tokens[q["access_token"]])
        return _ok()

    # --- company contacts -----------------------------------------------------------------------------
    def _page(self, q: Mapping[str, str], ids: list[int]) -> bytes:
        page = _int_param(q, "page", 1)
        size = _int_param(q, "page_size", MAX_PAGE_SIZE, hi=MAX_PAGE_SIZE)
        start = (page - 1) * size
        flat = self._flat
        data = b",".join([flat[cid] for cid in ids[start : start + size]])
        return b'{"errcode":0,"errmsg":"SUCCESS","total_number":%d,"data":[%b]}' % (len(ids), data)

    def _ordered(self, q: Mapping[str, str]) -> list[int]:
        sort_by = q.get("sort_by") or "id"
        if sort_by not in SORT_FIELDS:
            raise PbxError(40002, f"sort_by: one of {', '.join(SORT_FIELDS)}")
        return self._sorted_ids(sort_by, _order(q))

    def _contact_list(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        return self._page(q, self._ordered(q))

    def _contact_search(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        ids = self._ordered(q)
        needle = (q.get("search_value") or "").casefold()
        if needle:
            recs = self._recs
            ids = [cid for cid in ids if needle in _haystack(recs[cid])]
        return self._page(q, ids)

    def _contact_get(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        cid = _int_param(q, "id", None)
        rec = self._recs.get(cid)
        if rec is None:
            raise PbxError(60001)
        return _ok(data=self._detail(cid, rec))

    def _contact_query(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        if self.query_param != "both":
            other = "id" if self.query_param == "ids" else "ids"
            q = {k: v for k, v in q.items() if k != other}  # the other name is not a parameter here
            if not q.get(self.query_param) and self.unknown_query_param == "ignore":
                return _ok(data=[])
        ids = _ids_param(q)
        return _ok(data=[self._detail(cid, self._recs[cid]) for cid in ids if cid in self._recs])

    def _contact_create(self, _q: Mapping[str, str], body: dict[str, Any], _ip: str) -> bytes:
        return _ok(id=self._create(body))

    def _contact_update(self, _q: Mapping[str, str], body: dict[str, Any], _ip: str) -> bytes:
        cid = body.get("id")
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise PbxError(40002, "id: required integer")
        base = self._recs.get(cid)
        if base is None:
            raise PbxError(60001)
        self._put(cid, self._validated(body, base))
        self.updates.append(body)
        return _ok()

    def _contact_delete(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        # 70091 CONNECTION_RELATION_EXISTED (contact selected in a phonebook) is not simulated.
        cid = _int_param(q, "id", None)
        if cid not in self._recs:
            raise PbxError(60001)
        self._remove(cid)
        return _ok()

    # --- phonebooks -----------------------------------------------------------------------------------
    def _member_select(self, p: Phonebook) -> str:
        return "sel_all" if p.id == self.sel_all_id else "sel_specific"

    def _pb_summary(self, p: Phonebook) -> dict[str, Any]:
        total = len(self._recs) if p.id == self.sel_all_id else self._pb_total[p.id]
        return {"id": p.id, "name": p.name, "total": total, "member_select": self._member_select(p)}

    def _pb_bytes(self, p: Phonebook) -> bytes:
        flat = self._flat
        recs = self._recs
        every = p.id == self.sel_all_id
        members = [
            flat[cid] for cid in self._sorted_ids("id", "asc") if every or p.id in recs[cid].phonebooks
        ]
        head = _encode(
            {"id": p.id, "name": p.name, "member_select": self._member_select(p), "total": len(members)}
        )
        return b'%b,"contacts_list":[%b]}' % (head[:-1].encode(), b",".join(members))

    def _phonebook_list(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        page = _int_param(q, "page", 1)
        size = _int_param(q, "page_size", MAX_PAGE_SIZE, hi=MAX_PAGE_SIZE)
        sort_by = q.get("sort_by") or "id"
        if sort_by not in PHONEBOOK_SORT_FIELDS:
            raise PbxError(40002, f"sort_by: one of {', '.join(PHONEBOOK_SORT_FIELDS)}")
        rows = [self._pb_summary(p) for p in self._phonebooks.values()]
        rows.sort(key=lambda r: (r[sort_by], r["id"]), reverse=_order(q) == "desc")
        start = (page - 1) * size
        return _ok(total_number=len(rows), data=rows[start : start + size])

    def _phonebook_get(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        p = self._phonebooks.get(_int_param(q, "id", None))
        if p is None:
            raise PbxError(60001)
        return b'{"errcode":0,"errmsg":"SUCCESS","data":%b}' % self._pb_bytes(p)

    def _phonebook_query(self, q: Mapping[str, str], _body: dict[str, Any], _ip: str) -> bytes:
        books = [self._phonebooks[i] for i in _ids_param(q) if i in self._phonebooks]
        data = b",".join(self._pb_bytes(p) for p in books)
        return b'{"errcode":0,"errmsg":"SUCCESS","data":[%b]}' % data


# --- helpers ----------------------------------------------------------------------------------------


def _ok(**fields: Any) -> bytes:
    return _encode({"errcode": 0, "errmsg": "SUCCESS", **fields}).encode()


def _haystack(r: _Rec) -> str:
    return "\x00".join((_contact_name(r), r.company, r.email, *r.numbers)).casefold()


def _order(q: Mapping[str, str]) -> str:
    order = (q.get("order_by") or "asc").lower()
    if order not in {"asc", "desc"}:
        raise PbxError(40002, "order_by: asc or desc")
    return order


def _int_param(q: Mapping[str, str], name: str, default: int | None, *, hi: int | None = None) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        if default is None:
            raise PbxError(40002, f"{name}: required")
        return default
    if not _INT_RE.fullmatch(raw):
        raise PbxError(40002, f"{name}: not an integer")
    value = int(raw)
    if value < 1 or (hi is not None and value > hi):
        raise PbxError(40002, f"{name}: out of range (1..{hi})" if hi else f"{name}: must be >= 1")
    return value


def _ids_param(q: Mapping[str, str]) -> list[int]:
    """`ids=3,4` (documented), or `id=3,4` (the doc's own example); at most 100, duplicates dropped."""
    name = "ids" if q.get("ids") else "id"
    raw = q.get(name) or ""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise PbxError(40002, f"{name}: required")
    if not all(_INT_RE.fullmatch(p) for p in parts):
        raise PbxError(40002, f"{name}: comma-separated integers")
    ids = list(dict.fromkeys(int(p) for p in parts))
    if len(ids) > MAX_QUERY_IDS:
        raise PbxError(40002, f"{name}: at most {MAX_QUERY_IDS} ids")
    return ids


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise PbxError(40002, f"{name}: must be a string")
    if len(value) > limit:
        raise PbxError(40002, f"{name}: longer than {limit} characters")
    return value


def _int_list(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise PbxError(40002, f"{name}: must be a list of integers")
    return value


def _numbers(value: Any) -> tuple[str, ...]:
    """number_list -> the 9 slots; the whole list replaces the contact's numbers."""
    if not isinstance(value, list):
        raise PbxError(40002, "number_list: must be a list")
    numbers = list(_EMPTY_NUMBERS)
    for i, item in enumerate(value):
        where = f"number_list[{i}]"
        if not isinstance(item, dict):
            raise PbxError(40002, f"{where}: must be an object with num_type and number")
        num_type, number = item.get("num_type"), item.get("number")
        if not isinstance(num_type, str) or num_type not in SLOT_INDEX:
            raise PbxError(40002, f"{where}.num_type: one of {', '.join(SLOT_INDEX)}")
        slot = SLOT_INDEX[num_type]
        if numbers[slot]:
            raise PbxError(40002, f"{where}.num_type: {num_type} given twice")
        # An empty number is refused rather than read as "clear the slot" (UNCONFIRMED; strict on purpose).
        if not isinstance(number, str) or not NUMBER_RE.fullmatch(number):
            raise PbxError(40002, f"{where}.number: 1 to 31 of digits, letters and ( ) . - + * # (no spaces)")
        numbers[slot] = number
    return tuple(numbers)


def seed_fields(contact: Mapping[str, Any]) -> dict[str, Any]:
    """The create/update fields that reproduce a detailed-form contact (for tests and tools)."""
    fields = {k: v for k, v in contact.items() if k in TEXT_LIMITS or k == "job_title"}
    fields["number_list"] = [dict(n) for n in contact.get("number_list", [])]
    fields["phonebook_id_list"] = [p["id"] for p in contact.get("phonebook_list", [])]
    return fields


__all__ = ["ERRMSG", "MAX_PAGE_SIZE", "MAX_QUERY_IDS", "PbxError", "PbxSimulator", "seed_fields"]
