"""Issue 10: resuming N pending journal entries against pushing N fresh updates, same PBX latency.

Set-up as in bench/push.py (the PBX simulator in its own process, latency L on every answer, a stub vendor
that proposes an update for every contact). Two runs per round, on one store and one PBX:
1. a run stopped (as by SIGTERM) right after its plan is committed: every update is a pending journal
   entry, none sent (the run is recorded `interrupted`);
2. the next run, whose journal resume sends them all; timed: `SyncEngine._resume_journal` alone.
The fresh push is timed on its own PBX and store, as bench/push.py does (`SyncEngine._push` alone).

    python -m bench.resume [N] [concurrency ...]      (default: 1500 entries, concurrency 4)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import SimProcess, print_table
from bench.push import LATENCY, TimedPushEngine, TitleProvider, push_config
from syncd.config import Config
from syncd.engine import RunSummary, SyncEngine
from syncd.logs import configure_logging
from syncd.model import Vendor
from syncd.sim.dataset import Dataset
from syncd.store import StateStore


class StoppedAtPush(SyncEngine):
    """Stops itself (the engine's stop event, as SIGTERM sets it) when the push is about to start."""

    async def _push(self, pbx: Any, run_id: str, entries: Any, pulled: Any, summary: Any) -> None:
        self.stop.set()
        await super()._push(pbx, run_id, entries, pulled, summary)


class TimedResumeEngine(SyncEngine):
    resume_s = 0.0

    async def _resume_journal(self, pbx: Any, run_id: str, summary: RunSummary) -> None:
        started = time.perf_counter()
        try:
            await super()._resume_journal(pbx, run_id, summary)
        finally:
            self.resume_s = time.perf_counter() - started


def _config(work: Path, name: str, sims: SimProcess, concurrency: int) -> Config:
    return push_config(sims, concurrency, work / f"{name}.toml", work / f"{name}.db")


def _run(
    engine_type: type[SyncEngine], config: Any, dataset: Dataset, **attrs: Any
) -> tuple[Any, RunSummary]:
    store = StateStore.open(config.sync.state_url)
    try:
        with store.lock():
            engine = engine_type(config, store, providers={Vendor.insideview: TitleProvider(dataset)})
            for k, v in attrs.items():
                setattr(engine, k, v)
            summary = asyncio.run(engine.run())
    finally:
        store.close()
    return engine, summary


def bench_resume(entries: int = 1500, concurrencies: tuple[int, ...] = (4,)) -> list[dict[str, Any]]:
    dataset = Dataset(entries)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-resume-") as tmp:
        work = Path(tmp)
        log_stream = (work / "syncd.log").open("w", encoding="utf-8")
        configure_logging(json=True, verbosity=1, stream=log_stream)
        try:
            for c in concurrencies:
                with SimProcess(entries, ["pbx"], faults={"pbx": {"latency": LATENCY}}) as sims:
                    config = _config(work, f"resume-c{c}", sims, c)
                    _, stopped = _run(StoppedAtPush, config, dataset)
                    pending = stopped.counts.get("pending", 0)
                    engine, resumed = _run(TimedResumeEngine, config, dataset)
                    sent = resumed.counts.get("journal_resumed", {}).get("sent", 0)
                    resume_s = engine.resume_s  # type: ignore[attr-defined]
                with SimProcess(entries, ["pbx"], faults={"pbx": {"latency": LATENCY}}) as sims:
                    config = _config(work, f"fresh-c{c}", sims, c)
                    fresh, pushed = _run(TimedPushEngine, config, dataset, sims=sims)
                rows.append(
                    {
                        "push_concurrency": c,
                        "stopped_outcome": stopped.outcome,
                        "pending": pending,
                        "resumed_sent": sent,
                        "resume_s": resume_s,
                        "fresh_updates": fresh.entries,  # type: ignore[attr-defined]
                        "fresh_applied": pushed.counts.get("updated", 0),
                        "push_s": fresh.push_s,  # type: ignore[attr-defined]
                    }
                )
        finally:
            configure_logging(json=False, verbosity=0)
            log_stream.close()
    table: list[list[Any]] = [
        ["c", "stopped run", "pending", "resumed", "resume wall", "fresh updates", "push wall"]
    ]
    for r in rows:
        table.append(
            [
                r["push_concurrency"],
                r["stopped_outcome"],
                f"{r['pending']:,}",
                f"{r['resumed_sent']:,}",
                f"{r['resume_s']:.2f} s",
                f"{r['fresh_applied']:,}",
                f"{r['push_s']:.2f} s",
            ]
        )
    print_table(
        f"Resume of pending journal entries vs a fresh push, PBX latency {LATENCY * 1000:.0f} ms", table
    )
    return rows


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    cs = tuple(int(a) for a in sys.argv[2:]) or (4,)
    bench_resume(n, cs)
