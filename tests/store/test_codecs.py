"""JSON round trips of the model objects the store persists."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.model import (
    ContactUpdate,
    EmailKind,
    EnrichmentResult,
    FieldChange,
    FoundEmail,
    FoundPhone,
    NumberSlot,
    Outcome,
    PhoneKind,
    Vendor,
)
from syncd.store import (
    ChangeRecord,
    TokenRecord,
    lookup_fingerprint,
    month_of,
    result_from_json,
    result_to_json,
    update_from_json,
    update_to_json,
)

texts = st.text(max_size=30)
opt_texts = st.none() | texts
confidences = st.none() | st.floats(min_value=0, max_value=1, allow_nan=False)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))

emails = st.builds(
    FoundEmail,
    address=texts,
    kind=st.sampled_from(EmailKind),
    verification=opt_texts,
    confidence=confidences,
)
phones = st.builds(FoundPhone, number=texts, kind=st.sampled_from(PhoneKind), blacklisted=st.booleans())
results = st.builds(
    EnrichmentResult,
    vendor=st.sampled_from(Vendor),
    contact_id=st.integers(min_value=1, max_value=2**40),
    outcome=st.sampled_from(Outcome),
    fetched_at=moments,
    emails=st.lists(emails, max_size=3).map(tuple),
    phones=st.lists(phones, max_size=3).map(tuple),
    title=opt_texts,
    company=opt_texts,
    full_name=opt_texts,
    vendor_id=opt_texts,
    credits=st.integers(min_value=0, max_value=1000),
    error=opt_texts,
    matched_by=st.none() | st.sampled_from(["email", "phone", "name_company"]),
    match_confidence=confidences,
)


@st.composite
def updates(draw: st.DrawFn) -> ContactUpdate:
    cid = draw(st.integers(min_value=1, max_value=2**40))
    slots = draw(st.lists(st.sampled_from(NumberSlot), unique=True, max_size=4))
    numbers = draw(st.none() | st.just(tuple((s, draw(texts)) for s in slots)))
    changes = draw(
        st.lists(
            st.builds(
                FieldChange,
                contact_id=st.just(cid),
                field=st.sampled_from(["email", "title", *[s.value for s in NumberSlot]]),
                old=texts,
                new=texts,
                source=st.sampled_from([v.value for v in Vendor]),
                reason=st.sampled_from(["fill_empty", "refresh"]),
            ),
            max_size=4,
        ).map(tuple)
    )
    return ContactUpdate(
        contact_id=cid,
        precondition_hash=draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
        email=draw(opt_texts),
        remark=draw(opt_texts),
        job_title=draw(opt_texts),
        numbers=numbers,
        changes=changes,
    )


@given(results)
def test_result_round_trip(result: EnrichmentResult) -> None:
    assert result_from_json(result_to_json(result)) == result


@given(updates())
def test_update_round_trip(update: ContactUpdate) -> None:
    assert update_from_json(update_to_json(update)) == update


def test_update_keeps_none_apart_from_empty() -> None:
    u = ContactUpdate(contact_id=7, precondition_hash="h", email="", remark=None, numbers=())
    back = update_from_json(update_to_json(u))
    assert back.email == "" and back.remark is None and back.numbers == () and back.job_title is None


def test_result_fetched_at_is_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    r = EnrichmentResult(Vendor.contactout, 3, Outcome.found, datetime(2026, 11, 3, 10, 0, tzinfo=cet))
    back = result_from_json(result_to_json(r))
    assert back.fetched_at == r.fetched_at and back.fetched_at.tzinfo == UTC


def test_result_from_json_ignores_unknown_and_defaults_missing_keys() -> None:
    text = json.dumps(
        {
            "vendor": "leadfeeder",
            "contact_id": 5,
            "outcome": "not_found",
            "fetched_at": "2026-11-03T09:30:00+00:00",
            "a_field_from_the_future": [1, 2],
        }
    )
    r = result_from_json(text)
    assert r == EnrichmentResult(
        Vendor.leadfeeder, 5, Outcome.not_found, datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    )


def test_naive_datetimes_are_refused() -> None:
    r = EnrichmentResult(Vendor.insideview, 1, Outcome.found, datetime(2026, 11, 3, 9, 30))
    with pytest.raises(ValueError, match="naive datetime"):
        result_to_json(r)


def test_not_a_json_object_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        update_from_json("[1, 2]")


def test_token_repr_hides_token_values() -> None:
    tok = TokenRecord("access-SECRET-1", datetime(2026, 1, 1, tzinfo=UTC), "refresh-SECRET-2", None)
    assert "SECRET" not in repr(tok)


def test_month_of_uses_utc() -> None:
    late = datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert month_of(late) == "2026-12"


def test_change_record_as_dict_is_json_safe() -> None:
    rec = ChangeRecord(
        1, "run", datetime(2026, 11, 3, tzinfo=UTC), 9, "email", "", "a@b.c", "insideview", "fill_empty", 4
    )
    d = json.loads(json.dumps(rec.as_dict()))
    assert d["at"] == "2026-11-03T00:00:00+00:00"
    assert {"run_id", "at", "contact_id", "field", "old", "new", "source"} <= d.keys()


def test_lookup_fingerprint_ignores_noise_and_sees_real_changes() -> None:
    from syncd.model import LookupRequest

    base = LookupRequest(1, "Ada Lovelace", "Acme", "ada@acme.test", ("+15550100", "+15550101"))
    same = LookupRequest(1, " ada  LOVELACE ", "ACME", "Ada@Acme.test ", ("+15550101", "+15550100", ""))
    assert lookup_fingerprint(base) == lookup_fingerprint(same)
    for changed in (
        LookupRequest(1, "Ada King", "Acme", "ada@acme.test", base.phones),
        LookupRequest(1, "Ada Lovelace", "Initech", "ada@acme.test", base.phones),
        LookupRequest(1, "Ada Lovelace", "Acme", "", base.phones),
        LookupRequest(1, "Ada Lovelace", "Acme", "ada@acme.test", ("+15550100",)),
        LookupRequest(1, "Ada Lovelace", "Acme", "ada@acme.test", base.phones, vendor_id="iv-1"),
    ):
        assert lookup_fingerprint(changed) != lookup_fingerprint(base)
