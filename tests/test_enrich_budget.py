"""Budgets in the waterfall: a binding budget is spent (not abandoned at half), never exceeded, and a second
run in the same month asks nothing more; a dry run without buying asks nothing and estimates.

The vendor here reserves a worst case of `WORST` credits per lookup and charges less (as ContactOut does:
a worst case of 6, about 3 charged), so a budget that reserved without releasing would stop at half.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from syncd.enrich import Budget, EnrichmentOutcome, VendorTally, Waterfall, affordable
from syncd.merge import MergeSettings
from syncd.model import Contact, EnrichmentResult, LookupRequest, NumberSlot, Outcome, Vendor
from syncd.store import StateStore

T0 = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
WORST = 6
_counter = itertools.count()


class MeteredVendor:
    """Charges `charge(contact_id)` per lookup (at most its worst case), finds nobody, and checks on every
    call that what it has charged plus the call's worst case stays within `budget`."""

    vendor = Vendor.contactout
    max_batch = 100

    def __init__(
        self, budget: int | None, charge: Callable[[int], int], worst: Callable[[int], int] | None = None
    ) -> None:
        self.budget = budget
        self.charge = charge
        self.worst = worst or (lambda _cid: WORST)
        self.charged = 0
        self.in_flight = 0  # worst case of the calls under way
        self.calls = 0
        self.asked: list[LookupRequest] = []

    def can_lookup(self, request: LookupRequest) -> bool:
        return True

    def max_cost(self, requests: Sequence[LookupRequest]) -> int:
        return sum(self.worst(r.contact_id) for r in requests)

    async def lookup(self, requests: Sequence[LookupRequest]) -> list[EnrichmentResult]:
        worst = self.max_cost(requests)
        self.in_flight += worst
        if self.budget is not None:
            assert self.charged + self.in_flight <= self.budget, "a call the budget could not afford"
        self.calls += 1
        self.asked.extend(requests)
        await asyncio.sleep(0.001)  # let other calls start meanwhile
        cost = {r.contact_id: self.charge(r.contact_id) for r in requests}
        self.charged += sum(cost.values())
        self.in_flight -= worst
        return [
            EnrichmentResult(self.vendor, r.contact_id, Outcome.not_found, T0, credits=cost[r.contact_id])
            for r in requests
        ]

    async def aclose(self) -> None:
        return None


def contacts(n: int) -> dict[int, Contact]:
    return {cid: Contact.build(cid, name=f"Person {cid}", company="Acme") for cid in range(1, n + 1)}


def run(
    store: StateStore,
    vendor: MeteredVendor,
    phonebook: Mapping[int, Contact],
    *,
    budget: int | None,
    buy: bool = True,
) -> EnrichmentOutcome:
    fall = Waterfall(
        providers={Vendor.contactout: vendor},
        order=[Vendor.contactout],
        store=store,
        settings=MergeSettings(),
        refresh_after=timedelta(days=30),
        retry_not_found_after=timedelta(days=14),
        budgets={Vendor.contactout: budget},
        clock=lambda: T0,
        buy=buy,
    )
    return asyncio.run(fall.run(phonebook, dict.fromkeys(phonebook), {}))


def charge_about_half(cid: int) -> int:
    return 1 + cid % 5  # 1 to 5 credits, 3 on average, against a worst case of 6


def test_a_binding_budget_is_spent_never_exceeded_and_the_second_run_asks_nothing(store: StateStore) -> None:
    budget, phonebook = 500, contacts(1000)  # demand: about 3,000 credits
    vendor = MeteredVendor(budget, charge_about_half)
    with capture_logs() as logs:
        first = run(store, vendor, phonebook, budget=budget)
    month = T0.strftime("%Y-%m")
    spent = store.credits_for_month(month)["contactout"]
    assert spent == vendor.charged == first.tallies[Vendor.contactout].credits
    assert budget * 0.95 <= spent <= budget
    assert budget - spent < WORST  # what is left cannot pay for one more lookup
    tally = first.tallies[Vendor.contactout]
    assert tally.stopped == "budget"
    assert tally.asked + tally.over_budget == len(phonebook)
    assert tally.budget_left == budget - spent
    # one event, with what was really spent and why the next lookup does not fit
    [event] = [e for e in logs if e["event"] == "vendor.budget_exhausted"]
    assert (event["budget"], event["spent"], event["in_flight"]) == (budget, spent, 0)
    assert event["spent"] + event["next_lookup_max_cost"] > budget

    second_vendor = MeteredVendor(budget, charge_about_half)
    second = run(store, second_vendor, phonebook, budget=budget)
    assert second_vendor.calls == 0
    assert store.credits_for_month(month)["contactout"] == spent
    assert second.tallies[Vendor.contactout].cached == tally.asked


def test_a_budget_the_demand_fits_in_is_not_touched(store: StateStore) -> None:
    vendor = MeteredVendor(10_000, charge_about_half)
    outcome = run(store, vendor, contacts(300), budget=10_000)
    tally = outcome.tallies[Vendor.contactout]
    assert (tally.asked, tally.stopped, tally.over_budget) == (300, None, 0)
    assert vendor.charged == sum(charge_about_half(cid) for cid in range(1, 301))


def test_a_dear_lookup_does_not_block_cheaper_ones(store: StateStore) -> None:
    # contact 1 alone would cost more than the whole budget; the others still fit
    vendor = MeteredVendor(20, lambda _cid: 1, worst=lambda cid: 50 if cid == 1 else 2)
    outcome = run(store, vendor, contacts(10), budget=20)
    assert {r.contact_id for r in vendor.asked} == set(range(2, 11))
    assert outcome.tallies[Vendor.contactout].over_budget == 1
    assert vendor.charged == 9


def test_a_dry_run_without_buying_asks_nothing_and_estimates(store: StateStore) -> None:
    phonebook = contacts(40)
    # ten contacts were bought before: their answers are in the ledger
    bought = MeteredVendor(None, lambda _cid: 2)
    run(store, bought, {cid: phonebook[cid] for cid in range(1, 11)}, budget=None)
    vendor = MeteredVendor(100, charge_about_half)
    outcome = run(store, vendor, phonebook, budget=100, buy=False)
    assert vendor.calls == 0
    tally = outcome.tallies[Vendor.contactout]
    assert (tally.cached, tally.asked, tally.credits) == (10, 0, 0)
    assert (tally.estimate_lookups, tally.estimate_credits) == (30, 30 * WORST)
    assert tally.budget_left == 100 - 20
    counts = tally.budget_counts(estimate=True)["would_buy"]
    assert counts == {"lookups": 30, "max_credits": 180, "budget_left": 80, "max_credits_within_budget": 80}
    assert store.credits_for_month(T0.strftime("%Y-%m"))["contactout"] == 20


def test_only_the_kinds_still_open_are_asked_for(store: StateStore) -> None:
    vendor = MeteredVendor(None, lambda _cid: 1)
    numbers = {
        NumberSlot.mobile_number: "+4915112345678",
        NumberSlot.mobile_number2: "+4915112345679",
        NumberSlot.business_number: "+493012345678",
        NumberSlot.business_number2: "+493012345679",
    }
    phonebook = {
        1: Contact.build(1, name="Ann Open", company="Acme"),
        2: Contact.build(2, name="Bob Full", company="Acme", numbers=numbers),
        3: Contact.build(3, name="Cy Mail", company="Acme", email="cy@acme.example"),
    }
    run(store, vendor, phonebook, budget=None)
    needs = {r.contact_id: (r.need_email, r.need_phones) for r in vendor.asked}
    assert needs == {1: (True, True), 2: (True, False), 3: (False, True)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 120),
    budget=st.integers(0, 400),
    seed=st.integers(0, 10_000),
)
def test_budget_property(tmp_path: Path, n: int, budget: int, seed: int) -> None:
    """Whatever the costs: never over the budget, and every contact not asked costs more than is left."""

    def worst(cid: int) -> int:
        return 1 + (cid * 7 + seed) % 8

    def charge(cid: int) -> int:
        return (cid * 13 + seed) % (worst(cid) + 1)  # 0 .. its worst case

    vendor = MeteredVendor(budget, charge, worst)
    opened = StateStore.open(f"sqlite:///{tmp_path / f'p{next(_counter)}.db'}")
    try:
        outcome = run(opened, vendor, contacts(n), budget=budget)
        spent = opened.credits_for_month(T0.strftime("%Y-%m")).get("contactout", 0)
    finally:
        opened.close()
    assert spent == vendor.charged <= budget
    asked = {r.contact_id for r in vendor.asked}
    not_asked = set(range(1, n + 1)) - asked
    assert all(worst(cid) > budget - spent for cid in not_asked)
    assert outcome.tallies[Vendor.contactout].over_budget == len(not_asked)


def test_affordable_takes_in_order_and_skips_what_does_not_fit() -> None:
    assert affordable([3, 3, 3], None) == [0, 1, 2]
    assert affordable([3, 3, 3], 7) == [0, 1]
    assert affordable([9, 2, 2, 9, 1], 5) == [1, 2, 4]
    assert affordable([1], 0) == []
    budget = Budget(10, spent=4)
    budget.reserve(6)
    assert budget.left == 0
    budget.settle(6, 2)
    assert (budget.spent, budget.reserved, budget.left) == (6, 0, 4)
    assert Budget(None).left is None


def test_the_estimate_is_printed_as_json_lines_and_as_a_table() -> None:
    import io

    from syncd.engine import RunSummary
    from syncd.report import print_plan

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    summary = RunSummary(run_id="r", mode="dry_run", started_at=T0)
    tally = EnrichmentOutcome(results={}).tallies.setdefault(Vendor.contactout, VendorTally())
    tally.estimate_lookups, tally.estimate_credits, tally.budget_left = 12, 70, 50
    summary.counts["vendors"] = {"contactout": tally.budget_counts(estimate=True)}
    lines = io.StringIO()
    print_plan(summary, lines)
    assert [json.loads(line) for line in lines.getvalue().splitlines()] == [
        {
            "event": "plan.purchase",
            "vendor": "contactout",
            "lookups": 12,
            "max_credits": 70,
            "budget_left": 50,
            "max_credits_within_budget": 50,
        }
    ]
    table = Terminal()
    print_plan(summary, table)
    text = table.getvalue()
    assert "a real run would buy" in text and "nothing was bought" in text
    assert re.search(r"contactout\W+12\W+70\W+50\W+50", text)
