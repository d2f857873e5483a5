"""The three-way merge of a PBX contact with vendor results, and the waterfall's "what is still open".

Pure: no I/O, no clock, no logging. Everything the merge knows comes in as arguments:

- `base`: the contact as the PBX held it at the end of the last sync (None for a new contact);
- `current`: the contact as the PBX holds it now;
- `results`: the vendors' answers in waterfall order (only `Outcome.found` ones count);
- `states`: per field key ("email", "title", or a `NumberSlot` value) who owns the field and what syncd
  last wrote there;
- `settings`: the per-field policies and formats.

The rules, in the order they are applied to each field:

1. A field whose value in `current` differs from `base` was changed by a person: it lands in
   `person_touched` and is not written. Numbers compare per slot, exactly as the PBX holds them, so a
   number moved, reformatted, removed or added makes every slot involved person-changed. The title compares
   the managed Title line of the remark (or `job_title`), never the rest of the remark.
2. A field owned by anything but syncd in `states` (a person) is never written.
3. `never` writes nothing; `fill_empty` writes only into an empty field; `refresh` also replaces a value
   syncd wrote (`states[key].owner == "syncd"` and the value is still exactly `states[key].syncd_value`).
4. The first found result (waterfall order) with an acceptable value wins.

Numbers are filled per group of slots, the unit the waterfall asks for:

| group    | want          | slots                              | vendor kinds (preferred first)      |
| -------- | ------------- | ---------------------------------- | ----------------------------------- |
| mobile   | `Want.mobile` | mobile_number, mobile_number2      | mobile                              |
| direct   | `Want.direct` | business_number, business_number2  | direct, work, landline, corporate   |
| fax      | (none)        | business_fax                       | fax                                 |
| other    | (none)        | other_number                       | other                               |

`fill_empty` means what it says per slot: an empty slot of a group is filled beside the numbers a
person entered, which are never moved, reformatted or replaced (`refresh` may also replace a number syncd
wrote there). A kind closes for syncd only when a person **changed or removed** a number of that kind
after syncd had seen the contact (the diff of `base` and `current`, recorded in `MergeResult.closed_kinds`
and from then on as the person-owned field state `kind:<group>`; a person-owned slot that is now empty, or
that held a number syncd wrote, closes it too): a closed kind gets no number at all, so a number a person
removed never comes back in the sibling slot. A person adding a number does not close the kind; that slot
becomes person-owned and the others stay free. A group without a free slot is not open, and neither is
the mobile group while it holds a valid number the policy keeps (one mobile is enough: a vendor asked for
a second mostly sells back the one held).

The group's source is the first result with an acceptable number of the group's kinds (valid, not
blacklisted, not a switchboard, with a PBX-valid rendering that reads back as the same number); its new
numbers fill the group's free slots, and what does not fit is skipped with "no free slot". A switchboard
(`syncd.switchboards`: a vendor's corporate, toll-free or shared-cost number, or a number in
`settings.switchboards`, the phonebook's numbers held by or proposed for two or more contacts) is never
written: it is skipped with "switchboard"; one syncd wrote itself (still as written) before the phonebook
showed it shared is taken out (a change to "" with reason "switchboard"). Under `refresh` a number syncd wrote is stale when neither the
source nor an earlier result lists it (any kind); stale slots are replaced first, then empty slots filled.
Groups are filled in waterfall order of their sources, so a number two vendors file under different kinds
lands where the earlier vendor put it. A number the contact already holds in any slot, in any notation, is
never added. Home slots and the home fax are never written.

Whatever a vendor after a want's source says never changes what is written for that want, so the
waterfall may stop asking as soon as `open_wants` is empty.

`open_wants` runs the same planning as `merge`, so the two agree by construction (given the same
settings, `switchboards` included): a want that is not open without results is never written, and a want
still open with `results` was not written either.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Final, NamedTuple, Protocol

from syncd.model import (
    Contact,
    ContactUpdate,
    EmailKind,
    EnrichmentResult,
    FieldChange,
    FoundPhone,
    NumberSlot,
    Outcome,
    PhoneKind,
    Vendor,
)
from syncd.normalize import (
    PBX_REMARK_MAX,
    NumberFormat,
    clean_email,
    email_key,
    format_number,
    pbx_number_ok,
    to_e164,
)
from syncd.remark import TITLE_MAX, TITLE_PREFIX, clean_title, find_title_line, title_in, with_title
from syncd.switchboards import is_switchboard

__all__ = [
    "EMAIL",
    "OWNER_PERSON",
    "OWNER_SYNCD",
    "TITLE",
    "FieldState",
    "FieldStateLike",
    "MergeResult",
    "MergeSettings",
    "Policy",
    "Skip",
    "SkipReason",
    "TitleTarget",
    "Verification",
    "Want",
    "apply_update",
    "classify_verification",
    "closed_kind_key",
    "merge",
    "next_states",
    "open_wants",
]

EMAIL: Final = "email"
TITLE: Final = "title"
OWNER_SYNCD: Final = "syncd"
OWNER_PERSON: Final = "person"


class Policy(StrEnum):
    fill_empty = "fill_empty"
    refresh = "refresh"
    never = "never"


class TitleTarget(StrEnum):
    """Where the job title goes."""

    remark = "remark"  # a managed `Title: ...` line in the remark
    field = "field"  # Contact.job_title (newer firmware only; None means the firmware has no such field)
    none = "none"  # nowhere: the title is never written and never wanted


class Want(StrEnum):
    """What the waterfall can still fill for a contact."""

    email = "email"
    mobile = "mobile"
    direct = "direct"
    title = "title"  # type: ignore[assignment]  # shadows str.title on purpose: the brief names it so


class SkipReason(StrEnum):
    policy_never = "policy never"
    person_owned = "person-owned"  # a person changed it since base, or the store says a person owns it
    occupied = "occupied"  # holds a value syncd may not replace under the policy
    already_present = "already present"  # the contact already holds this value
    invalid_email = "invalid email"  # fails clean_email (syntax or the PBX's field rules)
    email_marked_invalid = "email verified invalid"  # the vendor's verification said invalid
    unverified_email = "unverified email"  # require_verified_email and no positive verification
    invalid_number = "invalid number"  # not a valid number, or no PBX-valid rendering of it
    blacklisted = "blacklisted"
    no_free_slot = "no free slot"
    title_too_long = "title too long"
    remark_too_long = "remark too long"  # adding the Title line would pass the remark's 1024 characters
    no_title_field = "no title field"  # TitleTarget.field on firmware without job_title
    switchboard = "switchboard"  # a company's number (vendor's word, toll-free, or shared by contacts)


class Verification(StrEnum):
    verified = "verified"  # a positive verification
    neutral = "neutral"  # unverified, accept-all, unknown, or nothing said
    invalid = "invalid"  # the vendor says the address does not work


# Vendor verification words, folded to lower-case letters only ("ValidEmail", "valid_email" -> "validemail").
# "ValidDomain" (InsideView) vouches for the domain only, and accept-all/catch-all for nothing: neutral.
_VERIFIED_WORDS = frozenset({"verified", "valid", "validemail", "deliverable"})
_INVALID_WORDS = frozenset({"invalid", "invalidemail", "undeliverable"})
_NON_LETTERS = re.compile(r"[^a-z]+")


@lru_cache(maxsize=256)
def classify_verification(word: str | None) -> Verification:
    """The merge's reading of a vendor's email verification word."""
    if not word:
        return Verification.neutral
    folded = _NON_LETTERS.sub("", word.lower())
    if folded in _VERIFIED_WORDS:
        return Verification.verified
    if folded in _INVALID_WORDS:
        return Verification.invalid
    return Verification.neutral


@dataclass(frozen=True, slots=True)
class MergeSettings:
    email: Policy = Policy.fill_empty
    numbers: Policy = Policy.fill_empty
    title: Policy = Policy.fill_empty
    default_region: str = "US"
    number_format: NumberFormat = NumberFormat.e164
    title_target: TitleTarget = TitleTarget.remark
    require_verified_email: bool = False  # when True, only positively verified emails are acceptable
    # the phonebook's switchboards in E.164 (syncd.switchboards.switchboard_numbers): never written
    switchboards: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # plain strings ("never") become the enums the merge compares by identity; unknown ones raise
        for name, kind in (("email", Policy), ("numbers", Policy), ("title", Policy)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "number_format", NumberFormat(self.number_format))
        object.__setattr__(self, "title_target", TitleTarget(self.title_target))


class FieldStateLike(Protocol):
    """What the merge reads from the state store about one field (any object with these attributes)."""

    @property
    def owner(self) -> str: ...  # "syncd" or "person"

    @property
    def syncd_value(self) -> str | None: ...  # what syncd last wrote there

    @property
    def source(self) -> str | None: ...  # the vendor syncd's value came from


@dataclass(frozen=True, slots=True)
class FieldState:
    owner: str
    syncd_value: str | None = None
    source: str | None = None


class Skip(NamedTuple):
    """A value the merge did not write, and why."""

    field: str  # "email", "title", or a number group: "mobile", "direct", "fax", "other"
    value: str  # the vendor's value as given ("" when there was none to name)
    reason: SkipReason
    source: str | None = None  # the vendor


@dataclass(frozen=True, slots=True)
class MergeResult:
    update: ContactUpdate | None  # None: nothing to send
    changes: tuple[FieldChange, ...]  # the same changes as update.changes
    # field keys a person changed since base: the engine marks them person-owned
    person_touched: frozenset[str]
    skipped: tuple[Skip, ...]
    # number kinds a person closed in this run (keys from `closed_kind_key`): stored as person-owned
    closed_kinds: frozenset[str] = frozenset()


# --- number groups ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    want: Want | None
    slots: tuple[tuple[NumberSlot, str], ...]  # (slot, field key)
    kinds: Mapping[PhoneKind, int]  # kind -> preference (lower first)

    closed_key: str  # the field-state key that records a person closing the kind
    # False: one number of the kind is enough (a person has one mobile; a vendor asked for a second one
    # mostly sells back the one held), so a slot holding one the policy keeps closes the kind
    beside_held: bool = True


def closed_kind_key(group: str) -> str:
    """The field-state key recording that a person closed a number kind ("kind:mobile", "kind:direct")."""
    return f"kind:{group}"


def _group(
    name: str,
    want: Want | None,
    slots: Iterable[NumberSlot],
    kinds: Mapping[PhoneKind, int],
    *,
    beside_held: bool = True,
) -> _Group:
    return _Group(name, want, tuple((s, s.value) for s in slots), kinds, closed_kind_key(name), beside_held)


_GROUPS: Final = (
    _group(
        "mobile",
        Want.mobile,
        (NumberSlot.mobile_number, NumberSlot.mobile_number2),
        {PhoneKind.mobile: 0},
        beside_held=False,
    ),
    _group(
        "direct",
        Want.direct,
        (NumberSlot.business_number, NumberSlot.business_number2),
        {PhoneKind.direct: 0, PhoneKind.work: 1, PhoneKind.landline: 2, PhoneKind.corporate: 3},
    ),
    _group("fax", None, (NumberSlot.business_fax,), {PhoneKind.fax: 0}),
    _group("other", None, (NumberSlot.other_number,), {PhoneKind.other: 0}),
)
# phone kind -> (index of its group in _GROUPS, preference within the group)
_KIND_GROUP: Final = {kind: (gi, pref) for gi, g in enumerate(_GROUPS) for kind, pref in g.kinds.items()}
_SLOT_GROUP: Final = {slot: gi for gi, g in enumerate(_GROUPS) for slot, _ in g.slots}
_CLOSED_KEYS: Final = frozenset(g.closed_key for g in _GROUPS)
_SLOT_KEYS: Final = tuple((slot, slot.value) for slot in NumberSlot)

# Plain aliases: attribute access on an enum class is slow on Python 3.11 and this is the hot path.
_NEVER: Final = Policy.never
_REFRESH: Final = Policy.refresh
_FILL: Final = Policy.fill_empty.value
_TAKE_BACK: Final = "switchboard"  # the reason of a change that removes a switchboard syncd had written
_REPLACE: Final = Policy.refresh.value
_WORK: Final = EmailKind.work
_FOUND: Final = Outcome.found
_VERIFIED: Final = Verification.verified
_INVALID: Final = Verification.invalid
_T_REMARK: Final = TitleTarget.remark
_T_FIELD: Final = TitleTarget.field
_T_NONE: Final = TitleTarget.none
_W_EMAIL: Final = Want.email
_W_TITLE: Final = Want.title
_R_NEVER: Final = SkipReason.policy_never
_R_PERSON: Final = SkipReason.person_owned
_R_OCCUPIED: Final = SkipReason.occupied
_R_PRESENT: Final = SkipReason.already_present
_R_SWITCHBOARD: Final = SkipReason.switchboard
_VENDOR_NAME: Final = {v: v.value for v in Vendor}
_NO_KEYS: Final[frozenset[str]] = frozenset()
# The longest a remark can grow by when a Title line with a one-character title is appended.
_TITLE_LINE_OVERHEAD: Final = len("\r\n" + TITLE_PREFIX + "x")


@lru_cache(maxsize=200_000)
def _number_to_write(raw: str, region: str, style: NumberFormat) -> tuple[str, str] | None:
    """(E.164, the text to write) for a vendor number, or None when it has no PBX-valid rendering.

    The rendering must read back as the same E.164 number, so the next merge recognises it as present.
    """
    e164 = to_e164(raw, region)
    if e164 is None:
        return None
    text = format_number(e164, style, region)
    if not pbx_number_ok(text) or to_e164(text, region) != e164:
        return None
    return e164, text


_clean_email = lru_cache(maxsize=200_000)(clean_email)


# --- planning -----------------------------------------------------------------------------------------


class _Plan:
    __slots__ = (
        "answered",
        "blocked",
        "closed",
        "email",
        "numbers",
        "opened",
        "remark",
        "skips",
        "title",
        "touched",
    )

    def __init__(self, touched: set[str], blocked: set[str], closed: set[str]) -> None:
        self.touched = touched
        self.closed = closed  # kind keys a person closed in this run (changed or removed a number)
        self.blocked = blocked  # touched, plus fields the store says someone other than syncd owns
        self.opened: set[Want] = set()  # wants open before looking at results
        self.answered: set[Want] = set()  # open wants for which results hold an acceptable value
        self.email: tuple[str, str, str] | None = None  # (new, source, reason)
        self.numbers: dict[NumberSlot, tuple[str, str, str]] = {}  # slot -> (new, source, reason)
        self.title: tuple[str, str, str, str] | None = None  # (new title, source, reason, old title)
        self.remark: str | None = None  # the new remark when the title goes there
        self.skips: list[Skip] = []


def _mode(
    key: str, value: str, policy: Policy, blocked: set[str], states: Mapping[str, FieldStateLike]
) -> tuple[str | None, SkipReason | None]:
    """How syncd may write a field: ("fill_empty" | "refresh", None) or (None, why not)."""
    if policy is _NEVER:
        return None, _R_NEVER
    if key in blocked:
        return None, _R_PERSON
    if not value:
        return _FILL, None
    if policy is _REFRESH:
        st = states.get(key)
        if st is not None and st.syncd_value == value:
            return _REPLACE, None
    return None, _R_OCCUPIED


def _touched(base: Contact | None, current: Contact, settings: MergeSettings) -> set[str]:
    touched: set[str] = set()
    if base is None:
        return touched
    if base.email != current.email:
        touched.add(EMAIL)
    if base.numbers != current.numbers:
        before, now = base.number_map, current.number_map
        for slot, key in _SLOT_KEYS:
            if before.get(slot) != now.get(slot):
                touched.add(key)
                if before.get(slot) and (gi := _SLOT_GROUP.get(slot)) is not None:
                    # a number a person changed or removed closes its kind (adding one does not)
                    touched.add(_GROUPS[gi].closed_key)
    target = settings.title_target
    if target is _T_REMARK:
        if base.remark != current.remark:
            old, new = find_title_line(base.remark), find_title_line(current.remark)
            if (None if old is None else old.raw) != (None if new is None else new.raw):
                touched.add(TITLE)
    elif target is _T_FIELD and (base.job_title or "") != (current.job_title or ""):
        touched.add(TITLE)
    return touched


def _found(results: Sequence[EnrichmentResult], contact_id: int) -> list[EnrichmentResult]:
    found = []
    for r in results:
        if r.contact_id != contact_id:
            raise ValueError(f"result for contact {r.contact_id} given to the merge of contact {contact_id}")
        if r.outcome == _FOUND:
            found.append(r)
    return found


def _plan_email(
    plan: _Plan,
    current: Contact,
    found: Sequence[EnrichmentResult],
    states: Mapping[str, FieldStateLike],
    settings: MergeSettings,
) -> None:
    mode, why = _mode(EMAIL, current.email, settings.email, plan.blocked, states)
    if mode is None:
        assert why is not None
        for r in found:
            if r.emails:
                plan.skips.append(Skip(EMAIL, r.emails[0].address, why, _VENDOR_NAME[r.vendor]))
                break
        return
    plan.opened.add(_W_EMAIL)
    require_verified = settings.require_verified_email
    for r in found:
        if not r.emails:
            continue
        best: str | None = None
        best_rank: tuple[bool, bool, float] = (False, False, -math.inf)
        src = _VENDOR_NAME[r.vendor]
        for e in r.emails:
            address = _clean_email(e.address)
            if address is None:
                plan.skips.append(Skip(EMAIL, e.address, SkipReason.invalid_email, src))
                continue
            verification = classify_verification(e.verification)
            if verification is _INVALID:
                plan.skips.append(Skip(EMAIL, e.address, SkipReason.email_marked_invalid, src))
                continue
            if require_verified and verification is not _VERIFIED:
                plan.skips.append(Skip(EMAIL, e.address, SkipReason.unverified_email, src))
                continue
            conf = e.confidence
            rank = (
                e.kind == _WORK,
                verification is _VERIFIED,
                conf if conf is not None and not math.isnan(conf) else -math.inf,
            )
            if best is None or rank > best_rank:
                best, best_rank = address, rank
        if best is not None:
            plan.answered.add(_W_EMAIL)
            if email_key(best) == email_key(current.email):
                plan.skips.append(Skip(EMAIL, best, _R_PRESENT, src))
            else:
                plan.email = (best, src, mode)
            return


def _plan_numbers(
    plan: _Plan,
    current: Contact,
    found: Sequence[EnrichmentResult],
    states: Mapping[str, FieldStateLike],
    settings: MergeSettings,
) -> None:
    policy = settings.numbers
    region = settings.default_region
    skips = plan.skips
    held = dict(current.numbers)
    # the vendors' numbers per group, in waterfall order: (result index, kind preference, position, phone)
    proposed: list[list[tuple[int, int, int, FoundPhone]]] = [[] for _ in _GROUPS]
    if found:
        kind_group = _KIND_GROUP
        for ri, r in enumerate(found):
            for i, p in enumerate(r.phones):
                where = kind_group.get(p.kind)
                if where is not None:
                    proposed[where[0]].append((ri, where[1], i, p))
    # 1. which groups are open, and each open group's source: the first result with an acceptable number
    sourced: list[
        tuple[int, int, list[NumberSlot], list[NumberSlot], list[tuple[int, int, str, str, str]]]
    ] = []
    never = policy is _NEVER
    refresh = policy is _REFRESH
    blocked = plan.blocked
    switchboards = settings.switchboards
    present: dict[str, int] = {}  # E.164 -> how many slots hold it now
    if found:
        for n in held.values():
            if (e := to_e164(n, region)) is not None:
                present[e] = present.get(e, 0) + 1
    for gi in range(len(_GROUPS)):
        group = _GROUPS[gi]
        bucket = proposed[gi]
        empty: list[NumberSlot] = []
        stale: list[NumberSlot] = []  # numbers syncd wrote that refresh may replace
        why: SkipReason | None = _R_NEVER if never else None
        if why is None and group.closed_key in blocked:
            why = _R_PERSON  # a person changed or removed a number of this kind
        if why is None:
            kept: SkipReason | None = None  # why the slots that are not free are not
            for slot, key in group.slots:
                value = held.get(slot)
                st = states.get(key)
                if key in blocked:
                    if not value or (
                        st is not None and st.owner != OWNER_SYNCD and st.syncd_value is not None
                    ):
                        # a person removed a number here, or replaced syncd's: the kind is closed
                        why = _R_PERSON
                        break
                    kept = kept or _R_PERSON  # a person's own number: never moved or replaced
                elif not value:
                    empty.append(slot)
                elif (
                    switchboards
                    and st is not None
                    and st.owner == OWNER_SYNCD
                    and st.syncd_value == value
                    and to_e164(value, region) in switchboards
                ):
                    # syncd wrote it before the phonebook showed it to be a switchboard: take it back
                    plan.numbers[slot] = ("", st.source or OWNER_SYNCD, _TAKE_BACK)
                    empty.append(slot)
                elif refresh and st is not None and st.syncd_value == value:
                    stale.append(slot)
                else:
                    kept = _R_OCCUPIED  # a value syncd may not replace under the policy
            if why is None and not empty and not stale:
                why = kept or _R_OCCUPIED
            elif (
                why is None
                and kept is not None
                and not stale
                and not group.beside_held
                # the contact has its number of this kind (garbage in a slot is no number)
                and any((v := held.get(slot)) and to_e164(v, region) is not None for slot, _ in group.slots)
            ):
                why = kept
        if why is not None:
            if bucket:
                ri, _, _, p = bucket[0]
                skips.append(Skip(group.name, p.number, why, _VENDOR_NAME[found[ri].vendor]))
            continue
        if group.want is not None:
            plan.opened.add(group.want)
        if not bucket:
            continue
        candidates: list[tuple[int, int, str, str, str]] = []
        source = -1
        style = settings.number_format
        for ri, pref, i, p in bucket:
            if ri != source:
                if candidates:
                    break
                source = ri
            if p.blacklisted:
                skips.append(
                    Skip(group.name, p.number, SkipReason.blacklisted, _VENDOR_NAME[found[ri].vendor])
                )
                continue
            rendered = _number_to_write(p.number, region, style)
            if rendered is None:
                skips.append(
                    Skip(group.name, p.number, SkipReason.invalid_number, _VENDOR_NAME[found[ri].vendor])
                )
                continue
            if is_switchboard(p, rendered[0], switchboards):
                # never written, and no answer for the want; one the contact holds already is no news
                why_not = _R_PRESENT if present.get(rendered[0]) else _R_SWITCHBOARD
                skips.append(Skip(group.name, p.number, why_not, _VENDOR_NAME[found[ri].vendor]))
                continue
            candidates.append((pref, i, p.number, rendered[0], rendered[1]))
        if candidates:
            if group.want is not None:
                plan.answered.add(group.want)
            sourced.append((source, gi, empty, stale, candidates))
    if not sourced:
        return
    # 2. fill the groups in waterfall order of their sources, so that a number two vendors file under
    #    different kinds lands where the earlier vendor put it, whatever later vendors say
    if len(sourced) > 1:
        sourced.sort(key=_source_order)
    for source, gi, empty, replaceable, candidates in sourced:
        name = _GROUPS[gi].name
        src = _VENDOR_NAME[found[source].vendor]
        if replaceable:
            # a number syncd wrote is stale when neither the source nor an earlier result lists it
            listed = {
                e
                for f in found[: source + 1]
                for q in f.phones
                if (e := to_e164(q.number, region)) is not None
            }
            free = [s for s in replaceable if to_e164(held[s], region) not in listed]
            free += empty
        else:
            free = empty[:]
        if len(candidates) > 1:
            candidates.sort()
        for _pref, _i, raw, e164, text in candidates:
            if present.get(e164):
                skips.append(Skip(name, raw, _R_PRESENT, src))
            elif not free:
                skips.append(Skip(name, raw, SkipReason.no_free_slot, src))
            else:
                slot = free.pop(0)
                if slot in empty:
                    reason = _FILL
                else:
                    reason = _REPLACE
                    if (old := to_e164(held[slot], region)) is not None:
                        present[old] -= 1
                plan.numbers[slot] = (text, src, reason)
                present[e164] = present.get(e164, 0) + 1


def _source_order(g: tuple[int, int, object, object, object]) -> tuple[int, int]:
    return g[0], g[1]


def _plan_title(
    plan: _Plan,
    current: Contact,
    found: Sequence[EnrichmentResult],
    states: Mapping[str, FieldStateLike],
    settings: MergeSettings,
) -> None:
    target = settings.title_target
    if target is _T_NONE:
        return
    mode: str | None
    why: SkipReason | None
    remark = current.remark
    if target is _T_FIELD:
        if current.job_title is None:
            mode, why, held = None, SkipReason.no_title_field, ""
        else:
            held = current.job_title
            mode, why = _mode(TITLE, held, settings.title, plan.blocked, states)
    else:
        held = title_in(remark)
        mode, why = _mode(TITLE, held, settings.title, plan.blocked, states)
        # is there room for any Title line at all?
        if (
            mode is not None
            and len(remark) + _TITLE_LINE_OVERHEAD > PBX_REMARK_MAX
            and len(with_title(remark, "x")) > PBX_REMARK_MAX
        ):
            mode, why = None, SkipReason.remark_too_long
    if mode is None:
        assert why is not None
        for r in found:
            if r.title:
                plan.skips.append(Skip(TITLE, r.title, why, _VENDOR_NAME[r.vendor]))
                break
        return
    plan.opened.add(_W_TITLE)
    for r in found:
        if not r.title:
            continue
        title = clean_title(r.title)
        if not title:
            continue
        src = _VENDOR_NAME[r.vendor]
        if title == held:
            plan.answered.add(_W_TITLE)
            plan.skips.append(Skip(TITLE, r.title, _R_PRESENT, src))
            return
        if len(title) > TITLE_MAX:
            plan.skips.append(Skip(TITLE, r.title, SkipReason.title_too_long, src))
            continue
        if target is _T_REMARK:
            new_remark = with_title(remark, title)
            if len(new_remark) > PBX_REMARK_MAX:
                plan.skips.append(Skip(TITLE, r.title, SkipReason.remark_too_long, src))
                continue
            plan.remark = new_remark
        plan.answered.add(_W_TITLE)
        plan.title = (title, src, mode, held)
        return


def _plan(
    base: Contact | None,
    current: Contact,
    results: Sequence[EnrichmentResult],
    states: Mapping[str, FieldStateLike],
    settings: MergeSettings,
) -> _Plan:
    if base is not None and base.id != current.id:
        raise ValueError(f"base is contact {base.id}, current is contact {current.id}")
    found = _found(results, current.id)
    touched = _touched(base, current, settings)
    closed: set[str] = set()
    if touched:
        closed = touched & _CLOSED_KEYS
        touched -= closed
    blocked = touched | closed
    if states:
        blocked = blocked | {k for k, st in states.items() if st.owner != OWNER_SYNCD}
        closed = {k for k in closed if (st := states.get(k)) is None or st.owner == OWNER_SYNCD}
    plan = _Plan(touched=touched, blocked=blocked, closed=closed)
    _plan_email(plan, current, found, states, settings)
    _plan_numbers(plan, current, found, states, settings)
    _plan_title(plan, current, found, states, settings)
    return plan


# --- public API ---------------------------------------------------------------------------------------


def merge(
    base: Contact | None,
    current: Contact,
    results: Sequence[EnrichmentResult],
    states: Mapping[str, FieldStateLike],
    settings: MergeSettings,
    *,
    current_hash: str | None = None,
) -> MergeResult:
    """Plan the update of `current` from `results`; see the module docstring for the rules.

    `current_hash` may pass `current.content_hash()` when the caller has it already (the engine computes
    it to detect changed contacts); it becomes the update's precondition. It is computed when omitted.
    """
    plan = _plan(base, current, results, states, settings)
    cid = current.id
    changes: list[FieldChange] = []
    new_email: str | None = None
    new_numbers: tuple[tuple[NumberSlot, str], ...] | None = None
    new_remark: str | None = None
    new_job_title: str | None = None
    if plan.email is not None:
        new_email, src, reason = plan.email
        changes.append(FieldChange(cid, EMAIL, current.email, new_email, src, reason))
    if plan.numbers:
        held = {pair[0]: pair for pair in current.numbers}
        planned = plan.numbers
        numbers: list[tuple[NumberSlot, str]] = []
        for slot, key in _SLOT_KEYS:  # every slot in the canonical order, the new ones included
            if slot in planned:
                text, src, reason = planned[slot]
                old_pair = held.get(slot)
                changes.append(FieldChange(cid, key, old_pair[1] if old_pair else "", text, src, reason))
                if text:  # "" takes the number out (a switchboard syncd had written)
                    numbers.append((slot, text))
            elif slot in held:
                numbers.append(held[slot])  # the PBX's own pair, untouched
        new_numbers = tuple(numbers)
    if plan.title is not None:
        title, src, reason, old = plan.title
        if settings.title_target is _T_REMARK:
            new_remark = plan.remark
        else:
            new_job_title = title
        changes.append(FieldChange(cid, TITLE, old, title, src, reason))
    changed = tuple(changes)
    update = None
    if changed:
        update = ContactUpdate(
            contact_id=cid,
            precondition_hash=current.content_hash() if current_hash is None else current_hash,
            email=new_email,
            remark=new_remark,
            job_title=new_job_title,
            numbers=new_numbers,
            changes=changed,
        )
    return MergeResult(
        update=update,
        changes=changed,
        person_touched=frozenset(plan.touched) if plan.touched else _NO_KEYS,
        skipped=tuple(plan.skips),
        closed_kinds=frozenset(plan.closed) if plan.closed else _NO_KEYS,
    )


def open_wants(
    current: Contact,
    base: Contact | None,
    states: Mapping[str, FieldStateLike],
    settings: MergeSettings,
    results: Sequence[EnrichmentResult] = (),
) -> frozenset[Want]:
    """The wants that could still change under their policy and have no acceptable value in `results` yet.

    The waterfall asks the next vendor only while this is non-empty. It is computed by the same planning
    as `merge`, so a want missing here with `results=()` is never written by `merge`, and a want present
    here with `results` is not written by `merge(…, results, …)` either.
    """
    plan = _plan(base, current, results, states, settings)
    return frozenset(plan.opened - plan.answered)


def apply_update(current: Contact, update: ContactUpdate) -> Contact:
    """The contact as the PBX holds it after `update` (the PBX keeps values exactly as sent).

    Raises ValueError when the update belongs to another contact or was planned against another version.
    """
    if update.contact_id != current.id:
        raise ValueError(f"update for contact {update.contact_id} applied to contact {current.id}")
    if update.precondition_hash != current.content_hash():
        raise ValueError(f"contact {current.id} changed since the update was planned")
    return dataclasses.replace(
        current,
        email=current.email if update.email is None else update.email,
        remark=current.remark if update.remark is None else update.remark,
        job_title=current.job_title if update.job_title is None else update.job_title,
        numbers=current.numbers
        if update.numbers is None
        else Contact.build(0, numbers=update.numbers).numbers,
    )


def next_states(states: Mapping[str, FieldStateLike], result: MergeResult) -> dict[str, FieldState]:
    """The field states after `result` was pushed: person-changed fields become person-owned, written ones
    syncd-owned with the value written. What the engine stores once the push succeeded."""
    out = {k: FieldState(s.owner, s.syncd_value, s.source) for k, s in states.items()}
    for key in result.person_touched | result.closed_kinds:
        prev = out.get(key)
        out[key] = FieldState(OWNER_PERSON, prev.syncd_value if prev else None, prev.source if prev else None)
    for change in result.changes:
        out[change.field] = FieldState(OWNER_SYNCD, change.new, change.source)
    return out
