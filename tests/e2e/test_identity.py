"""Never one person's data in another contact, and names as the PBX holds them, through the whole run:
the demo's links file (a shared id refused at import, a wrong id refused as an identity mismatch at the
run), and ContactOut matching against a PBX that renders contact_name "Last First"."""

from __future__ import annotations

from typing import Any

from syncd.sim.dataset import INSIDEVIEW_ID_BASE, Dataset
from syncd.sim.launch import Simulators
from tests.e2e.harness import EnvFactory, Result


def vendors_of(result: Result) -> dict[str, dict[str, Any]]:
    [event] = result.event("run.finished")
    vendors: dict[str, dict[str, Any]] = event["vendors"]
    return vendors


def vendor_calls(sims: Simulators) -> int:
    return sum(sum(s.calls.values()) for s in (sims.insideview, sims.leadfeeder, sims.contactout))


def test_the_demo_links_file_refuses_a_shared_id_and_the_run_refuses_a_wrong_one(
    make_env: EnvFactory,
) -> None:
    dataset = Dataset(60)
    env = make_env(dataset=dataset)
    ((wrong_owner, wrong_cid),) = dataset.conflicting_links()[0].items()
    ((shared_owner, shared_cid),) = dataset.conflicting_links()[1].items()
    path = env.sims.write_links(env.dir / "links.csv", conflicts=True)
    imported = env.cli("links", "import", str(path))
    assert imported.code == 1
    rejected = [line for line in imported.out.splitlines() if ": rejected: " in line]
    assert len(rejected) == 2 and all("is also given to line" in line for line in rejected)
    with env.store() as store:
        links = store.links_for("insideview")
    assert links[(wrong_cid, "insideview")].vendor_id == str(INSIDEVIEW_ID_BASE + wrong_owner)
    assert (shared_cid, "insideview") not in links and (shared_owner, "insideview") not in links

    first = env.sync()
    assert first.code == 0, first.err
    assert vendors_of(first)["insideview"]["identity_mismatches"] == 1
    [mismatch] = first.event("vendor.identity_mismatch")
    assert mismatch["contact_id"] == wrong_cid
    assert mismatch["vendor_name"] == dataset.person(wrong_owner).full_name
    assert mismatch["contact_name"] == dataset.person(wrong_cid).full_name
    with env.store() as store:
        written = [c for c in store.history() if c.contact_id == wrong_cid and c.source == "insideview"]
    assert written == []  # nothing of the other person's record reached the contact
    assert env.pbx.contact(wrong_cid)["email"] != dataset.person(wrong_owner).work_email

    calls = vendor_calls(env.sims)
    second = env.sync()
    assert second.code == 0, second.err
    assert vendor_calls(env.sims) == calls  # the refusal is cached: the wrong record is not bought again
    assert "identity_mismatches" not in vendors_of(second).get("insideview", {})


def contactout_found(make_env: EnvFactory, *, last_first: bool) -> tuple[int, Result]:
    def setup(sims: Simulators) -> None:
        sims.contactout.name_order = "given"  # a real index matches names in order
        # ContactOut knows these people by name + company only (not by the PBX's emails or numbers), so
        # every match rests on the name syncd sends
        index = sims.contactout._index()
        index.by_email.clear()
        index.by_phone.clear()
        if last_first:
            sims.pbx.set_name_order("last_first")

    env = make_env(dataset=Dataset(90), setup=setup)
    env.import_links()
    result = env.sync()
    assert result.code == 0, result.err
    return int(vendors_of(result)["contactout"]["found"]), result


def test_contactout_matches_as_many_contacts_whatever_word_order_the_pbx_displays(
    make_env: EnvFactory,
) -> None:
    plain, _ = contactout_found(make_env, last_first=False)
    flipped, result = contactout_found(make_env, last_first=True)
    assert plain >= 10
    assert flipped == plain
    assert not result.event("vendor.names_unavailable")
