"""`python -m syncd.sim`: serve the simulators on loopback in the foreground until Ctrl-C.

python -m syncd.sim --contacts 5000 --config /tmp/sim.toml --links /tmp/links.csv
syncd --config /tmp/sim.toml links import /tmp/links.csv && syncd --config /tmp/sim.toml --sync-now
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from syncd.sim.dataset import Dataset
from syncd.sim.launch import VENDORS, Simulators


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncd.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=300, help="size of the seeded phonebook (0..500000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--vendors",
        default=",".join(VENDORS),
        help="comma-separated vendors to simulate (default: all three)",
    )
    parser.add_argument("--config", type=Path, help="write a syncd config pointing at the simulators here")
    parser.add_argument("--state-url", default=None, help="state_url for the written config")
    parser.add_argument("--links", type=Path, help="write the operator's links CSV here")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every PBX response")
    parser.add_argument("--error-every", type=int, default=0, help="every Nth PBX request answers 503")
    args = parser.parse_args(argv)
    if not 0 <= args.contacts <= 500_000:
        parser.error("--contacts must be between 0 and 500000")
    vendors = [v for v in args.vendors.split(",") if v]
    unknown = set(vendors) - set(VENDORS)
    if unknown:
        parser.error(f"unknown vendors: {', '.join(sorted(unknown))}")
    print(f"building a phonebook of {args.contacts} contacts...", file=sys.stderr)
    sims = Simulators(Dataset(args.contacts, seed=args.seed), vendors=vendors)
    sims.pbx.faults.latency = args.latency
    sims.pbx.faults.error_every = args.error_every
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with sims:
        for name, server in sims.servers.items():
            print(f"{name:<11} {server.url}")
        if args.config:
            state_url = args.state_url or f"sqlite:///{args.config.with_suffix('.db').resolve()}"
            sims.write_config(args.config, state_url)
            print(f"config      {args.config}")
        if args.links:
            sims.write_links(args.links)
            print(f"links       {args.links}")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
