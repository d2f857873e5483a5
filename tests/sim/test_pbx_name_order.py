"""The PBX simulator's `name_order` switch: the flat form's display name as either reading of the
undocumented word order; the detailed form's first and last name are never affected."""

from __future__ import annotations

import pytest

from syncd.sim.dataset import Dataset
from syncd.sim.pbx import PbxSimulator
from tests.sim.test_pbx_sim import serve


@pytest.mark.parametrize("switch_later", [False, True])
def test_last_first_renders_the_flat_name_last_name_first(switch_later: bool) -> None:
    dataset = Dataset(30)
    sim = PbxSimulator(dataset) if switch_later else PbxSimulator(dataset, name_order="last_first")
    if switch_later:
        sim.set_name_order("last_first")
    with serve(sim) as api:
        listed = {c["id"]: c for c in api.get("company_contact/list", page=1, page_size=100)["data"]}
        detailed = {c["id"]: c for c in api.get("company_contact/query", ids="1,2,3")["data"]}
    for seed in dataset.contacts():
        expected = f"{seed.last_name} {seed.first_name}" if seed.last_name else seed.first_name
        assert listed[seed.id]["contact_name"] == expected
    for cid, record in detailed.items():
        seed = dataset.contact(cid - 1)
        assert (record["first_name"], record["last_name"]) == (seed.first_name, seed.last_name)


def test_the_default_is_first_last_and_nonsense_is_refused() -> None:
    dataset = Dataset(5)
    with serve(PbxSimulator(dataset)) as api:
        listed = api.get("company_contact/list", page=1, page_size=10)["data"]
    seed = dataset.contact(0)
    assert listed[0]["contact_name"] == f"{seed.first_name} {seed.last_name}".strip()
    with pytest.raises(ValueError, match="name_order"):
        PbxSimulator(dataset, name_order="random")
