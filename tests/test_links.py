"""`links import` keeps one person's id off another contact: ids shared inside a file, ids the store already
links to someone else (that link stands), and the demo's links file with its conflicting rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd.links import Row, id_key, read_rows, shared_ids, taken_ids
from syncd.model import Vendor
from syncd.sim.dataset import INSIDEVIEW_ID_BASE, LEADFEEDER_ID_BASE, Dataset, Route
from syncd.store import Link
from tests.e2e.harness import Env, EnvFactory

HEADER = "pbx_contact_id,vendor,vendor_id\n"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_id_keys_compare_ids_as_the_vendor_means_them() -> None:
    assert id_key(Vendor.insideview, "0016000001") == id_key("insideview", "16000001")
    assert id_key(Vendor.contactout, "https://www.linkedin.com/in/Jane-Doe/") == id_key(
        Vendor.contactout, "http://linkedin.com/in/jane-doe"
    )
    assert id_key(Vendor.leadfeeder, "AbC") != id_key(Vendor.leadfeeder, "abc")
    assert id_key(Vendor.insideview, "16000001") != id_key(Vendor.insideview, "16000002")


def test_a_file_giving_one_id_to_two_contacts_has_every_such_row_rejected() -> None:
    rows, rejected = read_rows(
        HEADER
        + "1,insideview,16000001\n"  # 2: shared with line 4
        + "2,insideview,16000002\n"  # 3: ok
        + "5,insideview,016000001\n"  # 4: the id of line 2 again (leading zero aside)
        + "1,contactout,https://www.linkedin.com/in/jane/\n"  # 5: ok (another vendor)
        + "6,contactout,https://linkedin.com/in/JANE\n"  # 6: the same profile as line 5
        + "7,leadfeeder,abc\n"  # 7: ok
        + "8,leadfeeder,ABC\n"  # 8: ok: Leadfeeder ids are case-sensitive
    )
    assert [(r.line, r.contact_id) for r in rows] == [(3, 2), (7, 7), (8, 8)]
    reasons = {r.line: r.reason for r in rejected}
    assert sorted(reasons) == [2, 4, 5, 6]
    assert "is also given to line 4 (contact 5)" in reasons[2]
    assert "is also given to line 2 (contact 1)" in reasons[4]
    assert "line 6 (contact 6)" in reasons[5] and "line 5 (contact 1)" in reasons[6]


def test_the_same_contact_listing_an_id_twice_is_a_duplicate_not_a_conflict() -> None:
    rows, rejected = read_rows(HEADER + "1,insideview,16000001\n1,insideview,16000001\n")
    assert [r.line for r in rows] == [2]
    assert [(r.line, r.reason) for r in rejected] == [(3, "duplicate of line 2 (same contact and vendor)")]


def link(cid: int, vendor: str, vendor_id: str | None, method: str = "imported") -> Link:
    return Link(cid, vendor, vendor_id, method, 1.0, NOW)


def test_an_id_the_store_links_to_another_contact_is_refused_and_that_link_stands() -> None:
    rows = [
        Row(2, 5, Vendor.insideview, "16000001"),  # contact 1's id
        Row(3, 1, Vendor.insideview, "16000001"),  # contact 1 again: fine
        Row(4, 6, Vendor.contactout, "https://www.linkedin.com/in/bob"),  # matched to 9 already
        Row(5, 7, Vendor.contactout, "https://www.linkedin.com/in/carol"),  # only an unmatched row there
        Row(6, 8, Vendor.leadfeeder, "16000001"),  # same text, other vendor
    ]
    links = [
        link(1, "insideview", "16000001"),
        link(9, "contactout", "https://linkedin.com/in/Bob/", "matched"),
        link(3, "contactout", None, "unmatched"),
    ]
    kept, rejected = taken_ids(rows, links)
    assert [r.line for r in kept] == [3, 5, 6]
    assert [(r.line, r.reason) for r in rejected] == [
        (2, "insideview id '16000001' is already linked to contact 1 (that link stands)"),
        (
            4,
            "contactout id 'https://www.linkedin.com/in/bob' is already linked to contact 9 (that link stands)",
        ),
    ]


def test_shared_ids_keeps_rows_that_share_nothing() -> None:
    rows = [Row(i + 2, i + 1, Vendor.insideview, str(16_000_000 + i)) for i in range(50)]
    assert shared_ids(rows) == (rows, [])


# --- against the PBX simulator and a real store ---------------------------------------------------------


@pytest.fixture
def env(make_env: EnvFactory) -> Env:
    return make_env(10)


def test_importing_another_contacts_id_is_refused_with_its_line_and_the_first_link_stands(env: Env) -> None:
    first = env.dir / "first.csv"
    first.write_text(
        HEADER + f"1,insideview,{INSIDEVIEW_ID_BASE + 1}\n2,leadfeeder,{LEADFEEDER_ID_BASE + 2}\n"
    )
    assert env.cli("links", "import", str(first)).code == 0
    second = env.dir / "second.csv"
    second.write_text(
        HEADER
        + f"5,insideview,{INSIDEVIEW_ID_BASE + 1}\n"  # 2: contact 1's id
        + f"1,leadfeeder,{LEADFEEDER_ID_BASE + 1}\n"  # 3: new and free: imported
        + f"3,leadfeeder,{LEADFEEDER_ID_BASE + 2}\n"  # 4: contact 2's id
        + f"4,insideview,{INSIDEVIEW_ID_BASE + 4}\n"  # 5: new and free: imported
    )
    result = env.cli("links", "import", str(second))
    assert result.code == 1
    rejected = [line for line in result.out.splitlines() if ": rejected: " in line]
    assert rejected == [
        f"{second}:2: rejected: insideview id '{INSIDEVIEW_ID_BASE + 1}' is already linked to contact 1 "
        "(that link stands)",
        f"{second}:4: rejected: leadfeeder id '{LEADFEEDER_ID_BASE + 2}' is already linked to contact 2 "
        "(that link stands)",
    ]
    assert "2 link(s) imported, 2 row(s) rejected" in result.out
    with env.store() as store:
        links = store.links_for(None, ids=range(1, 11))
    assert {key: lk.vendor_id for key, lk in links.items()} == {
        (1, "insideview"): str(INSIDEVIEW_ID_BASE + 1),
        (1, "leadfeeder"): str(LEADFEEDER_ID_BASE + 1),
        (2, "leadfeeder"): str(LEADFEEDER_ID_BASE + 2),
        (4, "insideview"): str(INSIDEVIEW_ID_BASE + 4),
    }


def test_a_deleted_contacts_link_does_not_keep_its_id_from_the_persons_new_contact(env: Env) -> None:
    first = env.dir / "first.csv"
    first.write_text(HEADER + f"3,insideview,{INSIDEVIEW_ID_BASE + 3}\n")
    assert env.cli("links", "import", str(first)).code == 0
    assert env.sync().code == 0
    env.pbx.delete_contact(3)
    assert env.sync().code == 0  # contact 3 is a tombstone now
    again = env.dir / "again.csv"
    again.write_text(HEADER + f"4,insideview,{INSIDEVIEW_ID_BASE + 3}\n")
    result = env.cli("links", "import", str(again))
    assert result.code == 0, result.err
    with env.store() as store:
        assert store.links_for("insideview")[(4, "insideview")].vendor_id == str(INSIDEVIEW_ID_BASE + 3)


def test_the_demo_links_file_holds_a_shared_id_and_a_wrong_id() -> None:
    dataset = Dataset(300, seed=42)
    clean = list(dataset.links())
    rows = list(dataset.links(conflicts=True))
    holders: dict[tuple[str, str], set[int]] = {}
    for cid, vendor, vid in rows:
        holders.setdefault((vendor, vid), set()).add(cid)
    shared = [key for key, cids in holders.items() if len(cids) > 1]
    assert len(shared) == 1  # one id given to two contacts: both rows are refused at import
    wrong = [
        (cid, vid)
        for cid, vendor, vid in rows
        if vendor == "insideview" and int(vid) - INSIDEVIEW_ID_BASE != cid and (vendor, vid) not in shared
    ]
    assert len(wrong) == 1  # one contact given someone else's id, a row import cannot tell from a right one
    cid, vid = wrong[0]
    owner = int(vid) - INSIDEVIEW_ID_BASE
    assert dataset.route(owner) is Route.insideview and dataset.route(cid) is not Route.insideview
    assert dataset.person(owner).full_name != dataset.person(cid).full_name
    assert (owner, "insideview", vid) in clean and (owner, "insideview", vid) not in rows
