"""One sync run: resume the journal, pull, enrich, merge, commit the plan, push, log.

Crash safety rests on three rules:
1. Nothing about a contact is remembered before its plan is: the pulled records (the next run's base),
   the fields a person touched, the tombstones and the planned updates go to the store in ONE
   transaction (`commit_plan`). A run killed before it left nothing behind but paid vendor answers.
2. Every PBX write is a journal entry first. Before sending, the contact is re-read and the entry's
   precondition checked (a person may have edited it while the vendors were asked); after sending it is
   read back and the entry, the contact's new record and the change-log rows are stored together.
3. A run starts by resolving the entries a killed run left pending: already applied -> confirmed and
   logged once; precondition still holds -> sent; changed by a person -> superseded (planned again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import signal
import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from syncd import crashpoint
from syncd.config import Config
from syncd.enrich import EnrichmentOutcome, Waterfall
from syncd.errors import (
    ConfigError,
    MassLossError,
    ServiceUnavailable,
)
from syncd.logs import get_logger
from syncd.merge import MergeSettings, SkipReason, apply_update, merge
from syncd.model import Contact, ContactUpdate, Vendor
from syncd.owners import check_takeover, log_change, log_unlogged, taken_from_syncd, takeover_notes
from syncd.pbx.client import QUERY_PARAM_MEMORY, PbxToken, YeastarClient
from syncd.pbx.errors import PbxAuthError, PbxError, PbxRejected
from syncd.progress import Progress
from syncd.pull import PullResult, phonebook_filter, pull_contacts
from syncd.run_summary import PlannedContact, RunSummary
from syncd.store import FieldState, JournalEntry, OwnershipNote, StateStore, TokenRecord
from syncd.switchboards import switchboard_numbers
from syncd.vendors.base import Provider
from syncd.vendors.contactout import ContactOutProvider
from syncd.vendors.factory import build_providers

log = get_logger("syncd.engine")
_SWITCHBOARD = SkipReason.switchboard

PBX_TOKEN_SERVICE = "pbx"  # noqa: S105 (the token cache key, not a secret)
QUERY_CHUNK = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


def pbx_token_key(base_url: str, client_id: str, client_secret: str = "") -> str:
    """The token cache's key for one PBX and the credentials its token was minted with: a changed secret
    is a new key, so a token minted with the old one is never reused. Only a keyed hash of the secret
    goes into the key, never the secret itself."""
    secret = hashlib.blake2b(client_secret.encode(), key=b"syncd-pbx-token", digest_size=16).hexdigest()
    identity = f"{base_url.rstrip('/')}|{client_id}|{secret}".encode()
    return f"{PBX_TOKEN_SERVICE}:{hashlib.blake2b(identity, digest_size=8).hexdigest()}"


class StoreTokenCache:
    """The PBX token pair kept in the state store, so a one-shot run reuses a still-valid token.

    Keyed by the PBX and the API client (`for_config`): a token is never offered to another PBX.
    """

    def __init__(self, store: StateStore, key: str = PBX_TOKEN_SERVICE) -> None:
        self.store = store
        self.key = key

    @classmethod
    def for_config(cls, store: StateStore, config: Config) -> StoreTokenCache:
        pbx = config.pbx
        return cls(store, pbx_token_key(str(pbx.base_url), pbx.client_id, pbx.client_secret))

    def load(self) -> PbxToken | None:
        record = self.store.load_token(self.key)
        if record is None or record.refresh_token is None or record.refresh_expires_at is None:
            return None
        return PbxToken(
            access_token=record.access_token,
            access_expires_at=record.access_expires_at.timestamp(),
            refresh_token=record.refresh_token,
            refresh_expires_at=record.refresh_expires_at.timestamp(),
        )

    def save(self, token: PbxToken) -> None:
        self.store.save_token(
            self.key,
            TokenRecord(
                access_token=token.access_token,
                access_expires_at=datetime.fromtimestamp(token.access_expires_at, UTC),
                refresh_token=token.refresh_token,
                refresh_expires_at=datetime.fromtimestamp(token.refresh_expires_at, UTC),
            ),
        )

    def clear(self) -> None:
        self.store.delete_token(self.key)


def merge_settings(config: Config) -> MergeSettings:
    return MergeSettings(
        email=config.fields.email,
        numbers=config.fields.numbers,
        title=config.fields.title,
        default_region=config.sync.default_region,
        number_format=config.sync.number_format,
        title_target=config.sync.title_target,
    )


def managed_view(contact: Contact) -> tuple[object, ...]:
    """The fields an update may touch or send; the precondition compares these, not names."""
    return (contact.email, contact.remark, contact.numbers, contact.job_title, contact.phonebook_ids)


def update_body(update: ContactUpdate, current: Contact) -> dict[str, Any]:
    """company_contact/update fields: only what changes, lists complete."""
    body: dict[str, Any] = {}
    if update.email is not None:
        body["email"] = update.email
    if update.remark is not None:
        body["remark"] = update.remark
    if update.job_title is not None:
        body["job_title"] = update.job_title
    if update.numbers is not None:
        body["number_list"] = [{"num_type": slot.value, "number": number} for slot, number in update.numbers]
        # membership is sent complete too: whether an omitted list is kept is undocumented
        body["phonebook_id_list"] = list(current.phonebook_ids)
    return body


class SyncEngine:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        *,
        dry_run: bool = False,
        buy: bool | None = None,
        mode: str | None = None,
        pbx_transport: httpx.AsyncBaseTransport | None = None,
        providers: Mapping[Vendor, Provider] | None = None,
        clock: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        revoke_token: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.dry_run = dry_run
        self.buy = not dry_run if buy is None else buy  # a dry run buys nothing unless --buy
        self.mode = mode or ("dry_run" if dry_run else "sync")
        self.pbx_transport = pbx_transport
        self._providers = providers
        self.clock = clock
        self.stop = stop or threading.Event()
        self.progress = progress or Progress()
        self.revoke_token = revoke_token
        self.settings = merge_settings(config)

    # --- the run ----------------------------------------------------------------------------------
    async def run(self) -> RunSummary:
        started = self.clock()
        self.store.close_stale_runs(started)
        run_id = self.store.start_run(self.mode, started)
        summary = RunSummary(run_id=run_id, mode=self.mode, started_at=started)
        structlog.contextvars.bind_contextvars(run_id=run_id)
        log.info("run.started", mode=self.mode)
        pbx = YeastarClient(
            self.config.pbx.http_settings(),
            self.config.pbx.client_id,
            self.config.pbx.client_secret,
            token_cache=StoreTokenCache.for_config(self.store, self.config),
            transport=self.pbx_transport,
            query_memory=QUERY_PARAM_MEMORY,
        )
        providers: Mapping[Vendor, Provider] = {}
        error: str | None = None
        try:
            if not self.dry_run:
                log_unlogged(self.store, self.clock())  # change events a killed run never wrote
                await self._resume_journal(pbx, run_id, summary)
                if summary.interrupted:
                    summary.outcome = "interrupted"
                    return summary
            pulled = await self._pull(pbx, summary)
            # an unchanged contact's base is the contact itself (equal hashes): load only the changed ones
            bases = self.store.load_contacts(pulled.classification.changed)
            for cid in pulled.classification.unchanged:
                bases[cid] = pulled.contacts[cid]
            # only contacts the store knew can have provenance; a first run of 100k asks for none
            cls = pulled.classification
            states = {
                cid: st for cid, st in self.store.field_states(cls.changed | cls.unchanged).items() if st
            }
            if self.dry_run:
                await self._preview_journal(pbx, pulled, bases, states)
            providers = self._providers if self._providers is not None else self._build_providers()
            for provider in providers.values():
                if isinstance(provider, ContactOutProvider) and provider.name_source is None:
                    provider.name_source = pbx.contact_names  # names as the PBX holds them
            enriched = await self._enrich(providers, pulled, bases, states, summary)
            crashpoint.reached("enriched")
            planned = self._plan(pulled, bases, states, enriched, summary)
            # the takeover guard: a restore or a bulk import must not make every field person-owned
            touched = {p.contact.id: p.result.person_touched for p in planned if p.result.person_touched}
            check_takeover(
                taken_from_syncd(touched, states),
                self.store.syncd_written_count,
                ratio=self.config.sync.takeover_ratio,
                min_fields=self.config.sync.takeover_min_fields,
            )
            notes = takeover_notes(touched, bases, pulled.contacts, self.settings.title_target)
            if self.stop.is_set():
                # asked to stop (SIGTERM) before anything was committed: the paid answers are in the
                # ledger, so the next run plans the same without buying again
                summary.interrupted = True
                summary.outcome = "interrupted"
                log.info("run.stopped", phase="before push")
                return summary
            if self.dry_run:
                summary.planned = planned
            else:
                entries = self._commit(run_id, pulled, planned, notes)
                await self._push(pbx, run_id, entries, {p.contact.id: p.contact for p in planned}, summary)
            summary.outcome = summary.settle()
        except MassLossError as exc:
            summary.outcome, error = "aborted", str(exc)
            raise
        except ServiceUnavailable as exc:
            summary.outcome, error = "failed", str(exc)
            summary.unreachable = str(exc)
            raise
        except BaseException as exc:
            summary.outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            summary.ended_at = self.clock()
            summary.counts.setdefault("failed", len(summary.failures))
            summary.counts["credits"] = summary.credits
            if summary.unreachable_vendors:
                summary.counts["unreachable"] = summary.unreachable_vendors
                if error is None:
                    error = "unreachable: " + ", ".join(summary.unreachable_vendors)
            pending = None if self.dry_run else self._pending_count()
            if pending is not None:
                # what `status` shows as pending: one number, in the log, the run's record and status
                summary.counts["pending"] = pending
                if summary.outcome == "interrupted" and error is None:
                    error = (
                        f"stopped by a signal; {pending} journal entries pending (the next run resumes them)"
                    )
            try:
                self.store.finish_run(run_id, summary.outcome, summary.counts, error, summary.ended_at)
            finally:
                await pbx.close(revoke=self.revoke_token)
                if self._providers is None:
                    for provider in providers.values():
                        await provider.aclose()
                log.info(
                    "run.finished",
                    outcome=summary.outcome,
                    duration_s=round((summary.ended_at - started).total_seconds(), 3),
                    **{k: v for k, v in summary.counts.items() if k != "credits"},
                    credits=summary.credits,
                )
                structlog.contextvars.unbind_contextvars("run_id")
        return summary

    def _pending_count(self) -> int | None:
        try:
            return len(self.store.journal_pending())
        except Exception:  # the store failing is what ends this run: its own error says so
            return None

    def _build_providers(self) -> dict[Vendor, Provider]:
        return build_providers(self.config)

    # --- pull ---------------------------------------------------------------------------------------
    async def _pull(self, pbx: YeastarClient, summary: RunSummary) -> PullResult:
        self.progress.phase("pull")
        in_scope = None
        names = self.config.sync.phonebooks
        if names:
            ids = await pbx.phonebook_ids(names)
            missing = [n for n in names if n not in ids]
            if missing:
                raise ConfigError(
                    "sync.phonebooks", f"no phonebook named {', '.join(map(repr, missing))} on the PBX"
                )
            # an "All Company Contacts" phonebook (sel_all) holds every contact, listed in it or not
            every = await pbx.sel_all_phonebook_ids()
            in_scope = None if every & set(ids.values()) else phonebook_filter(ids.values())

        async def pages() -> Any:
            async for page in pbx.iter_contact_pages(self.config.pbx.page_size):
                crashpoint.reached("pull_page")
                self.progress.advance("pull", len(page))
                yield page

        async def still_present(ids: list[int]) -> Collection[int]:
            return (await pbx.query_contacts(ids)).keys()

        pulled = await pull_contacts(
            pages(),
            self.store.live_hashes(),
            in_scope=in_scope,
            mass_loss_ratio=self.config.sync.mass_loss_ratio,
            mass_loss_min_known=self.config.sync.mass_loss_min_known,
            still_present=still_present,
        )
        summary.counts.update(
            seen=pulled.seen,
            in_scope=len(pulled.contacts),
            pages=pulled.pages,
            **pulled.classification.counts(),
        )
        log.info("pull.done", seen=pulled.seen, pages=pulled.pages, **pulled.classification.counts())
        return pulled

    # --- enrich -------------------------------------------------------------------------------------
    async def _enrich(
        self,
        providers: Mapping[Vendor, Provider],
        pulled: PullResult,
        bases: Mapping[int, Contact],
        states: Mapping[int, Mapping[str, Any]],
        summary: RunSummary,
    ) -> EnrichmentOutcome:
        self.progress.phase("enrich", len(pulled.contacts))
        budgets: dict[Vendor, int | None] = {}
        for vendor in providers:
            section = self.config.vendor(vendor)
            budgets[vendor] = section.monthly_credit_budget if section is not None else None
        fall = Waterfall(
            providers=providers,
            order=self.config.enabled_vendors(),
            store=self.store,
            # the switchboards the phonebook itself shows (numbers two contacts hold) before any answer
            settings=dataclasses.replace(
                self.settings,
                switchboards=switchboard_numbers(pulled.contacts.values(), {}, self.settings.default_region),
            ),
            refresh_after=self.config.enrich.refresh_after,
            retry_not_found_after=self.config.enrich.retry_not_found_after,
            budgets=budgets,
            clock=self.clock,
            on_finished=lambda n: self.progress.advance("enrich", n),
            buy=self.buy or not self.dry_run,
        )
        outcome = await fall.run(pulled.contacts, bases, states)
        summary.credits = outcome.credits
        summary.vendor_stops = {v.value: t.stopped for v, t in outcome.tallies.items() if t.stopped}
        summary.counts["vendors"] = {
            v.value: {
                "asked": t.asked,
                "cached": t.cached,
                "found": t.found,
                "not_found": t.not_found,
                "errors": t.errors,
                "credits": t.credits,
                **({"stopped": t.stopped} if t.stopped else {}),
                **({"identity_mismatches": t.identity_mismatches} if t.identity_mismatches else {}),
                **t.budget_counts(estimate=self.dry_run and not self.buy),
            }
            for v, t in outcome.tallies.items()
        }
        return outcome

    # --- merge --------------------------------------------------------------------------------------
    def _plan(
        self,
        pulled: PullResult,
        bases: Mapping[int, Contact],
        states: Mapping[int, Mapping[str, Any]],
        enriched: EnrichmentOutcome,
        summary: RunSummary,
    ) -> list[PlannedContact]:
        planned: list[PlannedContact] = []
        skips: Counter[str] = Counter()
        boards = switchboard_numbers(pulled.contacts.values(), enriched.results, self.settings.default_region)
        settings = dataclasses.replace(self.settings, switchboards=boards)
        # planning allocates many small acyclic objects: the cyclic collector walking them would cost up
        # to 40% of a first sync, so it is paused for the loop (reference counting still frees memory)
        collecting = gc.isenabled()
        gc.disable()
        try:
            for cid, contact in pulled.contacts.items():
                result = merge(
                    bases.get(cid),
                    contact,
                    enriched.results.get(cid, ()),
                    states.get(cid, {}),
                    settings,
                    current_hash=pulled.hashes.get(cid),
                )
                for skip in result.skipped:
                    skips[skip.reason.value] += 1
                    if skip.reason is _SWITCHBOARD:
                        summary.switchboard_skips.append((cid, contact.name, skip))
                if result.update is not None or result.person_touched or result.closed_kinds:
                    planned.append(PlannedContact(contact, result))
        finally:
            if collecting:
                gc.enable()
        updates = [p for p in planned if p.result.update is not None]
        summary.counts["planned_updates"] = len(updates)
        summary.counts["planned_changes"] = sum(len(p.result.changes) for p in updates)
        summary.counts["person_touched"] = sum(len(p.result.person_touched) for p in planned)
        if skips:
            summary.counts["skipped"] = dict(skips)
        summary.counts["switchboards_skipped"] = len(summary.switchboard_skips)
        for cid, _name, skip in summary.switchboard_skips:
            log.info(
                "merge.switchboard_skipped",
                contact_id=cid,
                field=skip.field,
                number=skip.value,
                source=skip.source,
            )
        log.info(
            "merge.switchboards",
            known=len(boards),
            skipped=summary.counts["switchboards_skipped"],
        )
        return planned

    def _commit(
        self,
        run_id: str,
        pulled: PullResult,
        planned: Sequence[PlannedContact],
        notes: Sequence[OwnershipNote] = (),
    ) -> list[JournalEntry]:
        """One transaction: the new base records, person-owned fields, tombstones and the journal."""
        cls = pulled.classification
        to_save = [pulled.contacts[cid] for cid in (cls.new | cls.changed)]
        # a kind a person closed is kept as a person-owned field state ("kind:direct") beside the slots
        touched = {
            p.contact.id: p.result.person_touched | p.result.closed_kinds
            for p in planned
            if p.result.person_touched or p.result.closed_kinds
        }
        updates = [p.result.update for p in planned if p.result.update is not None]
        ids = self.store.commit_plan(
            run_id,
            pulled=to_save,
            unchanged=cls.unchanged,
            person_touched=touched,
            tombstones=cls.deleted,
            updates=updates,
            at=self.clock(),
            notes=notes,
        )
        crashpoint.reached("committed")
        if cls.deleted:
            log.info("pull.tombstoned", count=len(cls.deleted))
        wanted = set(ids)
        return [e for e in self.store.journal_pending() if e.id in wanted]

    # --- push ---------------------------------------------------------------------------------------
    async def _push(
        self,
        pbx: YeastarClient,
        run_id: str,
        entries: Sequence[JournalEntry],
        pulled: Mapping[int, Contact],
        summary: RunSummary,
    ) -> None:
        self.progress.phase("push", len(entries))
        applied = superseded = 0
        semaphore = asyncio.Semaphore(self.config.sync.push_concurrency)
        for start in range(0, len(entries), QUERY_CHUNK):
            if self.stop.is_set():
                summary.interrupted = True
                log.info("push.stopping", left_in_this_run=len(entries) - start)
                break
            chunk = entries[start : start + QUERY_CHUNK]
            now_held = await pbx.query_contacts(e.contact_id for e in chunk)
            sendable: list[tuple[JournalEntry, Contact]] = []
            for entry in chunk:
                base = pulled.get(entry.contact_id)
                held = now_held.get(entry.contact_id)
                if base is None or held is None or managed_view(held) != managed_view(base):
                    # deleted or edited by a person since the pull: plan again next run
                    self._supersede(entry, "the contact changed before the push")
                    superseded += 1
                    self.progress.advance("push")
                    continue
                sendable.append((entry, held))

            async def send(entry: JournalEntry, held: Contact) -> bool:
                async with semaphore:
                    if self.stop.is_set():
                        summary.interrupted = True
                        return False  # never marked sent: not in doubt, the next run sends it
                    return await self._send(pbx, entry, held, summary)

            # every send finishes (or fails) before the next step: nothing runs on after the run ends
            sent = await asyncio.gather(*(send(e, h) for e, h in sendable), return_exceptions=True)
            done: list[tuple[JournalEntry, Contact]] = []
            for pair, outcome in zip(sendable, sent, strict=True):
                if outcome is True:
                    done.append(pair)
                elif isinstance(outcome, ServiceUnavailable):
                    # in doubt: the entry stays pending and the next run confirms or resends it
                    summary.unreachable = str(outcome)
                elif isinstance(outcome, PbxAuthError):
                    raise outcome
                elif isinstance(outcome, PbxError):
                    self._fail(pair[0], outcome, summary)
                elif isinstance(outcome, BaseException):
                    raise outcome
            if done:
                applied += await self._read_back(pbx, run_id, done, summary)
                self.progress.advance("push", len(done))
            if summary.unreachable:
                log.error(
                    "push.pbx_unreachable",
                    error=summary.unreachable,
                    pending=len(entries) - start - len(chunk),
                )
                break
        summary.counts.update(updated=applied, superseded=superseded, failed=len(summary.failures))

    async def _send(
        self,
        pbx: YeastarClient,
        entry: JournalEntry,
        held: Contact,
        summary: RunSummary,
        *,
        mark: bool = True,
    ) -> bool:
        if mark:
            self.store.journal_mark_sent(entry.id, self.clock())
            crashpoint.reached("marked_sent")
        try:
            await pbx.update_contact(entry.contact_id, update_body(entry.update, held))
        except PbxRejected as exc:
            self._fail(entry, exc, summary)
            return False
        crashpoint.reached("sent")
        return True

    def _fail(self, entry: JournalEntry, exc: PbxError, summary: RunSummary) -> None:
        values = {c.field: c.new for c in entry.update.changes}
        log.error("contact.rejected", contact_id=entry.contact_id, reason=str(exc), values=values)
        self.store.journal_resolve(entry.id, "failed", str(exc), self.clock())
        summary.failures.append((entry.contact_id, str(exc)))

    def _supersede(self, entry: JournalEntry, reason: str) -> None:
        """Resolve a journal entry as superseded (planned again next run), logged with its contact."""
        log.info("journal.superseded", contact_id=entry.contact_id, entry=entry.id, reason=reason)
        self.store.journal_resolve(entry.id, "superseded", reason, self.clock())

    async def _read_back(
        self,
        pbx: YeastarClient,
        run_id: str,
        done: Sequence[tuple[JournalEntry, Contact]],
        summary: RunSummary,
    ) -> int:
        """Read back the contacts of sent entries and store those the PBX confirms; returns how many."""
        after = await pbx.query_contacts(e.contact_id for e, _ in done)
        confirmed = [
            (entry, now)
            for entry, held in done
            if (now := self._confirm(entry, held, after.get(entry.contact_id), summary)) is not None
        ]
        self._applied(run_id, confirmed, summary)
        return len(confirmed)

    def _confirm(
        self, entry: JournalEntry, held: Contact, after: Contact | None, summary: RunSummary
    ) -> Contact | None:
        """The contact as the PBX now holds it when the update took; otherwise resolve the entry."""
        expected = apply_update(held, _rebased(entry.update, held))
        if after is None:
            self._supersede(entry, "the contact was deleted during the push")
            return None
        if not _holds(after, expected, entry.update):
            reason = "the PBX accepted the update but does not hold the values sent"
            log.error("contact.not_applied", contact_id=entry.contact_id, reason=reason)
            self.store.journal_resolve(entry.id, "failed", reason, self.clock())
            summary.failures.append((entry.contact_id, reason))
            return None
        return after

    def _applied(
        self, run_id: str, confirmed: Sequence[tuple[JournalEntry, Contact]], summary: RunSummary
    ) -> None:
        """Store confirmed entries (one transaction), log each change with its id, then mark them logged
        (a crash in between: the next run logs what is unmarked, see `syncd.owners.log_unlogged`)."""
        if not confirmed:
            return
        ids = self.store.journal_apply_many(
            run_id, [(entry.id, after, entry.update.changes) for entry, after in confirmed], self.clock()
        )
        for (entry, _), change_ids in zip(confirmed, ids, strict=True):
            crashpoint.reached("applied")
            for change, change_id in zip(entry.update.changes, change_ids, strict=True):
                summary.applied.append(change)
                summary.changes_by_field[change.field] += 1
                log_change(
                    change_id,
                    contact_id=change.contact_id,
                    field=change.field,
                    old=change.old,
                    new=change.new,
                    source=change.source,
                    reason=change.reason,
                )
        self.store.mark_logged([i for change_ids in ids for i in change_ids], self.clock())

    # --- crash recovery -------------------------------------------------------------------------
    async def _preview_journal(
        self,
        pbx: YeastarClient,
        pulled: PullResult,
        bases: dict[int, Contact],
        states: dict[int, dict[str, FieldState]],
    ) -> None:
        """Dry run: plan as if the journal had been resumed, writing nothing.

        An entry a killed run already applied is only confirmed by the next real run (its record becomes
        the base, its fields syncd's); without this, the dry run would take syncd's own writes for a
        person's changes. Entries not applied are planned again by the merge, as the resume would send them.
        """
        pending = [e for e in self.store.journal_pending() if e.contact_id in pulled.contacts]
        if not pending:
            return
        stored = self.store.load_contacts(e.contact_id for e in pending)
        now = self.clock()
        for entry in pending:
            held, base = pulled.contacts[entry.contact_id], stored.get(entry.contact_id)
            if base is None or not _holds(
                held, apply_update(base, _rebased(entry.update, base)), entry.update
            ):
                continue
            bases[entry.contact_id] = held
            fields = states.setdefault(entry.contact_id, {})
            for change in entry.update.changes:
                if not (fields.get(change.field) and fields[change.field].person_owned):
                    fields[change.field] = FieldState(
                        owner="syncd", syncd_value=change.new, source=change.source, written_at=now
                    )

    async def _resume_journal(self, pbx: YeastarClient, run_id: str, summary: RunSummary) -> None:
        """Resolve the entries a stopped or killed run left pending, `push_concurrency` at a time.

        Per chunk of `QUERY_CHUNK` entries: one query of what the PBX holds, then each entry is confirmed
        (sent before the stop or crash: logged once), sent (its precondition still holds) or superseded
        (a person changed the contact); the sends run concurrently and are read back with one query.
        One `journal.resume_progress` event per chunk. A stop request ends the resume between chunks.
        """
        pending = self.store.journal_pending()
        if not pending:
            return
        log.info("journal.resuming", pending=len(pending))
        self.progress.phase("resume", len(pending))
        bases = self.store.load_contacts(e.contact_id for e in pending)
        semaphore = asyncio.Semaphore(self.config.sync.push_concurrency)
        resumed = confirmed = superseded = 0

        async def send(entry: JournalEntry, held: Contact) -> bool:
            async with semaphore:
                if self.stop.is_set():
                    summary.interrupted = True
                    return False  # never marked sent: the next run sends it
                return await self._send(pbx, entry, held, summary)

        for start in range(0, len(pending), QUERY_CHUNK):
            if self.stop.is_set():
                summary.interrupted = True
                log.info("journal.resume_stopping", left_in_this_run=len(pending) - start)
                break
            chunk = pending[start : start + QUERY_CHUNK]
            held_now = await pbx.query_contacts(e.contact_id for e in chunk)
            to_send: list[tuple[JournalEntry, Contact]] = []
            for entry in chunk:
                held = held_now.get(entry.contact_id)
                base = bases.get(entry.contact_id)
                if held is None or base is None:
                    self._supersede(entry, "the contact no longer exists")
                    superseded += 1
                elif _holds(held, apply_update(base, _rebased(entry.update, base)), entry.update):
                    # sent before the stop or crash: confirm, log once
                    self._applied(run_id, [(entry, held)], summary)
                    confirmed += 1
                elif managed_view(held) == managed_view(base):
                    to_send.append((entry, held))
                    continue  # advanced once sent
                else:
                    self._supersede(entry, "a person changed the contact before it was pushed")
                    superseded += 1
                self.progress.advance("resume")
            # every send finishes (or fails) before the next step, as in the push
            sent = await asyncio.gather(*(send(e, h) for e, h in to_send), return_exceptions=True)
            done = [pair for pair, ok in zip(to_send, sent, strict=True) if ok is True]
            if done:
                resumed += await self._read_back(pbx, run_id, done, summary)
            self.progress.advance("resume", len(to_send))
            log.info(
                "journal.resume_progress",
                done=min(start + len(chunk), len(pending)),
                of=len(pending),
                confirmed=confirmed,
                sent=resumed,
                superseded=superseded,
            )
            failure = next((o for o in sent if isinstance(o, BaseException)), None)
            if failure is not None:
                # as before the resume was concurrent: the run ends here; entries marked sent stay
                # pending (in doubt) and the next run confirms or resends them
                raise failure
        summary.counts["journal_resumed"] = {
            "confirmed": confirmed,
            "sent": resumed,
            "superseded": superseded,
        }
        log.info("journal.resumed", confirmed=confirmed, sent=resumed, superseded=superseded)


def _rebased(update: ContactUpdate, contact: Contact) -> ContactUpdate:
    """The update with its precondition set to `contact` (to compute the expected result)."""
    from dataclasses import replace

    return replace(update, precondition_hash=contact.content_hash())


def _holds(after: Contact, expected: Contact, update: ContactUpdate) -> bool:
    """Does the PBX hold what the update wrote? Only the fields the update set are compared."""
    if update.email is not None and after.email.lower() != expected.email.lower():
        return False
    if update.remark is not None and after.remark != expected.remark:
        return False
    if update.job_title is not None and after.job_title != expected.job_title:
        return False
    # memberships are sent with the numbers (sel_all books left out): they must come back unchanged
    return update.numbers is None or (
        after.numbers == expected.numbers and after.phonebook_ids == expected.phonebook_ids
    )


# --- entry points ---------------------------------------------------------------------------------


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_stoppable(engine: SyncEngine) -> RunSummary:
    """`engine.run()` with SIGTERM / SIGINT handled as the daemon handles them: the first one sets the
    engine's stop (the contact being written is finished, the run recorded as `interrupted`); a second
    one acts as if syncd did not handle it (SIGTERM ends the process, SIGINT raises KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        for s in installed:
            loop.remove_signal_handler(s)
        installed.clear()
        log.warning("run.stopping", signal=sig.name, hint="finishing the contact being written")
        engine.stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)
    try:
        return await engine.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_locked(
    config: Config, *, dry_run: bool = False, buy: bool = False, progress: Progress | None = None
) -> RunSummary:
    """One run under the store's lock (what `syncd --sync-now` runs; the CLI prints its summary)."""
    store = StateStore.open(config.sync.state_url)
    display = progress or Progress()
    try:
        with store.lock():
            engine = SyncEngine(config, store, dry_run=dry_run, buy=buy or not dry_run, progress=display)
            return asyncio.run(run_stoppable(engine))
    finally:
        display.done()
        store.close()
