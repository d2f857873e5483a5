"""End to end, credits: a budget smaller than the demand is spent (>= 95%, never exceeded, counted as the
simulator charges: search + email + phone for ContactOut) and the next run in the month asks that vendor
nothing; a dry run buys nothing and prints what a real run would buy; `--dry-run --buy` buys."""

from __future__ import annotations

from typing import Any

from tests.e2e.harness import Env, EnvFactory, Result, with_contactout_budget

BUDGET = 120  # ContactOut's demand on this 300-contact phonebook is about twice that


def charged(env: Env) -> dict[str, int]:
    sims = env.sims
    return {
        "insideview": sims.insideview.credits_charged,
        "leadfeeder": sims.leadfeeder.credits_charged,
        "contactout": sum(sims.contactout.charged.values()),
    }


def calls(env: Env) -> dict[str, int]:
    return {name: sum(getattr(env.sims, name).calls.values()) for name in env.sims.vendors}


def finished(result: Result) -> dict[str, Any]:
    [event] = result.event("run.finished")
    return event


def test_a_budget_smaller_than_the_demand_is_spent_never_exceeded_and_the_next_run_is_free(
    make_env: EnvFactory,
) -> None:
    env = make_env(300, edit=lambda t: with_contactout_budget(t, BUDGET))
    env.import_links()
    first = env.sync()
    assert first.code == 0, first.err
    spent = charged(env)["contactout"]
    assert BUDGET * 0.95 <= spent <= BUDGET, spent
    done = finished(first)
    assert done["credits"]["contactout"] == spent  # the store counts what the vendor charged
    vendor = done["vendors"]["contactout"]
    assert vendor["stopped"] == "budget" and vendor["over_budget"] > 0
    assert vendor["budget_left"] == BUDGET - spent
    [event] = first.event("vendor.budget_exhausted")
    assert (event["budget"], event["spent"], event["in_flight"]) == (BUDGET, spent, 0)
    assert event["spent"] + event["next_lookup_max_cost"] > BUDGET
    status = env.cli("status", "--json").lines[0]
    assert status["vendors"]["contactout"]["credits_this_month"] == spent

    before = calls(env)["contactout"]
    second = env.sync()
    assert second.code == 0, second.err
    assert calls(env)["contactout"] == before
    assert charged(env)["contactout"] == spent


def test_a_dry_run_buys_nothing_and_prints_what_a_real_run_would_buy(make_env: EnvFactory) -> None:
    env = make_env(60)
    env.import_links()
    dry = env.sync("--dry-run")
    assert dry.code == 0, dry.err
    assert charged(env) == {"insideview": 0, "leadfeeder": 0, "contactout": 0}
    assert calls(env) == {"insideview": 0, "leadfeeder": 0, "contactout": 0}
    assert env.pbx.calls["company_contact/update"] == 0
    with env.store() as store:
        assert store.credits_for_month(store.recent_runs(1)[0].started_at.strftime("%Y-%m")) == {}
    estimate = {row["vendor"]: row for row in dry.lines if row["event"] == "plan.purchase"}
    assert set(estimate) == {"insideview", "leadfeeder", "contactout"}
    for row in estimate.values():
        assert row["lookups"] > 0 and row["max_credits"] >= row["lookups"]
        assert row["budget_left"] == 100000
    assert [r for r in dry.lines if r["event"] == "plan.change"] == []  # nothing cached, nothing bought

    # the real run buys no more than the estimate's most, vendor by vendor
    real = env.sync()
    assert real.code == 0, real.err
    bought = charged(env)
    for vendor, row in estimate.items():
        assert 0 < bought[vendor] <= row["max_credits"], vendor

    # once everything is cached a dry run has nothing left to buy
    again = env.sync("--dry-run")
    assert again.code == 0, again.err
    assert charged(env) == bought
    left = {row["vendor"]: row["lookups"] for row in again.lines if row["event"] == "plan.purchase"}
    assert left == {"insideview": 0, "leadfeeder": 0, "contactout": 0}


def test_dry_run_buy_buys_what_the_plan_needs_and_the_real_run_buys_nothing_more(
    make_env: EnvFactory,
) -> None:
    env = make_env(60)
    env.import_links()
    dry = env.sync("--dry-run", "--buy")
    assert dry.code == 0, dry.err
    bought = charged(env)
    assert all(bought.values())
    plan = {(r["contact_id"], r["field"], r["new"]) for r in dry.lines if r["event"] == "plan.change"}
    assert plan
    assert [r for r in dry.lines if r["event"] == "plan.purchase"] == []  # it bought instead
    assert env.pbx.calls["company_contact/update"] == 0

    # a plain dry run now plans the same from the cache, buying nothing
    cached = env.sync("--dry-run")
    assert {
        (r["contact_id"], r["field"], r["new"]) for r in cached.lines if r["event"] == "plan.change"
    } == plan
    real = env.sync()
    assert real.code == 0, real.err
    assert charged(env) == bought
    assert {(e["contact_id"], e["field"], e["new"]) for e in real.event("contact.changed")} == plan


def test_buy_needs_dry_run(env: Env) -> None:
    result = env.sync("--buy")
    assert result.code == 2
    assert "--buy needs --dry-run" in result.err
