"""The daemon's schedule (`sync.interval` / `sync.cron`), shared with `syncd status` and the metrics.

APScheduler and tzlocal are imported where a trigger or the local zone is needed, not at start-up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.config import Config, SyncConfig
    from syncd.store import StateStore

JOB_ID = "sync"
DEFAULT_INTERVAL = timedelta(minutes=15)
MAX_DERIVED_GRACE = timedelta(hours=1)


def local_timezone() -> tzinfo:
    """The host's time zone ($TZ, else /etc/localtime): cron expressions are read in it."""
    from tzlocal import get_localzone

    return get_localzone()


def build_trigger(sync: SyncConfig, tz: tzinfo | None = None, *, anchor: datetime | None = None) -> Any:
    """The APScheduler trigger of `sync.interval` / `sync.cron`.

    An interval fires at anchor, anchor + interval, anchor + 2 x interval...; without an anchor, the first
    fire is one interval from now.
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    zone = tz or local_timezone()
    if sync.cron:
        return CronTrigger.from_crontab(sync.cron, timezone=zone)
    interval = sync.interval or DEFAULT_INTERVAL
    return IntervalTrigger(seconds=interval.total_seconds(), start_date=anchor, timezone=zone)


def schedule_period(sync: SyncConfig, tz: tzinfo | None = None, now: datetime | None = None) -> timedelta:
    """Time between two fires: the interval, or the shortest gap among a cron's next fire times."""
    if not sync.cron:
        return sync.interval or DEFAULT_INTERVAL
    zone = tz or local_timezone()
    trigger = build_trigger(sync, zone)
    fire = trigger.get_next_fire_time(None, (now or datetime.now(UTC)).astimezone(zone))
    shortest: timedelta | None = None
    for _ in range(8):
        if fire is None:
            break
        following = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if following is None:
            break
        gap = following - fire
        shortest = gap if shortest is None else min(shortest, gap)
        fire = following
    return shortest or DEFAULT_INTERVAL


def misfire_grace_seconds(sync: SyncConfig, tz: tzinfo | None = None, now: datetime | None = None) -> int:
    """`sync.misfire_grace`, or half the schedule's period capped at one hour (at least 1 s)."""
    if sync.misfire_grace is not None:
        return max(1, round(sync.misfire_grace.total_seconds()))
    derived = min(schedule_period(sync, tz, now) / 2, MAX_DERIVED_GRACE)
    return max(1, int(derived.total_seconds()))


def schedule_trigger(sync: SyncConfig, tz: tzinfo, last_start: datetime | None) -> Any:
    """The trigger after a run that started at `last_start`: an interval's grid is anchored on it."""
    if sync.cron or last_start is None:
        return build_trigger(sync, tz)
    return build_trigger(sync, tz, anchor=last_start.astimezone(tz))


def next_fire(
    sync: SyncConfig, last_start: datetime | None, now: datetime, tz: tzinfo | None = None
) -> datetime:
    """When the schedule fires next, given when the last run started (None: no run yet).

    An interval fires on the grid `last_start + k x interval`: normally one interval after the last
    start; fire times missed during a long run are skipped (coalesced), so it is the first grid point not
    before `now`. A cron fires at its next matching local time. With no run yet, the daemon runs at its
    start (`sync.run_at_start`), else one interval later.
    """
    zone = tz or local_timezone()
    here = now.astimezone(zone)
    if last_start is None:
        if sync.run_at_start:
            return here
        if not sync.cron:
            return here + (sync.interval or DEFAULT_INTERVAL)
    fire: datetime = schedule_trigger(sync, zone, last_start).get_next_fire_time(None, here)
    return fire


def next_run(
    config: Config, last_start: datetime | None, now: datetime, tz: tzinfo | None = None
) -> datetime:
    """`next_fire` for a whole config: the next run `syncd status` shows."""
    return next_fire(config.sync, last_start, now, tz)


def last_run_start(store: StateStore) -> datetime | None:
    """When the last real (not dry) run started, read as `syncd status` reads it."""
    return next((r.started_at for r in store.recent_runs(10) if r.mode != "dry_run"), None)


def add_sync_job(scheduler: Any, sync: SyncConfig, func: Any, tz: tzinfo, now: datetime) -> Any:
    """The daemon's one job: at `now` when `sync.run_at_start`, then on the schedule counted from `now`."""
    options: dict[str, Any] = {}
    if sync.run_at_start:
        options["next_run_time"] = now
        trigger = schedule_trigger(sync, tz, now)
    else:
        trigger = schedule_trigger(sync, tz, now + (sync.interval or DEFAULT_INTERVAL))
    return scheduler.add_job(
        func,
        trigger,
        id=JOB_ID,
        name="sync",
        misfire_grace_time=misfire_grace_seconds(sync, tz, now),
        coalesce=True,
        max_instances=1,
        **options,
    )


def describe_schedule(sync: SyncConfig) -> str:
    if sync.cron:
        return f"cron {sync.cron} (local time)"
    seconds = int((sync.interval or DEFAULT_INTERVAL).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"every {seconds // size}{unit}"
    return f"every {seconds}s"
