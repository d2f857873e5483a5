"""Who owns each managed field, the takeover guard, and the change events a crash cannot lose.

- **Takeovers.** A field a person changed or emptied since the last sync becomes person-owned, and syncd
  never writes it again. `takeover_notes` turns a run's plan into the change-log rows that say so (kind
  "takeover" or "removal"); pure.
- **The takeover guard.** A PBX restored from an older backup, or a bulk import, changes every field
  syncd ever wrote at once; taken for people's edits, it would freeze syncd for good. `check_takeover`
  stops such a run before any ownership is recorded (exit 1), as the mass-loss guard stops mass
  tombstoning. Pure.
- **Change events.** Every applied change has a stable id (its change-log row). Its `contact.changed`
  event carries it as `change_id`; the row is marked logged once the event is written; a run starts by
  logging the committed changes a crash left unlogged (`log_unlogged`). A crash between writing an event
  and marking it repeats the event with the same `change_id`: a consumer drops the duplicate.
- **The commands.** `syncd owners [--contact ID] [--json]` and `syncd owners reset [--contact ID]
  [--field F]`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from syncd.errors import EXIT_OK, EXIT_USAGE, MassLossError
from syncd.logs import get_logger
from syncd.model import Contact, NumberSlot
from syncd.remark import find_title_line
from syncd.store import StateStore
from syncd.store.records import (
    OWNER_SYNCD,
    REMOVAL_KIND,
    TAKEOVER_KIND,
    ChangeRecord,
    OwnershipNote,
)

if TYPE_CHECKING:
    from syncd.config import Config

log = get_logger("syncd.owners")

MANAGED_FIELDS = ("email", "title", *(slot.value for slot in NumberSlot))


class TakeoverError(MassLossError):
    """Far more fields turned person-owned in one run than people edit: refuse to record it."""


# --- takeovers (pure) ---------------------------------------------------------------------------------


def field_value(contact: Contact, key: str, title_target: str = "remark") -> str:
    """The value of a managed field key ("email", "title", or a number slot) as the merge compares it."""
    if key == "email":
        return contact.email
    if key == "title":
        if title_target == "remark":
            line = find_title_line(contact.remark)
            return "" if line is None else line.value
        if title_target == "field":
            return contact.job_title or ""
        return ""
    return contact.number_map.get(NumberSlot(key), "")


def takeover_notes(
    touched: Mapping[int, Iterable[str]],
    bases: Mapping[int, Contact],
    currents: Mapping[int, Contact],
    title_target: str = "remark",
) -> list[OwnershipNote]:
    """One change-log note per field a person changed ("takeover") or emptied ("removal") since the base."""
    notes: list[OwnershipNote] = []
    for cid in sorted(touched):
        base, now = bases.get(cid), currents.get(cid)
        if base is None or now is None:
            continue
        for key in sorted(touched[cid]):
            old, new = field_value(base, key, title_target), field_value(now, key, title_target)
            kind = REMOVAL_KIND if not new else TAKEOVER_KIND
            reason = "a person emptied the field" if kind == REMOVAL_KIND else "a person changed the field"
            notes.append(OwnershipNote(cid, key, kind, old, new, reason + ": syncd no longer writes it"))
    return notes


def taken_from_syncd(touched: Mapping[int, Iterable[str]], states: Mapping[int, Mapping[str, Any]]) -> int:
    """How many of the touched fields hold a value syncd wrote and still owns (they would change hands)."""
    n = 0
    for cid, keys in touched.items():
        fields = states.get(cid) or {}
        for key in keys:
            st = fields.get(key)
            if st is not None and st.owner == OWNER_SYNCD and st.syncd_value is not None:
                n += 1
    return n


@dataclass(frozen=True, slots=True)
class TakeoverCheck:
    taken: int  # syncd-written fields a person would take over in this run
    written: int  # fields syncd wrote and owns before the run
    ratio: float
    min_fields: int

    @property
    def fires(self) -> bool:
        return self.written >= self.min_fields and self.taken > self.written * self.ratio


def check_takeover(taken: int, written: Callable[[], int], *, ratio: float, min_fields: int) -> None:
    """Raise `TakeoverError` when more than `ratio` of the fields syncd wrote (at least `min_fields` of
    them) would turn person-owned at once. `written` is only asked when something is taken."""
    if taken == 0:
        return
    check = TakeoverCheck(taken, written(), ratio, min_fields)
    if check.fires:
        raise TakeoverError(
            f"{check.taken} of the {check.written} fields syncd wrote were changed or emptied on the PBX "
            f"since the last run, more than [sync] takeover_ratio ({ratio:.0%}): this looks like a PBX "
            "restored from an older backup or a bulk import, not people's edits. Refusing to run: no field "
            "was marked person-owned and nothing was changed. If people really made these edits, raise "
            "[sync] takeover_ratio (up to 1) for one run. After a restore or an import, run once with "
            "takeover_ratio = 1, then `syncd owners reset` gives the fields back to syncd and the next "
            "run writes them again."
        )


# --- change events ------------------------------------------------------------------------------------


def log_change(
    change_id: int,
    *,
    contact_id: int,
    field: str,
    old: str,
    new: str,
    source: str,
    reason: str,
    **extra: Any,
) -> None:
    """The `contact.changed` event of one applied change."""
    log.info(
        "contact.changed",
        change_id=change_id,
        contact_id=contact_id,
        field=field,
        old=old,
        new=new,
        source=source,
        reason=reason,
        **extra,
    )


def log_unlogged(store: StateStore, at: datetime) -> int:
    """Log the committed changes whose event a crash lost (each with its own run_id and change_id), then
    mark them logged. Returns how many."""
    missing = store.unlogged_changes()
    if not missing:
        return 0
    for row in missing:
        log_change(
            row.id,
            contact_id=row.contact_id,
            field=row.field,
            old=row.old,
            new=row.new,
            source=row.source,
            reason=row.reason,
            run_id=row.run_id,
            replayed=True,
        )
    store.mark_logged([row.id for row in missing], at)
    log.info("changes.replayed", count=len(missing))
    return len(missing)


# --- the commands -------------------------------------------------------------------------------------


def _tty(out: TextIO) -> bool:
    return bool(getattr(out, "isatty", lambda: False)())


def _open_existing(config: Config) -> StateStore:
    return StateStore.open(config.sync.state_url)


def show_owners(
    config: Config, *, contact: int | None = None, as_json: bool = False, stream: TextIO | None = None
) -> int:
    """`syncd owners`: per contact and managed field, a person or syncd, since when."""
    out = stream or sys.stdout
    store = _open_existing(config)
    try:
        rows = store.owners(contact)
    finally:
        store.close()
    if as_json or not _tty(out):
        for row in rows:
            out.write(json.dumps(row.as_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("contact", "field", "owner", "since", "syncd's value", "source")
    for row in rows:
        since = "" if row.since is None else row.since.astimezone().isoformat(timespec="seconds")
        table.add_row(
            str(row.contact_id), row.field, row.owner, since, row.syncd_value or "", row.source or ""
        )
    console = Console(file=out)
    console.print(table)
    people = sum(1 for r in rows if r.owner != OWNER_SYNCD)
    console.print(f"{len(rows)} field(s): {people} person-owned, {len(rows) - people} syncd's")
    return EXIT_OK


def reset_owners(
    config: Config,
    *,
    contact: int | None = None,
    field: str | None = None,
    stream: TextIO | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """`syncd owners reset`: give person-owned fields back to syncd, logged and kept in `history`."""
    out = stream or sys.stdout
    if field is not None and field not in MANAGED_FIELDS:
        print(
            f"syncd: error: --field {field!r} is not a managed field (one of {', '.join(MANAGED_FIELDS)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    store = _open_existing(config)
    try:
        with store.lock():
            rows: Sequence[ChangeRecord] = store.reset_owners(clock(), contact_id=contact, field=field)
    finally:
        store.close()
    for row in rows:
        log.info("owners.reset", change_id=row.id, contact_id=row.contact_id, field=row.field, kind=row.kind)
    out.write(f"{len(rows)} field(s) given back to syncd\n")
    return EXIT_OK
