"""`syncd links import FILE.csv`: known vendor identities (pbx_contact_id,vendor,vendor_id).

Every row is validated; each rejected row is reported with its line number and the reason; valid rows
are imported; the exit status is 1 when any row was rejected. Ids the store has not seen yet (before the
first sync) are checked against the PBX itself.

A vendor identity belongs to one person: a row giving a contact a vendor id that the store already links
(imported or matched) to another live contact is rejected, and that existing link stands; rows of the file that
give one vendor id to two or more contacts are all rejected (the file cannot say which is right). Ids are
compared as the vendor means them: InsideView ids as numbers, Leadfeeder ids as written, LinkedIn URLs by
their profile slug (case, scheme, host and trailing slash aside).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from syncd.engine import StoreTokenCache
from syncd.errors import EXIT_OK, EXIT_PARTIAL, UsageError
from syncd.logs import get_logger
from syncd.model import Vendor
from syncd.pbx.client import MAX_QUERY_IDS, YeastarClient
from syncd.pbx.errors import PbxRejected
from syncd.report import print_links_report
from syncd.store import Link, StateStore

if TYPE_CHECKING:
    from syncd.config import Config

log = get_logger("syncd.links")

COLUMNS = ("pbx_contact_id", "vendor", "vendor_id")
MAX_CONTACT_ID = 2**63 - 1  # the store keeps 64-bit ids
MAX_FILE_BYTES = 200 * 1024 * 1024
_LINKEDIN = re.compile(r"https?://([a-z]{2,3}\.)?(www\.)?linkedin\.com/(in|pub)/[^\s/?#]+/?", re.IGNORECASE)
_VALIDATORS = {
    Vendor.insideview: (re.compile(r"[0-9]{1,19}"), "an InsideView contact id is digits only"),
    Vendor.leadfeeder: (
        re.compile(r"[0-9A-Za-z_-]{1,64}"),
        "a Leadfeeder contact id is letters, digits, - or _",
    ),
    Vendor.contactout: (_LINKEDIN, "a ContactOut identity is a LinkedIn profile URL (linkedin.com/in/...)"),
}


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    contact_id: int
    vendor: Vendor
    vendor_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


def id_key(vendor: Vendor | str, vendor_id: str) -> str:
    """The identity a vendor id stands for, for telling whether two rows or links name the same person."""
    name = Vendor(vendor)
    text = vendor_id.strip()
    if name is Vendor.insideview and text.isascii() and text.isdigit():
        return str(int(text))
    if name is Vendor.contactout:
        path = text.split("?", 1)[0].split("#", 1)[0].rstrip("/")
        return path.rsplit("/", 1)[-1].lower()
    return text


def shared_ids(rows: list[Row]) -> tuple[list[Row], list[Rejected]]:
    """Reject every row whose vendor id the file also gives to another contact."""
    holders: dict[tuple[Vendor, str], list[Row]] = {}
    for row in rows:
        holders.setdefault((row.vendor, id_key(row.vendor, row.vendor_id)), []).append(row)
    kept: list[Row] = []
    rejected: list[Rejected] = []
    for row in rows:
        group = holders[(row.vendor, id_key(row.vendor, row.vendor_id))]
        others = [r for r in group if r.contact_id != row.contact_id]
        if others:
            where = ", ".join(f"line {r.line} (contact {r.contact_id})" for r in others)
            rejected.append(
                Rejected(row.line, f"{row.vendor.value} id {row.vendor_id[:80]!r} is also given to {where}")
            )
        else:
            kept.append(row)
    return kept, rejected


def taken_ids(rows: list[Row], links: Iterable[Link]) -> tuple[list[Row], list[Rejected]]:
    """Reject every row whose vendor id the store already links to another contact (that link stands)."""
    holder: dict[tuple[str, str], int] = {}
    for link in links:
        if link.vendor_id and link.method in ("imported", "matched"):
            holder.setdefault((link.vendor, id_key(link.vendor, link.vendor_id)), link.contact_id)
    kept: list[Row] = []
    rejected: list[Rejected] = []
    for row in rows:
        owner = holder.get((row.vendor.value, id_key(row.vendor, row.vendor_id)))
        if owner is not None and owner != row.contact_id:
            rejected.append(
                Rejected(
                    row.line,
                    f"{row.vendor.value} id {row.vendor_id[:80]!r} is already linked to contact {owner} "
                    "(that link stands)",
                )
            )
        else:
            kept.append(row)
    return kept, rejected


def read_rows(text: str) -> tuple[list[Row], list[Rejected]]:
    """Parse and validate the CSV text (everything but the PBX check)."""
    rows: list[Row] = []
    rejected: list[Rejected] = []
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    seen: dict[tuple[int, str], int] = {}
    for record in reader:
        line = reader.line_num
        if not record or all(not f.strip() for f in record):
            continue
        if header is None:
            header = [h.strip().lower().lstrip("\ufeff") for h in record]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise UsageError(
                    f"line {line}: the header must name the columns {','.join(COLUMNS)}; missing {', '.join(missing)}"
                )
            continue
        if len(record) != len(header):
            rejected.append(Rejected(line, f"expected {len(header)} fields, found {len(record)}"))
            continue
        values = dict(zip(header, (f.strip() for f in record), strict=True))
        raw_id, raw_vendor, vendor_id = (
            values["pbx_contact_id"],
            values["vendor"].lower(),
            values["vendor_id"],
        )
        if not (raw_id.isascii() and raw_id.isdigit()) or int(raw_id) <= 0:
            rejected.append(Rejected(line, f"pbx_contact_id {raw_id[:40]!r} is not a positive integer"))
            continue
        if int(raw_id) > MAX_CONTACT_ID:
            rejected.append(Rejected(line, f"pbx_contact_id {raw_id[:40]} is out of range"))
            continue
        try:
            vendor = Vendor(raw_vendor)
        except ValueError:
            known = ", ".join(v.value for v in Vendor)
            rejected.append(Rejected(line, f"unknown vendor {raw_vendor!r} (known: {known})"))
            continue
        pattern, rule = _VALIDATORS[vendor]
        if not pattern.fullmatch(vendor_id):
            rejected.append(Rejected(line, f"malformed {vendor.value} id {vendor_id[:80]!r}: {rule}"))
            continue
        key = (int(raw_id), vendor.value)
        if key in seen:
            rejected.append(Rejected(line, f"duplicate of line {seen[key]} (same contact and vendor)"))
            continue
        seen[key] = line
        rows.append(Row(line, int(raw_id), vendor, vendor_id))
    if header is None:
        raise UsageError(f"the file is empty; expected a header {','.join(COLUMNS)}")
    rows, shared = shared_ids(rows)
    return rows, rejected + shared


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UsageError(f"{path}: {size} bytes is more than the {MAX_FILE_BYTES} bytes accepted")
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    # UTF-16 only when the bytes say so (a BOM, or the NULs of UTF-16 ASCII): decoding any even-length
    # Latin-1 file as UTF-16 "succeeds" with garbage and ends in a misleading "header missing" error
    encoding = "utf-8-sig"
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif len(data) >= 4 and data[1:64:2].count(0) > len(data[1:64:2]) // 2:
        encoding = "utf-16-le"
    elif len(data) >= 4 and data[0:64:2].count(0) > len(data[0:64:2]) // 2:
        encoding = "utf-16-be"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding == "utf-8-sig":
            raise UsageError(
                f"{path}: not UTF-8 text (byte {exc.start + 1} is not valid UTF-8; a Latin-1 or Windows-1252 "
                "export?): save the file as UTF-8 (or UTF-16)"
            ) from None
        raise UsageError(f"{path}: not valid {encoding.upper()} text (byte {exc.start + 1})") from None
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise UsageError(f"{path}: holds NUL characters: not a text file")
    return text


async def import_links_file(config: Config, path: Path, stream: TextIO | None = None) -> int:
    rows, rejected = read_rows(_read_text(path))
    store = StateStore.open(config.sync.state_url)
    try:
        unknown = await _unknown_contacts(config, store, {r.contact_id for r in rows})
        valid: list[Row] = []
        for row in rows:
            if row.contact_id in unknown:
                rejected.append(Rejected(row.line, f"no PBX contact with id {row.contact_id}"))
            else:
                valid.append(row)
        # a deleted contact's link no longer holds its id: the person may be back under a new contact id
        gone = store.tombstoned_ids()
        existing = [
            link
            for vendor in {r.vendor for r in valid}
            for link in store.links_for(vendor).values()
            if link.contact_id not in gone
        ]
        valid, taken = taken_ids(valid, existing)
        rejected.extend(taken)
        now = datetime.now(UTC)
        imported = store.save_links(
            Link(r.contact_id, r.vendor.value, r.vendor_id, "imported", 1.0, now) for r in valid
        )
    finally:
        store.close()
    by_reason = print_links_report(
        str(path), imported, [(r.line, r.reason) for r in rejected], stream or sys.stdout
    )
    log.info("links.imported", imported=imported, rejected=len(rejected), by_reason=by_reason)
    return EXIT_PARTIAL if rejected else EXIT_OK


async def _unknown_contacts(config: Config, store: StateStore, ids: set[int]) -> set[int]:
    """Ids neither live in the store nor present on the PBX (asked only for ids the store lacks)."""
    known = set(store.live_hashes())
    tombstoned = store.tombstoned_ids()
    ask = sorted(ids - known - tombstoned)
    unknown = ids & tombstoned
    if not ask:
        return unknown
    with store.lock():
        pbx = YeastarClient(
            config.pbx.http_settings(),
            config.pbx.client_id,
            config.pbx.client_secret,
            token_cache=StoreTokenCache.for_config(store, config),
        )
        try:
            present: set[int] = set()
            for start in range(0, len(ask), MAX_QUERY_IDS):
                chunk = ask[start : start + MAX_QUERY_IDS]
                try:
                    present |= set(await pbx.query_contacts(chunk))
                except PbxRejected:
                    # an id the PBX refuses as a parameter fails its own row, not the whole file
                    for cid in chunk:
                        with contextlib.suppress(PbxRejected):
                            present |= set(await pbx.query_contacts([cid]))
        finally:
            await pbx.close(revoke=False)
    return unknown | (set(ask) - present)
