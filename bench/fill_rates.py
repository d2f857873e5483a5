"""Fill rates on the demo dataset: one real sync of N contacts against the bundled simulators.

`python -m bench.fill_rates [N]` (default 2000) prints JSON: per vendor the contacts found, the credits
spent, the emails, titles and numbers written (numbers per slot) and numbers per found contact; then the
switchboards skipped and the run's skip counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from syncd.cli import run_once
from syncd.config import load_config
from syncd.links import import_links_file
from syncd.sim.dataset import Dataset
from syncd.sim.launch import Simulators
from syncd.store import StateStore


def measure(size: int, seed: int = 42) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="syncd-fill-"))
    with Simulators(Dataset(size, seed=seed)) as sims:
        url = f"sqlite:///{work / 'state.db'}"
        config = load_config(sims.write_config(work / "syncd.toml", url))
        links = sims.write_links(work / "links.csv")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            asyncio.run(import_links_file(config, links, stream=io.StringIO()))
            code = run_once(config)
        store = StateStore.open(url)
        try:
            rows = store.history()
            counts = store.recent_runs(1)[0].counts
        finally:
            store.close()
    written: dict[str, Counter[str]] = {}
    for row in rows:
        tally = written.setdefault(row.source, Counter())
        if row.field in ("email", "title"):
            tally[row.field] += 1
        else:
            tally["numbers"] += 1
            tally[row.field] += 1
    vendors: dict[str, Any] = {}
    for vendor, t in counts.get("vendors", {}).items():
        c = written.get(vendor, Counter())
        found = t.get("found", 0)
        vendors[vendor] = {
            "found": found,
            "credits": t.get("credits"),
            "email": c["email"],
            "title": c["title"],
            "numbers": c["numbers"],
            "numbers_per_found": round(c["numbers"] / found, 3) if found else None,
            "slots": {k: v for k, v in sorted(c.items()) if k not in ("email", "title", "numbers")},
        }
    return {
        "contacts": size,
        "exit": code,
        "vendors": vendors,
        "switchboards_skipped": counts.get("switchboards_skipped"),
        "skipped": counts.get("skipped"),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2000), indent=1))
