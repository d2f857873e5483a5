"""Start the four simulators on loopback around one seeded dataset, and write a config pointing at them.

Used by the end-to-end tests, the benchmark, `syncd demo` and `python -m syncd.sim`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from syncd.sim.contactout import ContactOutSimulator
from syncd.sim.dataset import Dataset
from syncd.sim.faults import Faults
from syncd.sim.insideview import InsideViewSimulator
from syncd.sim.leadfeeder import LeadfeederSimulator
from syncd.sim.pbx import PbxSimulator
from syncd.sim.server import SimServer

PBX_CLIENT_ID = "syncd-demo-client"
PBX_SECRET = "syncd-demo-secret"  # noqa: S105 (the simulator's demo account)
IV_CLIENT_ID = "iv-demo-client"
IV_SECRET = "iv-demo-secret"  # noqa: S105
LF_KEY = "lf-demo-key"
LF_ACCOUNT = "123456"
CO_TOKEN = "co-demo-token"  # noqa: S105
VENDORS = ("insideview", "leadfeeder", "contactout")


@dataclass
class SimOptions:
    pbx: dict[str, Any] = field(default_factory=dict)
    insideview: dict[str, Any] = field(default_factory=dict)
    leadfeeder: dict[str, Any] = field(default_factory=dict)
    contactout: dict[str, Any] = field(default_factory=dict)


class Simulators:
    """`with Simulators(Dataset(300)) as sims: sims.write_config(path, state_url)`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        vendors: Iterable[str] = VENDORS,
        options: SimOptions | None = None,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        opts = options or SimOptions()
        self.dataset = dataset
        self.vendors = tuple(vendors)
        self.ports = dict(ports or {})  # simulator name -> fixed port (0 or absent: any free port)
        self.pbx = PbxSimulator(
            dataset, client_id=PBX_CLIENT_ID, client_secret=PBX_SECRET, faults=Faults(), **opts.pbx
        )
        self.insideview = InsideViewSimulator(
            dataset, client_id=IV_CLIENT_ID, client_secret=IV_SECRET, faults=Faults(), **opts.insideview
        )
        self.leadfeeder = LeadfeederSimulator(
            dataset, api_key=LF_KEY, account_id=LF_ACCOUNT, faults=Faults(), **opts.leadfeeder
        )
        # the demo and tests raise ContactOut's limits; the client side is raised to match in config_text
        co_opts = {"search_per_minute": 12_000, "general_per_minute": 12_000, **opts.contactout}
        self.contactout = ContactOutSimulator(dataset, token=CO_TOKEN, faults=Faults(), **co_opts)
        self.servers: dict[str, SimServer] = {}

    def start(self) -> Simulators:
        apps = {"pbx": self.pbx.app}
        for name in self.vendors:
            apps[name] = getattr(self, name).app
        try:
            for name, app in apps.items():
                self.servers[name] = SimServer(app, port=self.ports.get(name, 0)).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> Simulators:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def save_state(self, path: Path) -> Path:
        """What `resume` needs to serve these simulators again: the dataset's size and seed, the vendors,
        the ports and the PBX phonebook as it is now (the vendors' answers follow from the dataset)."""
        state = {
            "contacts": self.dataset.size,
            "seed": self.dataset.seed,
            "vendors": list(self.vendors),
            "ports": {name: server.port for name, server in self.servers.items()} or self.ports,
            "pbx_phonebook": self.pbx.phonebook_json(),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def resume(cls, path: Path) -> Simulators:
        """Simulators as `save_state` left them: same dataset, vendors, ports and PBX phonebook (not started)."""
        state = json.loads(path.read_text(encoding="utf-8"))
        sims = cls(
            Dataset(int(state["contacts"]), seed=int(state["seed"])),
            vendors=state["vendors"],
            ports={str(k): int(v) for k, v in state["ports"].items()},
        )
        sims.pbx.load_phonebook_json(state["pbx_phonebook"])
        return sims

    def url(self, name: str) -> str:
        return self.servers[name].url

    def all_faults(self) -> list[Faults]:
        sims: list[Any] = [self.pbx, *(getattr(self, v) for v in self.vendors)]
        return [s.faults for s in sims]

    def config_text(self, state_url: str, *, extra: str = "", interval: str = "15m") -> str:
        """A complete config for these simulators (inline demo secrets: write it with mode 0600)."""
        lines = [
            "# Written by syncd for its bundled simulators on loopback.",
            "[sync]",
            f'interval = "{interval}"',
            f'state_url = "{state_url}"',
            'default_region = "US"',
            "",
            "[pbx]",
            f'base_url = "{self.url("pbx")}"',
            f'client_id = "{PBX_CLIENT_ID}"',
            f'client_secret = "{PBX_SECRET}"',
            "rate_limit = 500",
            "",
            "[enrich]",
            f"order = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in self.vendors)}]",
            "",
        ]
        if "insideview" in self.vendors:
            lines += [
                "[vendors.insideview]",
                f'base_url = "{self.url("insideview")}"',
                f'login_url = "{self.url("insideview")}"',
                f'client_id = "{IV_CLIENT_ID}"',
                f'client_secret = "{IV_SECRET}"',
                "monthly_credit_budget = 100000",
                "rate_limit = 50",
                "",
            ]
        if "leadfeeder" in self.vendors:
            lines += [
                "[vendors.leadfeeder]",
                f'base_url = "{self.url("leadfeeder")}"',
                f'api_key = "{LF_KEY}"',
                f'account_id = "{LF_ACCOUNT}"',
                "monthly_credit_budget = 100000",
                "",
            ]
        if "contactout" in self.vendors:
            lines += [
                "[vendors.contactout]",
                f'base_url = "{self.url("contactout")}"',
                f'token = "{CO_TOKEN}"',
                "monthly_credit_budget = 100000",
                "rate_limit = 200",
                "",
            ]
        return "\n".join(lines) + "\n" + extra

    def write_config(self, path: Path, state_url: str, *, extra: str = "", interval: str = "15m") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.config_text(state_url, extra=extra, interval=interval))
        return path

    def write_links(self, path: Path, *, conflicts: bool = False) -> Path:
        """The identities an operator would import: InsideView and Leadfeeder ids of the seeded people
        (`conflicts`: with a wrong and a shared id, see `Dataset.conflicting_links`)."""
        with path.open("w", encoding="utf-8") as handle:
            handle.write("pbx_contact_id,vendor,vendor_id\n")
            for cid, vendor, vendor_id in self.dataset.links(conflicts=conflicts):
                if vendor in self.vendors:
                    handle.write(f"{cid},{vendor},{vendor_id}\n")
        return path
