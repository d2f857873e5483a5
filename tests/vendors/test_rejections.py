"""The shared `vendor.value_rejected` event: syncd's field names, the merge's reasons, the contact ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from syncd.merge import _GROUPS, SkipReason
from syncd.model import EnrichmentResult, Outcome, PhoneKind, Vendor
from syncd.vendors.base import PHONE_FIELD, log_rejected_value, phone_field, rejections_by_contact

AT = datetime(2026, 1, 1, tzinfo=UTC)


def found(contact_id: int, vendor_id: str | None) -> EnrichmentResult:
    return EnrichmentResult(
        vendor=Vendor.leadfeeder,
        contact_id=contact_id,
        outcome=Outcome.found,
        fetched_at=AT,
        vendor_id=vendor_id,
    )


def test_a_record_rejection_is_logged_once_per_contact_that_got_the_record() -> None:
    with capture_logs() as logs, rejections_by_contact(Vendor.leadfeeder) as done:
        log_rejected_value(Vendor.leadfeeder, "email", SkipReason.invalid_email, vendor_id="a")
        log_rejected_value(Vendor.leadfeeder, "mobile_number", SkipReason.invalid_number, vendor_id="b")
        log_rejected_value(Vendor.leadfeeder, "email", SkipReason.invalid_email, vendor_id="gone")
        assert logs == []  # nothing before the results tie records to contacts
        done.extend([found(1, "a"), found(2, "a"), found(3, "b"), found(4, None)])
    got = sorted((e["contact_id"] or 0, e["vendor_id"], e["field"], e["reason"]) for e in logs)
    assert got == [
        (0, "gone", "email", "invalid email"),  # a record no contact got: logged, without a contact
        (1, "a", "email", "invalid email"),
        (2, "a", "email", "invalid email"),
        (3, "b", "mobile_number", "invalid number"),
    ]
    assert all(e["event"] == "vendor.value_rejected" and e["vendor"] == "leadfeeder" for e in logs)


def test_a_rejection_with_its_contact_is_logged_at_once() -> None:
    with capture_logs() as logs:
        with rejections_by_contact(Vendor.insideview):
            log_rejected_value(
                Vendor.insideview, "business_number", SkipReason.invalid_number, contact_id=7, vendor_id="x"
            )
            assert [e["contact_id"] for e in logs] == [7]
        log_rejected_value(Vendor.insideview, "email", SkipReason.invalid_email, vendor_id="y")
    assert [(e["contact_id"], e["vendor_id"]) for e in logs] == [(7, "x"), (None, "y")]


def test_nothing_collected_is_logged_when_the_lookup_raises() -> None:
    with capture_logs() as logs, pytest.raises(RuntimeError), rejections_by_contact(Vendor.contactout):
        log_rejected_value(Vendor.contactout, "email", SkipReason.invalid_email, vendor_id="a")
        raise RuntimeError("the call failed")
    assert logs == []


@pytest.mark.parametrize("kind", list(PhoneKind))
def test_a_number_is_named_after_the_first_slot_the_merge_files_its_kind_in(kind: PhoneKind) -> None:
    [group] = [g for g in _GROUPS if kind in g.kinds]
    assert phone_field(kind) == PHONE_FIELD[kind] == group.slots[0][0].value
    assert phone_field(None) == "other_number"
