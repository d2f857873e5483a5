"""`syncd` without `--sync-now`: the daemon. APScheduler 3.x runs the sync on the configured schedule.

Schedule
- `sync.interval` (default 15m) or `sync.cron` (5 fields). Cron expressions are read in the host's local
  time zone (`/etc/localtime`, or `$TZ` when set), like crontab(5): "0 3 * * *" is 03:00 local time and
  follows daylight saving. An interval is counted from the daemon's start.
- One run at start unless `sync.run_at_start = false`.
- Never two runs at once (`max_instances=1`; a fire time reached while a run is going is skipped and
  logged as `run.skipped`), missed fire times coalesce into one run, and a fire time more than
  `sync.misfire_grace` late (default: half the period, at most one hour) is skipped (`run.missed`).
- `syncd.schedule.next_run` is the one function that says when the schedule fires next; `syncd status`
  uses it too.

Runs
- Each run takes the state store's lock, the one `syncd --sync-now` takes: they never overlap. A run that
  finds the lock held logs `run.skipped` and waits for the next fire time.
- A run that fails, whatever the exception, is logged as `run.failed`; the daemon goes on. One exception:
  when the PBX refuses the login (wrong credentials, this host's IP blocked or not allowed), runs are
  paused until a reload (SIGHUP), because five failed logins get the IP blocked.

Signals
- SIGTERM / SIGINT: the running run stops between contacts (the engine's `stop` event) and records
  itself as `interrupted`, with the journal entries left pending (the number `syncd status` shows);
  the daemon revokes the PBX token it holds and exits 0. (`syncd --sync-now` handles the same signals
  through `engine.run_stoppable`, exiting 75 when entries remain pending.)
- SIGHUP: the config file is read again and validated; an invalid file is refused (`config.reload_failed`,
  the old config stays), a valid one replaces the old one for the next run (`config.reloaded`), with a
  new schedule (`schedule.changed`), metrics endpoint or state store when those changed. Changes to
  `[log]` need a restart.

systemd (Type=notify, see syncd/notify.py): READY=1 once the config is valid and the store open, STATUS=
with the run's progress, RELOADING=1/READY=1 around a reload, STOPPING=1, and WATCHDOG=1 every half
`WatchdogSec=` from a thread that pings only while the scheduler thread is alive.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.config import Config, load_config
from syncd.engine import StoreTokenCache, SyncEngine
from syncd.errors import EXIT_OK, EXIT_PARTIAL, ConfigError, LockHeldError, SyncdError
from syncd.heartbeat import IDLE, PAUSED, RUNNING, Heartbeat
from syncd.logs import get_logger
from syncd.metrics import Metrics, MetricsServer
from syncd.notify import Notifier, watchdog_interval
from syncd.pbx.client import YeastarClient
from syncd.pbx.errors import PbxAuthError
from syncd.progress import Progress
from syncd.run_summary import RunSummary
from syncd.schedule import (
    JOB_ID,
    add_sync_job,
    describe_schedule,
    last_run_start,
    local_timezone,
    misfire_grace_seconds,
    schedule_trigger,
)
from syncd.store import StateStore

if TYPE_CHECKING:
    from syncd.config import SyncConfig

log = get_logger("syncd.daemon")

HEALTH_POLL_SECONDS = 5.0  # how often the main thread checks the scheduler thread between signals
STATUS_EVERY_SECONDS = 1.0  # at most one progress STATUS= per second (phase changes always go out)
TOKEN_REFRESH_MARGIN = 60.0  # YeastarClient's default: a token this close to expiry is refreshed, not reused
TOKEN_CAP_ERRCODE = 60002  # "maximum number of access tokens": frees itself, not a reason to pause
SCHEDULE_KEYS = ("interval", "cron", "misfire_grace")

_SIGNAL_NAMES: dict[int, str] = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}
_SCHEDULER_EXITED = "scheduler-exited"


def _clock(when: datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if when else "-"


# --- progress as STATUS= ----------------------------------------------------------------------------


class StatusProgress(Progress):
    """The engine's progress hooks, shown by `systemctl status` through STATUS=."""

    def __init__(self, notifier: Notifier, label: str, *, every: float = STATUS_EVERY_SECONDS) -> None:
        self.notifier = notifier
        self.label = label
        self.every = every
        self._phase = "starting"
        self._total: int | None = None
        self._done = 0
        self._last = 0.0

    def text(self) -> str:
        if self._total is not None:
            return f"{self.label}: {self._phase} {self._done}/{self._total}"
        return f"{self.label}: {self._phase} {self._done}"

    def phase(self, name: str, total: int | None = None) -> None:
        self._phase, self._total, self._done = name, total, 0
        self._send(force=True)

    def advance(self, name: str, amount: int = 1) -> None:
        if name == self._phase:
            self._done += amount
            self._send()

    def done(self) -> None:
        self._send(force=True)

    def _send(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            self.notifier.status(self.text())


# --- the daemon -------------------------------------------------------------------------------------


class Daemon:
    def __init__(self, config: Config, path: Path, *, notifier: Notifier | None = None) -> None:
        self.config = config
        self.path = path
        self.notifier = notifier or Notifier()
        self.tz = local_timezone()
        self.metrics = Metrics()
        self.stop = threading.Event()  # the engine's stop: set once, on SIGTERM/SIGINT
        self.store: StateStore | None = None
        self.metrics_server: MetricsServer | None = None
        self.scheduler: Any = None
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()  # signal handlers put() here
        self._lock = threading.Lock()  # config, store, retired stores, run state
        self._retired: list[StateStore] = []  # stores replaced by a reload, closed once no run uses them
        self._running: str | None = None  # the STATUS label of the run in progress
        self._paused: str | None = None  # why runs are paused (PBX login refused), until a reload
        self._last: str = "no run yet"
        self._scheduler_thread: threading.Thread | None = None
        self._scheduler_started = threading.Event()
        self._watchdog_stop = threading.Event()
        self._watchdog_thread: threading.Thread | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._heartbeat: Heartbeat | None = None  # `syncd status` reads it: is a daemon alive

    # --- lifecycle --------------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        try:
            return self._run()
        finally:
            self._restore_signals()
            self._close_all()

    def _run(self) -> int:
        for warning in self.config.warnings:
            log.warning("config.warning", warning=warning)
        self.store = StateStore.open(self.config.sync.state_url)
        if self.config.metrics.enabled:
            self.metrics_server = MetricsServer.start(self.metrics, self.config.metrics)
        self.metrics.observe_state(self.config, self.store, paused=False, tz=self.tz)
        try:  # from here on, whatever happens, the scheduler thread is stopped before returning
            self._start_scheduler()
            next_at = self._next_run_time()
            log.info(
                "daemon.started",
                config=str(self.path),
                schedule=describe_schedule(self.config.sync),
                timezone=str(self.tz),
                misfire_grace_s=misfire_grace_seconds(self.config.sync, self.tz),
                next_run=next_at.isoformat() if next_at else None,
                metrics=self.metrics_server.url if self.metrics_server else None,
            )
            self.notifier.ready(self._idle_status())
            self.scheduler.resume()  # started paused: READY=1 goes out before the first run's STATUS=
            self._heartbeat = Heartbeat(lambda: self.store, self._beat_info).start()
            self._start_watchdog()
            return self._main_loop()
        finally:
            self._shutdown()

    def _main_loop(self) -> int:
        while True:
            try:
                event = self._events.get(timeout=HEALTH_POLL_SECONDS)
            except queue.Empty:
                event = None
            if isinstance(event, int) and event in (signal.SIGTERM, signal.SIGINT):
                log.info("daemon.stopping", signal=_SIGNAL_NAMES.get(event, str(event)))
                return EXIT_OK
            if event == signal.SIGHUP:
                self.reload()
            thread = self._scheduler_thread
            if event == _SCHEDULER_EXITED or (thread is not None and not thread.is_alive()):
                log.error("daemon.scheduler_died")
                return EXIT_PARTIAL

    def _shutdown(self) -> None:
        self.stop.set()
        label = self._running
        self.notifier.stopping(f"stopping: {label} finishing the contact in flight" if label else "stopping")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # waits for the run in flight, which stops between contacts
        if self._scheduler_thread is not None:
            self._scheduler_thread.join()
        self._stop_watchdog()
        self._revoke_token()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        log.info("daemon.stopped")

    def _close_all(self) -> None:
        self._stop_watchdog()
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
        with self._lock:
            stores = [*self._retired, *([self.store] if self.store is not None else [])]
            self._retired.clear()
            self.store = None
        for store in stores:
            store.close()
        self.notifier.close()

    # --- signals ----------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        for sig in _SIGNAL_NAMES:
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, _frame: object) -> None:
        # runs in the main thread between two bytecodes: SimpleQueue.put is safe here, logging is not
        self._events.put(signum)

    # --- scheduler --------------------------------------------------------------------------------
    def _start_scheduler(self) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_SCHEDULER_STARTED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler

        # the daemon logs these itself, as run.skipped / run.missed events
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        scheduler = BlockingScheduler(
            timezone=self.tz,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        scheduler.add_listener(self._on_scheduler_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        scheduler.add_listener(lambda _e: self._scheduler_started.set(), EVENT_SCHEDULER_STARTED)
        add_sync_job(scheduler, self.config.sync, self._run_job, self.tz, datetime.now(self.tz))
        self.scheduler = scheduler
        thread = threading.Thread(target=self._scheduler_main, name="syncd-scheduler")
        self._scheduler_thread = thread
        thread.start()
        while not self._scheduler_started.wait(0.1):
            if not thread.is_alive():
                raise SyncdError("the scheduler did not start")

    def _scheduler_main(self) -> None:
        try:
            self.scheduler.start(paused=True)
        except BaseException as exc:
            log.exception("scheduler.crashed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._events.put(_SCHEDULER_EXITED)

    def _on_scheduler_event(self, event: Any) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES

        scheduled = getattr(event, "scheduled_run_times", None) or [
            getattr(event, "scheduled_run_time", None)
        ]
        when = scheduled[-1].isoformat() if scheduled and scheduled[-1] is not None else None
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.info("run.skipped", reason="the previous run is still going", scheduled=when)
        else:
            log.warning(
                "run.missed",
                reason="the scheduler was too late for this fire time (misfire grace exceeded)",
                scheduled=when,
            )
        self.metrics.observe_skipped()

    def _next_run_time(self) -> datetime | None:
        job = self.scheduler.get_job(JOB_ID) if self.scheduler is not None else None
        when: datetime | None = getattr(job, "next_run_time", None)
        return when

    def _beat_info(self) -> tuple[str, datetime | None, str | None]:
        if self._running:
            return RUNNING, self._next_run_time(), self._running
        if self._paused:
            return PAUSED, None, self._paused
        return IDLE, self._next_run_time(), None

    def _idle_status(self, note: str | None = None) -> str:
        parts = [f"idle; last run: {self._last}"]
        if self._paused:
            parts.append(f"runs PAUSED until a reload: {self._paused}")
        else:
            parts.append(f"next run {_clock(self._next_run_time())}")
        if note:
            parts.append(note)
        return "; ".join(parts)

    # --- one run ------------------------------------------------------------------------------------
    def _run_job(self) -> None:
        if self.stop.is_set():
            return
        with self._lock:
            config, store, paused = self.config, self.store, self._paused
        if paused is not None or store is None:
            log.warning("run.skipped", reason=f"runs are paused until a reload (SIGHUP): {paused}")
            self.metrics.observe_skipped()
            return
        label = f"run {datetime.now(self.tz).strftime('%H:%M:%S')}"
        progress = StatusProgress(self.notifier, label)
        started = time.monotonic()
        self._set_running(label)
        self.metrics.run_started()
        try:
            with store.lock():
                engine = SyncEngine(config, store, mode="daemon", stop=self.stop, progress=progress)
                summary = asyncio.run(engine.run())
        except LockHeldError as exc:
            log.warning("run.skipped", reason=str(exc))
            self.metrics.in_progress.set(0)
            self.metrics.observe_skipped()
            self._last = f"skipped at {_clock(datetime.now(self.tz))} (lock held)"
        except Exception as exc:
            duration = time.monotonic() - started
            self.metrics.observe_failure(exc, duration)
            extra: dict[str, Any] = {} if isinstance(exc, SyncdError) else {"exc_info": True}
            log.error(
                "run.failed",
                error=f"{type(exc).__name__}: {exc}",
                exit_code=getattr(exc, "exit_code", EXIT_PARTIAL),
                duration_s=round(duration, 3),
                **extra,
            )
            self._last = f"FAILED at {_clock(datetime.now(self.tz))}: {type(exc).__name__}"
            if isinstance(exc, PbxAuthError) and exc.errcode != TOKEN_CAP_ERRCODE:
                with self._lock:
                    self._paused = f"the PBX refused the login ({exc})"
                log.error(
                    "schedule.paused",
                    reason=self._paused,
                    hint="fix [pbx] in the config (or the PBX's IP rules), then reload: systemctl reload syncd",
                )
        else:
            self.metrics.observe_run(summary, time.monotonic() - started)
            self._last = self._describe(summary)
        finally:
            self.metrics.observe_state(config, store, paused=self._paused is not None, tz=self.tz)
            self._set_running(None)
            if not self.stop.is_set():
                self.notifier.status(self._idle_status())

    @staticmethod
    def _describe(summary: RunSummary) -> str:
        c = summary.counts
        return (
            f"{summary.outcome} at {_clock(summary.ended_at)} "
            f"({c.get('seen', 0)} seen, {c.get('updated', 0)} updated, {len(summary.failures)} failed)"
        )

    def _set_running(self, label: str | None) -> None:
        with self._lock:
            self._running = label
            if label is None:
                retired, self._retired = self._retired, []
            else:
                retired = []
        for store in retired:
            store.close()
        if self._heartbeat is not None:
            self._heartbeat.poke()  # a run started or ended: say so now, not at the next beat

    # --- reload -----------------------------------------------------------------------------------
    def reload(self) -> bool:
        self.notifier.reloading()
        log.info("config.reloading", path=str(self.path))
        old = self.config
        new_store: StateStore | None = None
        new_server: MetricsServer | None = None
        try:
            # everything that can fail comes first; the old config stays in force until all of it worked
            new = load_config(self.path)
            if new.sync.state_url != old.sync.state_url:
                new_store = StateStore.open(new.sync.state_url)
            if new.metrics.enabled and (
                self.metrics_server is None or new.metrics.listen != old.metrics.listen
            ):
                new_server = MetricsServer.start(self.metrics, new.metrics)
        except Exception as exc:
            if new_store is not None:
                new_store.close()
            kind = "config" if isinstance(exc, ConfigError) else "resources"
            extra: dict[str, Any] = {} if isinstance(exc, SyncdError) else {"exc_info": True}
            log.error("config.reload_failed", path=str(self.path), kind=kind, error=str(exc), **extra)
            self.notifier.ready(self._idle_status("reload FAILED, running with the previous config"))
            return False

        changed = [name for name in type(new).model_fields if getattr(new, name) != getattr(old, name)]
        old_server = None
        with self._lock:
            self.config = new
            if new_store is not None:
                if self.store is not None:
                    if self._running is not None:
                        self._retired.append(self.store)
                    else:
                        self.store.close()
                self.store = new_store
            if not new.metrics.enabled or new_server is not None:
                old_server, self.metrics_server = self.metrics_server, new_server
            was_paused, self._paused = self._paused, None
        if old_server is not None:
            old_server.stop()
        self.metrics.observe_state(new, self.store, paused=False, tz=self.tz)
        if was_paused:
            log.info("schedule.resumed", reason="config reloaded")
        if any(getattr(new.sync, k) != getattr(old.sync, k) for k in SCHEDULE_KEYS):
            self._reschedule(new.sync)
        for warning in new.warnings:
            log.warning("config.warning", warning=warning)
        if new.log != old.log:
            log.warning("config.reload_partial", reason="[log] changes take effect at the next restart")
        next_at = self._next_run_time()
        log.info(
            "config.reloaded",
            path=str(self.path),
            changed=changed,
            schedule=describe_schedule(new.sync),
            next_run=next_at.isoformat() if next_at else None,
        )
        self.notifier.ready(self._idle_status("config reloaded"))
        return True

    def _reschedule(self, sync: SyncConfig) -> None:
        """The new schedule, continued from the last run (exactly as `syncd status` computes it)."""
        now = datetime.now(self.tz)
        with self._lock:
            store = self.store
        last = last_run_start(store) if store is not None else None
        trigger = schedule_trigger(sync, self.tz, last)
        when = trigger.get_next_fire_time(None, now)
        grace = misfire_grace_seconds(sync, self.tz, now)
        self.scheduler.modify_job(JOB_ID, trigger=trigger, next_run_time=when, misfire_grace_time=grace)
        log.info(
            "schedule.changed",
            schedule=describe_schedule(sync),
            misfire_grace_s=grace,
            last_run=last.isoformat() if last else None,
            next_run=when.isoformat() if when else None,
        )

    # --- watchdog ---------------------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None or not self.notifier.enabled:
            return
        self.notifier.watchdog()
        thread = threading.Thread(
            target=self._watchdog_loop, args=(interval,), name="syncd-watchdog", daemon=True
        )
        self._watchdog_thread = thread
        thread.start()
        log.info("watchdog.started", every_s=round(interval, 3))

    def _watchdog_loop(self, interval: float) -> None:
        while not self._watchdog_stop.wait(interval):
            thread = self._scheduler_thread
            if thread is not None and thread.is_alive():
                self.notifier.watchdog()

    def _stop_watchdog(self) -> None:
        self._watchdog_stop.set()
        if self._watchdog_thread is not None:
            self._watchdog_thread.join(timeout=5)
            self._watchdog_thread = None

    # --- the PBX token ----------------------------------------------------------------------------
    def _revoke_token(self) -> None:
        """Revoke the PBX token the daemon's runs kept in the store (the PBX holds at most 8 per app)."""
        with self._lock:
            config, store = self.config, self.store
        if store is None:
            return
        try:
            with store.lock():
                asyncio.run(revoke_cached_token(config, store))
        except LockHeldError:
            log.info("pbx.revoke_skipped", reason="another run holds the state store lock and uses the token")
        except Exception as exc:  # best effort: the token expires on its own
            log.warning("pbx.revoke_failed", error=f"{type(exc).__name__}: {exc}")


async def revoke_cached_token(config: Config, store: StateStore) -> bool:
    """Revoke the PBX token cached in the store; True when one was cached. Never logs in to do so."""
    cache = StoreTokenCache.for_config(store, config)
    token = cache.load()
    if token is None:
        return False
    client = YeastarClient(
        config.pbx.http_settings(),
        config.pbx.client_id,
        config.pbx.client_secret,
        token_cache=cache,
        refresh_margin=TOKEN_REFRESH_MARGIN,
    )
    try:
        if token.access_expires_at > time.time() + TOKEN_REFRESH_MARGIN + 5:
            await client.ensure_token()  # adopts the cached token: no request while it is valid
    finally:
        # with a token adopted: del_token, then the cache is cleared; an expired one is only forgotten
        await client.close(revoke=True)
    return True


def run_daemon(config: Config, path: Path) -> int:
    """`syncd [--config PATH]`: runs until SIGTERM/SIGINT; returns the exit status (0 after a signal)."""
    return Daemon(config, Path(path)).run()
