"""Whole runs (`syncd --sync-now`) against PBXs that behave as the docs leave open.

A token storm ends exactly like a fault-free run; a PBX that keeps refusing tokens leaves the work pending
(exit 75) for the next run; the sel_all phonebook never costs an update; a "Last First" PBX costs only
the list calls on a run with nothing to do; a missing API permission is a configuration error.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.pbx import client as pbx_client
from syncd.sim.dataset import Dataset
from syncd.sim.launch import PBX_SECRET, Simulators
from tests.e2e.harness import Env, EnvFactory, Result, endpoint_of, wrap

SIZE = 60


@pytest.fixture(autouse=True)
def forget_query_params() -> Iterator[None]:
    pbx_client.QUERY_PARAM_MEMORY.clear()
    yield
    pbx_client.QUERY_PARAM_MEMORY.clear()


def finished(result: Result) -> dict[str, Any]:
    [event] = result.event("run.finished")
    return event


class ExpireUpdates:
    """While `on`, answers every company_contact/update with errcode 10004, whatever the token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.on = False
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on and scope["type"] == "http" and endpoint_of(scope) == "company_contact/update":
            self.answered += 1
            body = json.dumps({"errcode": 10004, "errmsg": "TOKEN EXPIRED"}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def synced_env(
    make_env: EnvFactory,
    setup: Callable[[Simulators], None] | None = None,
    edit: Callable[[str], str] | None = None,
) -> tuple[Env, Result]:
    env = make_env(dataset=Dataset(SIZE), setup=setup, edit=edit)
    env.import_links()
    return env, env.sync()


# --- item 1: a token that expires under load never fails a contact ------------------------------------


def test_a_token_storm_ends_exactly_like_a_fault_free_run(make_env: EnvFactory) -> None:
    calm, calm_run = synced_env(make_env)

    def storm(sims: Simulators) -> None:
        sims.pbx.token_uses = 3  # every token dies after three calls, four updates in flight
        sims.pbx.faults.error_every = 13  # an occasional 503 on any call
        sims.pbx.unavailable_every = {"refresh_token": 3}  # and on refresh_token

    stormy, storm_run = synced_env(make_env, storm)
    assert calm_run.code == 0, calm_run.err
    assert storm_run.code == 0, storm_run.err
    assert stormy.pbx.calls["refresh_token"] >= 10
    assert stormy.pbx.unavailable["refresh_token"] >= 1
    assert stormy.pbx.faults.injected.get("error", 0) >= 1
    assert storm_run.event("contact.rejected") == []
    assert stormy.phonebook() == calm.phonebook()
    keep = ("outcome", "updated", "planned_updates", "planned_changes", "failed")
    assert {k: finished(storm_run)[k] for k in keep} == {k: finished(calm_run)[k] for k in keep}
    assert finished(storm_run)["updated"] > 30
    changed = [(e["contact_id"], e["field"], e["new"]) for e in storm_run.event("contact.changed")]
    calm_changed = [(e["contact_id"], e["field"], e["new"]) for e in calm_run.event("contact.changed")]
    assert sorted(changed) == sorted(calm_changed)
    assert stormy.pbx.calls["get_token"] == 1  # the links import's login: every refresh worked


def test_a_pbx_that_keeps_refusing_tokens_leaves_the_work_pending_and_exits_75(make_env: EnvFactory) -> None:
    gates: list[ExpireUpdates] = []
    env = make_env(dataset=Dataset(SIZE), setup=lambda s: gates.append(wrap(s, "pbx", ExpireUpdates)))
    [gate] = gates
    env.import_links()
    gate.on = True
    first = env.sync()
    assert first.code == 75, first.err
    assert first.event("contact.rejected") == []
    assert env.pbx.updates == []
    with env.store() as store:
        pending = len(store.journal_pending())
    assert pending == finished(first)["planned_updates"] > 30
    gate.on = False
    second = env.sync()
    assert second.code == 0, second.err
    with env.store() as store:
        assert store.journal_pending() == []
    assert len(env.pbx.updates) == pending
    assert len({e["contact_id"] for e in second.event("contact.changed")}) == pending


def test_a_changed_pbx_secret_is_noticed_not_hidden_by_the_cached_token(make_env: EnvFactory) -> None:
    env, first = synced_env(make_env)
    assert first.code == 0, first.err
    logins = env.pbx.calls["get_token"]

    def secret(value: str) -> Callable[[str], str]:
        return lambda text: text.replace(f'client_secret = "{PBX_SECRET}"', f'client_secret = "{value}"')

    # a mistyped new secret: the token the old one minted is still valid, and is not used
    env.write_config(edit=secret("mistyped-secret-9c1d"))
    wrong = env.sync()
    assert wrong.code == 78, wrong.err
    assert "mistyped-secret-9c1d" not in wrong.out + wrong.err
    assert env.pbx.calls["get_token"] == logins + 1
    # the secret rotated on the PBX and in the config: one login with it, and the run goes on
    env.pbx.client_secret = "rotated-secret-4e7a"
    env.write_config(edit=secret("rotated-secret-4e7a"))
    right = env.sync()
    assert right.code == 0, right.err
    assert env.pbx.calls["get_token"] == logins + 2


# --- item 6: PBX behaviours the docs leave open -------------------------------------------------------


@pytest.mark.parametrize(("refuse", "listed"), [(True, True), (False, True), (True, False)])
def test_the_sel_all_phonebook_never_costs_an_update_or_a_membership(
    make_env: EnvFactory, refuse: bool, listed: bool
) -> None:
    every: list[int] = []
    env, first = synced_env(
        make_env,
        lambda s: every.append(s.pbx.all_contacts_phonebook(refuse_members=refuse, listed=listed)),
        # syncing only that phonebook is syncing every contact, whether contacts name it or not
        edit=lambda t: t.replace("[sync]\n", '[sync]\nphonebooks = ["All Company Contacts"]\n', 1),
    )
    [sel_all] = every
    before = {cid: sorted(p["id"] for p in c["phonebook_list"]) for cid, c in env.phonebook().items()}
    assert first.code == 0, first.err
    assert finished(first)["in_scope"] == SIZE
    assert first.event("contact.rejected") == [] and first.event("contact.not_applied") == []
    assert env.pbx.refused_members == 0
    sent = [u["phonebook_id_list"] for u in env.pbx.updates if "phonebook_id_list" in u]
    assert sent and all(sel_all not in books for books in sent)
    after = {cid: sorted(p["id"] for p in c["phonebook_list"]) for cid, c in env.phonebook().items()}
    assert after == before  # memberships never change because of syncd
    assert env.pbx.calls["phonebook/list"] == 1  # read once in the run, four updates in flight or not
    assert all((sel_all in books) == listed for books in after.values())
    calls = Counter(env.pbx.calls)
    second = env.sync()
    assert second.code == 0, second.err
    assert finished(second)["planned_updates"] == 0
    made = Counter(env.pbx.calls) - calls
    assert made["company_contact/update"] == 0
    assert made["phonebook/list"] == 1  # once per run


@pytest.mark.parametrize("order", ["first_last", "last_first"])
def test_a_run_with_nothing_to_do_makes_only_the_list_calls(make_env: EnvFactory, order: str) -> None:
    env, first = synced_env(make_env, lambda s: s.pbx.set_name_order(order))
    assert first.code == 0, first.err
    assert finished(first)["updated"] > 30
    calls = Counter(env.pbx.calls)
    second = env.sync()
    assert second.code == 0, second.err
    done = finished(second)
    assert done["unchanged"] == SIZE and done["changed"] == 0
    made = Counter(env.pbx.calls) - calls
    assert set(made) == {"company_contact/list"}, made
    assert second.event("contact.changed") == []


@pytest.mark.parametrize(("reading", "unknown"), [("ids", "error"), ("id", "error"), ("id", "ignore")])
def test_a_run_works_with_either_query_parameter(make_env: EnvFactory, reading: str, unknown: str) -> None:
    def setup(sims: Simulators) -> None:
        sims.pbx.query_param = reading
        sims.pbx.unknown_query_param = unknown

    env, first = synced_env(make_env, setup)
    assert first.code == 0, first.err
    done = finished(first)
    assert done["updated"] == done["planned_updates"] > 30
    assert done.get("superseded", 0) == 0  # the pre-push re-read found every contact
    assert pbx_client.QUERY_PARAM_MEMORY[env.sims.url("pbx").rstrip("/")] == reading


def test_a_missing_api_permission_fails_the_run_with_78_naming_it(make_env: EnvFactory) -> None:
    env = make_env(dataset=Dataset(SIZE))
    env.import_links()
    env.pbx.denied = {"company_contact/update"}
    result = env.sync()
    assert result.code == 78, result.err
    last = result.err.strip().splitlines()[-1]
    assert "10005" in last and "Contacts (write)" in last and "company_contact/update" in last
    assert env.pbx.updates == []
    # never retried: only the updates already in flight (push_concurrency 4) when the first was refused
    assert 1 <= env.pbx.calls["company_contact/update"] <= 4
