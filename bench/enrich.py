"""Issue 3: enrich N contacts through the waterfall against the three vendor simulators.

Set-up (untimed): the four simulators in their own process around one `Dataset(N)` in which linked people
are complete at their vendor (every InsideView-route contact already has its mobile in the PBX,
`iv_mobile_share=1`; Leadfeeder blacklists no phone, `blacklist_share=0`; no vendor answers garbage,
`garbage_share=0`), so a linked contact needs nothing from ContactOut. The routes are a third each:
InsideView-linked, Leadfeeder-linked, and the rest for ContactOut (a tenth of all contacts nobody knows).
The links CSV is imported first (`syncd links import`'s code path), then one `SyncEngine` run in dry-run
mode that buys (`--dry-run --buy`: no push) pulls the contacts and runs the waterfall with the providers the config builds.

Timed: `SyncEngine._enrich` alone. Calls are the simulators' own counts during that phase; credits are
both what syncd booked (the waterfall's tallies) and what the simulators charged.

Minimum calls per vendor, for the contacts the vendor was asked about (`asked`):
- InsideView: ceil(asked / 50) Bulk Contact Fetch calls (the brief's minimum). At `job_threshold` ids or
  more per lookup (2,000 by default) syncd uses Contact Details Jobs instead: at least 3 calls (submit,
  one status poll, results) per job of up to 10,000 ids, so 3 x ceil(asked / 10,000) for that path.
- Leadfeeder: ceil(asked / 100).
- ContactOut: one call per contact asked about (one People Enrich). With `contact_fetch="after_match"`
  (the default, not configurable) every accepted match costs a second call (Contact Info by LinkedIn
  URL), and each identifier tried before the one that finds the person (email, up to two phones, then
  name + company) costs a People Enrich call of its own.

Wall-time bound. The stages run concurrently, so the bound is the slowest vendor's:

    bound = max over vendors v of  calls_v / rate_v  +  L_v x chain_v  +  wait_v

- rate_v: the configured rate (ContactOut: `rate_limit`, the "other APIs" class People Enrich is in); when max_concurrency_v / L_v is lower than the configured
  rate, that is the rate the latency allows and it is used instead;
- L_v: the latency injected into every answer of the vendor's simulator (`faults.latency`);
  chain_v: the longest run of dependent calls for one unit of work (InsideView job: submit, status,
  results = 3; Leadfeeder: 1; ContactOut: 5, an upper bound of the calls made one after the other for
  one contact);
- wait_v: InsideView jobs: ceil(jobs / 2 running at once) x the simulator's job processing time.
Printed twice: with the calls actually made (what the wall/bound target is checked against: scheduling)
and with the minimum calls (what the wall would be if the calls were minimal).
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import LoadWatch, SimProcess, print_table, ratio, verdict, write_config
from syncd.config import load_config
from syncd.engine import SyncEngine
from syncd.links import import_links_file
from syncd.logs import configure_logging
from syncd.model import Vendor
from syncd.sim.dataset import Dataset
from syncd.store import StateStore

DATASET = {"garbage_share": 0.0, "iv_mobile_share": 1.0}
LATENCY = 0.010  # injected into every vendor answer
IV_JOB_DELAY = 0.5  # the simulator's default
IV_RUNNING_JOBS = 2  # provider default and simulator default
CALLS_TARGET = 1.02
WALL_TARGET = 1.25

# configured client rates (requests/s); the simulators' own limits are raised above them
RATES: dict[str, dict[str, float]] = {
    "insideview": {"rate_limit": 50.0, "max_concurrency": 8},
    "leadfeeder": {"rate_limit": 50.0, "burst": 15, "max_concurrency": 8},
    "contactout": {"rate_limit": 150.0, "max_concurrency": 16},
}


def sim_options() -> dict[str, dict[str, Any]]:
    co = RATES["contactout"]
    lf = RATES["leadfeeder"]
    return {
        "leadfeeder": {
            "blacklist_share": 0.0,
            "rate_per_second": lf["rate_limit"] * 2,
            "burst": int(lf["burst"]) * 2,
            "credits_available": 10_000_000,
        },
        "contactout": {
            # fixed one-minute windows: twice what the client may send in a minute
            "general_per_minute": int(co["rate_limit"] * 120),
        },
        "insideview": {"job_delay": IV_JOB_DELAY},
    }


class TimedEnrichEngine(SyncEngine):
    sims: SimProcess
    enrich_s = 0.0
    syncd_cpu_s = 0.0
    sim_cpu_s = 0.0
    contact_fetch: str | None = None
    contact_fetch_override: str | None = None
    before: dict[str, Any]
    after: dict[str, Any]
    outcome: Any = None
    clients: dict[str, Any]

    def _build_providers(self) -> Any:
        providers = super()._build_providers()
        co = providers.get(Vendor.contactout)
        if self.contact_fetch_override is not None and co is not None:
            # the config has no key for it: set the provider's mode directly (a benchmark variant)
            co._contact_fetch = self.contact_fetch_override
        return providers

    async def _enrich(self, providers: Any, pulled: Any, bases: Any, states: Any, summary: Any) -> Any:
        self.before = self.sims.stats()
        sim_cpu, own_cpu = self.sims.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        outcome = await super()._enrich(providers, pulled, bases, states, summary)
        self.enrich_s = time.perf_counter() - started
        self.syncd_cpu_s = time.process_time() - own_cpu
        self.sim_cpu_s = self.sims.cpu_seconds() - sim_cpu
        self.after = self.sims.stats()
        co = providers.get(Vendor.contactout)
        self.contact_fetch = getattr(co, "_contact_fetch", None)
        self.outcome = outcome
        self.clients = {}
        for vendor, provider in providers.items():
            client = getattr(provider, "api", None) or getattr(provider, "client", None)
            if client is not None:
                s = client.stats
                self.clients[vendor.value] = {
                    "requests": s.requests,
                    "retries": s.retries,
                    "throttled": s.throttled,
                }
        return outcome


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: v - before.get(k, 0)
        for k, v in after.items()
        if v != before.get(k, 0) and not k.startswith("status_")
    }


WALL_CONTACTS = 30_000  # the size whose wall time this 2-core machine measures cleanly (see README)


def bench_enrich(
    contacts: int, wall_contacts: int = WALL_CONTACTS, contact_fetch: str | None = None
) -> dict[str, Any]:
    """The run at `contacts` (calls, credits, wall); when larger than `wall_contacts`, a second run at
    that size for the wall time. `contact_fetch` overrides ContactOut's mode (None: the provider's default)."""
    result = _run(contacts, contact_fetch)
    _print(result)
    if 0 < wall_contacts < contacts:
        small = _run(wall_contacts, contact_fetch)
        _print(small, wall_only=True)
        result["wall_run"] = small
    return result


def _run(contacts: int, contact_fetch: str | None) -> dict[str, Any]:
    load = LoadWatch()
    dataset = Dataset(contacts, **DATASET)
    faults = {v: {"latency": LATENCY} for v in ("insideview", "leadfeeder", "contactout")}
    sims_list = ["pbx", "insideview", "leadfeeder", "contactout"]
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-enrich-") as tmp,
        SimProcess(contacts, sims_list, dataset=DATASET, options=sim_options(), faults=faults) as sims,
    ):
        work = Path(tmp)
        config_path = write_config(
            work / "syncd.toml",
            sims.urls,
            f"sqlite:///{work / 'state.db'}",
            pbx={"rate_limit": 500.0},
            vendors={v: dict(r) for v, r in RATES.items()},
        )
        config = load_config(config_path)
        log_stream = (work / "syncd.log").open("w", encoding="utf-8")
        configure_logging(json=True, verbosity=1, stream=log_stream)
        links_csv = work / "links.csv"
        with links_csv.open("w", encoding="utf-8") as handle:
            handle.write("pbx_contact_id,vendor,vendor_id\n")
            for cid, vendor, vendor_id in dataset.links():
                handle.write(f"{cid},{vendor},{vendor_id}\n")
        store: StateStore | None = None
        try:
            started = time.perf_counter()
            asyncio.run(import_links_file(config, links_csv, stream=io.StringIO()))
            links_s = time.perf_counter() - started
            store = StateStore.open(config.sync.state_url)
            with store.lock():
                engine = TimedEnrichEngine(config, store, dry_run=True, buy=True)
                engine.sims = sims
                engine.contact_fetch_override = contact_fetch
                run_started = time.perf_counter()
                asyncio.run(engine.run())
                run_s = time.perf_counter() - run_started
        finally:
            if store is not None:
                store.close()
            configure_logging(json=False, verbosity=0)
            log_stream.close()
    result = _analyse(engine, contacts, sims.build_s, links_s, run_s)
    result.update(load.stop())
    return result


def _analyse(
    engine: TimedEnrichEngine, contacts: int, build_s: float, links_s: float, run_s: float
) -> dict[str, Any]:
    tallies = engine.outcome.tallies
    vendors: dict[str, Any] = {}
    for vendor in (Vendor.insideview, Vendor.leadfeeder, Vendor.contactout):
        name = vendor.value
        t = tallies.get(vendor)
        calls = _delta(engine.before[name]["calls"], engine.after[name]["calls"])
        asked = t.asked if t else 0
        entry: dict[str, Any] = {
            "asked": asked,
            "cached": t.cached if t else 0,
            "found": t.found if t else 0,
            "not_found": t.not_found if t else 0,
            "errors": t.errors if t else 0,
            "lookups": t.lookups if t else 0,
            "stopped": t.stopped if t else None,
            "credits_booked": t.credits if t else 0,
            "calls": calls,
            "client": engine.clients.get(name, {}),
            "latency_s": LATENCY,
            **RATES[name],
        }
        before, after = engine.before[name], engine.after[name]
        if name == "insideview":
            data_calls = sum(v for k, v in calls.items() if k != "token")
            jobs = after["jobs"] - before["jobs"]
            entry["credits_charged"] = after["credits"] - before["credits"]
            entry["jobs"] = jobs
            entry["bulk_minimum"] = math.ceil(asked / 50)
            entry["minimum"] = 3 * math.ceil(asked / 10_000) if jobs else math.ceil(asked / 50)
            entry["path"] = "jobs" if jobs else "bulk"
            entry["data_calls"] = data_calls
            chain, wait = (3, math.ceil(jobs / IV_RUNNING_JOBS) * IV_JOB_DELAY) if jobs else (1, 0.0)
            rate = RATES[name]["rate_limit"]
            entry["rate_term_s"] = _rate_term(data_calls, rate, entry)
            entry["min_rate_term_s"] = _rate_term(entry["minimum"], rate, entry)
        elif name == "leadfeeder":
            data_calls = calls.get("contacts", 0) + calls.get("contact", 0)
            entry["credits_charged"] = after["credits"] - before["credits"]
            entry["minimum"] = math.ceil(asked / 100)
            entry["data_calls"] = data_calls
            chain, wait = 1, 0.0
            entry["rate_term_s"] = _rate_term(data_calls, RATES[name]["rate_limit"], entry)
            entry["min_rate_term_s"] = _rate_term(entry["minimum"], RATES[name]["rate_limit"], entry)
        else:
            data_calls = sum(calls.values())
            enrich_calls = calls.get("people_enrich", 0)
            charged = {k: after["credits"].get(k, 0) - before["credits"].get(k, 0) for k in after["credits"]}
            entry["credits_charged"] = sum(charged.values())
            entry["credits_charged_by_kind"] = charged
            entry["minimum"] = asked
            entry["data_calls"] = data_calls
            chain, wait = 5, 0.0
            general = RATES[name]["rate_limit"]
            entry["rate_term_s"] = max(
                _rate_term(enrich_calls, general, entry), _rate_term(data_calls, general, entry)
            )
            entry["min_rate_term_s"] = _rate_term(asked, general, entry)
        entry["calls_ratio"] = data_calls / entry["minimum"] if entry["minimum"] else None
        entry["calls_ok"] = entry["calls_ratio"] is None or entry["calls_ratio"] <= CALLS_TARGET
        entry["chain"] = chain
        entry["wait_s"] = wait
        entry["bound_s"] = entry["rate_term_s"] + LATENCY * chain + wait
        entry["min_bound_s"] = entry["min_rate_term_s"] + LATENCY * chain + wait
        vendors[name] = entry
    bound = max(v["bound_s"] for v in vendors.values())
    min_bound = max(v["min_bound_s"] for v in vendors.values())
    slowest = max(vendors, key=lambda n: vendors[n]["bound_s"])
    return {
        "contacts": contacts,
        "dataset": DATASET,
        "simulator_build_s": build_s,
        "links_import_s": links_s,
        "dry_run_total_s": run_s,
        "enrich_s": engine.enrich_s,
        "syncd_cpu_s": engine.syncd_cpu_s,
        "simulators_cpu_s": engine.sim_cpu_s,
        "contactout_contact_fetch": engine.contact_fetch,
        "bound_s": bound,
        "bound_at_minimum_calls_s": min_bound,
        "slowest_vendor": slowest,
        "wall_ratio": engine.enrich_s / bound if bound else None,
        "wall_ratio_at_minimum_calls": engine.enrich_s / min_bound if min_bound else None,
        "wall_ok": bound > 0 and engine.enrich_s / bound <= WALL_TARGET,
        "formula": "bound = max_v(calls_v / rate_v + L_v * chain_v + wait_v)",
        "vendors": vendors,
    }


def _rate_term(calls: int, rate: float, entry: dict[str, Any]) -> float:
    """calls / the rate that binds: the configured one, or what concurrency allows at the latency."""
    allowed = rate
    if LATENCY > 0:
        allowed = min(rate, entry["max_concurrency"] / LATENCY)
    return calls / allowed


def _print(r: dict[str, Any], *, wall_only: bool = False) -> None:
    if not wall_only:
        _print_calls(r)
    _print_wall(r)


def _print_calls(r: dict[str, Any]) -> None:
    v = r["vendors"]
    co = v["contactout"]
    rows: list[list[Any]] = [
        [
            "vendor",
            "asked",
            "found",
            "calls",
            "minimum",
            "calls/min",
            "credits (syncd / sim)",
            "retries",
            "calls by endpoint",
        ],
    ]
    for name, e in v.items():
        minimum = f"{e['minimum']:,}"
        if name == "insideview":
            minimum += f" ({e['path']}; bulk: {e['bulk_minimum']:,})"
        rows.append(
            [
                name,
                f"{e['asked']:,}",
                f"{e['found']:,}",
                f"{e['data_calls']:,}",
                minimum,
                f"{ratio(e['data_calls'], e['minimum'])} {'ok' if e['calls_ok'] else 'MISS'}",
                f"{e['credits_booked']:,} / {e['credits_charged']:,}",
                e["client"].get("retries", 0),
                ", ".join(f"{k} {n:,}" for k, n in sorted(e["calls"].items())),
            ]
        )
    print_table(
        f"Enrichment: {r['contacts']:,} contacts, calls and credits per vendor (issue 3; target calls/min <= {CALLS_TARGET})",
        rows,
    )
    if co["asked"]:
        charged = co.get("credits_charged_by_kind", {})
        print(
            f"ContactOut: {co['calls'].get('people_enrich', 0) / co['asked']:.2f} People Enrich calls per contact asked; "
            f"{co['calls'].get('people_linkedin', 0):,} contact-info fetches (after_match: one per accepted match); "
            f"credits by kind: {', '.join(f'{k} {n:,}' for k, n in sorted(charged.items()))}; "
            f"{co['credits_booked'] / max(1, co['found']):.1f} credits per accepted match "
            f"(contact_fetch = {r['contactout_contact_fetch']!r})"
        )


def _print_wall(r: dict[str, Any]) -> None:
    v = r["vendors"]
    rows = [
        ["vendor", "rate term", "latency x chain", "wait", "bound (actual calls)", "bound (minimum calls)"]
    ]
    for name, e in v.items():
        rows.append(
            [
                name,
                f"{e['rate_term_s']:.2f} s",
                f"{LATENCY * e['chain']:.2f} s",
                f"{e['wait_s']:.2f} s",
                f"{e['bound_s']:.2f} s",
                f"{e['min_bound_s']:.2f} s",
            ]
        )
    rows.append(
        [
            "enrich phase",
            "",
            "",
            "",
            f"wall {r['enrich_s']:.2f} s = {ratio(r['enrich_s'], r['bound_s'])} x bound",
            f"{ratio(r['enrich_s'], r['bound_at_minimum_calls_s'])} x bound",
        ]
    )
    print_table(
        f"Enrichment of {r['contacts']:,} contacts: wall time against the rate/latency bound "
        f"(target <= {WALL_TARGET} x bound: "
        f"{verdict(r['wall_ok'])}; slowest: {r['slowest_vendor']})",
        rows,
    )
    print(
        "bound = max over vendors (calls / configured rate + latency x chain + wait); rates: "
        + "; ".join(f"{n} {', '.join(f'{k}={x:g}' for k, x in RATES[n].items())}" for n in RATES)
        + f"; injected latency {LATENCY * 1000:.0f} ms. Set-up (untimed): simulators {r['simulator_build_s']:.1f} s, "
        f"links import {r['links_import_s']:.1f} s; whole dry run {r['dry_run_total_s']:.1f} s."
    )
    print(
        f"CPU during the enrich phase: syncd {r['syncd_cpu_s']:.1f} s, simulators {r['simulators_cpu_s']:.1f} s "
        f"(wall {r['enrich_s']:.1f} s on {os.cpu_count()} CPUs; 1-minute load average "
        f"{r['loadavg_1m_before']} before, {r['loadavg_1m_after']} after)"
    )
