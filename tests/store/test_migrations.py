"""Schema versions: empty -> head, 0001 with data -> head, newer-than-known, models == migrations."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from syncd.errors import StoreError
from syncd.model import Contact, NumberSlot
from syncd.store import StateStore, TokenRecord, migrate
from syncd.store.schema import VERSION_TABLE, metadata
from syncd.store.store import make_engine, record_json

from .conftest import at

NOV1 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
FOUNDATION = {"contacts", "runs", "tokens"}
LATER = {
    "field_provenance",
    "identity_links",
    "enrichment_ledger",
    "credit_usage",
    "push_journal",
    "change_log",
    "daemon_heartbeat",
}
HEAD = "0004_heartbeat"


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {VERSION_TABLE}


def test_revisions_are_known_in_order() -> None:
    assert migrate.known_revisions() == ["0001", "0002", "0003_owners", HEAD]
    assert migrate.head_revision() == HEAD


def test_empty_to_head(fresh_url: str) -> None:
    with StateStore.open(fresh_url) as store:
        assert store.schema_revision() == HEAD
        assert tables(store.engine) == FOUNDATION | LATER
    with StateStore.open(fresh_url) as store:  # reopening an up-to-date store changes nothing
        assert store.schema_revision() == HEAD


def test_models_match_migrations(store: StateStore) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_from_0001_with_data_to_head(fresh_url: str) -> None:
    engine, where, _ = make_engine(fresh_url)
    # SQLite stores naive UTC; PostgreSQL gets the zone spelled out (the server's TimeZone may be anything)
    tz = "+00" if engine.dialect.name == "postgresql" else ""
    try:
        assert migrate.upgrade(engine, where, "0001") == "0001"
        assert tables(engine) == FOUNDATION
        alice = Contact.build(7, name="Alice", numbers={NumberSlot.mobile_number: "+15550107"})
        gone = Contact.build(8, name="Gone")
        with engine.begin() as conn:
            # rows as syncd at revision 0001 wrote them, through plain SQL
            for c, deleted in ((alice, None), (gone, "2026-11-02 00:00:00")):
                conn.execute(
                    text(
                        "INSERT INTO contacts (id, record, content_hash, first_seen_at, last_seen_at, deleted_at) "
                        "VALUES (:id, :record, :hash, :first, :last, :deleted)"
                    ),
                    {
                        "id": c.id,
                        "record": record_json(c),
                        "hash": c.content_hash(),
                        "first": "2026-11-01 08:00:00" + tz,
                        "last": "2026-11-01 08:15:00" + tz,
                        "deleted": None if deleted is None else deleted + tz,
                    },
                )
            conn.execute(
                text(
                    "INSERT INTO runs (id, mode, started_at, ended_at, outcome, counts, error) "
                    "VALUES ('run-1', 'sync', :start, :end, 'ok', :counts, NULL)"
                ),
                {
                    "counts": json.dumps({"seen": 2}),
                    "start": "2026-11-01 08:00:00" + tz,
                    "end": "2026-11-01 08:15:00" + tz,
                },
            )
            conn.execute(
                text(
                    "INSERT INTO tokens (service, access_token, access_expires_at, refresh_token, "
                    "refresh_expires_at, updated_at) VALUES ('pbx', 'acc', :a, 'ref', :r, :u)"
                ),
                {
                    "a": "2026-11-01 08:30:00" + tz,
                    "r": "2026-11-02 08:00:00" + tz,
                    "u": "2026-11-01 08:00:00" + tz,
                },
            )
    finally:
        engine.dispose()

    with StateStore.open(fresh_url) as store:
        assert store.schema_revision() == HEAD
        assert store.load_contacts() == {7: alice}
        assert store.tombstoned_ids() == {8}
        assert store.live_hashes() == {7: alice.content_hash()}
        [run] = store.recent_runs()
        assert (run.id, run.outcome, run.counts) == ("run-1", "ok", {"seen": 2})
        assert (run.started_at, run.ended_at) == (NOV1, NOV1.replace(minute=15))
        assert store.load_token("pbx") == TokenRecord(
            "acc", NOV1.replace(minute=30), "ref", NOV1.replace(day=2)
        )
        # and the new tables work alongside the old data
        store.mark_person_owned(7, ["email"], at(0))
        assert store.field_states([7])[7]["email"].person_owned


def test_downgrade_to_0001_keeps_the_foundation(fresh_url: str) -> None:
    with StateStore.open(fresh_url) as store:
        store.save_contacts([Contact.build(1, name="stays")], at(0))
        store.add_credits("insideview", "2026-11", 5)
        assert migrate.downgrade(store.engine, store.where, "0001") == "0001"
        assert tables(store.engine) == FOUNDATION
    with StateStore.open(fresh_url) as store:
        assert store.schema_revision() == HEAD
        assert store.load_contacts()[1].name == "stays"
        assert store.credits_for_month("2026-11") == {}


def test_a_newer_schema_is_refused(fresh_url: str) -> None:
    with StateStore.open(fresh_url) as store, store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StoreError) as err:
        StateStore.open(fresh_url)
    msg = str(err.value)
    assert "'9999'" in msg and "newer syncd" in msg and f"'{HEAD}'" in msg


def test_concurrent_first_opens_migrate_once(fresh_url: str) -> None:
    results: list[object] = []

    def opener() -> None:
        try:
            with StateStore.open(fresh_url) as s:
                results.append(s.schema_revision())
        except BaseException as exc:  # pragma: no cover - reported below
            results.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [HEAD] * 4


def test_alembic_cli_is_refused() -> None:
    """env.py only runs under syncd's own migration call (it needs the connection handed over)."""
    from alembic import command

    with pytest.raises(RuntimeError, match="migrated by syncd itself"):
        command.upgrade(migrate.alembic_config(), "head")
