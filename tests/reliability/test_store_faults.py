"""State store faults during whole commands and runs: another process holding a write transaction, a
read-only or full store, a corrupt file, a store written by an older (or newer) schema.

Every time: a clear message and exit 75 (a `StoreError`), or a wait and a normal finish, or a clean
migration; never a traceback; nothing half-written (the journal and the change log agree with the PBX),
and once the fault is gone the next run ends exactly like an undisturbed one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from syncd.pbx.client import parse_detailed
from syncd.store import StateStore, migrate
from syncd.store import store as store_module
from syncd.store.store import make_engine, record_json
from tests.reliability.site import (
    REPO,
    Run,
    Site,
    add_figure,
    assert_no_crash,
    child_env,
    duplicates,
    phonebook_diff,
    record_output,
)

SIZE = 60
Change = tuple[int, str, str, str, str]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[int, Any], list[Change]]]:
    with Site(tmp_path_factory.mktemp("store-reference"), SIZE) as site:
        site.write_config()
        site.import_links()
        run = site.sync()
        assert run.code == 0, run.describe()
        yield site.phonebook(), site.changes()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with Site(tmp_path / "site", SIZE) as site:
        site.write_config()
        links = in_process(site, "links", "import", str(site.sims.write_links(site.root / "links.csv")))
        assert links.code == 0, links.describe()
        yield site


def assert_like_reference(site: Site, reference: tuple[dict[int, Any], list[Change]]) -> None:
    want, want_changes = reference
    book = site.phonebook()
    assert book == want, phonebook_diff(book, want)
    changes = site.changes()
    assert not duplicates(changes), duplicates(changes)[:3]
    assert sorted(changes) == sorted(want_changes)
    assert site.pending() == 0


def store_error(run: Run, *fragments: str, code: int = 75) -> None:
    """Exit 75 (78 for a store that cannot be created or written) with a clear `state store …` message,
    and no traceback."""
    assert_no_crash(run)
    assert run.code == code, run.describe()
    kind = "configuration error" if code == 78 else "error"
    assert f"syncd: {kind}: state store" in run.err, run.describe()
    for fragment in fragments:
        assert fragment in run.err, run.describe()


def in_process(site: Site, *args: str) -> Run:
    """`syncd --config <site> ARGS` in this process (so that the store can be tampered with from here)."""
    import io

    from syncd.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["--config", str(site.config), "--log-format", "json", *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    record_output(f"store faults: syncd {' '.join(args)}", out.getvalue(), err.getvalue())
    return Run(argv, code, out.getvalue(), err.getvalue())


FAULTS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    add_figure("store_faults_survived", len(FAULTS))


# --- another process holds a write transaction ---------------------------------------------------------------

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE runs SET error = error")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_a_run_waits_for_another_writer_then_finishes(
    site: Site, reference: tuple[dict[int, Any], list[Change]]
) -> None:
    assert in_process(site, "status").code == 0  # the store exists and is migrated
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(site.db), "2.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        status = site.cli("status")  # a reader does not wait for the writer
        assert status.code == 0, status.describe()
        run = in_process(site, "--sync-now")
    finally:
        holder.wait(timeout=30)
    assert_no_crash(run)
    assert run.code == 0, run.describe()
    assert_like_reference(site, reference)
    FAULTS.append("writer held the store")


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 200)


class Holder:
    """A write transaction on the store from another connection, taken and released on demand."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self.held = False

    def take(self) -> None:
        if not self.held:
            self.conn.execute("BEGIN IMMEDIATE")
            self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("ROLLBACK")
            self.held = False

    def close(self) -> None:
        self.release()
        self.conn.close()


def test_a_writer_holding_on_past_the_timeout_fails_the_run_before_it_touches_the_pbx(
    site: Site, reference: tuple[dict[int, Any], list[Change]], short_busy_timeout: None
) -> None:
    assert in_process(site, "status").code == 0
    holder = Holder(site.db)
    try:
        holder.take()
        run = in_process(site, "--sync-now")
        store_error(run, "database is locked")
        assert site.sims.pbx.updates == [], "a run that could not write its store wrote to the PBX"
    finally:
        holder.close()
    again = in_process(site, "--sync-now")
    assert again.code == 0, again.describe()
    assert_like_reference(site, reference)
    FAULTS.append("writer held the store past the timeout")


def fail_on_nth(monkeypatch: pytest.MonkeyPatch, name: str, n: int, before: Callable[[], None]) -> list[int]:
    """Call `before` just before the n-th call of StateStore.<name> (in this process)."""
    original = getattr(StateStore, name)
    calls = [0]

    def wrapper(self: StateStore, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            before()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StateStore, name, wrapper)
    return calls


def test_the_store_locked_mid_push_is_resumed_by_the_next_run(
    site: Site,
    reference: tuple[dict[int, Any], list[Change]],
    short_busy_timeout: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert in_process(site, "status").code == 0
    holder = Holder(site.db)
    try:
        fail_on_nth(monkeypatch, "journal_apply_many", 1, holder.take)  # confirming the first chunk
        run = in_process(site, "--sync-now")
        store_error(run, "database is locked")
    finally:
        holder.close()
        monkeypatch.undo()
    assert len(site.sims.pbx.updates) > 40  # sent, not confirmed
    # nothing half-written: every change logged is on the PBX, nothing twice
    changes = site.changes()
    assert not duplicates(changes)
    book = site.phonebook()
    for cid, field, _old, new, _source in changes:
        if field == "email":
            assert book[cid]["email"] == new
    again = in_process(site, "--sync-now")
    assert again.code == 0, again.describe()
    assert again.event("journal.resuming"), "the next run resumed the journal"
    assert_like_reference(site, reference)
    FAULTS.append("store locked mid-push")


# --- a full store -------------------------------------------------------------------------------------------


class FullDisk:
    """Once `fill()` is called, no transaction of any store opened in this process may grow the file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = threading.Event()
        original = StateStore.open.__func__  # type: ignore[attr-defined]
        disk = self

        def open_(cls: type[StateStore], url: str) -> StateStore:
            store = original(cls, url)

            @event.listens_for(store.engine, "begin")
            def limit(conn: Any) -> None:
                if disk.full.is_set():
                    pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
                    conn.exec_driver_sql(f"PRAGMA max_page_count = {int(pages)}")
                else:
                    conn.exec_driver_sql("PRAGMA max_page_count = 1073741823")

            return store

        monkeypatch.setattr(StateStore, "open", classmethod(open_))

    def fill(self) -> None:
        self.full.set()


def test_a_full_store_before_the_plan_is_committed_leaves_nothing_half_written(
    site: Site, reference: tuple[dict[int, Any], list[Change]], monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk(monkeypatch)
    disk.fill()
    run = in_process(site, "--sync-now")
    store_error(run, "database or disk is full")
    assert site.sims.pbx.updates == []
    monkeypatch.undo()
    assert site.pending() == 0
    with site.store() as store:
        assert store.live_count() == 0  # the pulled records were not half-remembered
    again = in_process(site, "--sync-now")
    assert again.code == 0, again.describe()
    assert_like_reference(site, reference)
    FAULTS.append("store full before the commit")


def test_a_store_filling_up_mid_push_is_resumed_by_the_next_run(
    site: Site, reference: tuple[dict[int, Any], list[Change]], monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk(monkeypatch)
    fail_on_nth(monkeypatch, "journal_apply_many", 1, disk.fill)
    run = in_process(site, "--sync-now")
    store_error(run, "database or disk is full")
    monkeypatch.undo()
    assert len(site.sims.pbx.updates) > 40
    assert not duplicates(site.changes())
    again = in_process(site, "--sync-now")
    assert again.code == 0, again.describe()
    assert_like_reference(site, reference)
    FAULTS.append("store full mid-push")


# --- read-only -----------------------------------------------------------------------------------------------


def unprivileged(site: Site, *args: str) -> Run:
    """`syncd ARGS` in a child that file permissions apply to (as root: without the override caps)."""
    cmd = [sys.executable, "-m", "syncd", "--config", str(site.config), "--log-format", "json", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file modes cannot be enforced")
        drop = "-dac_override,-dac_read_search,-fowner"
        cmd = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--", *cmd]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=child_env(), cwd=REPO, timeout=120, check=False
    )
    record_output(f"store faults (unprivileged): syncd {' '.join(args)}", done.stdout, done.stderr)
    return Run(cmd, done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    modes = {p: p.stat().st_mode & 0o777 for p in paths}
    try:
        for p in paths:
            p.chmod(0o500 if p.is_dir() else 0o400)
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_read_only_store_is_refused_clearly_and_the_pbx_is_untouched(
    site: Site, reference: tuple[dict[int, Any], list[Change]]
) -> None:
    first = site.sync("--dry-run", "--buy")  # the store exists, with answers bought
    assert first.code == 0, first.describe()
    for suffix in ("-wal", "-shm"):
        Path(str(site.db) + suffix).unlink(missing_ok=True)
    files = [site.db, Path(str(site.db) + ".lock"), site.root]
    with read_only(*files):
        run = unprivileged(site, "--sync-now")
        store_error(
            run, str(site.db), "permissions", code=78
        )  # retrying cannot help: 78 stops a restart loop
        for command in (["history"], ["status"]):
            other = unprivileged(site, *command)
            assert_no_crash(other)
            assert other.code in (0, 78), other.describe()
    assert site.sims.pbx.updates == []
    again = site.sync()
    assert again.code == 0, again.describe()
    assert_like_reference(site, reference)
    FAULTS.append("read-only store")


def test_a_read_only_directory_for_a_new_store(site: Site) -> None:
    target = site.root / "ro"
    target.mkdir()
    text_ = site.config.read_text().replace(site.state_url, f"sqlite:///{target / 'new' / 'state.db'}")
    site.write_config(text_)
    with read_only(target):
        for command in (["--sync-now"], ["links", "import", str(site.root / "links.csv")]):
            store_error(unprivileged(site, *command), "cannot create", code=78)
        # a read-only command never creates a store: it says there is none
        store_error(unprivileged(site, "status"), "does not exist", code=78)
    assert not (target / "new").exists()
    assert site.sims.pbx.updates == []
    FAULTS.append("read-only directory")


# --- corrupt files -------------------------------------------------------------------------------------------

COMMANDS = (["--sync-now"], ["status"], ["history"], ["--sync-now", "--dry-run"])


def test_a_file_that_is_not_a_database(site: Site) -> None:
    site.db.write_bytes(b"this is not an SQLite database, it is a text file\n" * 200)
    for command in COMMANDS:
        store_error(in_process(site, *command), "not a database")
    store_error(in_process(site, "links", "import", str(site.root / "links.csv")), "not a database")
    assert site.sims.pbx.updates == []
    FAULTS.append("not a database")


def test_a_truncated_database(site: Site) -> None:
    run = in_process(site, "--sync-now")
    assert run.code == 0
    with contextlib.closing(sqlite3.connect(site.db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = site.db.stat().st_size
    with site.db.open("r+b") as handle:
        handle.truncate(size // 2)
    updates = len(site.sims.pbx.updates)
    for command in COMMANDS:
        result = in_process(site, *command)
        assert_no_crash(result)
        assert result.code == 75, result.describe()
        assert "state store" in result.err and ("malformed" in result.err or "corrupt" in result.err), (
            result.describe()
        )
    assert len(site.sims.pbx.updates) == updates
    FAULTS.append("truncated database")


def test_damaged_rows_stop_the_run_with_the_row_named(site: Site) -> None:
    run = in_process(site, "--sync-now")
    assert run.code == 0
    with contextlib.closing(sqlite3.connect(site.db)) as conn, conn:
        conn.execute("UPDATE contacts SET record = '{not json' WHERE id = 7")
    updates = len(site.sims.pbx.updates)
    site.sims.pbx.edit_contact(7, remark="changed by a person")  # so that the damaged record is read
    result = in_process(site, "--sync-now")
    store_error(result, "contact 7 is unreadable")
    assert len(site.sims.pbx.updates) == updates
    FAULTS.append("damaged contact row")


def test_a_damaged_journal_entry_stops_the_resume_with_the_entry_named(site: Site) -> None:
    killed = site.sync(env={"SYNCD_CRASH_AT": "committed"})
    assert killed.killed
    with contextlib.closing(sqlite3.connect(site.db)) as conn, conn:
        (entry,) = conn.execute("SELECT min(id) FROM push_journal WHERE state = 'pending'").fetchone()
        conn.execute("UPDATE push_journal SET planned = '[1, 2' WHERE id = ?", (entry,))
    for command in (["--sync-now"], ["status"]):
        result = in_process(site, *command)
        assert_no_crash(result)
        assert result.code == 75, result.describe()
        assert f"journal entry {entry}" in result.err, result.describe()
    assert site.sims.pbx.updates == []
    FAULTS.append("damaged journal row")


def test_an_empty_file_is_a_new_store(site: Site, reference: tuple[dict[int, Any], list[Change]]) -> None:
    site.db.unlink()
    site.db.write_bytes(b"")
    site.import_links()
    run = site.sync()
    assert run.code == 0, run.describe()
    assert_like_reference(site, reference)


# --- schemas ---------------------------------------------------------------------------------------------------


def test_a_store_written_at_schema_0001_is_migrated_and_synced(
    site: Site, reference: tuple[dict[int, Any], list[Change]]
) -> None:
    site.db.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(site.db) + suffix).unlink(missing_ok=True)
    engine, where, _ = make_engine(site.state_url)
    try:
        assert migrate.upgrade(engine, where, "0001") == "0001"
        with engine.begin() as conn:
            # what syncd at 0001 remembered: the PBX's contacts as last pulled, a run, an old token
            for cid in site.sims.pbx.contact_ids():
                contact = parse_detailed(site.sims.pbx.contact(cid))
                conn.execute(
                    text(
                        "INSERT INTO contacts (id, record, content_hash, first_seen_at, last_seen_at) "
                        "VALUES (:id, :record, :hash, '2026-10-01 08:00:00', '2026-10-01 08:15:00')"
                    ),
                    {"id": cid, "record": record_json(contact), "hash": contact.content_hash()},
                )
            conn.execute(
                text(
                    "INSERT INTO runs (id, mode, started_at, ended_at, outcome, counts) VALUES "
                    "('old-run', 'sync', '2026-10-01 08:00:00', '2026-10-01 08:15:00', 'ok', '{}')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO tokens (service, access_token, access_expires_at, refresh_token, "
                    "refresh_expires_at, updated_at) VALUES ('pbx', 'stale-access-token', "
                    "'2026-10-01 08:30:00', 'stale-refresh-token', '2026-10-02 08:00:00', "
                    "'2026-10-01 08:00:00')"
                )
            )
    finally:
        engine.dispose()
    site.import_links()  # migrates the store (links are a 0002 table)
    run = site.sync()
    assert run.code == 0, run.describe()
    with site.store() as store:
        assert store.schema_revision() == migrate.head_revision()
        assert any(r.id == "old-run" for r in store.recent_runs())
    assert_like_reference(site, reference)
    status = site.cli("status")
    assert status.code == 0 and "old-run" not in status.err
    FAULTS.append("schema 0001")


def test_a_store_from_a_newer_syncd_is_refused_and_left_alone(site: Site) -> None:
    assert in_process(site, "status").code == 0
    with contextlib.closing(sqlite3.connect(site.db)) as conn, conn:
        (table,) = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%version%'"
        ).fetchone()
        conn.execute(f"UPDATE {table} SET version_num = '0099_future'")
    before = site.db.read_bytes()
    for command in (*COMMANDS, ["links", "import", str(site.root / "links.csv")]):
        store_error(in_process(site, *command), "newer syncd")
    with contextlib.closing(sqlite3.connect(site.db)) as conn:
        assert conn.execute(f"SELECT version_num FROM {table}").fetchone() == ("0099_future",)
    assert site.sims.pbx.updates == []
    assert len(site.db.read_bytes()) == len(before)
    FAULTS.append("schema from a newer syncd")
