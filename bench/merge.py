"""Issue 4: merge-planning throughput, `syncd.merge.merge` over N contacts with 3 results each.

Everything is built before the clock starts: the contacts (as the PBX's flat list gives them), their
content hashes (the engine has them from the pull) and three found results per contact, one per vendor,
shaped like each provider's normalised output (InsideView: work email + direct/corporate phone + title;
Leadfeeder: email + mobile + landline + title; ContactOut: work + personal email, mobile/direct, title).
Timed: the engine's planning loop, `merge(...)` once per contact in one process.

Two scenarios: the first run (no base, nothing in the store) and a steady state (base = current, so no
person edits). The merge memoises number and email normalisation (`lru_cache`): each repetition starts
with those caches cleared ("cold", as a one-shot `--sync-now` process), and one more repetition reuses
them ("warm", as the daemon does from its second run on).
"""

from __future__ import annotations

import gc
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import LoadWatch, print_table, verdict
from syncd import merge as merge_module
from syncd.merge import MergeSettings, merge
from syncd.model import (
    Contact,
    EmailKind,
    EnrichmentResult,
    FoundEmail,
    FoundPhone,
    NumberSlot,
    Outcome,
    PhoneKind,
    Vendor,
)
from syncd.sim.dataset import Dataset

TARGET_PER_S = 50_000
REPEATS = 3


def build_inputs(n: int) -> tuple[list[Contact], dict[int, str], dict[int, list[EnrichmentResult]]]:
    dataset = Dataset(n)
    when = datetime.now(UTC)
    contacts: list[Contact] = []
    hashes: dict[int, str] = {}
    results: dict[int, list[EnrichmentResult]] = {}
    for seed in dataset.contacts():
        contact = Contact.build(
            seed.id,
            name=f"{seed.first_name} {seed.last_name}".strip(),
            company=seed.company,
            email=seed.email,
            remark=seed.remark,
            numbers={NumberSlot(k): v for k, v in seed.numbers.items()},
            phonebook_ids=seed.phonebook_ids,
        )
        contacts.append(contact)
        hashes[contact.id] = contact.content_hash()
        p = dataset.person(seed.id)
        common = {"contact_id": seed.id, "outcome": Outcome.found, "fetched_at": when, "company": p.company}
        results[seed.id] = [
            EnrichmentResult(
                vendor=Vendor.insideview,
                emails=(
                    FoundEmail(
                        p.work_email, EmailKind.work, "verified" if p.email_verified else "unverified"
                    ),
                ),
                phones=(FoundPhone(p.direct, PhoneKind.direct),),
                title=p.title,
                full_name=p.full_name,
                vendor_id=p.insideview_id,
                credits=1,
                **common,
            ),
            EnrichmentResult(
                vendor=Vendor.leadfeeder,
                emails=(FoundEmail(p.work_email, EmailKind.work),),
                phones=(FoundPhone(p.mobile, PhoneKind.mobile), FoundPhone(p.direct, PhoneKind.landline)),
                title=p.title,
                full_name=p.full_name,
                vendor_id=p.leadfeeder_id,
                credits=1,
                **common,
            ),
            EnrichmentResult(
                vendor=Vendor.contactout,
                emails=(
                    FoundEmail(p.work_email, EmailKind.work, "verified"),
                    FoundEmail(p.personal_email, EmailKind.personal),
                ),
                phones=(FoundPhone(p.mobile, PhoneKind.mobile), FoundPhone(p.direct, PhoneKind.direct)),
                title=f"{p.title} at {p.company}",
                full_name=p.full_name,
                vendor_id=p.linkedin_url,
                credits=3,
                matched_by="name_company",
                match_confidence=0.95,
                **common,
            ),
        ]
    return contacts, hashes, results


def _clear_caches() -> None:
    for name in dir(merge_module):
        cached = getattr(merge_module, name)
        if callable(getattr(cached, "cache_clear", None)):
            cached.cache_clear()


def _one_pass(
    contacts: list[Contact],
    hashes: dict[int, str],
    results: dict[int, list[EnrichmentResult]],
    settings: MergeSettings,
    *,
    steady: bool,
) -> tuple[float, float, int]:
    """Wall and CPU seconds of one planning pass over every contact, and the updates it planned."""
    empty: dict[str, Any] = {}
    updates = 0
    cpu = time.process_time()
    started = time.perf_counter()
    for contact in contacts:
        result = merge(
            contact if steady else None,
            contact,
            results[contact.id],
            empty,
            settings,
            current_hash=hashes[contact.id],
        )
        if result.update is not None:
            updates += 1
    return time.perf_counter() - started, time.process_time() - cpu, updates


def bench_merge(contacts_n: int) -> dict[str, Any]:
    load = LoadWatch()
    build_started = time.perf_counter()
    contacts, hashes, results = build_inputs(contacts_n)
    build_s = time.perf_counter() - build_started
    settings = MergeSettings()  # the config's defaults: fill_empty everywhere, E.164, Title line in remark
    scenarios: dict[str, Any] = {}
    for name, steady in (("first run (no base)", False), ("steady state (base = current)", True)):
        cold: list[float] = []
        cold_cpu: list[float] = []
        updates = 0
        for _ in range(REPEATS):
            _clear_caches()
            gc.collect()
            seconds, cpu, updates = _one_pass(contacts, hashes, results, settings, steady=steady)
            cold.append(seconds)
            cold_cpu.append(cpu)
        warm, warm_cpu, _ = _one_pass(contacts, hashes, results, settings, steady=steady)
        median = statistics.median(cold)
        scenarios[name] = {
            "cold_seconds": cold,
            "cold_cpu_seconds": cold_cpu,
            "cold_median_per_s": contacts_n / median,
            "cold_best_per_s": contacts_n / min(cold),
            "cold_median_per_cpu_s": contacts_n / statistics.median(cold_cpu),
            "warm_per_s": contacts_n / warm,
            "warm_per_cpu_s": contacts_n / warm_cpu,
            "updates_planned": updates,
            "ok": contacts_n / median >= TARGET_PER_S,
        }
    result = {
        "contacts": contacts_n,
        "results_per_contact": 3,
        "inputs_build_s": round(build_s, 1),
        "target_per_s": TARGET_PER_S,
        "scenarios": scenarios,
        **load.stop(),
    }
    rows: list[list[Any]] = [
        [
            "scenario",
            "contacts/s (median cold)",
            "best cold",
            "per CPU-s cold",
            "warm caches",
            "per CPU-s warm",
            "updates planned",
            "target",
        ]
    ]
    for name, s in scenarios.items():
        rows.append(
            [
                name,
                f"{s['cold_median_per_s']:,.0f}",
                f"{s['cold_best_per_s']:,.0f}",
                f"{s['cold_median_per_cpu_s']:,.0f}",
                f"{s['warm_per_s']:,.0f}",
                f"{s['warm_per_cpu_s']:,.0f}",
                f"{s['updates_planned']:,}",
                f">= {TARGET_PER_S:,}/s: {verdict(s['ok'])}",
            ]
        )
    print_table(
        f"Merge planning: {contacts_n:,} contacts x 3 results, one process (issue 4; "
        f"median of {REPEATS} cold passes)",
        rows,
    )
    print(
        "cold: the number/email normalisation caches cleared before the pass (a one-shot --sync-now); warm: "
        "a pass right after another (the daemon, or the engine's own plan after the waterfall warmed them). "
        "Per CPU-s: contacts per second of this process's CPU time, less sensitive to other load."
    )
    return result
