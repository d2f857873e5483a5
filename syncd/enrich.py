"""The enrichment waterfall: ask the vendors in `enrich.order`, buying as little as possible.

Each contact flows through one stage per vendor, in order. A stage
- passes the contact on untouched when nothing is wanted any more (`merge.open_wants`: the same planning
  the merge uses, so "wanted" and "would be written" never disagree), when the vendor cannot be asked
  about it (no known id), or when the vendor is stopped (budget, credits, auth, unreachable);
- answers from the ledger when a fresh answer is cached (found: `refresh_after`; not found:
  `retry_not_found_after`) for the same identity (the fingerprint);
- otherwise queues the contact and asks the vendor in batches, within the monthly credit budget.
Stages run concurrently, so a contact InsideView cannot help is at ContactOut while InsideView still
works through its batches: the wall time approaches the slowest vendor's, not the sum of all.

Every paid answer is written to the ledger (and its credits to the month's count) as soon as it
arrives, dry run or not: credits spent are never spent twice.
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
from syncd.merge import FieldStateLike, MergeSettings, open_wants
from syncd.model import Contact, EnrichmentResult, LookupRequest, Outcome, Vendor
from syncd.normalize import fold_company, fold_text
from syncd.store import LedgerEntry, Link, StateStore, month_of
from syncd.vendors.base import Provider

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
        self.budget = fall.budgets.get(vendor)
        self.month = month_of(fall.clock())
        self.spent = 0
        self.reserved = 0
        self.stopped: str | None = None
        self.inflight: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(fall.max_inflight)
        self.ledger: dict[int, LedgerEntry] = {}

    # --- decisions ------------------------------------------------------------------------------
    def _request(self, contact: Contact) -> LookupRequest:
        link = self.links.get((contact.id, self.vendor.value))
        vendor_id = link.vendor_id if link is not None and link.method in ("imported", "matched") else None
        return LookupRequest(
            contact_id=contact.id,
            name=contact.name,
            company=contact.company,
            email=contact.email,
            phones=tuple(n for _, n in contact.numbers),
            vendor_id=vendor_id,
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
        request = self._request(contact)
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
        self.spent = self.fall.store.credits_for_month(self.month).get(self.vendor.value, 0)
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
        self.outbox.put_nowait(_DONE)

    async def _launch(self, work: list[tuple[_Item, LookupRequest, str]]) -> None:
        for start in range(0, len(work), CHUNK_MAX):
            chunk = work[start : start + CHUNK_MAX]
            if self.stopped:
                for item, _, _ in chunk:
                    self.outbox.put_nowait(item)
                continue
            chunk = self._affordable(chunk)
            if not chunk:
                continue
            await self.slots.acquire()
            task = asyncio.create_task(self._ask(chunk))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    def _affordable(
        self, chunk: list[tuple[_Item, LookupRequest, str]]
    ) -> list[tuple[_Item, LookupRequest, str]]:
        """Shrink `chunk` to what the monthly budget still allows (checked before the call is made)."""
        if self.budget is None:
            return chunk
        cost = self.provider.max_cost([r for _, r, _ in chunk])
        left = self.budget - self.spent - self.reserved
        if cost <= left:
            self.reserved += cost
            return chunk
        per_request = max(1.0, cost / len(chunk))
        n = max(0, int(left // per_request))  # left < 0 once spent exceeds a lowered budget

        def fits(k: int) -> bool:
            return self.provider.max_cost([r for _, r, _ in chunk[:k]]) <= left

        if n and not fits(n):
            # the average hides dearer requests at the front: the longest prefix within the budget
            lo, hi = 0, n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            n = lo
        kept, dropped = chunk[:n], chunk[n:]
        for item, _, _ in dropped:
            self.outbox.put_nowait(item)
        if kept:
            self.reserved += self.provider.max_cost([r for _, r, _ in kept])
        self._stop(
            "budget",
            event="vendor.budget_exhausted",
            budget=self.budget,
            spent=self.spent,
            month=self.month,
        )
        return kept

    def _stop(self, why: str, *, event: str, **fields: object) -> None:
        """Drop the vendor for the rest of the run, with one log event."""
        if self.stopped is None:
            self.stopped = why
            self.tally.stopped = why
            log.warning(event, vendor=self.vendor.value, **fields)

    async def _ask(self, chunk: list[tuple[_Item, LookupRequest, str]]) -> None:
        requests = [r for _, r, _ in chunk]
        reserved = self.provider.max_cost(requests) if self.budget is not None else 0
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
            self._record(chunk, results)
        finally:
            self.reserved -= reserved
            self.slots.release()
            for item, _, _ in chunk:
                self.outbox.put_nowait(item)

    def _record(self, chunk: list[tuple[_Item, LookupRequest, str]], results: list[EnrichmentResult]) -> None:
        items = {item.contact.id: (item, fp) for item, _, fp in chunk}
        valid = [r for r in results if r.contact_id in items and r.vendor is self.vendor]
        if len(valid) != len(results):
            log.warning(
                "vendor.unexpected_results", vendor=self.vendor.value, dropped=len(results) - len(valid)
            )
        if not valid:
            return
        fingerprints = {r.contact_id: items[r.contact_id][1] for r in valid}
        now = self.fall.clock()
        credits = sum(max(0, r.credits) for r in valid)
        # paid answers are stored at once, whatever happens to the rest of the run
        # answers and their cost in one transaction: a crash cannot keep one and lose the other
        self.fall.store.record_results(valid, fingerprints, credits_month=self.month)
        crashpoint.reached("vendor_answer")
        self.spent += credits
        self.tally.credits += credits
        new_links: list[Link] = []
        counts: Counter[Outcome] = Counter()
        for result in valid:
            counts[result.outcome] += 1
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
