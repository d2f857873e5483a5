"""The takeover guard and the takeover notes (pure), and the change events a run logs with their ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.errors import EXIT_PARTIAL, MassLossError
from syncd.merge import MergeSettings, merge
from syncd.model import Contact, NumberSlot
from syncd.owners import (
    TakeoverCheck,
    TakeoverError,
    check_takeover,
    field_value,
    taken_from_syncd,
    takeover_notes,
)
from syncd.store import FieldState

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def syncd_wrote(value: str) -> FieldState:
    return FieldState(owner="syncd", syncd_value=value, source="insideview", written_at=T0)


# --- field values -------------------------------------------------------------------------------------


def test_field_value_reads_each_managed_field() -> None:
    c = Contact.build(
        1,
        email="a@x.com",
        remark="met at fair\nTitle: CTO",
        numbers={NumberSlot.mobile_number: "+15550100"},
        job_title="Boss",
    )
    assert field_value(c, "email") == "a@x.com"
    assert field_value(c, "title", "remark") == "CTO"
    assert field_value(c, "title", "field") == "Boss"
    assert field_value(c, "title", "none") == ""
    assert field_value(c, "mobile_number") == "+15550100"
    assert field_value(c, "business_number") == ""


# --- notes --------------------------------------------------------------------------------------------


def test_takeover_notes_tell_a_change_from_a_removal() -> None:
    base = Contact.build(7, email="old@x.com", numbers={NumberSlot.mobile_number: "+15550100"})
    now = Contact.build(7, email="mine@x.com")
    notes = takeover_notes({7: {"email", "mobile_number"}}, {7: base}, {7: now})
    by_field = {n.field: n for n in notes}
    assert by_field["email"].kind == "takeover"
    assert (by_field["email"].old, by_field["email"].new) == ("old@x.com", "mine@x.com")
    assert by_field["mobile_number"].kind == "removal"
    assert (by_field["mobile_number"].old, by_field["mobile_number"].new) == ("+15550100", "")


def test_notes_follow_what_the_merge_calls_person_touched() -> None:
    base = Contact.build(3, email="syncd@x.com", remark="Title: CTO")
    now = Contact.build(3, email="", remark="Title: CEO")
    result = merge(base, now, (), {}, MergeSettings())
    notes = takeover_notes({3: result.person_touched}, {3: base}, {3: now})
    assert {(n.field, n.kind, n.old, n.new) for n in notes} == {
        ("email", "removal", "syncd@x.com", ""),
        ("title", "takeover", "CTO", "CEO"),
    }


# --- the guard ------------------------------------------------------------------------------------------


def test_only_fields_syncd_wrote_and_owns_count_as_taken() -> None:
    states = {
        1: {"email": syncd_wrote("a@x.com"), "title": FieldState(owner="person")},
        2: {"mobile_number": FieldState(owner="syncd", syncd_value=None)},  # never written by syncd
    }
    touched = {1: {"email", "title"}, 2: {"mobile_number"}, 3: {"email"}}  # 3: unknown to the store
    assert taken_from_syncd(touched, states) == 1


def test_the_guard_fires_on_more_than_half_of_twenty() -> None:
    with pytest.raises(TakeoverError) as err:
        check_takeover(11, lambda: 20, ratio=0.5, min_fields=20)
    msg = str(err.value)
    assert "11 of the 20 fields" in msg
    assert "restored" in msg and "bulk import" in msg
    assert "syncd owners reset" in msg and "takeover_ratio" in msg
    assert isinstance(err.value, MassLossError) and err.value.exit_code == EXIT_PARTIAL
    check_takeover(10, lambda: 20, ratio=0.5, min_fields=20)  # exactly half: people's edits
    check_takeover(19, lambda: 19, ratio=0.5, min_fields=20)  # too few fields to judge


def test_the_store_is_not_asked_when_nothing_is_taken() -> None:
    def never() -> int:
        raise AssertionError("asked")

    check_takeover(0, never, ratio=0.5, min_fields=0)


@given(
    taken=st.integers(0, 10_000),
    written=st.integers(0, 10_000),
    ratio=st.floats(0.01, 1.0),
    min_fields=st.integers(0, 100),
)
def test_the_guard_fires_exactly_when_the_share_is_exceeded(
    taken: int, written: int, ratio: float, min_fields: int
) -> None:
    fires = written >= min_fields and taken > written * ratio
    assert TakeoverCheck(taken, written, ratio, min_fields).fires is fires
    if fires:
        with pytest.raises(TakeoverError):
            check_takeover(taken, lambda: written, ratio=ratio, min_fields=min_fields)
    else:
        check_takeover(taken, lambda: written, ratio=ratio, min_fields=min_fields)


def test_a_ratio_of_one_never_fires() -> None:
    check_takeover(500, lambda: 500, ratio=1.0, min_fields=0)
