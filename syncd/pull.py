"""The pull phase: list every company contact and classify it against the state store.

Pure classification (`classify`) is separate from the I/O (`pull_contacts`), so the mass-loss guard and
the new/changed/unchanged/deleted split are tested without a PBX.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from syncd.errors import MassLossError
from syncd.logs import get_logger
from syncd.model import Contact

log = get_logger("syncd.pull")


@dataclass(frozen=True, slots=True)
class Classification:
    new: frozenset[int]
    changed: frozenset[int]
    unchanged: frozenset[int]
    deleted: frozenset[int]  # known and live in the store, absent from the PBX now: become tombstones

    def counts(self) -> dict[str, int]:
        return {
            "new": len(self.new),
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
            "deleted": len(self.deleted),
        }


def classify(current_hashes: Mapping[int, str], known_hashes: Mapping[int, str]) -> Classification:
    """Split the PBX's contacts (id -> content hash) against the store's live ones."""
    new: set[int] = set()
    changed: set[int] = set()
    unchanged: set[int] = set()
    for cid, digest in current_hashes.items():
        known = known_hashes.get(cid)
        if known is None:
            new.add(cid)
        elif known == digest:
            unchanged.add(cid)
        else:
            changed.add(cid)
    deleted = set(known_hashes) - set(current_hashes)
    return Classification(frozenset(new), frozenset(changed), frozenset(unchanged), frozenset(deleted))


def check_mass_loss(
    present: int, known: int, *, ratio: float, min_known: int, seen: int | None = None
) -> None:
    """Refuse to act when the PBX suddenly lists far fewer of the contacts the store knows.

    `present` counts the known contacts the PBX still lists (`seen`: every contact it lists, new ones
    included). The guard judges `present`, not `seen`: a PBX at a changed URL, or a restore that renumbered
    the phonebook, can list as many contacts as before and none of the known ones. A changed URL, a restored
    backup or a half-broken PBX must never turn into mass tombstoning.
    """
    if known >= min_known and present < known * ratio:
        listed = (
            f"the PBX lists {present} contacts but the state store knows {known}"
            if seen is None or seen == present
            else f"the PBX lists {seen} contacts but only {present} of the {known} the state store knows"
        )
        raise MassLossError(
            f"{listed}: fewer than {ratio:.0%} of them. Refusing to run, nothing was changed. If the "
            f"contacts were really deleted, lower [sync] mass_loss_ratio for one run or check [pbx] base_url."
        )


@dataclass
class PullResult:
    contacts: dict[int, Contact]  # in scope (phonebook filter applied), by id
    classification: Classification
    seen: int  # every contact the PBX listed
    out_of_scope: int = 0
    pages: int = 0
    duplicates: int = 0
    hashes: dict[int, str] = field(default_factory=dict)


async def pull_contacts(
    pages: AsyncIterator[list[Contact]],
    known_hashes: Mapping[int, str],
    *,
    in_scope: Callable[[Contact], bool] | None = None,
    mass_loss_ratio: float = 0.5,
    mass_loss_min_known: int = 20,
    still_present: Callable[[list[int]], Awaitable[Collection[int]]] | None = None,
) -> PullResult:
    """List, guard and classify. `still_present(ids)` returns those of `ids` the PBX still holds: the
    listing pages by offset, so a contact deleted from a page already read shifts the later ones up a place
    and the first of the next page goes unlisted. Only contacts the PBX confirms gone are deleted; one it
    still holds is left out of this run (the next pull lists it)."""
    contacts: dict[int, Contact] = {}
    hashes: dict[int, str] = {}
    every_id: set[int] = set()
    page_count = duplicates = out_of_scope = 0
    async for page in pages:
        page_count += 1
        for contact in page:
            if contact.id in every_id:
                duplicates += 1  # paging shifted under us (a contact was added meanwhile)
                continue
            every_id.add(contact.id)
            if in_scope is not None and not in_scope(contact):
                out_of_scope += 1
                continue
            contacts[contact.id] = contact
            hashes[contact.id] = contact.content_hash()
    present = sum(1 for cid in known_hashes if cid in every_id)
    check_mass_loss(
        present,
        len(known_hashes),
        ratio=mass_loss_ratio,
        min_known=mass_loss_min_known,
        seen=len(every_id),
    )
    # contacts that left the synced phonebooks are out of scope, not deleted
    scoped_known = {cid: h for cid, h in known_hashes.items() if cid in hashes or cid not in every_id}
    classification = classify(hashes, scoped_known)
    if classification.deleted and still_present is not None:
        missed = frozenset(await still_present(sorted(classification.deleted)))
        if missed:
            log.info("pull.missed_by_paging", count=len(missed))
            classification = replace(classification, deleted=classification.deleted - missed)
    if duplicates:
        log.info("pull.duplicates_skipped", count=duplicates)
    return PullResult(
        contacts=contacts,
        classification=classification,
        seen=len(every_id),
        out_of_scope=out_of_scope,
        pages=page_count,
        duplicates=duplicates,
        hashes=hashes,
    )


def phonebook_filter(ids: Iterable[int]) -> Callable[[Contact], bool]:
    wanted = frozenset(ids)
    return lambda c: any(b in wanted for b in c.phonebook_ids)
