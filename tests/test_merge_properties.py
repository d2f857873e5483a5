"""Hypothesis properties of the merge: idempotence, a person's edits win, no number lost, only valid values
written, slot capacity, open_wants agreeing with merge, and a multi-run state machine.

Examples per test: 200 by default, `SYNCD_MERGE_EXAMPLES` to change it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from syncd.merge import (
    EMAIL,
    TITLE,
    FieldState,
    MergeResult,
    MergeSettings,
    Policy,
    SkipReason,
    TitleTarget,
    Want,
    apply_update,
    closed_kind_key,
    merge,
    next_states,
    open_wants,
)
from syncd.model import (
    Contact,
    EmailKind,
    EnrichmentResult,
    FoundEmail,
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
    format_number,
    pbx_number_ok,
    to_e164,
)
from syncd.remark import find_title_line
from syncd.switchboards import is_shared_cost_or_toll_free

EXAMPLES = int(os.environ.get("SYNCD_MERGE_EXAMPLES", "200"))
PROPS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AT = datetime(2026, 3, 1, tzinfo=UTC)
CID = 42
REGION = "US"

WANT_FIELDS: dict[Want, frozenset[str]] = {
    Want.email: frozenset({EMAIL}),
    Want.mobile: frozenset({NumberSlot.mobile_number.value, NumberSlot.mobile_number2.value}),
    Want.direct: frozenset({NumberSlot.business_number.value, NumberSlot.business_number2.value}),
    Want.title: frozenset({TITLE}),
}
FIELD_KEYS = [EMAIL, TITLE, *(s.value for s in NumberSlot)]

# --- strategies ---------------------------------------------------------------------------------------

# a handful of numbers, each in several notations, so that collisions are common
_BASES = ["4155550134", "4155550199", "2125550147", "3125550160", "6175550111"]
_NOTATIONS = [
    "+1{a}{b}{c}",
    "({a}){b}-{c}",
    "1-{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "+1 {a} {b} {c}",
]
NUMBERS = [n.format(a=b[:3], b=b[3:6], c=b[6:]) for b in _BASES for n in _NOTATIONS] + [
    "+44 20 7946 0958",
    "+442079460958",
]
GARBAGE_NUMBERS = ["not-a-number", "ext 12", "12", "n/a", "+999 1234 5678", "555-0134"]
number_text = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(GARBAGE_NUMBERS))

EMAILS = [
    "ada@engines.example.com",
    "ADA@Engines.Example.com",
    "lovelace@engines.example.com",
    "ada@gmail.com",
    "o'brien@x.ie",
]
GARBAGE_EMAILS = ["n/a", "", "ada@", "x+y@z.com", "ü@x.de", "a@b.c"]
email_text = st.one_of(st.sampled_from(EMAILS), st.sampled_from(GARBAGE_EMAILS))

TITLES = ["CTO", " CTO ", "Chief Technology Officer", "Head of\nR&D", "Engineer", "x" * 200, "", "   "]
REMARKS = [
    "",
    "notes",
    "notes\n",
    "notes\nTitle: CTO",
    "Title: Engineer\nmore",
    "a\r\nTitle: Engineer\r\nb",
    "Title:",
    "x" * 1010,
    "x" * 1020 + "\nTitle: A",
    "Job Title: not ours",
]
OTHER_TEXT = ["", "met at PyCon", "call after 3pm\n", "P.S. prefers email"]

slots_map = st.dictionaries(st.sampled_from(list(NumberSlot)), number_text, max_size=9) | st.dictionaries(
    st.sampled_from(list(NumberSlot)), number_text, max_size=3
)


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    return Contact.build(
        CID,
        name="Ada Lovelace",
        company="Engines",
        email=draw(st.one_of(st.just(""), st.just(""), email_text)),
        remark=draw(st.sampled_from(["", "", "notes", *REMARKS])),
        numbers=draw(slots_map),
        job_title=draw(st.sampled_from([None, "", "CTO", "Boss"])),
    )


@st.composite
def person_edits(draw: st.DrawFn, base: Contact) -> Contact:
    """`base` after a person's edits to a random subset of fields (each edited about one time in four)."""

    def edit() -> bool:
        return draw(st.integers(0, 3)) == 0

    c = base
    if edit():
        c = replace(c, email=draw(st.one_of(st.just(""), email_text)))
    if edit():
        nums = dict(c.numbers)
        for slot in draw(st.lists(st.sampled_from(list(NumberSlot)), min_size=1, max_size=3)):
            if draw(st.booleans()):
                nums.pop(slot, None)
            else:
                nums[slot] = draw(number_text)
        if draw(st.booleans()) and len(nums) >= 2:  # move one number to another slot
            a, b = draw(st.permutations(list(nums)))[:2]
            nums[b] = nums.pop(a)
        c = replace(c, numbers=Contact.build(CID, numbers=nums).numbers)
    if edit():
        c = replace(c, remark=draw(st.sampled_from(REMARKS)))
    if edit():
        c = replace(c, remark=draw(st.sampled_from(OTHER_TEXT)) + c.remark)
    if edit() and c.job_title is not None:
        c = replace(c, job_title=draw(st.sampled_from(["", "CTO", "Boss"])))
    return c


def field_value(c: Contact, key: str, target: TitleTarget) -> str:
    if key == EMAIL:
        return c.email
    if key == TITLE:
        if target is TitleTarget.field:
            return c.job_title or ""
        line = find_title_line(c.remark)
        return "" if line is None else line.value
    return c.number_map.get(NumberSlot(key), "")


@st.composite
def field_states(draw: st.DrawFn, current: Contact, target: TitleTarget) -> dict[str, FieldState]:
    """Provenance: often "syncd wrote exactly what is there" (refreshable), sometimes anything else."""
    out = {}
    for key in FIELD_KEYS:
        held = field_value(current, key, target)
        choice = draw(st.integers(0, 5))
        if choice <= 2 and held:
            out[key] = FieldState("syncd", held, "insideview")
        elif choice == 3:
            owner = draw(st.sampled_from(["syncd", "person"]))
            value = draw(st.one_of(st.none(), email_text, number_text, st.sampled_from(TITLES)))
            out[key] = FieldState(owner, value, "leadfeeder")
    return out


found_email = st.builds(
    FoundEmail,
    address=email_text,
    kind=st.sampled_from(list(EmailKind)),
    verification=st.sampled_from(
        [None, "verified", "valid", "ValidEmail", "invalid", "accept_all", "unknown"]
    ),
    confidence=st.one_of(st.none(), st.floats(0, 1)),
)
found_phone = st.builds(
    FoundPhone,
    number=number_text,
    kind=st.sampled_from(list(PhoneKind)),
    blacklisted=st.sampled_from([False, False, False, True]),
)


@st.composite
def results(draw: st.DrawFn) -> list[EnrichmentResult]:
    out = []
    for vendor in draw(st.lists(st.sampled_from(list(Vendor)), max_size=3)):
        outcome = draw(
            st.sampled_from([Outcome.found, Outcome.found, Outcome.found, Outcome.not_found, Outcome.error])
        )
        out.append(
            EnrichmentResult(
                vendor=vendor,
                contact_id=CID,
                outcome=outcome,
                fetched_at=AT,
                emails=tuple(draw(st.lists(found_email, max_size=3))),
                phones=tuple(draw(st.lists(found_phone, max_size=4))),
                title=draw(st.one_of(st.none(), st.sampled_from(TITLES))),
            )
        )
    return out


policies = st.sampled_from(
    [Policy.fill_empty, Policy.fill_empty, Policy.refresh, Policy.refresh, Policy.never]
)
merge_settings = st.builds(
    MergeSettings,
    email=policies,
    numbers=policies,
    title=policies,
    default_region=st.just(REGION),
    number_format=st.sampled_from(list(NumberFormat)),
    title_target=st.sampled_from(list(TitleTarget)),
    require_verified_email=st.booleans(),
    switchboards=st.frozensets(st.sampled_from([f"+1{b}" for b in _BASES]), max_size=2),
)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings]:
    s = draw(merge_settings)
    before = draw(contacts())
    current = draw(person_edits(before))
    base = None if draw(st.integers(0, 4)) == 0 else before
    states = draw(field_states(current, s.title_target))
    return base, current, draw(results()), states, s


def changed_fields(m: MergeResult) -> set[str]:
    return {c.field for c in m.changes}


def e164(n: str) -> str | None:
    return to_e164(n, REGION)


def oracle_touched(base: Contact | None, current: Contact, target: TitleTarget) -> set[str]:
    """An independent reading of "what did a person change since base"."""
    if base is None:
        return set()
    out = set()
    if base.email != current.email:
        out.add(EMAIL)
    for slot in NumberSlot:
        if base.number_map.get(slot) != current.number_map.get(slot):
            out.add(slot.value)
    if target is TitleTarget.remark:
        old, new = find_title_line(base.remark), find_title_line(current.remark)
        if (old.raw if old else None) != (new.raw if new else None):
            out.add(TITLE)
    elif target is TitleTarget.field and (base.job_title or "") != (current.job_title or ""):
        out.add(TITLE)
    return out


# --- properties ---------------------------------------------------------------------------------------


@PROPS
@given(scenarios())
def test_merge_then_apply_is_idempotent(
    sc: tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings],
) -> None:
    base, current, rs, states, s = sc
    m = merge(base, current, rs, states, s)
    if m.update is None:
        return
    after = apply_update(current, m.update)
    assert after != current
    # the same states: nothing to record when no person changed anything ...
    if not m.person_touched:
        assert merge(after, after, rs, states, s).update is None
    # ... and the states the engine records after the push (person-owned fields, syncd's values)
    recorded = next_states(states, m)
    again = merge(after, after, rs, recorded, s)
    assert again.update is None, again.changes
    assert again.person_touched == frozenset()


@PROPS
@given(scenarios())
def test_a_persons_edit_or_removal_is_never_overwritten(
    sc: tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings],
) -> None:
    base, current, rs, states, s = sc
    m = merge(base, current, rs, states, s)
    touched = oracle_touched(base, current, s.title_target)
    assert m.person_touched == touched
    person_owned = {k for k, v in states.items() if v.owner != "syncd"}
    assert not (changed_fields(m) & (touched | person_owned))
    # and no number of a kind a person closed (changed or removed a number of) is added in another slot
    for want in (Want.mobile, Want.direct):
        if oracle_closed(base, current, states, want):
            assert not (changed_fields(m) & WANT_FIELDS[want])


def oracle_closed(base: Contact | None, current: Contact, states: dict[str, FieldState], want: Want) -> bool:
    """An independent reading of "a person closed this kind": since base, a person changed or removed a
    number of the kind; or the store says a person owns the kind, owns a slot of it that is now empty, or
    owns a slot where syncd had written a number."""
    group = "mobile" if want is Want.mobile else "direct"
    st_kind = states.get(closed_kind_key(group))
    if st_kind is not None and st_kind.owner != "syncd":
        return True
    for key in WANT_FIELDS[want]:
        slot = NumberSlot(key)
        now = current.number_map.get(slot, "")
        if base is not None and base.number_map.get(slot) and base.number_map.get(slot) != now:
            return True
        st_ = states.get(key)
        if st_ is not None and st_.owner != "syncd" and (not now or st_.syncd_value is not None):
            return True
    return False


def is_candidate(p: FoundPhone) -> bool:
    """A vendor number the merge can write: valid, PBX-renderable, not blacklisted, not a switchboard."""
    e = e164(p.number)
    if e is None or p.blacklisted or p.kind is PhoneKind.corporate or is_shared_cost_or_toll_free(e):
        return False
    return all(pbx_number_ok(format_number(e, style, REGION)) for style in NumberFormat)


_WANT_KINDS = {
    Want.mobile: frozenset({PhoneKind.mobile}),
    Want.direct: frozenset({PhoneKind.direct, PhoneKind.work, PhoneKind.landline, PhoneKind.corporate}),
}


@PROPS
@given(scenarios())
def test_an_empty_slot_of_a_wanted_kind_is_filled_unless_a_person_closed_the_kind(
    sc: tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings],
) -> None:
    """An empty slot of a wanted kind with an acceptable vendor number is filled unless a person closed
    that kind: a person's number beside it does not keep the vendor's number out."""
    base, current, rs, states, s = sc
    if s.numbers is Policy.never:
        return
    m = merge(base, current, rs, states, s)
    touched = oracle_touched(base, current, s.title_target)
    person_owned = {k for k, v in states.items() if v.owner != "syncd"}
    held = {e for _, n in current.numbers if (e := e164(n)) is not None}
    found = [r for r in rs if r.outcome is Outcome.found]
    for want, kinds in _WANT_KINDS.items():
        fields = WANT_FIELDS[want]
        free = [
            k for k in fields if not current.number_map.get(NumberSlot(k)) and k not in touched | person_owned
        ]
        if not free or oracle_closed(base, current, states, want):
            continue
        if want is Want.mobile and any(
            e164(n) is not None
            for slot, n in current.numbers
            if slot.value in fields
            and not (
                s.numbers is Policy.refresh
                and (st_ := states.get(slot.value)) is not None
                and st_.owner == "syncd"
                and st_.syncd_value == n
            )
        ):
            continue  # one mobile is enough: a contact holding one wants no second

        def writable(p: FoundPhone) -> bool:
            return is_candidate(p) and e164(p.number) not in s.switchboards

        # the source: the first result with a number of the kind the merge can write
        source = next((r for r in found if any(p.kind in kinds and writable(p) for p in r.phones)), None)
        if source is None:
            continue
        elsewhere = {e164(p.number) for r in found for p in r.phones if p.kind not in kinds}
        new = {
            e
            for p in source.phones
            if p.kind in kinds and writable(p) and (e := e164(p.number)) not in held | elsewhere
        }
        if new:
            assert changed_fields(m) & fields, (want, m.skipped)
            assert Want(want) not in open_wants(current, base, states, s, rs)


@PROPS
@given(scenarios())
def test_no_number_is_lost_moved_or_reformatted(
    sc: tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings],
) -> None:
    base, current, rs, states, s = sc
    m = merge(base, current, rs, states, s)
    if m.update is None or m.update.numbers is None:
        return
    sent = dict(m.update.numbers)
    changes = {c.field: c for c in m.changes}
    for slot, number in current.numbers:
        if sent.get(slot) == number:
            continue
        st_ = states.get(slot.value)
        if (
            st_ is not None
            and (st_.owner, st_.syncd_value) == ("syncd", number)
            and e164(number) in s.switchboards
        ):
            continue  # a switchboard syncd itself wrote before it knew: taken back
        # only a refresh of a number syncd wrote itself may replace it
        change = changes[slot.value]
        st_ = states[slot.value]
        assert s.numbers is Policy.refresh
        assert (change.reason, change.old, st_.owner, st_.syncd_value) == ("refresh", number, "syncd", number)
        assert slot.value not in m.person_touched
        listed = {e164(q.number) for r in rs if r.outcome is Outcome.found for q in r.phones}
        assert e164(number) is None or e164(number) not in listed  # no vendor lists it any more


@PROPS
@given(scenarios())
def test_only_valid_values_are_written_and_slots_hold_one_number_each(
    sc: tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings],
) -> None:
    base, current, rs, states, s = sc
    m = merge(base, current, rs, states, s)
    if m.update is None:
        return
    u = m.update
    held_e164 = {e for _, n in current.numbers if (e := e164(n)) is not None}
    replaced = {e164(c.old) for c in m.changes if c.reason == "refresh" and c.field not in (EMAIL, TITLE)}
    for change in m.changes:
        assert change.contact_id == CID
        if change.reason == "switchboard":  # syncd takes back a switchboard it had written
            st_ = states[change.field]
            assert change.new == "" and (st_.owner, st_.syncd_value) == ("syncd", change.old)
            assert e164(change.old) in s.switchboards
            continue
        assert change.source in {v.value for v in Vendor}
        assert change.reason in {"fill_empty", "refresh"}
        assert change.old == field_value(current, change.field, s.title_target)
        assert change.new != change.old
        if change.field == EMAIL:
            assert clean_email(change.new) == change.new
            assert u.email == change.new
        elif change.field == TITLE:
            assert change.new and change.new == change.new.strip() and "\n" not in change.new
        else:
            assert pbx_number_ok(change.new)
            assert e164(change.new) is not None
            # never a switchboard: the phonebook's, or one the vendor called corporate
            assert e164(change.new) not in s.switchboards
            assert any(
                e164(q.number) == e164(change.new) and q.kind is not PhoneKind.corporate
                for r in rs
                if r.outcome is Outcome.found
                for q in r.phones
            )
            # never a number the contact holds, unless a refresh just replaced it in another slot
            assert e164(change.new) not in held_e164 - replaced
            assert NumberSlot(change.field) not in (
                NumberSlot.home_number,
                NumberSlot.home_number2,
                NumberSlot.home_fax,
            )
    if u.numbers is not None:
        assert len(u.numbers) <= 9
        assert len({slot for slot, _ in u.numbers}) == len(u.numbers)
        assert all(n for _, n in u.numbers)
        written = [e164(n) for slot, n in u.numbers if dict(current.numbers).get(slot) != n]
        assert len(written) == len(set(written))
    if u.remark is not None:
        assert s.title_target is TitleTarget.remark
        assert len(u.remark) <= PBX_REMARK_MAX
        old = find_title_line(current.remark)
        new = find_title_line(u.remark)
        assert new is not None
        if old is None:
            assert u.remark.startswith(current.remark)
        else:  # everything but the Title line is kept byte for byte
            assert u.remark[: new.start] == current.remark[: old.start]
            assert u.remark[new.end :] == current.remark[old.end :]
    if u.job_title is not None:
        assert s.title_target is TitleTarget.field and current.job_title is not None


@PROPS
@given(scenarios())
def test_open_wants_agrees_with_merge(
    sc: tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings],
) -> None:
    base, current, rs, states, s = sc
    m = merge(base, current, rs, states, s)
    before = open_wants(current, base, states, s)
    after = open_wants(current, base, states, s, rs)
    assert after <= before
    done = {c.field for c in m.changes if c.reason != "switchboard"}  # taking one back is no answer
    for want, fields in WANT_FIELDS.items():
        if want not in before or want in after:
            assert not (done & fields), (want, m.changes)
        elif not (done & fields):
            # answered without a write: the value is there already, or there is no room for it
            assert {k.reason for k in m.skipped if k.field == want.value} & {
                SkipReason.already_present,
                SkipReason.no_free_slot,
            }
    if s.title_target is TitleTarget.none:
        assert Want.title not in before


@PROPS
@given(scenarios())
def test_the_waterfall_may_stop_once_nothing_is_open(
    sc: tuple[Contact | None, Contact, list[EnrichmentResult], dict[str, FieldState], MergeSettings],
) -> None:
    """Asking fewer vendors never changes what is written for a want that was already answered."""
    base, current, rs, states, s = sc
    full = {c.field: c for c in merge(base, current, rs, states, s).changes}
    previous = open_wants(current, base, states, s)
    for k in range(len(rs) + 1):
        now = open_wants(current, base, states, s, rs[:k])
        assert now <= previous  # more answers never reopen a want
        previous = now
        partial = {c.field: c for c in merge(base, current, rs[:k], states, s).changes}
        for want, fields in WANT_FIELDS.items():
            if want not in now:
                assert {f: c for f, c in partial.items() if f in fields} == {
                    f: c for f, c in full.items() if f in fields
                }


# --- several runs: a person's edits stay, whatever the vendors say later ------------------------------


class SyncRuns(RuleBasedStateMachine):
    """A PBX contact synced again and again while a person edits it in between."""

    pbx: Contact
    base: Contact | None
    states: dict[str, FieldState]
    s: MergeSettings
    expected: dict[str, str]  # field key -> the value a person left there

    @initialize(c=contacts(), s=merge_settings)
    def start(self, c: Contact, s: MergeSettings) -> None:
        self.pbx, self.base, self.states, self.s, self.expected = c, None, {}, s, {}

    @rule(email=st.one_of(st.just(""), email_text))
    def person_sets_email(self, email: str) -> None:
        self.pbx = replace(self.pbx, email=email)

    @rule(slot=st.sampled_from(list(NumberSlot)), number=st.one_of(st.just(""), number_text))
    def person_sets_number(self, slot: NumberSlot, number: str) -> None:
        nums = self.pbx.number_map
        nums[slot] = number
        self.pbx = replace(self.pbx, numbers=Contact.build(CID, numbers=nums).numbers)

    @rule(remark=st.sampled_from(REMARKS))
    def person_rewrites_remark(self, remark: str) -> None:
        self.pbx = replace(self.pbx, remark=remark)

    @rule(text=st.sampled_from(OTHER_TEXT[1:]))
    def person_adds_other_remark_text(self, text: str) -> None:
        self.pbx = replace(self.pbx, remark=text + "\n" + self.pbx.remark)

    @rule(title=st.sampled_from(["", "Boss", "CTO"]))
    def person_sets_job_title(self, title: str) -> None:
        if self.pbx.job_title is not None:
            self.pbx = replace(self.pbx, job_title=title)

    @rule(rs=results())
    def sync(self, rs: Sequence[EnrichmentResult]) -> None:
        target = self.s.title_target
        for key in oracle_touched(self.base, self.pbx, target):
            self.expected[key] = _raw_value(self.pbx, key, target)
        m = merge(self.base, self.pbx, rs, self.states, self.s)
        assert not (changed_fields(m) & set(self.expected))
        if m.update is not None:
            self.pbx = apply_update(self.pbx, m.update)
        self.base = self.pbx
        self.states = next_states(self.states, m)
        assert merge(self.base, self.pbx, rs, self.states, self.s).update is None

    @invariant()
    def persons_values_stay_until_the_person_changes_them(self) -> None:
        if self.base is not self.pbx:
            return  # a person edited since the last sync
        for key, value in self.expected.items():
            assert _raw_value(self.pbx, key, self.s.title_target) == value, key
            assert self.states[key].owner == "person"


def _raw_value(c: Contact, key: str, target: TitleTarget) -> str:
    if key == TITLE and target is TitleTarget.remark:
        line = find_title_line(c.remark)
        return "" if line is None else line.raw
    return field_value(c, key, target)


TestSyncRuns = SyncRuns.TestCase
TestSyncRuns.settings = settings(
    max_examples=max(EXAMPLES // 4, 10),
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
