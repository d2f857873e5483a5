"""The series the alerts in deploy/prometheus/ rely on, as syncd/metrics.py exports them."""

from __future__ import annotations

from datetime import UTC, datetime

from syncd.config import parse_config
from syncd.engine import RunSummary
from syncd.errors import ServiceUnavailable
from syncd.metrics import Metrics
from syncd.model import ContactUpdate
from syncd.store import StateStore
from syncd.store.records import month_of

CONFIG = """
[sync]
state_url = "sqlite://"
cron = "*/10 * * * *"

[pbx]
base_url = "http://pbx.test"
client_id = "id"
client_secret = "alert-metrics-pbx-secret-7f3a"

[vendors.insideview]
client_id = "iv"
client_secret = "iv-secret"
monthly_credit_budget = 1000

[vendors.contactout]
token = "co-token"
"""


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value: float | None = metrics.registry.get_sample_value(name, labels)
    return value


def summary(stops: dict[str, str]) -> RunSummary:
    now = datetime.now(UTC)
    return RunSummary("r", "daemon", now, now, "ok", counts={"seen": 3}, vendor_stops=stops)


def test_state_series_schedule_pause_credits_budgets_pending() -> None:
    config = parse_config(CONFIG, source="t.toml")
    store = StateStore.open("sqlite://")
    try:
        store.add_credits("insideview", month_of(datetime.now(UTC)), 950)
        store.add_credits("insideview", "2020-01", 5000)  # another month: not this month's spend
        metrics = Metrics()
        assert sample(metrics, "syncd_start_time_seconds") > 0
        assert sample(metrics, "syncd_errors_total", service="contactout") == 0  # a baseline for rate()
        metrics.observe_state(config, store, paused=True)
        assert sample(metrics, "syncd_schedule_interval_seconds") == 600
        assert sample(metrics, "syncd_schedule_paused") == 1
        assert sample(metrics, "syncd_vendor_month_credits", vendor="insideview") == 950
        assert sample(metrics, "syncd_vendor_month_credits", vendor="contactout") == 0
        assert sample(metrics, "syncd_vendor_monthly_budget", vendor="insideview") == 1000
        assert sample(metrics, "syncd_vendor_monthly_budget", vendor="contactout") is None  # no budget
        assert sample(metrics, "syncd_journal_pending") == 0
        assert sample(metrics, "syncd_journal_pending_runs") == 0
        metrics.observe_state(config, store, paused=False)
        assert sample(metrics, "syncd_schedule_paused") == 0

        # pending entries across runs: counted once per finished run, back to 0 when none are left
        run = store.start_run("sync", datetime.now(UTC))
        [entry] = store.journal_add(run, [ContactUpdate(7, "h", email="a@example.com")], datetime.now(UTC))
        metrics.observe_state(config, store, paused=False)  # no run ended since the last look
        assert (sample(metrics, "syncd_journal_pending"), sample(metrics, "syncd_journal_pending_runs")) == (
            1,
            0,
        )
        metrics.observe_run(summary({}), 1.0)
        metrics.observe_state(config, store, paused=False)
        metrics.observe_state(config, store, paused=False)  # a reload: not another run
        assert sample(metrics, "syncd_journal_pending_runs") == 1
        metrics.observe_failure(ServiceUnavailable("pbx", "HTTP 503"), 1.0)
        metrics.observe_state(config, store, paused=False)
        assert sample(metrics, "syncd_journal_pending_runs") == 2
        store.journal_resolve(entry, "failed", "test", datetime.now(UTC))
        metrics.observe_run(summary({}), 1.0)
        metrics.observe_state(config, store, paused=False)
        assert (sample(metrics, "syncd_journal_pending"), sample(metrics, "syncd_journal_pending_runs")) == (
            0,
            0,
        )
    finally:
        store.close()


def test_vendor_stopped_holds_the_last_finished_runs_stops() -> None:
    metrics = Metrics()
    metrics.observe_run(summary({"contactout": "unavailable", "insideview": "budget"}), 1.0)
    assert sample(metrics, "syncd_vendor_stopped", vendor="contactout", reason="unavailable") == 1
    assert sample(metrics, "syncd_vendor_stopped", vendor="insideview", reason="budget") == 1
    metrics.observe_failure(ServiceUnavailable("pbx", "HTTP 503"), 1.0)  # says nothing about vendors
    assert sample(metrics, "syncd_vendor_stopped", vendor="contactout", reason="unavailable") == 1
    metrics.observe_run(summary({"leadfeeder": "auth"}), 1.0)
    assert sample(metrics, "syncd_vendor_stopped", vendor="contactout", reason="unavailable") is None
    assert sample(metrics, "syncd_vendor_stopped", vendor="leadfeeder", reason="auth") == 1


def test_state_is_best_effort() -> None:
    """A store that cannot be read leaves the series as they were instead of breaking the daemon's run."""
    config = parse_config(CONFIG, source="t.toml")
    store = StateStore.open("sqlite://")
    metrics = Metrics()
    metrics.observe_state(config, store, paused=True)
    store.close()
    broken = StateStore.open("sqlite://")

    def fail(month: str) -> dict[str, int]:
        raise OSError("disk gone")

    broken.credits_for_month = fail  # type: ignore[method-assign]
    metrics.observe_state(config, broken, paused=False)
    assert sample(metrics, "syncd_schedule_paused") == 1
    broken.close()
