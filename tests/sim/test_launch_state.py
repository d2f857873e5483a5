"""Simulators.save_state / resume: a kept demo's simulators come back with its PBX phonebook and ports."""

from __future__ import annotations

from pathlib import Path

from syncd.sim.dataset import Dataset
from syncd.sim.launch import Simulators

NUMBERS = [{"num_type": "mobile_number", "number": "+4915112345"}]


def test_saved_simulators_come_back_with_the_phonebook_and_the_ports(tmp_path: Path) -> None:
    state = tmp_path / "simulators.json"
    with Simulators(Dataset(20, seed=7), vendors=("leadfeeder",)) as sims:
        sims.pbx.edit_contact(3, email="typed.by@person.example")
        sims.pbx.delete_contact(5)
        added = sims.pbx.add_contact(
            first_name="New", last_name="Person", company="Acme", number_list=NUMBERS
        )
        ports = {name: server.port for name, server in sims.servers.items()}
        before = {cid: sims.pbx.contact(cid) for cid in sims.pbx.backup()}
        sims.save_state(state)
    back = Simulators.resume(state)
    assert back.vendors == ("leadfeeder",)
    assert back.dataset.size == 20 and back.dataset.seed == 7
    assert {cid: back.pbx.contact(cid) for cid in back.pbx.backup()} == before
    assert back.pbx.contact(3)["email"] == "typed.by@person.example"
    assert 5 not in back.pbx.backup() and added in back.pbx.backup()
    assert back.pbx.add_contact(first_name="Next", company="Acme", number_list=NUMBERS) == added + 1
    with back:
        assert {name: server.port for name, server in back.servers.items()} == ports
