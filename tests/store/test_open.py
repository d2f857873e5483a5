"""Opening a store: creation, SQLite settings, and clear errors for stores that cannot be used."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from syncd.errors import EXIT_CONFIG, EXIT_TEMPFAIL, StoreConfigError, StoreError
from syncd.model import Contact
from syncd.store import StateStore, migrate

from .conftest import PG_BASE, PG_SKIP, at, pg_answers


def test_new_sqlite_store_is_private_and_configured(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "state.db"
    store = StateStore.open(f"sqlite:///{db}")
    try:
        assert stat.S_IMODE(db.stat().st_mode) == 0o600  # it holds tokens
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        store.save_contacts([Contact.build(1)], at(0))
        for side in ("-wal", "-shm"):
            side_file = Path(str(db) + side)
            if side_file.exists():
                assert stat.S_IMODE(side_file.stat().st_mode) == 0o600
        assert store.schema_revision() == migrate.head_revision()
    finally:
        store.close()


def test_reopen_keeps_data_and_existing_permissions(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore.open(f"sqlite:///{db}") as store:
        store.save_contacts([Contact.build(1, name="kept")], at(0))
    db.chmod(0o640)
    with StateStore.open(f"sqlite:///{db}") as store:
        assert store.load_contacts()[1].name == "kept"
    assert stat.S_IMODE(db.stat().st_mode) == 0o640


def test_memory_store() -> None:
    with StateStore.open("sqlite://") as store:
        store.save_contacts([Contact.build(1)], at(0))
        assert store.live_count() == 1
        assert store.schema_revision() == migrate.head_revision()


def test_close_is_idempotent_and_use_after_close_is_an_error(store: StateStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="after close"):
        store.live_count()


def test_corrupt_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not an SQLite database, just bytes " * 200)
    with pytest.raises(StoreError) as err:
        StateStore.open(f"sqlite:///{db}")
    msg = str(err.value)
    assert str(db) in msg and "not a database" in msg and "Traceback" not in msg
    assert err.value.exit_code == EXIT_TEMPFAIL


def test_sqlite_file_with_a_damaged_header(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore.open(f"sqlite:///{db}") as store:
        store.save_contacts([Contact.build(i) for i in range(1, 200)], at(0))
    data = bytearray(db.read_bytes())
    data[0:16] = b"garbage garbage!"
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=str(db)):
        StateStore.open(f"sqlite:///{db}")


def test_database_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        StateStore.open(f"sqlite:///{tmp_path}")


def test_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=f"{blocker / 'sub'}.*cannot create directory"):
        StateStore.open(f"sqlite:///{blocker / 'sub' / 'state.db'}")


def test_not_a_database_url() -> None:
    with pytest.raises(StoreError, match="only sqlite and postgresql"):
        StateStore.open("mysql://u@h/db")
    with pytest.raises(StoreError, match="not a database URL"):
        StateStore.open("/var/lib/syncd/state.db")


def test_unreachable_postgres_is_a_store_error() -> None:
    with pytest.raises(StoreError) as err:
        StateStore.open("postgresql+psycopg://syncd:pw-SECRET@127.0.0.1:1/nothing?connect_timeout=5")
    assert "127.0.0.1:1" in str(err.value)
    assert "pw-SECRET" not in str(err.value)


@pytest.mark.postgres
def test_postgres_search_path_without_a_schema() -> None:
    if not pg_answers():
        pytest.skip(PG_SKIP)
    with pytest.raises(StoreError, match="no schema"):
        StateStore.open(f"{PG_BASE}?options=-csearch_path%3Dsyncd_t_does_not_exist")


# --- permissions: run the opener without the power to bypass file modes --------------------------

OPENER = textwrap.dedent(
    """
    import sys
    from syncd.errors import StoreError
    from syncd.store import StateStore
    from syncd.store.access import state_url_problems
    if sys.argv[2] == "check":
        print("problems:", state_url_problems(sys.argv[1]))
        sys.exit(0)
    try:
        StateStore.open(sys.argv[1], create=sys.argv[2] == "create").close()
    except StoreError as exc:
        print("StoreError:", exc, "exit", exc.exit_code)
    else:
        print("opened")
    """
)


def open_without_privileges(url: str, how: str = "create") -> str:
    """Open `url` (how: "create", "existing", or "check" for check-config's problems) as a process
    that file modes bind."""
    cmd = [sys.executable, "-c", OPENER, url, how]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file modes cannot be enforced")
        drop = "-dac_override,-dac_read_search,-fowner"
        cmd = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout.strip()


@pytest.fixture
def locked_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "ro"
    d.mkdir()
    yield d
    d.chmod(0o700)
    for f in d.iterdir():
        f.chmod(0o600)


def test_read_only_directory_for_a_new_store(locked_dir: Path) -> None:
    locked_dir.chmod(0o500)
    out = open_without_privileges(f"sqlite:///{locked_dir / 'sub' / 'state.db'}")
    assert out.startswith("StoreError:") and str(locked_dir / "sub") in out and "Permission denied" in out
    assert out.endswith(f"exit {EXIT_CONFIG}")  # retrying cannot help: a configuration error
    checked = open_without_privileges(f"sqlite:///{locked_dir / 'state.db'}", "check")
    assert "is not writable" in checked and str(locked_dir) in checked


def test_unreadable_store(locked_dir: Path) -> None:
    db = locked_dir / "state.db"
    StateStore.open(f"sqlite:///{db}").close()
    db.chmod(0o000)
    out = open_without_privileges(f"sqlite:///{db}")
    assert out.startswith("StoreError:") and str(db) in out
    assert out.endswith(f"exit {EXIT_CONFIG}")
    checked = open_without_privileges(f"sqlite:///{db}", "check")
    assert "is not readable and writable" in checked


def test_read_only_store(locked_dir: Path) -> None:
    db = locked_dir / "state.db"
    StateStore.open(f"sqlite:///{db}").close()
    db.chmod(0o400)
    locked_dir.chmod(0o500)
    out = open_without_privileges(f"sqlite:///{db}")
    assert out.startswith("StoreError:") and str(db) in out
    assert "permissions" in out
    assert out.endswith(f"exit {EXIT_CONFIG}")  # a store that cannot be written: 78, not 75
    assert open_without_privileges(f"sqlite:///{db}", "check").startswith("problems: [")
    assert "not writable" in open_without_privileges(f"sqlite:///{db}", "check")


def test_busy_database_is_a_store_error(tmp_path: Path) -> None:
    """Another connection holding the write lock past the busy timeout: a StoreError, not sqlite3's own."""
    db = tmp_path / "state.db"
    store = StateStore.open(f"sqlite:///{db}")
    other = sqlite3.connect(db, isolation_level=None)
    try:

        def short_timeout(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            dbapi_conn.execute("PRAGMA busy_timeout = 1")  # runs after the store's own settings

        event.listen(store.engine, "connect", short_timeout)
        store.engine.dispose()
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match=f"{db}.*database is locked"):
            store.save_contacts([Contact.build(1)], at(0))
        other.execute("ROLLBACK")
        store.save_contacts([Contact.build(1)], at(0))
    finally:
        other.close()
        store.close()


def test_a_damaged_row_is_a_store_error(store: StateStore) -> None:
    from sqlalchemy import update

    from syncd.store.schema import contacts

    store.save_contacts([Contact.build(1), Contact.build(2)], at(0))
    with store.engine.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == 2).values(record="{not json"))
    with pytest.raises(StoreError, match="contact 2 is unreadable"):
        store.load_contacts()
    assert store.live_hashes().keys() == {1, 2}  # the rest of the store still works


def test_in_memory_stores_have_their_own_locks() -> None:
    with StateStore.open("sqlite://") as a, StateStore.open("sqlite://") as b, a.lock(), b.lock():
        assert a.live_count() == b.live_count() == 0


# --- read-only commands never create a store; what check-config reports ------------------------------


def test_opening_an_existing_store_only_never_creates_one(tmp_path: Path) -> None:
    missing_dir = tmp_path / "not" / "there" / "state.db"
    with pytest.raises(StoreConfigError, match="does not exist") as err:
        StateStore.open(f"sqlite:///{missing_dir}", create=False)
    assert err.value.exit_code == EXIT_CONFIG
    assert not (tmp_path / "not").exists()  # neither the directory nor the file
    missing = tmp_path / "state.db"
    with pytest.raises(StoreConfigError, match=f"{missing} does not exist"):
        StateStore.open(f"sqlite:///{missing}", create=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreConfigError, match="is a directory"):
        StateStore.open(f"sqlite:///{tmp_path}", create=False)
    missing.write_bytes(b"")  # a file, but no store in it
    with pytest.raises(StoreConfigError, match="holds no syncd store"):
        StateStore.open(f"sqlite:///{missing}", create=False)
    missing.unlink()
    with StateStore.open(f"sqlite:///{missing}") as store:
        store.save_contacts([Contact.build(1)], at(0))
    with StateStore.open(f"sqlite:///{missing}", create=False) as store:
        assert store.live_count() == 1


@pytest.mark.postgres
def test_an_empty_postgres_schema_is_not_a_store_for_read_only_commands() -> None:
    if not pg_answers():
        pytest.skip(PG_SKIP)
    from sqlalchemy import create_engine, text

    schema = f"syncd_t_empty_{os.getpid()}"
    admin = create_engine(PG_BASE)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
        with pytest.raises(StoreConfigError, match="holds no syncd store"):
            StateStore.open(url, create=False)
        with admin.connect() as conn:
            tables = conn.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
            ).scalar_one()
        assert tables == 0  # nothing was created
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def test_state_url_problems_for_check_config(tmp_path: Path) -> None:
    from syncd.store.access import state_url_problems

    assert state_url_problems(f"sqlite:///{tmp_path / 'state.db'}") == []
    [missing] = state_url_problems(f"sqlite:///{tmp_path / 'nope' / 'state.db'}")
    assert f"directory {tmp_path / 'nope'} does not exist" in missing
    assert not (tmp_path / "nope").exists()
    [is_dir] = state_url_problems(f"sqlite:///{tmp_path}")
    assert "is a directory" in is_dir
    blocker = tmp_path / "file"
    blocker.write_text("x")
    [through_file] = state_url_problems(f"sqlite:///{blocker / 'state.db'}")
    assert "is not a directory" in through_file
    assert state_url_problems("sqlite://") == []
    assert state_url_problems("postgresql+psycopg://syncd@db.example/syncd") == []  # not reached


def test_a_disk_full_while_creating_stays_a_temporary_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    real_open = os.open

    def full(path: str, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith("state.db") and flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(StoreError, match="No space left") as err:
        StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    assert err.value.exit_code == EXIT_TEMPFAIL
