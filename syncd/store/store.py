"""`StateStore`: everything syncd remembers between runs, in SQLite (default) or PostgreSQL.

Synchronous SQLAlchemy Core. Every public method is one short transaction (reads get a consistent snapshot;
writes on SQLite start with BEGIN IMMEDIATE, so a read-then-write never fails half way on a busy database).
Database failures surface as `StoreError` naming the store and the problem, never as a driver traceback;
caller mistakes (a naive datetime, an unknown run id, a journal entry in the wrong state) raise
`ValueError` / `KeyError`.

Concurrency: one writer process at a time is the contract (`lock()`); readers (e.g. `syncd status`) may run
alongside a writer. A `StateStore` may be shared by threads, except an in-memory SQLite store, which uses a
single connection and must be used from one thread at a time.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from syncd import crashpoint
from syncd.errors import StoreConfigError, StoreError
from syncd.model import Contact, ContactUpdate, EnrichmentResult, FieldChange, Outcome, Vendor
from syncd.store import lock as locks
from syncd.store import migrate
from syncd.store.records import (
    CHANGE_KIND,
    CHANGE_KINDS,
    JOURNAL_APPLIED,
    JOURNAL_FAILED,
    JOURNAL_PENDING,
    JOURNAL_SUPERSEDED,
    LINK_METHODS,
    OWNER_PERSON,
    OWNER_SYNCD,
    RUN_MODES,
    RUN_OUTCOMES,
    RUN_RUNNING,
    TOMBSTONE_KIND,
    ChangeRecord,
    FieldOwner,
    FieldState,
    JournalEntry,
    LedgerEntry,
    Link,
    OwnershipNote,
    RunRecord,
    TokenRecord,
    check_month,
    result_from_json,
    result_to_json,
    update_from_json,
    update_to_json,
    utc,
    vendor_name,
)
from syncd.store.schema import (
    change_log,
    contacts,
    credit_usage,
    enrichment_ledger,
    field_provenance,
    identity_links,
    push_journal,
    runs,
    tokens,
)

BUSY_TIMEOUT_MS = 10_000
WRITE_CHUNK = 5_000  # rows per executemany
IN_CHUNK = 500  # ids per IN (...) list

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique_ids(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in ids))


def _update_ids(
    conn: Connection, table: Table, ids: Iterable[int], guard: ColumnElement[bool], **values: Any
) -> int:
    """UPDATE `table` SET `values` WHERE id IN (ids) AND `guard`, IN_CHUNK ids at a time; returns the rows."""
    n = 0
    for chunk in _chunks(_unique_ids(ids), IN_CHUNK):
        n += conn.execute(update(table).where(table.c.id.in_(chunk), guard).values(**values)).rowcount
    return n


def record_json(contact: Contact) -> str:
    """The stored form of a contact: `Contact.to_record()` as canonical JSON."""
    return json.dumps(contact.to_record(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _digest(payload: str) -> str:
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _contact_rows(contacts_: Iterable[Contact], at: datetime) -> Iterator[dict[str, Any]]:
    """Rows for the contacts table, made lazily: a caller writing in chunks holds one chunk of rows at a
    time, not 100k of them. The stored JSON is exactly what `Contact.content_hash` hashes, so one
    serialisation serves both (half the cost on 100k contacts); should the model ever hash differently,
    the first contact shows it and the model's own `content_hash` is used for all."""
    reuse = True
    for n, c in enumerate(contacts_):
        payload = record_json(c)
        if n == 0:
            reuse = _digest(payload) == c.content_hash()
        yield {
            "id": c.id,
            "record": payload,
            "content_hash": _digest(payload) if reuse else c.content_hash(),
            "first_seen_at": at,
            "last_seen_at": at,
        }


def _contact_from_json(raw: str) -> Contact:
    rec = json.loads(raw)
    if not isinstance(rec, dict):
        raise ValueError("expected a JSON object")
    return Contact.from_record(rec)


def _describe(exc: BaseException) -> str:
    """The driver's one-line reason, without SQL text or bound parameters (they may hold tokens)."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(exc, SQLAlchemyError) and not isinstance(exc, DBAPIError):
        # StatementError and friends: the message is the cause's, plus SQL we do not want
        cause = exc.__cause__ or exc.__context__
        text_ = str(cause) if cause is not None else type(exc).__name__
    elif isinstance(orig, OSError) and orig.strerror:
        text_ = orig.strerror
    else:
        text_ = str(orig)
    lines = text_.strip().splitlines()
    reason = lines[0] if lines else type(orig).__name__
    if "file is not a database" in reason:
        reason += " (the file is corrupt or is not an SQLite database)"
    elif "readonly database" in reason or "unable to open database file" in reason:
        reason += " (check the file's and its directory's permissions, and the free space)"
    return reason


# what SQLite says when the file or its directory cannot be opened or written: permissions, a read-only
# file system. Retrying cannot help (a configuration error); "disk is full" and "locked" can pass (75).
_UNWRITABLE = ("readonly database", "unable to open database file", "read-only file system")


_UNWRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR})


def _os_kind(exc: OSError) -> type[StoreError]:
    """Permissions, a read-only file system, a path through a file: configuration. Else (full...): 75."""
    return StoreConfigError if exc.errno in _UNWRITABLE_ERRNOS else StoreError


def _store_error(where: str, exc: BaseException) -> StoreError:
    reason = _describe(exc)
    kind = StoreConfigError if any(marker in reason.lower() for marker in _UNWRITABLE) else StoreError
    return kind(f"state store {where}: {reason}")


class StateStore:
    """The state store. Create with `StateStore.open(url)`; close with `close()` (or use it as a context)."""

    def __init__(self, engine: Engine, where: str, lock_path: str | None) -> None:
        self._engine = engine
        self.where = where  # what error messages call this store: a file path or a password-less URL
        self._lock_path = lock_path
        self._memory_lock = threading.Lock()  # only used by in-memory stores
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> StateStore:
        """Open and migrate to the head schema revision; with `create`, make the store if there is none.

        Without `create` (the read-only commands: `status`, `history`) a store that does not exist yet is
        a `StoreConfigError` and nothing is created: neither a directory, nor a file, nor tables.
        """
        engine, where, lock_path = make_engine(url, create=create)
        store = cls(engine, where, lock_path)
        try:
            if not create:
                with engine.connect() as conn, conn.begin():
                    found = migrate.current_revision(conn)
                if found is None:
                    raise StoreConfigError(
                        f"state store {where} holds no syncd store yet: no run has created it, or "
                        "sync.state_url points at the wrong place"
                    )
            migrate.upgrade(engine, where)
        except StoreError:
            engine.dispose()
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            engine.dispose()
            raise _store_error(where, exc) from exc
        except Exception as exc:  # alembic's CommandError and the like: still name the store
            engine.dispose()
            raise StoreError(f"state store {where}: cannot migrate: {exc}") from exc
        return store

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def schema_revision(self) -> str:
        with self._read() as conn:
            rev = migrate.current_revision(conn)
        if rev is None:
            raise StoreError(f"state store {self.where}: no schema revision recorded")
        return rev

    # --- transactions -----------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> StoreError:
        return _store_error(self.where, exc)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        if self._closed:
            raise StoreError(f"state store {self.where}: used after close()")
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._closed:
            raise StoreError(f"state store {self.where}: used after close()")
        try:
            with self._engine.connect() as conn:
                conn.execution_options(syncd_write=True)
                with conn.begin():
                    yield conn
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise self._error(exc) from exc

    def _decode(self, what: str, decode: Callable[[str], T], raw: str) -> T:
        """A stored JSON value that no longer decodes is a damaged store, not a caller bug."""
        try:
            return decode(raw)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise StoreError(
                f"state store {self.where}: {what} is unreadable ({type(exc).__name__}: {exc})"
            ) from exc

    def _insert(self, table: Table) -> Any:
        """A dialect INSERT that has `on_conflict_do_update` / `on_conflict_do_nothing` and `excluded`."""
        if self.dialect == "postgresql":
            return pg_dialect.insert(table)
        return sqlite_dialect.insert(table)

    # --- lock -------------------------------------------------------------------------------------

    def lock(self) -> AbstractContextManager[None]:
        """Exclusive across processes, non-blocking: raises `LockHeldError` when another run holds it."""
        if self.dialect == "postgresql":
            return locks.advisory_lock(self._engine, self.where)
        if self._lock_path is None:
            return locks.memory_lock(self._memory_lock, self.where)
        return locks.file_lock(self._lock_path)

    # --- contacts ---------------------------------------------------------------------------------

    def live_hashes(self) -> dict[int, str]:
        """content_hash of every live (not tombstoned) contact."""
        q = select(contacts.c.id, contacts.c.content_hash).where(contacts.c.deleted_at.is_(None))
        with self._read() as conn:
            return {int(i): str(h) for i, h in conn.execute(q)}

    def tombstoned_ids(self) -> set[int]:
        q = select(contacts.c.id).where(contacts.c.deleted_at.is_not(None))
        with self._read() as conn:
            return {int(i) for i in conn.scalars(q)}

    def live_count(self) -> int:
        q = select(func.count()).select_from(contacts).where(contacts.c.deleted_at.is_(None))
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def load_contacts(self, ids: Iterable[int] | None = None) -> dict[int, Contact]:
        """Last seen record of live contacts (all of them, or those of `ids` that are live)."""
        base = select(contacts.c.id, contacts.c.record).where(contacts.c.deleted_at.is_(None))
        out: dict[int, Contact] = {}
        with self._read() as conn:
            if ids is None:
                rows: Iterable[Any] = conn.execute(base)
                out = {int(i): self._decode(f"contact {i}", _contact_from_json, r) for i, r in rows}
            else:
                for chunk in _chunks(_unique_ids(ids), IN_CHUNK):
                    for i, r in conn.execute(base.where(contacts.c.id.in_(chunk))):
                        out[int(i)] = self._decode(f"contact {i}", _contact_from_json, r)
        return out

    def save_contacts(
        self,
        contacts_: Sequence[Contact],
        seen_at: datetime,
        *,
        person_touched: Mapping[int, Iterable[str]] | None = None,
    ) -> None:
        """Upsert the PBX's current view of these contacts (record, hash, last_seen_at), in one transaction.

        New ids get first_seen_at = seen_at. Tombstoned ids are left as they are: a tombstone is final.
        `person_touched` (contact id -> fields) marks fields person-owned in the same transaction, so a
        crash cannot save the new snapshot while losing the fact that a person edited it.
        """
        at = utc(seen_at)
        latest = {c.id: c for c in contacts_}  # the last of duplicate ids wins
        rows = _contact_rows(latest.values(), at)
        with self._write() as conn:
            self._upsert_contacts(conn, rows)
            if person_touched:
                self._mark_person(conn, [(cid, f) for cid, fs in person_touched.items() for f in fs], at)

    def _upsert_contacts(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        ins = self._insert(contacts)
        stmt = ins.on_conflict_do_update(
            index_elements=[contacts.c.id],
            set_={
                "record": ins.excluded.record,
                "content_hash": ins.excluded.content_hash,
                "last_seen_at": ins.excluded.last_seen_at,
            },
            where=contacts.c.deleted_at.is_(None),
        )
        pending = iter(rows)
        while chunk := list(islice(pending, WRITE_CHUNK)):
            _driver_executemany(conn, stmt, chunk)

    def mark_seen(self, ids: Iterable[int], seen_at: datetime) -> int:
        """Bump last_seen_at of live contacts that did not change; returns how many were updated."""
        at = utc(seen_at)
        with self._write() as conn:
            return _update_ids(conn, contacts, ids, contacts.c.deleted_at.is_(None), last_seen_at=at)

    def tombstone(self, ids: Iterable[int], at: datetime) -> int:
        """Mark contacts as gone from the PBX. Returns how many were newly tombstoned."""
        with self._write() as conn:
            return len(self._tombstone(conn, ids, utc(at)))

    def _tombstone(self, conn: Connection, ids: Iterable[int], when: datetime) -> list[int]:
        """Tombstone the live ones of `ids`; returns those newly tombstoned."""
        newly: list[int] = []
        for chunk in _chunks(_unique_ids(ids), IN_CHUNK):
            live = select(contacts.c.id).where(contacts.c.id.in_(chunk), contacts.c.deleted_at.is_(None))
            found = [int(i) for i in conn.scalars(live)]
            if found:
                conn.execute(update(contacts).where(contacts.c.id.in_(found)).values(deleted_at=when))
            newly.extend(found)
        return newly

    def _note(
        self,
        conn: Connection,
        run_id: str | None,
        notes: Sequence[OwnershipNote],
        tombstoned: Sequence[int],
        when: datetime,
    ) -> None:
        """Change-log rows that are not syncd's writes; they have no event to wait for (logged_at = at)."""
        rows: list[dict[str, Any]] = [
            {
                "run_id": run_id,
                "at": when,
                "contact_id": n.contact_id,
                "field": n.field,
                "old": n.old,
                "new": n.new,
                "source": "person",
                "reason": n.reason,
                "kind": n.kind,
                "logged_at": when,
            }
            for n in notes
        ]
        rows += [
            {
                "run_id": run_id,
                "at": when,
                "contact_id": cid,
                "field": "contact",
                "old": "",
                "new": "",
                "source": "pbx",
                "reason": "the contact is gone from the PBX",
                "kind": TOMBSTONE_KIND,
                "logged_at": when,
            }
            for cid in tombstoned
        ]
        for kind in {r["kind"] for r in rows}:
            if kind not in CHANGE_KINDS or kind == CHANGE_KIND:
                raise ValueError(f"not a change-log note kind: {kind!r}")
        for chunk in _chunks(rows, WRITE_CHUNK):
            conn.execute(change_log.insert(), list(chunk))

    def commit_plan(
        self,
        run_id: str,
        *,
        pulled: Sequence[Contact],
        unchanged: Iterable[int],
        person_touched: Mapping[int, Iterable[str]],
        tombstones: Iterable[int],
        updates: Sequence[ContactUpdate],
        at: datetime,
        notes: Sequence[OwnershipNote] = (),
    ) -> list[int]:
        """A run's plan in ONE transaction: the pulled records (the next base), last_seen_at of the
        unchanged ones, the fields a person touched, the tombstones and the journal entries to push.
        The change log gets a row per `notes` (a person's takeover or removal) and per new tombstone.

        A crash before this leaves nothing half-remembered; after it, the journal says what to resume.
        """
        when = utc(at)
        latest = {c.id: c for c in pulled}
        with self._write() as conn:
            self._upsert_contacts(conn, _contact_rows(latest.values(), when))
            _update_ids(conn, contacts, unchanged, contacts.c.deleted_at.is_(None), last_seen_at=when)
            self._mark_person(conn, [(cid, f) for cid, fs in person_touched.items() for f in fs], when)
            gone = self._tombstone(conn, tombstones, when)
            self._note(conn, run_id, notes, gone, when)
            ids = self._journal_add(conn, run_id, updates, when)
            crashpoint.reached("plan_commit")
            return ids

    # --- field provenance -------------------------------------------------------------------------

    def field_states(self, ids: Iterable[int]) -> dict[int, dict[str, FieldState]]:
        """Provenance per field for each requested contact (an empty dict when nothing is recorded)."""
        wanted = _unique_ids(ids)
        out: dict[int, dict[str, FieldState]] = {i: {} for i in wanted}
        fp = field_provenance.c
        with self._read() as conn:
            for chunk in _chunks(wanted, IN_CHUNK):
                q = select(
                    fp.contact_id,
                    fp.field,
                    fp.owner,
                    fp.syncd_value,
                    fp.source,
                    fp.written_at,
                    fp.person_touched_at,
                ).where(fp.contact_id.in_(chunk))
                for row in conn.execute(q):
                    out[int(row.contact_id)][row.field] = FieldState(
                        owner=row.owner,
                        syncd_value=row.syncd_value,
                        source=row.source,
                        written_at=row.written_at,
                        person_touched_at=row.person_touched_at,
                    )
        return out

    def mark_person_owned(self, contact_id: int, fields: Iterable[str], at: datetime) -> None:
        """The person's edit wins forever: syncd never writes these fields of this contact again."""
        when = utc(at)
        pairs = [(contact_id, f) for f in fields]
        with self._write() as conn:
            self._mark_person(conn, pairs, when)

    def _mark_person(self, conn: Connection, pairs: Sequence[tuple[int, str]], at: datetime) -> None:
        unique = list(dict.fromkeys((int(c), str(f)) for c, f in pairs))
        for _, f in unique:
            if not f:
                raise ValueError("field names must not be empty")
        if not unique:
            return
        ins = self._insert(field_provenance)
        stmt = ins.on_conflict_do_update(
            index_elements=[field_provenance.c.contact_id, field_provenance.c.field],
            set_={
                "owner": OWNER_PERSON,
                # the first time a person's edit was noticed stays the recorded one
                "person_touched_at": func.coalesce(
                    field_provenance.c.person_touched_at, ins.excluded.person_touched_at
                ),
            },
        )
        rows = [
            {"contact_id": c, "field": f, "owner": OWNER_PERSON, "person_touched_at": at} for c, f in unique
        ]
        for chunk in _chunks(rows, WRITE_CHUNK):
            conn.execute(stmt, list(chunk))

    # --- runs -------------------------------------------------------------------------------------

    def start_run(self, mode: str, at: datetime) -> str:
        if mode not in RUN_MODES:
            raise ValueError(f"run mode must be one of {sorted(RUN_MODES)}, not {mode!r}")
        run_id = str(uuid.uuid4())
        with self._write() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id, mode=mode, started_at=utc(at), outcome=RUN_RUNNING, counts="{}", error=None
                )
            )
        return run_id

    def finish_run(
        self, run_id: str, outcome: str, counts: Mapping[str, Any], error: str | None, at: datetime
    ) -> None:
        if outcome not in RUN_OUTCOMES or outcome == RUN_RUNNING:
            raise ValueError(
                f"run outcome must be one of {sorted(RUN_OUTCOMES - {RUN_RUNNING})}, not {outcome!r}"
            )
        counts_json = json.dumps(dict(counts), sort_keys=True, default=str)
        with self._write() as conn:
            res = conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(outcome=outcome, counts=counts_json, error=error, ended_at=utc(at))
            )
            if res.rowcount != 1:
                raise KeyError(f"no run {run_id!r}")

    def close_stale_runs(
        self, at: datetime, error: str = "the run ended without finishing (crash or kill)"
    ) -> int:
        """Mark runs still `running` as `aborted`. Call it while holding `lock()`: then no run is live."""
        with self._write() as conn:
            res = conn.execute(
                update(runs)
                .where(runs.c.outcome == RUN_RUNNING)
                .values(outcome="aborted", ended_at=utc(at), error=error)
            )
            return res.rowcount

    def recent_runs(self, limit: int = 10) -> list[RunRecord]:
        """Newest first."""
        q = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [
                RunRecord(
                    id=r.id,
                    mode=r.mode,
                    started_at=r.started_at,
                    ended_at=r.ended_at,
                    outcome=r.outcome,
                    counts=self._decode(f"run {r.id}", json.loads, r.counts),
                    error=r.error,
                )
                for r in conn.execute(q)
            ]

    # --- token cache ------------------------------------------------------------------------------

    def load_token(self, service: str) -> TokenRecord | None:
        with self._read() as conn:
            r = conn.execute(select(tokens).where(tokens.c.service == service)).one_or_none()
        if r is None:
            return None
        return TokenRecord(
            access_token=r.access_token,
            access_expires_at=r.access_expires_at,
            refresh_token=r.refresh_token,
            refresh_expires_at=r.refresh_expires_at,
        )

    def save_token(self, service: str, token: TokenRecord, *, at: datetime | None = None) -> None:
        values = {
            "service": service,
            "access_token": token.access_token,
            "access_expires_at": utc(token.access_expires_at),
            "refresh_token": token.refresh_token,
            "refresh_expires_at": None if token.refresh_expires_at is None else utc(token.refresh_expires_at),
            "updated_at": utc(at) if at is not None else datetime.now().astimezone(),
        }
        ins = self._insert(tokens)
        stmt = ins.values(values).on_conflict_do_update(
            index_elements=[tokens.c.service], set_={k: v for k, v in values.items() if k != "service"}
        )
        with self._write() as conn:
            conn.execute(stmt)

    def delete_token(self, service: str) -> None:
        with self._write() as conn:
            conn.execute(delete(tokens).where(tokens.c.service == service))

    # --- identity links ---------------------------------------------------------------------------

    def save_links(self, rows: Iterable[Link]) -> int:
        """Upsert identity links; returns how many rows were written.

        An `imported` link (a person's word) is only replaced by another `imported` one: a later
        `matched` or `unmatched` for the same (contact, vendor) is ignored and not counted.
        """
        latest: dict[tuple[int, str], Link] = {}
        for link in rows:
            if link.method not in LINK_METHODS:
                raise ValueError(f"link method must be one of {sorted(LINK_METHODS)}, not {link.method!r}")
            if link.method != "unmatched" and not link.vendor_id:
                raise ValueError(f"a {link.method} link needs a vendor_id (contact {link.contact_id})")
            latest[(int(link.contact_id), vendor_name(link.vendor))] = link
        if not latest:
            return 0
        il = identity_links.c
        with self._write() as conn:
            existing: dict[tuple[int, str], str] = {}
            cids = _unique_ids(c for c, _ in latest)
            for chunk in _chunks(cids, IN_CHUNK):
                for cid, vendor, method in conn.execute(
                    select(il.contact_id, il.vendor, il.method).where(il.contact_id.in_(chunk))
                ):
                    existing[(int(cid), str(vendor))] = str(method)
            values = [
                {
                    "contact_id": cid,
                    "vendor": vendor,
                    "vendor_id": link.vendor_id,
                    "method": link.method,
                    "confidence": link.confidence,
                    "linked_at": utc(link.linked_at),
                }
                for (cid, vendor), link in latest.items()
                if not (existing.get((cid, vendor)) == "imported" and link.method != "imported")
            ]
            ins = self._insert(identity_links)
            stmt = ins.on_conflict_do_update(
                index_elements=[il.contact_id, il.vendor],
                set_={
                    k: getattr(ins.excluded, k) for k in ("vendor_id", "method", "confidence", "linked_at")
                },
            )
            for batch in _chunks(values, WRITE_CHUNK):
                conn.execute(stmt, list(batch))
        return len(values)

    def links_for(
        self, vendor: Vendor | str | None = None, ids: Iterable[int] | None = None
    ) -> dict[tuple[int, str], Link]:
        il = identity_links.c
        q = select(identity_links)
        if vendor is not None:
            q = q.where(il.vendor == vendor_name(vendor))
        out: dict[tuple[int, str], Link] = {}

        def add(rows: Iterable[Any]) -> None:
            for r in rows:
                out[(int(r.contact_id), str(r.vendor))] = Link(
                    contact_id=int(r.contact_id),
                    vendor=str(r.vendor),
                    vendor_id=r.vendor_id,
                    method=str(r.method),
                    confidence=r.confidence,
                    linked_at=r.linked_at,
                )

        with self._read() as conn:
            if ids is None:
                add(conn.execute(q))
            else:
                for chunk in _chunks(_unique_ids(ids), IN_CHUNK):
                    add(conn.execute(q.where(il.contact_id.in_(chunk))))
        return out

    # --- enrichment ledger and credits ------------------------------------------------------------

    def ledger(self, vendor: Vendor | str, ids: Iterable[int]) -> dict[int, LedgerEntry]:
        """What `vendor` last answered about each of `ids` (absent: never asked)."""
        name = vendor_name(vendor)
        el = enrichment_ledger.c
        out: dict[int, LedgerEntry] = {}
        with self._read() as conn:
            for chunk in _chunks(_unique_ids(ids), IN_CHUNK):
                q = select(enrichment_ledger).where(el.vendor == name, el.contact_id.in_(chunk))
                for r in conn.execute(q):
                    out[int(r.contact_id)] = LedgerEntry(
                        vendor=str(r.vendor),
                        contact_id=int(r.contact_id),
                        outcome=Outcome(r.outcome),
                        fetched_at=r.fetched_at,
                        fingerprint=str(r.fingerprint),
                        result=self._decode(
                            f"ledger entry {name}/{r.contact_id}", result_from_json, r.result
                        ),
                    )
        return out

    def record_results(
        self,
        results: Sequence[EnrichmentResult],
        fingerprints: Mapping[int, str],
        *,
        credits_month: str | None = None,
    ) -> None:
        """Remember vendor answers with the lookup-input fingerprint each was asked with.

        An `error` answer never replaces a `found` or `not_found` one (a transient failure must not erase
        a paid result); it is recorded only where the ledger has nothing, or an older error.
        With `credits_month` ("2026-11"), the credits the results cost (each result's `credits`, per vendor)
        are added to that month's usage in the same transaction: a crash cannot keep the paid answers and
        lose their cost, or the other way round.
        """
        if credits_month is not None:
            check_month(credits_month)
        latest: dict[tuple[str, int], EnrichmentResult] = {}
        for r in results:
            latest[(r.vendor.value, r.contact_id)] = r
        missing = sorted({cid for _, cid in latest if cid not in fingerprints})
        if missing:
            raise ValueError(f"no input fingerprint for contact(s) {missing[:10]}")
        rows = [
            {
                "vendor": vendor,
                "contact_id": cid,
                "outcome": r.outcome.value,
                "fetched_at": utc(r.fetched_at),
                "fingerprint": fingerprints[cid],
                "result": result_to_json(r),
            }
            for (vendor, cid), r in latest.items()
        ]
        if not rows:
            return
        ins = self._insert(enrichment_ledger)
        stmt = ins.on_conflict_do_update(
            index_elements=[enrichment_ledger.c.vendor, enrichment_ledger.c.contact_id],
            set_={k: getattr(ins.excluded, k) for k in ("outcome", "fetched_at", "fingerprint", "result")},
            where=or_(
                ins.excluded.outcome != Outcome.error.value,
                enrichment_ledger.c.outcome == Outcome.error.value,
            ),
        )
        spent: dict[str, int] = {}
        for r in results:  # every answer costs what the vendor said, duplicates included
            spent[r.vendor.value] = spent.get(r.vendor.value, 0) + max(0, r.credits)
        with self._write() as conn:
            for chunk in _chunks(rows, WRITE_CHUNK):
                conn.execute(stmt, list(chunk))
            if credits_month is not None:
                for vendor, credits in spent.items():
                    self._add_credits(conn, vendor, credits_month, credits)

    def add_credits(self, vendor: Vendor | str, month: str, credits: int) -> None:
        """Add to a vendor's spend for a month ("2026-11"), atomically (INSERT ... ON CONFLICT DO UPDATE)."""
        name = vendor_name(vendor)
        check_month(month)
        if credits < 0:
            raise ValueError(f"credits must not be negative, not {credits}")
        with self._write() as conn:
            self._add_credits(conn, name, month, credits)

    def _add_credits(self, conn: Connection, vendor: str, month: str, credits: int) -> None:
        if credits == 0:
            return
        ins = self._insert(credit_usage)
        stmt = ins.values(vendor=vendor, month=month, credits=credits).on_conflict_do_update(
            index_elements=[credit_usage.c.vendor, credit_usage.c.month],
            set_={"credits": credit_usage.c.credits + ins.excluded.credits},
        )
        conn.execute(stmt)

    def credits_for_month(self, month: str) -> dict[str, int]:
        check_month(month)
        q = select(credit_usage.c.vendor, credit_usage.c.credits).where(credit_usage.c.month == month)
        with self._read() as conn:
            return {str(v): int(c) for v, c in conn.execute(q)}

    # --- push journal -----------------------------------------------------------------------------

    def journal_add(self, run_id: str, updates: Sequence[ContactUpdate], at: datetime) -> list[int]:
        """Record planned updates as `pending`, all in one transaction; returns their ids in order.

        A contact may have at most one pending entry: resolve (apply, supersede, fail) the old one first.
        """
        with self._write() as conn:
            return self._journal_add(conn, run_id, updates, utc(at))

    def _journal_add(
        self, conn: Connection, run_id: str, updates: Sequence[ContactUpdate], when: datetime
    ) -> list[int]:
        seen: set[int] = set()
        for u in updates:
            if u.contact_id in seen:
                raise ValueError(f"two updates for contact {u.contact_id} in one journal_add")
            seen.add(u.contact_id)
        pj = push_journal.c
        ids: list[int] = []
        for chunk in _chunks(sorted(seen), IN_CHUNK):
            clash = conn.execute(
                select(pj.id, pj.contact_id).where(pj.state == JOURNAL_PENDING, pj.contact_id.in_(chunk))
            ).first()
            if clash is not None:
                raise ValueError(
                    f"contact {clash.contact_id} already has pending journal entry {clash.id}; resolve it first"
                )
        stmt = push_journal.insert().returning(pj.id)
        for u in updates:
            new_id = conn.execute(
                stmt,
                {
                    "run_id": run_id,
                    "contact_id": u.contact_id,
                    "state": JOURNAL_PENDING,
                    "precondition_hash": u.precondition_hash,
                    "planned": update_to_json(u),
                    "created_at": when,
                    "attempts": 0,
                },
            ).scalar_one()
            ids.append(int(new_id))
        return ids

    def _entry(self, r: Any) -> JournalEntry:
        return JournalEntry(
            id=int(r.id),
            run_id=str(r.run_id),
            contact_id=int(r.contact_id),
            state=str(r.state),
            precondition_hash=str(r.precondition_hash),
            update=self._decode(f"journal entry {r.id}", update_from_json, r.planned),
            created_at=r.created_at,
            sent_at=r.sent_at,
            applied_at=r.applied_at,
            resolved_at=r.resolved_at,
            attempts=int(r.attempts),
            error=r.error,
        )

    def journal_pending(self) -> list[JournalEntry]:
        """Pending entries, oldest first. After a crash, those with `sent_at` set are in doubt."""
        q = select(push_journal).where(push_journal.c.state == JOURNAL_PENDING).order_by(push_journal.c.id)
        with self._read() as conn:
            return [self._entry(r) for r in conn.execute(q)]

    def journal_get(self, entry_id: int) -> JournalEntry | None:
        with self._read() as conn:
            r = conn.execute(select(push_journal).where(push_journal.c.id == entry_id)).one_or_none()
        return None if r is None else self._entry(r)

    def _require_pending(self, conn: Connection, entry_id: int) -> Any:
        r = conn.execute(
            select(push_journal.c.id, push_journal.c.contact_id, push_journal.c.state).where(
                push_journal.c.id == entry_id
            )
        ).one_or_none()
        if r is None:
            raise KeyError(f"no journal entry {entry_id}")
        if r.state != JOURNAL_PENDING:
            raise ValueError(f"journal entry {entry_id} is {r.state}, not pending")
        return r

    def journal_mark_sent(self, entry_id: int, at: datetime) -> None:
        """Just before sending the update to the PBX: sent_at = at, attempts += 1."""
        when = utc(at)
        with self._write() as conn:
            self._require_pending(conn, entry_id)
            conn.execute(
                update(push_journal)
                .where(push_journal.c.id == entry_id)
                .values(sent_at=when, attempts=push_journal.c.attempts + 1)
            )

    def journal_apply(
        self, entry_id: int, run_id: str, contact_after: Contact, changes: Sequence[FieldChange], at: datetime
    ) -> None:
        """The PBX confirmed the update: in ONE transaction mark the entry applied, store the contact as it
        now is, write one change-log row per field change and record syncd's provenance of each field."""
        self.journal_apply_many(run_id, [(entry_id, contact_after, changes)], at)

    def journal_apply_many(
        self,
        run_id: str,
        applied: Sequence[tuple[int, Contact, Sequence[FieldChange]]],
        at: datetime,
    ) -> list[list[int]]:
        """`journal_apply` for several confirmed entries, all in one transaction. Returns, per entry, the
        change ids of its changes (in order): each is unlogged until `mark_logged`."""
        when = utc(at)
        for _, contact_after, changes in applied:
            for ch in changes:
                if ch.contact_id != contact_after.id:
                    raise ValueError(
                        f"change for contact {ch.contact_id} in an update of contact {contact_after.id}"
                    )
        with self._write() as conn:
            return [
                self._journal_apply(
                    conn,
                    entry_id=entry_id,
                    run_id=run_id,
                    contact_after=contact_after,
                    changes=changes,
                    when=when,
                )
                for entry_id, contact_after, changes in applied
            ]

    def _journal_apply(
        self,
        conn: Connection,
        *,
        entry_id: int,
        run_id: str,
        contact_after: Contact,
        changes: Sequence[FieldChange],
        when: datetime,
    ) -> list[int]:
        entry = self._require_pending(conn, entry_id)
        if int(entry.contact_id) != contact_after.id:
            raise ValueError(
                f"journal entry {entry_id} is for contact {entry.contact_id}, not {contact_after.id}"
            )
        conn.execute(
            update(push_journal)
            .where(push_journal.c.id == entry_id)
            .values(state=JOURNAL_APPLIED, applied_at=when, error=None)
        )
        self._upsert_contacts(conn, _contact_rows([contact_after], when))
        if not changes:
            return []
        insert = change_log.insert().returning(change_log.c.id)
        change_ids = [
            int(
                conn.execute(
                    insert,
                    {
                        "run_id": run_id,
                        "at": when,
                        "contact_id": ch.contact_id,
                        "field": ch.field,
                        "old": ch.old,
                        "new": ch.new,
                        "source": ch.source,
                        "reason": ch.reason,
                        "journal_id": entry_id,
                        "kind": CHANGE_KIND,
                        "logged_at": None,  # until its contact.changed event is written
                    },
                ).scalar_one()
            )
            for ch in changes
        ]
        by_field = {ch.field: ch for ch in changes}  # the last change of a field wins
        ins = self._insert(field_provenance)
        # a person-owned field stays person-owned: only what syncd wrote is updated
        stmt = ins.on_conflict_do_update(
            index_elements=[field_provenance.c.contact_id, field_provenance.c.field],
            set_={k: getattr(ins.excluded, k) for k in ("syncd_value", "source", "written_at")},
        )
        conn.execute(
            stmt,
            [
                {
                    "contact_id": ch.contact_id,
                    "field": ch.field,
                    "owner": OWNER_SYNCD,
                    "syncd_value": ch.new,
                    "source": ch.source,
                    "written_at": when,
                }
                for ch in by_field.values()
            ],
        )
        crashpoint.reached("journal_commit")
        return change_ids

    def journal_resolve(self, entry_id: int, state: str, error: str | None, at: datetime) -> None:
        """Close a pending entry without applying it: `superseded` (the PBX contact changed under it, or
        the planned values are already there) or `failed`."""
        if state not in (JOURNAL_SUPERSEDED, JOURNAL_FAILED):
            raise ValueError(f"journal_resolve takes 'superseded' or 'failed', not {state!r}")
        when = utc(at)
        with self._write() as conn:
            self._require_pending(conn, entry_id)
            conn.execute(
                update(push_journal)
                .where(push_journal.c.id == entry_id)
                .values(state=state, error=error, resolved_at=when)
            )

    # --- audit ------------------------------------------------------------------------------------

    def history(
        self,
        contact_id: int | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        kinds: Iterable[str] | None = (CHANGE_KIND,),
    ) -> list[ChangeRecord]:
        """Change-log rows, oldest first: by default syncd's applied field changes only; `kinds=None` for
        every kind (takeovers, removals, tombstones, owners resets too). `limit` keeps the most recent."""
        cl = change_log.c
        q = select(change_log)
        if kinds is not None:
            q = q.where(cl.kind.in_(sorted(set(kinds))))
        if contact_id is not None:
            q = q.where(cl.contact_id == contact_id)
        if since is not None:
            q = q.where(cl.at >= utc(since))
        if limit is not None:
            q = q.order_by(cl.at.desc(), cl.id.desc()).limit(limit)
        else:
            q = q.order_by(cl.at, cl.id)
        with self._read() as conn:
            out = [_change_record(r) for r in conn.execute(q)]
        if limit is not None:
            out.reverse()
        return out

    def unlogged_changes(self) -> list[ChangeRecord]:
        """Changes committed whose `contact.changed` event was never written (a crash between the two)."""
        cl = change_log.c
        q = select(change_log).where(cl.logged_at.is_(None), cl.kind == CHANGE_KIND).order_by(cl.id)
        with self._read() as conn:
            return [_change_record(r) for r in conn.execute(q)]

    def mark_logged(self, change_ids: Iterable[int], at: datetime) -> int:
        """The events of these changes are written: they are not logged again. Returns how many rows."""
        when = utc(at)
        with self._write() as conn:
            return _update_ids(conn, change_log, change_ids, change_log.c.logged_at.is_(None), logged_at=when)

    # --- owners -----------------------------------------------------------------------------------

    def owners(self, contact_id: int | None = None) -> list[FieldOwner]:
        """Who owns each recorded field of the live contacts, by contact and field."""
        fp = field_provenance.c
        q = (
            select(field_provenance)
            .join(contacts, contacts.c.id == fp.contact_id)
            .where(contacts.c.deleted_at.is_(None))
            .order_by(fp.contact_id, fp.field)
        )
        if contact_id is not None:
            q = q.where(fp.contact_id == contact_id)
        with self._read() as conn:
            return [
                FieldOwner(
                    contact_id=int(r.contact_id),
                    field=str(r.field),
                    owner=str(r.owner),
                    since=r.person_touched_at if r.owner == OWNER_PERSON else r.written_at,
                    syncd_value=r.syncd_value,
                    source=r.source,
                )
                for r in conn.execute(q)
            ]

    def syncd_written_count(self) -> int:
        """How many fields of live contacts hold a value syncd wrote and still own (the takeover guard's
        denominator)."""
        fp = field_provenance.c
        q = (
            select(func.count())
            .select_from(field_provenance.join(contacts, contacts.c.id == fp.contact_id))
            .where(
                contacts.c.deleted_at.is_(None),
                fp.owner == OWNER_SYNCD,
                fp.syncd_value.is_not(None),
            )
        )
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def reset_owners(
        self,
        at: datetime,
        *,
        contact_id: int | None = None,
        field: str | None = None,
        reason: str = "given back to syncd (syncd owners reset)",
    ) -> list[ChangeRecord]:
        """Give person-owned fields of live contacts back to syncd, each with a `reset` row in the change
        log, in one transaction. Returns those rows."""
        from syncd.store.records import RESET_KIND

        when = utc(at)
        fp = field_provenance.c
        q = (
            select(fp.contact_id, fp.field)
            .join(contacts, contacts.c.id == fp.contact_id)
            .where(contacts.c.deleted_at.is_(None), fp.owner == OWNER_PERSON)
            .order_by(fp.contact_id, fp.field)
        )
        if contact_id is not None:
            q = q.where(fp.contact_id == contact_id)
        if field is not None:
            q = q.where(fp.field == field)
        with self._write() as conn:
            pairs = [(int(c), str(f)) for c, f in conn.execute(q)]
            out: list[ChangeRecord] = []
            insert = change_log.insert().returning(change_log.c.id)
            for cid, name in pairs:
                conn.execute(
                    update(field_provenance)
                    .where(fp.contact_id == cid, fp.field == name)
                    .values(owner=OWNER_SYNCD, person_touched_at=None)
                )
                values = {
                    "run_id": None,
                    "at": when,
                    "contact_id": cid,
                    "field": name,
                    "old": OWNER_PERSON,
                    "new": OWNER_SYNCD,
                    "source": "operator",
                    "reason": reason,
                    "kind": RESET_KIND,
                    "logged_at": when,
                }
                new_id = int(conn.execute(insert, values).scalar_one())
                out.append(
                    ChangeRecord(
                        id=new_id,
                        run_id=None,
                        at=when,
                        contact_id=cid,
                        field=name,
                        old=OWNER_PERSON,
                        new=OWNER_SYNCD,
                        source="operator",
                        reason=reason,
                        journal_id=None,
                        kind=RESET_KIND,
                        logged_at=when,
                    )
                )
        return out


def _change_record(r: Any) -> ChangeRecord:
    return ChangeRecord(
        id=int(r.id),
        run_id=None if r.run_id is None else str(r.run_id),
        at=r.at,
        contact_id=int(r.contact_id),
        field=str(r.field),
        old=str(r.old),
        new=str(r.new),
        source=str(r.source),
        reason=str(r.reason),
        journal_id=None if r.journal_id is None else int(r.journal_id),
        kind=str(r.kind),
        logged_at=r.logged_at,
    )


def _driver_executemany(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """executemany straight through the driver, for bulk writes.

    SQLAlchemy's per-row parameter handling costs more than SQLite's own insert work on 100k rows. The
    statement is still compiled by SQLAlchemy for the connection's dialect, and each value still goes
    through its column type's bind processor (memoised: bulk rows share their timestamps).
    """
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect)
    binds = compiled.binds
    procs = {name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in binds.items()}
    memo: dict[tuple[str, Any], Any] = {}

    def value(row: Mapping[str, Any], name: str) -> Any:
        v = row[name] if name in row else binds[name].effective_value
        proc = procs[name]
        if proc is None or v is None:
            return v
        key = (name, v)
        if key not in memo:
            memo[key] = proc(v)
        return memo[key]

    names: Sequence[str] = (
        compiled.positiontup if compiled.positional and compiled.positiontup else list(binds)
    )
    params: list[Any]
    if compiled.positional:
        params = [tuple(value(row, n) for n in names) for row in rows]
    else:
        params = [{n: value(row, n) for n in names} for row in rows]
    conn.exec_driver_sql(str(compiled), params)


# --- engines ------------------------------------------------------------------------------------


def make_engine(url: str, *, create: bool = True) -> tuple[Engine, str, str | None]:
    """The configured engine for a state URL, what errors call it, and its lock file (SQLite files only).

    Creates a SQLite file's directory and the file itself (unless `create` is false: then a missing file
    is a `StoreConfigError`); does not migrate (see `migrate.upgrade`).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"state store URL is not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, create=create)
    if backend == "postgresql":
        where = parsed.render_as_string(hide_password=True)
        try:
            return create_engine(parsed, pool_pre_ping=True), where, None
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"state store {where}: {exc}") from exc
    raise StoreError(f"state store URL {url.split(':', 1)[0]!r}: only sqlite and postgresql are supported")


def _sqlite_engine(url: URL, *, create: bool = True) -> tuple[Engine, str, str | None]:
    database = url.database or ""
    memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        _configure_sqlite(engine, wal=False)
        return engine, "sqlite in-memory database", None
    path = os.path.abspath(os.path.expanduser(database))
    if create:
        _prepare_sqlite_file(path)
    elif not os.path.isfile(path):
        what = "is a directory, not a database file" if os.path.isdir(path) else "does not exist"
        raise StoreConfigError(
            f"state store {path} {what}: no run has created it yet, or sync.state_url points at the "
            "wrong place"
        )
    engine = create_engine(url.set(database=path), connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    _configure_sqlite(engine, wal=True)
    return engine, path, path + ".lock"


def _prepare_sqlite_file(path: str) -> None:
    """Create the parent directory (0700) and a new database file (0600: it holds tokens)."""
    parent = Path(path).parent
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_kind(exc)(
            f"state store {path}: cannot create directory {parent}: {exc.strerror or exc}"
        ) from exc
    if os.path.isdir(path):
        raise StoreConfigError(f"state store {path}: is a directory, not a database file")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise _os_kind(exc)(
            f"state store {path}: cannot create the database file: {exc.strerror or exc}"
        ) from exc
    os.close(fd)


def _switch_to_wal(cur: Any) -> Any:
    """`PRAGMA journal_mode = WAL`, waiting like busy_timeout: the switch needs an exclusive lock and SQLite
    answers "database is locked" at once, without its busy handler, while another first open holds one."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return cur.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN (the sqlite3 module's implicit BEGIN is
        # deferred and only precedes DML, which breaks read-then-write atomicity).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys = ON")
            if wal:
                mode = _switch_to_wal(cur)
                if mode is None or str(mode[0]).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode!r})")
            # FULL: a commit the journal reports is on disk, even across a power cut
            # WAL + NORMAL: a commit survives a crash of the process (what the journal guards against);
            # only a power loss can drop the last commits, and the journal then confirms or resends
            # those pushes idempotently. FULL would fsync every journal step (~3 ms each).
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("syncd_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
