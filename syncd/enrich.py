"""The enrichment waterfall: ask the vendors in `enrich.order`, buying as little as possible.

Each contact flows through one stage per vendor, in order. A stage
- passes the contact on untouched when nothing is wanted any more (`merge.open_wants`: the same planning
  the merge uses, so "wanted" and "would be written" never disagree), when the vendor cannot be asked
  about it (no known id), or when the vendor is stopped (budget, credits, auth, unreachable);
- answers from the ledger when a fresh answer is cached (found: `refresh_after`; not found:
  `retry_not_found_after`) for the same identity (the fingerprint);
- otherwise queues the contact and asks the vendor in batches, within the monthly credit budget, for
  the kinds of data still open (`LookupRequest.need_email` / `need_phones`: no phone bought for a contact
  whose number slots are all closed).
Stages run concurrently, so a contact InsideView cannot help is at ContactOut while InsideView still
works through its batches: the wall time approaches the slowest vendor's, not the sum of all.

Every paid answer is written to the ledger (and its credits to the month's count) as soon as it
arrives: credits spent are never spent twice.

Budgets (`Budget`, `affordable`): before a call the worst case of its requests (`Provider.max_cost`) is
reserved; when the answer arrives the reservation is released and the real cost added to what is spent.
A request is sent only while spent + in flight + its worst case stays within the budget, so the budget is
never exceeded. A request that does not fit waits while other calls are in flight (their reservations are
mostly released unspent); it is given up only when nothing is in flight and it still does not fit
(`vendor.budget_exhausted`, once). Cheaper requests that still fit go on, so a binding budget ends used
up to less than one dearest lookup, and a second run in the same month finds nothing that fits: it makes
no call to that vendor.

With `buy=False` (a dry run) nothing is bought: cached answers are used, and what a real run would ask
is only counted per vendor (`VendorTally.estimate_lookups`, the worst case in `estimate_credits`, against
`budget_left`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncd import crashpoint
from syncd.errors import AuthError, MalformedResponse, OutOfCredits, ServiceError, ServiceUnavailable
from syncd.logs import get_logger
from syncd.merge import FieldStateLike, MergeSettings, Want, open_wants
from syncd.model import Contact, EnrichmentResult, LookupRequest, Outcome, Vendor
from syncd.normalize import fold_company, fold_text
from syncd.store import LedgerEntry, Link, StateStore, month_of
from syncd.vendors.base import Provider
from syncd.vendors.matching import IDENTITY_MISMATCH

log = get_logger("syncd.enrich")

CHUNK_MAX = 10_000  # requests handed to one provider.lookup (InsideView jobs take 10,000 ids)
LINGER = 0.05  # seconds a stage waits for a fuller batch while upstream is still sending
_DONE = object()


def fingerprint(vendor: Vendor, request: LookupRequest) -> str:
    """The identity a cached answer is about. A changed name, company or vendor id asks again; our own
    writes (email, numbers) do not, so enriching a contact never makes its answer stale."""
    key = f"{fold_text(request.name)}|{fold_company(request.company)}"
    if vendor is not Vendor.contactout and request.vendor_id:
        key += f"|{request.vendor_id}"
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


@dataclass
class VendorTally:
    asked: int = 0  # contacts sent to the vendor
    cached: int = 0  # contacts answered from the ledger
    found: int = 0
    not_found: int = 0
    errors: int = 0
    credits: int = 0
    lookups: int = 0  # provider.lookup calls
    stopped: str | None = None  # why the vendor was dropped for the rest of the run
    identity_mismatches: int = 0  # linked answers refused: the record is someone else's
    over_budget: int = 0  # contacts not asked because their worst-case cost no longer fit the budget
    budget_left: int | None = None  # the month's budget minus what is spent, at the end of the stage
    estimate_lookups: int = 0  # dry run without buying: contacts a real run would ask
    estimate_credits: int = 0  # ... and the most credits those lookups can cost

    def budget_counts(self, *, estimate: bool = False) -> dict[str, object]:
        """The budget's part of the run's per-vendor counts; with `estimate`, what a real run would buy."""
        out: dict[str, object] = {}
        if self.over_budget:
            out["over_budget"] = self.over_budget
        if self.budget_left is not None:
            out["budget_left"] = self.budget_left
        if estimate:
            most = self.estimate_credits
            out["would_buy"] = {
                "lookups": self.estimate_lookups,
                "max_credits": most,
                "budget_left": self.budget_left,
                # a real run never goes past the budget
                "max_credits_within_budget": most
                if self.budget_left is None
                else min(most, self.budget_left),
            }
        return out


@dataclass
class EnrichmentOutcome:
    results: dict[int, list[EnrichmentResult]]
    tallies: dict[Vendor, VendorTally] = field(default_factory=dict)

    @property
    def credits(self) -> dict[str, int]:
        return {v.value: t.credits for v, t in self.tallies.items()}


@dataclass
class _Item:
    contact: Contact
    results: list[EnrichmentResult]


# --- budgets --------------------------------------------------------------------------------------------


@dataclass
class Budget:
    """One vendor's monthly credit budget during a run. `limit` None: no budget."""

    limit: int | None
    spent: int = 0  # this month, this run's answers included
    reserved: int = 0  # worst case of the calls in flight

    @property
    def left(self) -> int | None:
        """What a new call may still reserve (never negative)."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.spent - self.reserved)

    def reserve(self, cost: int) -> None:
        self.reserved += cost

    def settle(self, reserved: int, charged: int) -> None:
        """An answer arrived: its reservation is released and what it really cost is spent."""
        self.reserved -= reserved
        self.spent += max(0, charged)


def affordable(costs: Sequence[int], left: int | None) -> list[int]:
    """Positions (in order) of the requests to send now: each taken while the sum of the worst cases
    taken so far plus its own stays within `left`; a dearer request does not block cheaper ones after it."""
    if left is None:
        return list(range(len(costs)))
    taken: list[int] = []
    total = 0
    for pos, cost in enumerate(costs):
        if total + cost <= left:
            taken.append(pos)
            total += cost
    return taken


class Waterfall:
    def __init__(
        self,
        *,
        providers: Mapping[Vendor, Provider],
        order: Sequence[Vendor],
        store: StateStore,
        settings: MergeSettings,
        refresh_after: timedelta,
        retry_not_found_after: timedelta,
        budgets: Mapping[Vendor, int | None],
        clock: Callable[[], datetime],
        on_progress: Callable[[str, int], None] | None = None,
        max_inflight: int = 16,
        buy: bool = True,
        on_finished: Callable[[int], None] | None = None,
    ) -> None:
        self.providers = providers
        self.order = [v for v in order if v in providers]
        self.store = store
        self.settings = settings
        self.refresh_after = refresh_after
        self.retry_not_found_after = retry_not_found_after
        self.budgets = budgets
        self.clock = clock
        self.on_progress = on_progress
        self.on_finished = on_finished  # n contacts went through every stage (asked, cached or not needed)
        self.max_inflight = max_inflight
        self.buy = buy  # False: a dry run that buys nothing, answers from the ledger and estimates the rest

    async def run(
        self,
        contacts: Mapping[int, Contact],
        bases: Mapping[int, Contact | None],
        states: Mapping[int, Mapping[str, FieldStateLike]],
    ) -> EnrichmentOutcome:
        outcome = EnrichmentOutcome(results={cid: [] for cid in contacts})
        if not self.order or not contacts:
            return outcome
        ids = list(contacts)
        links = self.store.links_for(None, ids=ids)
        queues: list[asyncio.Queue[object]] = [asyncio.Queue() for _ in range(len(self.order))]
        queues.append(_Finished(self.on_finished))
        stages = [
            _Stage(
                self,
                vendor,
                links=links,
                bases=bases,
                states=states,
                inbox=queues[i],
                outbox=queues[i + 1],
                outcome=outcome,
            )
            for i, vendor in enumerate(self.order)
        ]
        for cid in ids:
            queues[0].put_nowait(_Item(contacts[cid], outcome.results[cid]))
        queues[0].put_nowait(_DONE)
        await asyncio.gather(*(stage.run(ids) for stage in stages))
        return outcome


class _Finished(asyncio.Queue[object]):
    """The last stage's outbox: each contact put here has been through the whole waterfall."""

    def __init__(self, on_finished: Callable[[int], None] | None) -> None:
        super().__init__()
        self._on_finished = on_finished

    def put_nowait(self, item: object) -> None:
        if item is not _DONE and self._on_finished is not None:
            self._on_finished(1)
        super().put_nowait(item)


class _Stage:
    def __init__(
        self,
        fall: Waterfall,
        vendor: Vendor,
        *,
        links: Mapping[tuple[int, str], Link],
        bases: Mapping[int, Contact | None],
        states: Mapping[int, Mapping[str, FieldStateLike]],
        inbox: asyncio.Queue[object],
        outbox: asyncio.Queue[object],
        outcome: EnrichmentOutcome,
    ) -> None:
        self.fall = fall
        self.vendor = vendor
        self.provider = fall.providers[vendor]
        self.links = links
        self.bases = bases
        self.states = states
        self.inbox = inbox
        self.outbox = outbox
        self.tally = outcome.tallies.setdefault(vendor, VendorTally())
        self.budget = Budget(fall.budgets.get(vendor))
        self.month = month_of(fall.clock())
        self.stopped: str | None = None
        self.inflight: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(fall.max_inflight)
        self.ledger: dict[int, LedgerEntry] = {}

    # --- decisions ------------------------------------------------------------------------------
    def _request(self, contact: Contact, wants: frozenset[Want]) -> LookupRequest:
        link = self.links.get((contact.id, self.vendor.value))
        vendor_id = link.vendor_id if link is not None and link.method in ("imported", "matched") else None
        return LookupRequest(
            contact_id=contact.id,
            name=contact.name,
            company=contact.company,
            email=contact.email,
            phones=tuple(n for _, n in contact.numbers),
            vendor_id=vendor_id,
            need_email=Want.email in wants,
            need_phones=bool(wants & {Want.mobile, Want.direct}),
        )

    def _fresh(self, outcome: Outcome, fetched_at: datetime, now: datetime) -> bool:
        if outcome is Outcome.found:
            return fetched_at + self.fall.refresh_after > now
        if outcome is Outcome.not_found:
            return fetched_at + self.fall.retry_not_found_after > now
        return False  # errors are asked again

    def _decide(self, item: _Item, now: datetime) -> tuple[LookupRequest, str] | None:
        """None: pass the item on now. Otherwise: ask the vendor with this request and fingerprint."""
        contact = item.contact
        wants = open_wants(
            contact,
            self.bases.get(contact.id),
            self.states.get(contact.id, {}),
            self.fall.settings,
            item.results,
        )
        if not wants or self.stopped:
            return None
        request = self._request(contact, wants)
        fp = fingerprint(self.vendor, request)
        entry = self.ledger.get(contact.id)
        if (
            entry is not None
            and entry.fingerprint == fp
            and self._fresh(entry.outcome, entry.fetched_at, now)
        ):
            self.tally.cached += 1
            if entry.outcome is Outcome.found:
                item.results.append(entry.result)
            return None
        if not self.provider.can_lookup(request):
            return None
        return request, fp

    # --- the loop -------------------------------------------------------------------------------
    async def run(self, ids: Sequence[int]) -> None:
        self.ledger = dict(self.fall.store.ledger(self.vendor, ids))
        self.budget.spent = self.fall.store.credits_for_month(self.month).get(self.vendor.value, 0)
        pending: list[tuple[_Item, LookupRequest, str]] = []
        upstream_done = False
        batch = max(1, self.provider.max_batch)
        while not upstream_done or pending:
            item: object
            if upstream_done:
                item = None
            elif pending:
                try:
                    item = await asyncio.wait_for(self.inbox.get(), timeout=LINGER)
                except TimeoutError:
                    item = None
            else:
                item = await self.inbox.get()
            if item is _DONE:
                upstream_done = True
            elif isinstance(item, _Item):
                now = self.fall.clock()
                decided = self._decide(item, now)
                if decided is None:
                    self.outbox.put_nowait(item)
                else:
                    pending.append((item, *decided))
                # drain what is already queued without waiting: big first chunks (InsideView jobs)
                while not self.inbox.empty() and len(pending) < CHUNK_MAX:
                    nxt = self.inbox.get_nowait()
                    if nxt is _DONE:
                        upstream_done = True
                        break
                    assert isinstance(nxt, _Item)
                    decided = self._decide(nxt, now)
                    if decided is None:
                        self.outbox.put_nowait(nxt)
                    else:
                        pending.append((nxt, *decided))
            # flush full batches at once; a partial batch only when upstream is idle or done
            if pending and (item is None or upstream_done or len(pending) >= batch):
                full = (
                    len(pending) if (item is None or upstream_done) else len(pending) - len(pending) % batch
                )
                if full:
                    take, pending = pending[:full], pending[full:]
                    await self._launch(take)
        if self.inflight:
            await asyncio.gather(*self.inflight)
        self.tally.budget_left = self.budget.left
        self.outbox.put_nowait(_DONE)

    async def _launch(self, work: list[tuple[_Item, LookupRequest, str]]) -> None:
        for start in range(0, len(work), CHUNK_MAX):
            chunk = work[start : start + CHUNK_MAX]
            while chunk:
                if self.stopped:
                    self._pass_on(chunk)
                    break
                if not self.fall.buy:
                    self._estimate(chunk)
                    break
                kept, chunk = self._affordable(chunk)
                if kept:
                    await self.slots.acquire()
                    task = asyncio.create_task(self._ask(kept))
                    self.inflight.add(task)
                    task.add_done_callback(self.inflight.discard)
                if not chunk:
                    break
                if self.inflight:
                    # what is in flight reserved its worst case: wait for an answer to release it
                    await asyncio.wait(set(self.inflight), return_when=asyncio.FIRST_COMPLETED)
                    continue
                self._over_budget(chunk)
                break

    def _pass_on(self, chunk: Sequence[tuple[_Item, LookupRequest, str]]) -> None:
        for item, _, _ in chunk:
            self.outbox.put_nowait(item)

    # --- budget ---------------------------------------------------------------------------------
    def _affordable(
        self, chunk: list[tuple[_Item, LookupRequest, str]]
    ) -> tuple[list[tuple[_Item, LookupRequest, str]], list[tuple[_Item, LookupRequest, str]]]:
        """Split `chunk` into what the budget allows to send now (its worst case reserved) and the rest."""
        left = self.budget.left
        if left is None:
            return chunk, []
        requests = [r for _, r, _ in chunk]
        if self.provider.max_cost(requests) <= left:
            taken = list(range(len(chunk)))
        else:
            taken = affordable([self.provider.max_cost([r]) for r in requests], left)
        chosen = set(taken)
        kept = [work for pos, work in enumerate(chunk) if pos in chosen]
        rest = [work for pos, work in enumerate(chunk) if pos not in chosen]
        if kept:
            self.budget.reserve(self.provider.max_cost([r for _, r, _ in kept]))
        return kept, rest

    def _over_budget(self, chunk: list[tuple[_Item, LookupRequest, str]]) -> None:
        """Nothing in flight and these still cost more than is left: not asked this run (this month,
        unless the budget is raised)."""
        self.tally.over_budget += len(chunk)
        if self.tally.stopped is None:
            self.tally.stopped = "budget"
            log.warning(
                "vendor.budget_exhausted",
                vendor=self.vendor.value,
                budget=self.budget.limit,
                spent=self.budget.spent,
                in_flight=self.budget.reserved,
                left=self.budget.left,
                next_lookup_max_cost=min(self.provider.max_cost([r]) for _, r, _ in chunk),
                month=self.month,
            )
        self._pass_on(chunk)

    def _estimate(self, chunk: list[tuple[_Item, LookupRequest, str]]) -> None:
        """Dry run without buying: count what a real run would ask and its worst case, ask nothing."""
        self.tally.estimate_lookups += len(chunk)
        self.tally.estimate_credits += self.provider.max_cost([r for _, r, _ in chunk])
        self._pass_on(chunk)

    def _stop(self, why: str, *, event: str, **fields: object) -> None:
        """Drop the vendor for the rest of the run, with one log event."""
        if self.stopped is None:
            self.stopped = why
            self.tally.stopped = why
            log.warning(event, vendor=self.vendor.value, **fields)

    async def _ask(self, chunk: list[tuple[_Item, LookupRequest, str]]) -> None:
        requests = [r for _, r, _ in chunk]
        reserved = self.provider.max_cost(requests) if self.budget.limit is not None else 0
        charged = 0
        try:
            self.tally.lookups += 1
            self.tally.asked += len(requests)
            try:
                results = await self.provider.lookup(requests)
            except OutOfCredits as exc:
                self._stop(
                    "out_of_credits",
                    event="vendor.stopped",
                    reason="out of credits or no access",
                    error=str(exc),
                )
                results = []
            except AuthError as exc:
                self._stop("auth", event="vendor.stopped", reason="credentials refused", error=str(exc))
                results = []
            except ServiceUnavailable as exc:
                self._stop("unavailable", event="vendor.stopped", reason="unreachable", error=str(exc))
                results = []
            except MalformedResponse as exc:
                log.warning(
                    "vendor.malformed_response",
                    vendor=self.vendor.value,
                    error=str(exc),
                    contacts=len(requests),
                )
                results = []
            except ServiceError as exc:
                log.warning(
                    "vendor.call_failed", vendor=self.vendor.value, error=str(exc), contacts=len(requests)
                )
                results = []
            charged = self._record(chunk, results)
        finally:
            self.budget.settle(reserved, charged)
            self.slots.release()
            for item, _, _ in chunk:
                self.outbox.put_nowait(item)

    def _record(self, chunk: list[tuple[_Item, LookupRequest, str]], results: list[EnrichmentResult]) -> int:
        """Store the answers and their cost; returns the credits they cost."""
        items = {item.contact.id: (item, fp) for item, _, fp in chunk}
        valid = [r for r in results if r.contact_id in items and r.vendor is self.vendor]
        if len(valid) != len(results):
            log.warning(
                "vendor.unexpected_results", vendor=self.vendor.value, dropped=len(results) - len(valid)
            )
        if not valid:
            return 0
        fingerprints = {r.contact_id: items[r.contact_id][1] for r in valid}
        now = self.fall.clock()
        credits = sum(max(0, r.credits) for r in valid)
        # paid answers are stored at once, whatever happens to the rest of the run
        # answers and their cost in one transaction: a crash cannot keep one and lose the other
        self.fall.store.record_results(valid, fingerprints, credits_month=self.month)
        crashpoint.reached("vendor_answer")
        self.tally.credits += credits
        new_links: list[Link] = []
        counts: Counter[Outcome] = Counter()
        for result in valid:
            counts[result.outcome] += 1
            if (result.error or "").startswith(IDENTITY_MISMATCH):
                self.tally.identity_mismatches += 1
            if result.outcome is Outcome.found:
                items[result.contact_id][0].results.append(result)
            if result.matched_by is not None:
                matched = result.outcome is Outcome.found and bool(result.vendor_id)
                new_links.append(
                    Link(
                        contact_id=result.contact_id,
                        vendor=self.vendor.value,
                        vendor_id=result.vendor_id if matched else None,
                        method="matched" if matched else "unmatched",
                        confidence=result.match_confidence,
                        linked_at=now,
                    )
                )
        if new_links:
            self.fall.store.save_links(new_links)
        self.tally.found += counts[Outcome.found]
        self.tally.not_found += counts[Outcome.not_found]
        self.tally.errors += counts[Outcome.error]
        if self.fall.on_progress is not None:
            self.fall.on_progress(self.vendor.value, len(chunk))
        return credits
