"""Issue 4: the push phase's wall time for N updates against the bound set by PBX latency and concurrency.

Set-up (untimed): the PBX simulator in its own process holding N contacts, with `faults.latency` added
to every answer; one real `SyncEngine` run in this process, whose enrichment is a stub provider that
answers every contact at once with a job title (the Title line goes into the remark) and a work email
(written where the contact has none), so the plan holds one update per contact. The engine pulls, plans,
commits the journal and pushes exactly as `syncd --sync-now` does.

Timed: `SyncEngine._push` alone (pre-read of each chunk of 100, the updates under `sync.push_concurrency`,
the read-back of each chunk, the journal writes). The PBX calls are the simulator's count during the push;
the time spent in the state store's journal writes during the push is measured by wrapping them.

Bound (latency-dominated; the PBX rate limit is set high enough not to bind, and is checked):

    bound = N x L / c  +  2 x ceil(N / 100) x L
            (updates)     (pre-read + read-back query per chunk of 100)

with L the simulator's injected latency per request and c = push_concurrency. Also printed: the bound of
the engine's chunked structure, ceil(N/100) x (2 + ceil(100 / c)) x L, which is higher when c does not
divide 100 (the sends of a chunk go in waves of c).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import LoadWatch, SimProcess, print_table, ratio, write_config
from syncd.config import Config, load_config
from syncd.engine import SyncEngine
from syncd.logs import configure_logging
from syncd.model import EmailKind, EnrichmentResult, FoundEmail, LookupRequest, Outcome, Vendor
from syncd.sim.dataset import Dataset
from syncd.store import StateStore

LATENCY = 0.020
PBX_RATE = 2000.0  # requests/s: far above what the latency lets through, so the latency dominates
QUERY_CHUNK = 100
TARGET_RATIO = 1.25  # reported against, as for the enrichment wall time


class TitleProvider:
    """A stand-in vendor: a found result with a title and an email for every contact, no I/O."""

    vendor = Vendor.insideview
    max_batch = 1000

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def can_lookup(self, request: LookupRequest) -> bool:
        return True

    def max_cost(self, requests: Sequence[LookupRequest]) -> int:
        return 0

    async def lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        now = datetime.now(UTC)
        out = []
        for r in requests:
            p = self.dataset.person(r.contact_id)
            out.append(
                EnrichmentResult(
                    vendor=self.vendor,
                    contact_id=r.contact_id,
                    outcome=Outcome.found,
                    fetched_at=now,
                    emails=(FoundEmail(p.work_email, EmailKind.work, "verified"),),
                    title=p.title,
                    vendor_id=str(r.contact_id),
                )
            )
        return out

    async def aclose(self) -> None:
        return None


class TimedPushEngine(SyncEngine):
    """The engine, with its push phase timed and the PBX calls it made counted by the simulator."""

    sims: SimProcess
    push_s = 0.0
    push_calls: dict[str, int]
    entries = 0
    store_s = 0.0
    store_calls = 0
    push_cpu_s = 0.0
    sim_cpu_s = 0.0

    async def _push(self, pbx: Any, run_id: str, entries: Any, pulled: Any, summary: Any) -> None:
        self.entries = len(entries)
        before = self.sims.stats()["pbx"]["calls"]
        for name in ("journal_mark_sent", "journal_apply", "journal_resolve"):
            setattr(self.store, name, self._timed(getattr(self.store, name)))
        sim_cpu, own_cpu = self.sims.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        try:
            await super()._push(pbx, run_id, entries, pulled, summary)
        finally:
            self.push_s = time.perf_counter() - started
            self.push_cpu_s = time.process_time() - own_cpu
            self.sim_cpu_s = self.sims.cpu_seconds() - sim_cpu
            for name in ("journal_mark_sent", "journal_apply", "journal_resolve"):
                delattr(self.store, name)
        after = self.sims.stats()["pbx"]["calls"]
        self.push_calls = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.store_s += time.perf_counter() - started
                self.store_calls += 1

        return wrapper


def push_config(sims: SimProcess, concurrency: int, toml: Path, state: Path) -> Config:
    """The config of a push bench: `concurrency` updates in flight, the PBX rate far above the latency."""
    path = write_config(
        toml,
        sims.urls,
        f"sqlite:///{state}",
        sync={"push_concurrency": concurrency},
        pbx={"rate_limit": PBX_RATE},
        # a vendor table is needed for the waterfall to run; the stub provider answers in its place
        vendors={"insideview": {"base_url": "http://127.0.0.1:9", "login_url": "http://127.0.0.1:9"}},
    )
    return load_config(path)


def _one(sims: SimProcess, dataset: Dataset, work: Path, concurrency: int) -> dict[str, Any]:
    config = push_config(
        sims, concurrency, work / f"syncd-c{concurrency}.toml", work / f"state-c{concurrency}.db"
    )
    store = StateStore.open(config.sync.state_url)
    # syncd's own log (one contact.changed event per change, as in production), to a file
    log_stream = (work / f"syncd-c{concurrency}.log").open("w", encoding="utf-8")
    configure_logging(json=True, verbosity=1, stream=log_stream)
    try:
        with store.lock():
            engine = TimedPushEngine(config, store, providers={Vendor.insideview: TitleProvider(dataset)})
            engine.sims = sims
            summary = asyncio.run(engine.run())
    finally:
        store.close()
        configure_logging(json=False, verbosity=0)
        log_stream.close()
    n = engine.entries
    latency_bound = n * LATENCY / concurrency + 2 * math.ceil(n / QUERY_CHUNK) * LATENCY
    chunked_bound = 0.0
    for start in range(0, n, QUERY_CHUNK):
        chunk = min(QUERY_CHUNK, n - start)
        chunked_bound += (2 + math.ceil(chunk / concurrency)) * LATENCY
    calls = engine.push_calls
    rate_bound = sum(calls.values()) / PBX_RATE
    bound = max(latency_bound, rate_bound)
    return {
        "push_concurrency": concurrency,
        "updates": n,
        "applied": summary.counts.get("updated", 0),
        "failed": len(summary.failures),
        "superseded": summary.counts.get("superseded", 0),
        "push_s": engine.push_s,
        "bound_s": bound,
        "latency_bound_s": latency_bound,
        "chunked_bound_s": chunked_bound,
        "rate_bound_s": rate_bound,
        "ratio": engine.push_s / bound if bound else None,
        "pbx_calls": calls,
        "journal_write_s": engine.store_s,
        "journal_writes": engine.store_calls,
        "syncd_cpu_s": engine.push_cpu_s,
        "simulator_cpu_s": engine.sim_cpu_s,
    }


def bench_push(updates: int, concurrencies: Sequence[int] = (4, 16)) -> dict[str, Any]:
    load = LoadWatch()
    dataset = Dataset(updates)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-push-") as tmp:
        for concurrency in concurrencies:
            # a fresh PBX per round: the previous round's updates are already applied on the old one
            with SimProcess(updates, ["pbx"], faults={"pbx": {"latency": LATENCY}}) as sims:
                runs.append(_one(sims, dataset, Path(tmp), concurrency))
    result = {
        "latency_s": LATENCY,
        "pbx_rate_limit": PBX_RATE,
        "formula": "bound = max(N*L/c + 2*ceil(N/100)*L, calls/rate)",
        "runs": runs,
        **load.stop(),
    }
    _print(runs)
    return result


def _print(runs: list[dict[str, Any]]) -> None:
    rows: list[list[Any]] = [
        [
            "c",
            "updates",
            "applied",
            "push wall",
            "bound",
            "wall/bound",
            "chunked bound",
            "journal writes",
            "CPU syncd / sim",
            "PBX calls",
        ]
    ]
    for r in runs:
        rows.append(
            [
                r["push_concurrency"],
                f"{r['updates']:,}",
                f"{r['applied']:,}",
                f"{r['push_s']:.2f} s",
                f"{r['bound_s']:.2f} s",
                ratio(r["push_s"], r["bound_s"]),
                f"{r['chunked_bound_s']:.2f} s",
                f"{r['journal_writes']:,} in {r['journal_write_s']:.2f} s",
                f"{r['syncd_cpu_s']:.1f} s / {r['simulator_cpu_s']:.1f} s",
                ", ".join(
                    f"{k.removeprefix('company_contact/')} {v}" for k, v in sorted(r["pbx_calls"].items())
                ),
            ]
        )
    print_table(
        f"Push: journaled updates against a PBX answering after {LATENCY * 1000:.0f} ms (issue 4)", rows
    )
    print(
        f"bound = N x L / c + 2 x ceil(N/100) x L, L = {LATENCY * 1000:.0f} ms (PBX rate_limit {PBX_RATE:g}/s, "
        "checked not to bind); journal writes = journal_mark_sent + journal_apply (+ resolve) during the push, "
        "synchronous on the event loop; CPU = this process and the simulator process during the push."
    )
