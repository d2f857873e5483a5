"""The simulators, served from their own process so that the process being measured is syncd alone.

`python -m bench.simproc '<json spec>'` builds one seeded `Dataset` and the simulators named in the spec,
serves each on a free loopback port (`SimServer`), then prints one JSON line
`{"ready": true, "urls": {...}, "build_s": ...}` on stdout and answers commands, one JSON line each:

    stats                      -> {"pbx": {...}, "insideview": {...}, ...} (calls, credits, updates)
    faults <sim> <json>        -> set attributes of that simulator's `Faults` (e.g. {"latency": 0.02})
    quit                       -> stop the servers and exit

The parent (`bench.common.SimProcess`) drives it; the spec is
`{"contacts": N, "sims": [...], "dataset": {...}, "options": {"pbx": {...}, ...}, "faults": {...}}`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from syncd.sim.dataset import Dataset
from syncd.sim.faults import Faults
from syncd.sim.launch import (
    CO_TOKEN,
    IV_CLIENT_ID,
    IV_SECRET,
    LF_ACCOUNT,
    LF_KEY,
    PBX_CLIENT_ID,
    PBX_SECRET,
)
from syncd.sim.server import SimServer


def build(spec: dict[str, Any]) -> dict[str, Any]:
    dataset = Dataset(int(spec["contacts"]), **spec.get("dataset", {}))
    options: dict[str, dict[str, Any]] = spec.get("options", {})
    faults: dict[str, dict[str, Any]] = spec.get("faults", {})
    sims: dict[str, Any] = {}
    for name in spec["sims"]:
        opts = options.get(name, {})
        fault = Faults(**faults.get(name, {}))
        if name == "pbx":
            from syncd.sim.pbx import PbxSimulator

            sims[name] = PbxSimulator(
                dataset, client_id=PBX_CLIENT_ID, client_secret=PBX_SECRET, faults=fault, **opts
            )
        elif name == "insideview":
            from syncd.sim.insideview import InsideViewSimulator

            sims[name] = InsideViewSimulator(
                dataset, client_id=IV_CLIENT_ID, client_secret=IV_SECRET, faults=fault, **opts
            )
        elif name == "leadfeeder":
            from syncd.sim.leadfeeder import LeadfeederSimulator

            sims[name] = LeadfeederSimulator(
                dataset, api_key=LF_KEY, account_id=LF_ACCOUNT, faults=fault, **opts
            )
        elif name == "contactout":
            from syncd.sim.contactout import ContactOutSimulator

            sim = ContactOutSimulator(dataset, token=CO_TOKEN, faults=fault, **opts)
            sim.build_indexes()  # one pass over the dataset, before anyone measures anything
            sims[name] = sim
        else:
            raise SystemExit(f"unknown simulator {name!r}")
    return sims


def stats(sims: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, sim in sims.items():
        entry: dict[str, Any] = {"calls": dict(sim.calls), "requests": sim.faults.calls}
        if name == "pbx":
            entry["updates"] = len(sim.updates)
        elif name == "insideview":
            entry["credits"] = sim.credits_charged
            entry["jobs"] = len(sim.jobs)
            entry["bulk_calls_answered"] = len(sim.bulk_sizes)
            entry["throttled"] = sim.throttled
        elif name == "leadfeeder":
            entry["credits"] = sim.credits_charged
        elif name == "contactout":
            entry["credits"] = dict(sim.charged)
        out[name] = entry
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    started = time.perf_counter()
    sims = build(spec)
    servers = {name: SimServer(sim.app).start() for name, sim in sims.items()}
    ready = {
        "ready": True,
        "urls": {name: server.url for name, server in servers.items()},
        "build_s": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(ready), flush=True)
    try:
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            if command == "stats":
                print(json.dumps(stats(sims)), flush=True)
            elif command == "faults":
                name, _, values = rest.partition(" ")
                for key, value in json.loads(values).items():
                    setattr(sims[name].faults, key, value)
                print(json.dumps({"ok": True}), flush=True)
            elif command == "quit":
                break
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
