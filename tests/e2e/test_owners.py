"""Field ownership end to end: the takeover guard against a restored PBX simulator, `syncd owners`,
`syncd owners reset`, and the history of a person's takeovers and removals and of tombstones."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime

from tests.e2e.harness import Env, EnvFactory


def with_sync(line: str) -> object:
    return lambda text: text.replace("[sync]\n", f"[sync]\n{line}\n", 1)


def kinds(env: Env, *args: str) -> Counter[str]:
    result = env.cli("history", "--json", *args)
    assert result.code == 0, result.err
    return Counter(row["kind"] for row in result.lines)


def test_a_restored_pbx_stops_the_run_and_owners_reset_is_the_way_out(make_env: EnvFactory) -> None:
    env = make_env(60)
    env.import_links()
    backup = env.pbx.backup()  # the phonebook before syncd wrote anything
    first = env.sync()
    assert first.code == 0, first.err
    synced = env.phonebook()
    with env.store() as store:
        written = store.syncd_written_count()
        changes = len(store.history())
    assert written >= 20 and changes >= written

    # the PBX is restored from the old backup: every value syncd wrote is gone
    env.pbx.restore(backup)
    restored = env.phonebook()
    assert restored != synced
    dry = env.sync("--dry-run")  # the plan says so too, before anyone runs it for real
    assert dry.code == 1 and "syncd owners reset" in dry.err, dry.err
    refused = env.sync()
    assert refused.code == 1, refused.err
    assert "restored" in refused.err and "bulk import" in refused.err
    assert "syncd owners reset" in refused.err and "takeover_ratio" in refused.err
    with env.store() as store:
        assert [o for o in store.owners() if o.owner == "person"] == []  # no ownership recorded
        assert store.syncd_written_count() == written
        assert store.recent_runs(1)[0].outcome == "aborted"
        assert store.journal_pending() == []
    assert env.phonebook() == restored  # nothing written either
    assert kinds(env) == Counter({"change": changes})

    # the way out, as the message says: take the restore as it is for one run...
    env.write_config(edit=with_sync("takeover_ratio = 1"))  # type: ignore[arg-type]
    taken = env.sync()
    assert taken.code == 0, taken.err
    [done] = taken.event("run.finished")
    assert done["person_touched"] >= written
    assert taken.event("contact.changed") == []
    owners = env.cli("owners", "--json")
    assert owners.code == 0, owners.err
    people = [row for row in owners.lines if row["owner"] == "person"]
    assert len(people) >= written
    assert all(row["since"] for row in people)
    history = kinds(env)
    assert history["removal"] >= 1 and history["removal"] + history["takeover"] == done["person_touched"]

    # ... then give the fields back to syncd: the next run writes them again
    one = people[0]
    only = env.cli("owners", "reset", "--contact", str(one["contact_id"]), "--field", one["field"])
    assert only.code == 0, only.err
    assert only.out.strip() == "1 field(s) given back to syncd"
    every = env.cli("owners", "reset")
    assert every.code == 0, every.err
    assert every.out.strip() == f"{len(people) - 1} field(s) given back to syncd"
    assert len(every.event("owners.reset")) == len(people) - 1
    assert kinds(env)["reset"] == len(people)
    assert [r for r in env.cli("owners", "--json").lines if r["owner"] == "person"] == []

    env.write_config()
    again = env.sync()
    assert again.code == 0, again.err
    assert env.phonebook() == synced
    assert len(again.event("contact.changed")) > 0


def test_a_few_edits_are_takeovers_a_deletion_a_tombstone(make_env: EnvFactory) -> None:
    env = make_env(60)
    env.import_links()
    assert env.sync().code == 0
    with env.store() as store:
        emails = [r for r in store.history() if r.field == "email"]
    edited, emptied = emails[0].contact_id, emails[1].contact_id
    gone = next(cid for cid in env.pbx.contact_ids() if cid not in (edited, emptied))
    env.pbx.edit_contact(edited, email="mine@example.org")
    env.pbx.edit_contact(emptied, email="")
    env.pbx.delete_contact(gone)

    run = env.sync()
    assert run.code == 0, run.err  # two fields of many: people's edits, not a restore
    rows = env.cli("history", "--json", "--contact", str(edited)).lines
    assert [(r["kind"], r["field"], r["new"]) for r in rows if r["kind"] != "change"] == [
        ("takeover", "email", "mine@example.org")
    ]
    rows = env.cli("history", "--json", "--contact", str(emptied)).lines
    assert [(r["kind"], r["field"], r["old"]) for r in rows if r["kind"] != "change"] == [
        ("removal", "email", emails[1].new)
    ]
    rows = env.cli("history", "--json", "--contact", str(gone)).lines
    assert [r["kind"] for r in rows if r["kind"] != "change"] == ["tombstone"]
    for row in env.cli("history", "--json").lines:
        assert row["change_id"] == row["id"]
        assert row["kind"] in {"change", "takeover", "removal", "tombstone", "reset"}
    owners = {
        (r["contact_id"], r["field"]): r["owner"]
        for r in env.cli("owners", "--json", "--contact", str(edited)).lines
    }
    assert owners[(edited, "email")] == "person"


def test_every_change_event_carries_the_id_of_its_history_row(env: Env) -> None:
    env.import_links()
    run = env.sync()
    assert run.code == 0, run.err
    events = {e["change_id"]: e for e in run.event("contact.changed")}
    rows = {r["change_id"]: r for r in env.cli("history", "--json").lines}
    assert events.keys() == rows.keys() and events
    for change_id, e in events.items():
        row = rows[change_id]
        assert (e["contact_id"], e["field"], e["old"], e["new"], e["source"]) == (
            row["contact_id"],
            row["field"],
            row["old"],
            row["new"],
            row["source"],
        )
        assert e["run_id"] == row["run_id"]
    with env.store() as store:
        assert store.unlogged_changes() == []


def test_changes_a_crash_left_unlogged_are_logged_by_the_next_run_with_their_ids(env: Env) -> None:
    from sqlalchemy import update

    from syncd.store.schema import change_log

    env.import_links()
    first = env.sync()
    assert first.code == 0, first.err
    events = {e["change_id"]: e for e in first.event("contact.changed")}
    lost = sorted(events)[-5:]
    # what a kill between committing the changes and writing their events leaves behind
    with env.store() as store, store.engine.begin() as conn:
        conn.execute(update(change_log).where(change_log.c.id.in_(lost)).values(logged_at=None))
    with env.store() as store:
        assert [r.id for r in store.unlogged_changes()] == lost

    again = env.sync()
    assert again.code == 0, again.err
    replayed = again.event("contact.changed")
    assert [e["change_id"] for e in replayed] == lost
    for e in replayed:
        assert e["replayed"] is True
        original = events[e["change_id"]]
        assert {k: e[k] for k in ("run_id", "contact_id", "field", "old", "new", "source")} == {
            k: original[k] for k in ("run_id", "contact_id", "field", "old", "new", "source")
        }
    [note] = again.event("changes.replayed")
    assert note["count"] == len(lost)
    with env.store() as store:
        assert store.unlogged_changes() == []
    assert env.sync().event("contact.changed") == []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_owners_on_a_terminal_is_a_table_and_a_bad_field_is_a_usage_error(env: Env) -> None:
    from syncd.config import load_config
    from syncd.owners import show_owners

    env.import_links()
    assert env.sync().code == 0
    with env.store() as store:
        [first, *_] = store.owners()
        store.mark_person_owned(first.contact_id, [first.field], datetime.now(UTC))
    out = Terminal()
    assert show_owners(load_config(env.config), stream=out) == 0
    text = out.getvalue()
    assert "person" in text and "syncd" in text and "person-owned" in text
    bad = env.cli("owners", "reset", "--field", "fax")
    assert bad.code == 2
    assert "not a managed field" in bad.err and "business_fax" in bad.err
    with env.store() as store:
        assert {
            o.owner for o in store.owners() if (o.contact_id, o.field) == (first.contact_id, first.field)
        } == {"person"}
