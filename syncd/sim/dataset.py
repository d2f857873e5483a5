"""A seeded, reproducible phonebook and the vendors' knowledge about it.

Every contact is generated from its own index, so a contact, and what the vendors know about it, can be
produced on demand without materialising the whole set (500,000 contacts stay cheap). The PBX simulator
serves `contact(i)`; the vendor simulators answer from `person(contact_id)`.

Routes (how a vendor can find a contact), in equal thirds for the routes that matter to the benchmark:
- `insideview`: the operator holds the person's InsideView id (importable link); InsideView knows work
  email, direct/corporate phone and title. The PBX already holds a mobile for most of them.
- `leadfeeder`: the operator holds the Leadfeeder contact id; Leadfeeder knows email, phones, title.
- `contactout`: no id anywhere; ContactOut finds the person by full name plus company.
- `unknown`: nobody knows the person (a share carved out of the contactout third).
A few persons are `garbage`: the vendor answers with an email `n/a` and a phone `not-a-number`.

Numbers, as on real phonebooks: almost every contact holds a business number a person entered, and the
vendors know a direct line beside it (InsideView: `phone` DIRECT, `corporatePhone` the business number the
PBX holds; Leadfeeder: a landline). Colleagues (`colleague_share` of the contacts work at the company of an
earlier contact) hold their company's switchboard (`Dataset.switchboard`) as their business number, and for
`office_share` of the persons Leadfeeder lists that switchboard too, after the direct line (`Person.office`):
a switchboard shared by colleagues, which syncd must never write into one person's contact.
"""

from __future__ import annotations

import random
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

INSIDEVIEW_ID_BASE = 16_000_000
LEADFEEDER_ID_BASE = 3_200_000_000


class Route(StrEnum):
    insideview = "insideview"
    leadfeeder = "leadfeeder"
    contactout = "contactout"
    unknown = "unknown"


@dataclass(frozen=True, slots=True)
class Phonebook:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class SeedContact:
    """A contact as the PBX holds it at the start (detailed form)."""

    id: int
    first_name: str
    last_name: str
    company: str
    email: str
    remark: str
    numbers: dict[str, str]  # num_type -> number as entered
    phonebook_ids: tuple[int, ...]
    zip_code: str = ""
    street: str = ""
    city: str = ""
    state: str = ""
    country: str = ""


@dataclass(frozen=True, slots=True)
class Person:
    """What the vendors know about the person behind PBX contact `contact_id`."""

    contact_id: int
    route: Route
    first_name: str
    last_name: str
    company: str
    work_email: str
    personal_email: str
    email_verified: bool
    mobile: str  # E.164
    direct: str  # E.164
    title: str
    linkedin_url: str
    insideview_id: str | None
    leadfeeder_id: str | None
    garbage: bool = False
    known_by: frozenset[str] = field(default_factory=frozenset)
    office: str | None = None  # E.164: the company's switchboard, when a vendor lists it for the person

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


FIRST_NAMES = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "José",
    "María",
    "François",
    "Zoë",
    "Søren",
    "Łukasz",
    "Björn",
    "Anaïs",
    "Jürgen",
    "Renée",
    "Chloé",
    "Ólafur",
    "Dvořák",
    "Siobhán",
    "Nuño",
    "Ingrid",
    "Hélène",
    "Mikael",
    "Ayşe",
    "Çağan",
    "Wei",
    "Yuki",
    "Priya",
    "Arjun",
    "Fatima",
    "Omar",
    "Chen",
    "Sakura",
    "Dmitri",
    "Anastasia",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Müller",
    "Schröder",
    "Østergaard",
    "Nuñez",
    "Lefèvre",
    "Kowalczyk",
    "Åberg",
    "O'Brien",
    "Dubois",
    "Fernández",
    "Nakamura",
    "Papadopoulos",
    "Nguyễn",
    "Çelik",
    "Novák",
    "Van der Berg",
    "MacLeod",
    "王",
    "李",
    "Иванов",
    "Kim",
    "Patel",
    "Cohen",
    "Rossi",
    "Bianchi",
    "Haddad",
    "Larsen",
    "Silva",
]
COMPANY_TRADES = [
    "Logistics",
    "Consulting",
    "Software",
    "Foods",
    "Energy",
    "Medical",
    "Robotics",
    "Textiles",
    "Maschinenbau",
    "Bau",
    "Immobilien",
    "Versicherung",
    "Transports",
    "Conseil",
    "Analytics",
    "Marine",
    "Pharma",
    "Retail",
    "Media",
    "Aviation",
    "Chemicals",
    "Optics",
    "Mining",
    "Apparel",
    "Publishing",
    "Security",
    "Telecom",
    "Dental",
    "Brewing",
    "Motors",
    "Kitchens",
    "Paper",
    "Glass",
    "Studios",
    "Farms",
    "Elektro",
    "Verkehr",
    "Trading",
    "Finance",
    "Semiconductors",
]
COMPANY_REGIONS = [
    "Nordic",
    "Pacific",
    "Alpine",
    "Atlantic",
    "Baltic",
    "Central",
    "Eastern",
    "Western",
    "Southern",
    "Northern",
    "Coastal",
    "Rhein",
    "Danube",
    "Iberia",
    "Midwest",
    "Gulf",
    "Highland",
    "Lakeside",
    "Metro",
    "Global",
]
COMPANY_STEMS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Aperture",
    "Massive Dynamic",
    "Nakatomi",
    "Gringotts",
    "Oceanic",
    "Monarch",
    "Müller & Söhne",
    "Société Générale de Café",
    "Øresund Logistik",
    "Café Zürich",
    "Nordström Bygg",
]
COMPANY_SUFFIXES = ["Inc.", "LLC", "GmbH", "Ltd", "S.A.", "AB", "Corp.", "Group", "", "AG"]
TITLES = [
    "Chief Executive Officer",
    "CFO",
    "VP Sales",
    "Head of IT",
    "Office Manager",
    "Procurement Lead",
    "Software Engineer",
    "Account Executive",
    "Geschäftsführer",
    "Directeur Commercial",
    "CTO",
    "Customer Success Manager",
    "Operations Director",
    "Purchasing Manager",
    "IT Administrator",
]
PHONEBOOK_NAMES = ["Customers", "Suppliers", "Partners", "Vendors", "Prospects", "VIP", "Logistics"]
CITIES = [
    ("New York", "NY", "United States", "10001"),
    ("San Francisco", "CA", "United States", "94105"),
    ("Berlin", "", "Germany", "10115"),
    ("München", "", "Germany", "80331"),
    ("Paris", "", "France", "75001"),
    ("London", "", "United Kingdom", "EC1A 1BB"),
    ("Zürich", "", "Switzerland", "8001"),
]
US_AREA = ["212", "415", "617", "312", "206", "303", "512", "646", "702", "919"]


def ascii_fold(text: str) -> str:
    """'Søren Müller' -> 'soren muller'; used for emails and for name comparison."""
    special = {"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "Æ": "AE", "đ": "d"}
    text = "".join(special.get(ch, ch) for ch in text)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _slug(text: str) -> str:
    folded = ascii_fold(text).lower()
    out = "".join(ch if ch.isalnum() and ch.isascii() else "." for ch in folded)
    while ".." in out:
        out = out.replace("..", ".")
    return out.strip(".") or "x"


class Dataset:
    """A deterministic phonebook of `size` contacts (ids 1..size) and the vendors' truth about them."""

    def __init__(
        self,
        size: int,
        seed: int = 42,
        *,
        unknown_share: float = 0.1,
        garbage_share: float = 0.02,
        iv_mobile_share: float = 0.9,
        namesake_share: float = 0.01,
        colleague_share: float = 0.15,
        office_share: float = 0.3,
    ):
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self.seed = seed
        self.unknown_share = unknown_share
        self.garbage_share = garbage_share
        self.namesake_share = namesake_share
        self.colleague_share = colleague_share
        self.office_share = office_share
        # share of InsideView-route contacts whose mobile the PBX already holds (InsideView has none to give)
        self.iv_mobile_share = iv_mobile_share
        self.phonebooks = [Phonebook(id=i + 1, name=n) for i, n in enumerate(PHONEBOOK_NAMES)]

    # --- per-index randomness ---------------------------------------------------------------
    def _rng(self, index: int, stream: int) -> random.Random:
        return random.Random((self.seed * 1_000_003 + index) * 4 + stream)

    def _identity(self, index: int) -> tuple[str, str, str]:
        first, last, company, _ = self._identity_and_colleague(index)
        return first, last, company

    def _identity_and_colleague(self, index: int) -> tuple[str, str, str, bool]:
        """(first, last, company, whether the contact joined an earlier contact's company)."""
        rng = self._rng(index, 0)
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        stem = rng.choice(COMPANY_STEMS)
        suffix = rng.choice(COMPANY_SUFFIXES)
        # drawn last so that names and stems stay what they were; it makes name + company pairs rare
        # enough to be realistic (a real phonebook seldom holds two Jane Does at one company)
        trade = rng.choice(COMPANY_TRADES)
        region = rng.choice(COMPANY_REGIONS)
        if index > 0 and rng.random() < self.namesake_share:
            # a namesake: another person of the same name at the same company (big firms have them),
            # which identity matching must refuse as ambiguous
            return (*self._identity(rng.randrange(index)), False)
        company = f"{stem} {region} {trade} {suffix}".strip()
        # drawn after everything else, so names stay what they were: a colleague of a recent contact
        if index > 0 and rng.random() < self.colleague_share:
            company = self._identity(index - 1 - rng.randrange(min(index, 8)))[2]
            return first, last, company, True
        return first, last, company, False

    def switchboard(self, company: str) -> str:
        """The company's switchboard (E.164), the same for every colleague."""
        rng = random.Random(zlib.crc32(f"{self.seed}|{company}".encode()))
        return self._e164(rng, "landline")

    def route(self, contact_id: int) -> Route:
        index = contact_id - 1
        third = index % 3
        if third == 0:
            return Route.insideview
        if third == 1:
            return Route.leadfeeder
        rng = self._rng(index, 3)
        return Route.unknown if rng.random() < self.unknown_share * 3 else Route.contactout

    # --- phone numbers ----------------------------------------------------------------------
    @staticmethod
    def _us_number(rng: random.Random) -> tuple[str, str, str]:
        area = rng.choice(US_AREA)
        exch = str(rng.randint(201, 989))
        if exch == "555":
            exch = "556"
        sub = f"{rng.randint(0, 9999):04d}"
        return area, exch, sub

    def _e164(self, rng: random.Random, kind: str) -> str:
        country = rng.random()
        if country < 0.6:
            area, exch, sub = self._us_number(rng)
            return f"+1{area}{exch}{sub}"
        if country < 0.85:
            if kind == "mobile":
                return f"+49151{rng.randint(10000000, 99999999)}"
            return f"+4930{rng.randint(1000000, 9999999)}{rng.randint(0, 9)}"
        if kind == "mobile":
            return f"+447400{rng.randint(100000, 999999)}"
        return f"+44207{rng.randint(1000000, 9999999)}"  # London, a realistic number space

    @staticmethod
    def _as_entered(e164: str, rng: random.Random) -> str:
        """Render an E.164 number the way a person might have typed it (PBX rules allow no spaces)."""
        style = rng.randint(0, 4)
        if e164.startswith("+1"):
            d = e164[2:]
            return [
                f"({d[:3]}){d[3:6]}-{d[6:]}",
                f"{d[:3]}.{d[3:6]}.{d[6:]}",
                d,
                f"+1-{d[:3]}-{d[3:6]}-{d[6:]}",
                f"1-{d[:3]}-{d[3:6]}-{d[6:]}",
            ][style]
        cc = e164[1:3]
        rest = e164[3:]
        return [
            f"+{cc}.{rest[:2]}.{rest[2:]}",
            f"011{cc}{rest}",
            e164,
            f"+{cc}({rest[:3]}){rest[3:]}",
            f"+{cc}-{rest}",
        ][style]

    # --- contacts ---------------------------------------------------------------------------
    def contact(self, index: int) -> SeedContact:
        """The PBX's initial view of contact number `index` (0-based; its id is index + 1)."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        cid = index + 1
        first, last, company, colleague = self._identity_and_colleague(index)
        rng = self._rng(index, 1)
        person_rng = self._rng(index, 2)
        route = self.route(cid)
        numbers: dict[str, str] = {}
        shape = rng.random()
        if shape < 0.03:
            # every slot full: nothing can be added to this contact's numbers
            for slot in (
                "business_number",
                "business_number2",
                "mobile_number",
                "mobile_number2",
                "home_number",
                "home_number2",
                "business_fax",
                "home_fax",
                "other_number",
            ):
                numbers[slot] = self._as_entered(self._e164(rng, "landline"), rng)
        else:
            # switchboard number, as entered by a person
            numbers["business_number"] = self._as_entered(self._e164(rng, "landline"), rng)
            if colleague:
                # a colleague of an earlier contact: a person entered the company's switchboard
                numbers["business_number"] = self._as_entered(self.switchboard(company), rng)
            if route is Route.insideview and rng.random() < self.iv_mobile_share:
                # these already have the person's mobile in the PBX, in some notation
                mobile = self._mobile_for(person_rng)
                numbers["mobile_number"] = self._as_entered(mobile, rng)
            if rng.random() < 0.15:
                numbers["home_number"] = self._as_entered(self._e164(rng, "landline"), rng)
            if rng.random() < 0.05:
                numbers["business_fax"] = self._as_entered(self._e164(rng, "landline"), rng)
        email = ""
        if rng.random() < 0.15:
            email = f"{_slug(first)}@{_slug(company.split()[0])}.example"
        n_books = rng.choice((0, 1, 1, 1, 2, 3))
        books = tuple(sorted(rng.sample([p.id for p in self.phonebooks], n_books)))
        remark = rng.choice(("", "", "", "Key account", "Call before 10am", "Bemerkung: Rückruf"))
        city, state, country, zip_code = rng.choice(CITIES)
        return SeedContact(
            id=cid,
            first_name=first,
            last_name=last,
            company=company,
            email=email,
            remark=remark,
            numbers=numbers,
            phonebook_ids=books,
            zip_code=zip_code,
            street=f"{rng.randint(1, 999)} Main Street",
            city=city,
            state=state,
            country=country,
        )

    def contacts(self) -> Iterator[SeedContact]:
        for i in range(self.size):
            yield self.contact(i)

    def _mobile_for(self, person_rng: random.Random) -> str:
        # drawn first from the person stream so the PBX copy and the vendors' copy agree
        return self._e164(random.Random(person_rng.random()), "mobile")

    # --- vendor truth -----------------------------------------------------------------------
    def person(self, contact_id: int) -> Person:
        index = contact_id - 1
        if not 0 <= index < self.size:
            raise IndexError(contact_id)
        first, last, company = self._identity(index)
        rng = self._rng(index, 2)
        mobile = self._mobile_for(rng)
        route = self.route(contact_id)
        direct = self._e164(rng, "landline")
        title = rng.choice(TITLES)
        domain = f"{_slug(company.split()[0])}.example"
        work_email = f"{_slug(first)}.{_slug(last)}@{domain}"
        personal_email = f"{_slug(first)}{rng.randint(1, 99)}@mail.example"
        verified = rng.random() < 0.7
        garbage = route is not Route.unknown and rng.random() < self.garbage_share
        known: set[str] = set()
        if route is Route.insideview:
            known = {"insideview", "contactout"}
        elif route is Route.leadfeeder:
            known = {"leadfeeder", "contactout"}
        elif route is Route.contactout:
            known = {"contactout"}
        return Person(
            contact_id=contact_id,
            route=route,
            first_name=first,
            last_name=last,
            company=company,
            work_email=work_email,
            personal_email=personal_email,
            email_verified=verified,
            mobile=mobile,
            direct=direct,
            title=title,
            linkedin_url=f"https://www.linkedin.com/in/{_slug(first)}-{_slug(last)}-{contact_id}",
            insideview_id=str(INSIDEVIEW_ID_BASE + contact_id) if route is Route.insideview else None,
            leadfeeder_id=str(LEADFEEDER_ID_BASE + contact_id) if route is Route.leadfeeder else None,
            garbage=garbage,
            known_by=frozenset(known),
            office=self.switchboard(company) if rng.random() < self.office_share else None,
        )

    def persons(self) -> Iterator[Person]:
        for i in range(self.size):
            yield self.person(i + 1)

    def contact_for_insideview_id(self, vendor_id: str) -> int | None:
        if not vendor_id.isdigit():
            return None
        cid = int(vendor_id) - INSIDEVIEW_ID_BASE
        if 1 <= cid <= self.size and self.route(cid) is Route.insideview:
            return cid
        return None

    def contact_for_leadfeeder_id(self, vendor_id: str) -> int | None:
        if not vendor_id.isdigit():
            return None
        cid = int(vendor_id) - LEADFEEDER_ID_BASE
        if 1 <= cid <= self.size and self.route(cid) is Route.leadfeeder:
            return cid
        return None

    def links(self, *, conflicts: bool = False) -> Iterator[tuple[int, str, str]]:
        """(pbx_contact_id, vendor, vendor_id) rows an operator would import with `links import`.

        `conflicts`: the file as operators really keep it, with two mistakes (see `conflicting_links`)."""
        wrong, shared = self.conflicting_links() if conflicts else ({}, {})
        for cid in range(1, self.size + 1):
            route = self.route(cid)
            if route is Route.insideview:
                if cid not in wrong:
                    yield cid, "insideview", str(INSIDEVIEW_ID_BASE + cid)
            elif route is Route.leadfeeder:
                yield cid, "leadfeeder", str(LEADFEEDER_ID_BASE + cid)
            for mistakes in (wrong, shared):
                for owner, other in mistakes.items():
                    if other == cid:
                        yield cid, "insideview", str(INSIDEVIEW_ID_BASE + owner)

    def conflicting_links(self) -> tuple[dict[int, int], dict[int, int]]:
        """Two mistakes of a hand-kept links file, as {InsideView person's contact: contact given its id}:
        - wrong: a contact given another person's InsideView id (that person's own row is missing): the
          import cannot tell it from a right one, so the run meets InsideView's answer naming someone else;
        - shared: a contact given the id of a person whose own row is in the file too."""
        owners = [c for c in range(1, self.size + 1) if self.route(c) is Route.insideview][:2]
        others = [c for c in range(1, self.size + 1) if self.route(c) is not Route.insideview][:2]
        if len(owners) < 2 or len(others) < 2:
            return {}, {}
        return {owners[0]: others[0]}, {owners[1]: others[1]}
