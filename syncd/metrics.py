"""Prometheus metrics of the daemon, fed from each run's `RunSummary`, served on `metrics.listen`.

Off unless `[metrics] enabled = true`; the default address is loopback (127.0.0.1:9464). The metrics live
in a registry of their own (not prometheus_client's global one), so several daemons in one process (tests)
do not collide, and only syncd's series are exposed (no process_/python_ collectors: they read /proc).

Series (counters are totals since the daemon started):
- syncd_runs_total{outcome}                   ok | partial | unreachable | interrupted | failed | aborted |
                                              skipped
- syncd_run_duration_seconds                  histogram of finished runs (skipped ones excluded)
- syncd_run_in_progress                       1 while a run is going
- syncd_last_run_timestamp_seconds{outcome}   end of the last run with that outcome (unix time)
- syncd_contacts_seen_total                   contacts pulled from the PBX
- syncd_last_run_contacts_seen                contacts pulled by the last finished run
- syncd_field_changes_total{field,source}     field changes written to the PBX, by field and vendor
- syncd_vendor_lookups_total{vendor,result}   asked | cached | found | not_found | errors
- syncd_vendor_credits_total{vendor}          credits spent
- syncd_errors_total{service}                 failed contacts (pbx), vendor errors, failed runs by service
- syncd_info{version}                         always 1

State read after each run (and at start and on reload), for the alerts in deploy/prometheus/:
- syncd_start_time_seconds                    when the daemon started (unix time)
- syncd_schedule_interval_seconds             time between two scheduled runs (a cron's shortest gap)
- syncd_schedule_paused                       1 while runs are paused after the PBX refused the login
- syncd_vendor_stopped{vendor,reason}         1 for each vendor the last finished run dropped, and why
                                              (budget, out_of_credits, auth, unavailable); absent otherwise
- syncd_vendor_month_credits{vendor}          credits spent this calendar month (UTC), from the state store
- syncd_vendor_monthly_budget{vendor}         the configured monthly_credit_budget (absent: no budget)
- syncd_journal_pending                       journal entries still pending after the last run
- syncd_journal_pending_runs                  consecutive finished runs that ended with entries pending
"""

from __future__ import annotations

import errno
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from syncd import __version__
from syncd.errors import ConfigError, MassLossError, ServiceError, ServiceUnavailable, StoreError
from syncd.logs import get_logger
from syncd.model import Vendor
from syncd.run_summary import RunSummary
from syncd.schedule import schedule_period
from syncd.store.records import month_of

if TYPE_CHECKING:
    from datetime import tzinfo

    from syncd.config import Config, MetricsConfig
    from syncd.store import StateStore

log = get_logger("syncd.metrics")

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
VENDOR_RESULTS = ("asked", "cached", "found", "not_found", "errors")


def error_service(exc: BaseException) -> str:
    """The `service` label of a run that failed with `exc`."""
    if isinstance(exc, ServiceError):
        return exc.service
    if isinstance(exc, MassLossError):
        return "pbx"  # the PBX listed far fewer contacts than known: a refusal about its answer
    if isinstance(exc, StoreError):
        return "store"
    if isinstance(exc, ConfigError):
        return "config"
    return "internal"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter("syncd_runs", "Sync runs by outcome", ["outcome"], registry=r)
        self.duration = Histogram(
            "syncd_run_duration_seconds", "Duration of sync runs", buckets=DURATION_BUCKETS, registry=r
        )
        self.in_progress = Gauge("syncd_run_in_progress", "1 while a sync run is going", registry=r)
        self.last_run = Gauge(
            "syncd_last_run_timestamp_seconds",
            "Unix time the last run with this outcome ended",
            ["outcome"],
            registry=r,
        )
        self.seen_total = Counter("syncd_contacts_seen", "Contacts pulled from the PBX", registry=r)
        self.seen_last = Gauge("syncd_last_run_contacts_seen", "Contacts pulled by the last run", registry=r)
        self.changes = Counter(
            "syncd_field_changes", "Field changes written to the PBX", ["field", "source"], registry=r
        )
        self.lookups = Counter(
            "syncd_vendor_lookups", "Vendor lookups by result", ["vendor", "result"], registry=r
        )
        self.credits = Counter("syncd_vendor_credits", "Vendor credits spent", ["vendor"], registry=r)
        self.errors = Counter("syncd_errors", "Errors by service", ["service"], registry=r)
        info = Gauge("syncd_info", "syncd build information", ["version"], registry=r)
        info.labels(version=__version__).set(1)
        for outcome in ("ok", "partial", "unreachable", "interrupted", "failed", "aborted", "skipped"):
            self.runs.labels(outcome=outcome)  # present at 0 from the start: rate() needs a baseline
        for service in ("pbx", *(v.value for v in Vendor)):
            self.errors.labels(service=service)  # the same for errors: a dashboard shows 0, not "no data"
        self.started = Gauge("syncd_start_time_seconds", "Unix time the daemon started", registry=r)
        self.started.set(time.time())
        self.interval = Gauge(
            "syncd_schedule_interval_seconds", "Seconds between two scheduled runs", registry=r
        )
        self.paused = Gauge(
            "syncd_schedule_paused", "1 while runs are paused after a refused PBX login", registry=r
        )
        self.vendor_stopped = Gauge(
            "syncd_vendor_stopped",
            "1 for a vendor the last finished run dropped, with the reason",
            ["vendor", "reason"],
            registry=r,
        )
        self.month_credits = Gauge(
            "syncd_vendor_month_credits", "Vendor credits spent this month (UTC)", ["vendor"], registry=r
        )
        self.budget = Gauge(
            "syncd_vendor_monthly_budget", "Configured monthly credit budget", ["vendor"], registry=r
        )
        self.pending = Gauge(
            "syncd_journal_pending", "Journal entries pending after the last run", registry=r
        )
        self.pending_runs = Gauge(
            "syncd_journal_pending_runs",
            "Consecutive finished runs that ended with journal entries pending",
            registry=r,
        )
        self._finished = 0  # runs that ended (returned or raised), for pending_runs
        self._pending_counted = 0
        self._pending_streak = 0
        self._lock = threading.Lock()

    # --- feeding ------------------------------------------------------------------------------------
    def run_started(self) -> None:
        self.in_progress.set(1)

    def observe_run(self, summary: RunSummary, duration: float) -> None:
        """A run that returned its summary (ok, partial, unreachable or interrupted)."""
        with self._lock:
            self.in_progress.set(0)
            self.runs.labels(outcome=summary.outcome).inc()
            self.duration.observe(duration)
            self.last_run.labels(outcome=summary.outcome).set(time.time())
            seen = _int(summary.counts.get("seen"))
            self.seen_total.inc(seen)
            self.seen_last.set(seen)
            for change in summary.applied:
                self.changes.labels(field=change.field, source=change.source).inc()
            vendors = summary.counts.get("vendors")
            if isinstance(vendors, dict):
                for vendor, tally in vendors.items():
                    if not isinstance(tally, dict):
                        continue
                    for result in VENDOR_RESULTS:
                        amount = _int(tally.get(result))
                        if amount:
                            self.lookups.labels(vendor=vendor, result=result).inc(amount)
                    errors = _int(tally.get("errors"))
                    if tally.get("stopped") == "unavailable":
                        errors += 1  # dropped for the run as unreachable: one error for the service
                    if errors:
                        self.errors.labels(service=vendor).inc(errors)
            for vendor, credits in summary.credits.items():
                self.credits.labels(vendor=vendor).inc(max(0, int(credits)))
            if summary.failures:
                self.errors.labels(service="pbx").inc(len(summary.failures))
            self.vendor_stopped.clear()
            for vendor, reason in summary.vendor_stops.items():
                self.vendor_stopped.labels(vendor=vendor, reason=reason).set(1)
            self._finished += 1

    def observe_failure(self, exc: BaseException, duration: float) -> None:
        """A run that raised: `aborted` for a refused mass loss, `failed` otherwise."""
        outcome = "aborted" if isinstance(exc, MassLossError) else "failed"
        with self._lock:
            self.in_progress.set(0)
            self.runs.labels(outcome=outcome).inc()
            self.duration.observe(duration)
            self.last_run.labels(outcome=outcome).set(time.time())
            self.errors.labels(service=error_service(exc)).inc()
            self._finished += 1

    def observe_state(
        self, config: Config, store: StateStore | None, *, paused: bool, tz: tzinfo | None = None
    ) -> None:
        """The schedule, pause, this month's credits against the budgets and the pending journal.

        Called at start, after each run and after a reload; never raises (a metric is not worth a run)."""
        try:
            period = schedule_period(config.sync, tz).total_seconds()
            spent = store.credits_for_month(month_of(datetime.now(UTC))) if store is not None else None
            pending = len(store.journal_pending()) if store is not None else None
        except Exception as exc:
            log.warning("metrics.state_failed", error=f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            self.interval.set(period)
            self.paused.set(1 if paused else 0)
            if spent is not None:
                self.budget.clear()
                self.month_credits.clear()
                for vendor in config.vendors.configured():
                    section = config.vendor(vendor)
                    self.month_credits.labels(vendor=vendor.value).set(spent.get(vendor.value, 0))
                    budget = section.monthly_credit_budget if section is not None else None
                    if budget is not None:
                        self.budget.labels(vendor=vendor.value).set(budget)
            if pending is not None:
                self.pending.set(pending)
                if self._finished != self._pending_counted:  # a run ended since the last look
                    self._pending_counted = self._finished
                    self._pending_streak = self._pending_streak + 1 if pending else 0
                    self.pending_runs.set(self._pending_streak)

    def observe_skipped(self) -> None:
        """A scheduled run that did not start (lock held, paused, still running)."""
        with self._lock:
            self.runs.labels(outcome="skipped").inc()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class MetricsServer:
    """The HTTP endpoint (`/metrics`, any path really) on a background thread."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.host = host
        try:
            self._httpd, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as exc:
            where = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                # most likely the previous instance still shutting down: worth a restart later
                raise ServiceUnavailable("metrics", f"cannot listen on {where}: address in use") from None
            raise ConfigError("metrics.listen", f"cannot listen on {where}: {exc.strerror or exc}") from None
        self.port: int = int(self._httpd.server_address[1])
        log.info("metrics.listening", host=host, port=self.port)

    @classmethod
    def start(cls, metrics: Metrics, config: MetricsConfig) -> MetricsServer:
        return cls(metrics, config.host, config.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
