"""What syncd shows people: check-config, status, history, the dry-run plan and the run summary.

On a terminal: readable tables (rich). Otherwise: JSON, one object a line, for scripts and journald.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, TextIO

from syncd.errors import EXIT_OK, ConfigError, UsageError
from syncd.heartbeat import read_beat
from syncd.run_summary import RunSummary
from syncd.schedule import local_timezone
from syncd.schedule import next_run as schedule_next_run
from syncd.store import StateStore, month_of
from syncd.store.access import state_url_problems
from syncd.store.lock import file_lock_holder

if TYPE_CHECKING:
    from syncd.config import Config


def _tty(stream: TextIO) -> bool:
    return stream.isatty()


def _console(stream: TextIO) -> Any:
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=False)


def _line(obj: dict[str, Any], stream: TextIO) -> None:
    stream.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


# --- check-config -----------------------------------------------------------------------------------


def check_config(config: Config, stream: TextIO | None = None) -> int:
    out = stream or sys.stdout
    problems = state_url_problems(config.sync.state_url)
    if problems:
        raise ConfigError("sync.state_url", "; ".join(problems))
    sections = [key for key, _ in config.secret_sections()]
    schedule = f"cron {config.sync.cron}" if config.sync.cron else f"every {_duration(config.sync.interval)}"
    lines = [
        f"config {config.path}: OK",
        f"  schedule: {schedule}",
        f"  PBX: {config.pbx.base_url}",
        f"  waterfall: {' -> '.join(v.value for v in config.enabled_vendors()) or '(no vendor)'}",
        f"  credentials present for: {', '.join(sections)}",
    ]
    lines += [f"  warning: {w}" for w in config.warnings]
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- status -----------------------------------------------------------------------------------------

COUNT_KEYS = ("seen", "new", "changed", "deleted", "updated", "failed")
_COUNT_HEADS = ("seen", "new", "chg", "del", "upd", "fail")  # fits 80 columns


def next_run(config: Config, last_start: datetime | None, now: datetime) -> datetime | None:
    """When the daemon's schedule fires next: the daemon's own function (cron in local time)."""
    return schedule_next_run(config, last_start, now)


def _local(when: datetime | None, tz: tzinfo) -> str | None:
    """An ISO time in the host's zone, with its offset (machine-readable: full precision)."""
    return when.astimezone(tz).isoformat() if when is not None else None


def zone_named(name: str | None) -> tzinfo | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def human_time(text: str | None, tz: tzinfo | None = None, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    """'2026-12-01 22:20:12 CET' from an ISO time: local, with its zone's name, no microseconds."""
    if not text:
        return "-"
    when = datetime.fromisoformat(text)
    return (when.astimezone(tz) if tz is not None else when).strftime(fmt).strip()


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def budget_words(spent: int, budget: int | None) -> str:
    """'1,200 / 5,000 / 3,800 left', '5,000 / 5,000 / 0 left', '5,100 / 5,000 / over by 100', or unlimited."""
    if budget is None:
        return f"{spent:,} spent / no budget"
    left = budget - spent
    tail = f"{left:,} left" if left >= 0 else f"over by {-left:,}"
    return f"{spent:,} / {budget:,} / {tail}"


def _lock_holder(store: StateStore) -> dict[str, Any] | None:
    path = getattr(store, "_lock_path", None)
    return file_lock_holder(path) if isinstance(path, str) else None


def _daemon_data(store: StateStore, now: datetime, tz: tzinfo) -> dict[str, Any] | None:
    beat = read_beat(store)
    if beat is None:
        return None
    return {
        "alive": beat.alive(now),
        "state": beat.state,
        "pid": beat.pid,
        "host": beat.host,
        "started_at": _local(beat.started_at, tz),
        "last_heartbeat": _local(beat.beat_at, tz),
        "heartbeat_age_s": round((now - beat.beat_at).total_seconds(), 1),
        "heartbeat_every_s": beat.every_s,
        "note": beat.note,
    }


def status_data(
    config: Config, store: StateStore, *, runs: int = 10, now: datetime | None = None
) -> dict[str, Any]:
    tz = local_timezone()
    now = now or datetime.now(UTC)
    recent = store.recent_runs(runs)
    credits = store.credits_for_month(month_of(now))
    vendors: dict[str, Any] = {}
    for vendor in config.vendors.configured():
        section = config.vendor(vendor)
        budget = section.monthly_credit_budget if section is not None else None
        spent = credits.get(vendor.value, 0)
        vendors[vendor.value] = {
            "credits_this_month": spent,
            "monthly_budget": budget,
            "remaining": None if budget is None else max(0, budget - spent),
            "over_by": None if budget is None else max(0, spent - budget),
        }
    pending = store.journal_pending()
    daemon = _daemon_data(store, now, tz)
    alive = bool(daemon and daemon["alive"])
    nxt: datetime | None = None
    if alive and daemon is not None and daemon["state"] != "paused":
        last_start = next((r.started_at for r in recent if r.mode != "dry_run"), None)
        nxt = next_run(config, last_start, now)
    if alive:
        why = "runs paused until a reload (SIGHUP)" if nxt is None else None
    elif daemon is None:
        why = "no daemon has run on this state store"
    elif daemon["state"] == "stopped":
        why = "no daemon is running: the last one stopped"
    else:
        why = f"no daemon is running: its last heartbeat is {human_duration(daemon['heartbeat_age_s'])} old"
    running = [r for r in recent if r.outcome == "running"]
    holder = _lock_holder(store)
    lock: dict[str, Any] = {"held_by": None}
    if holder is not None:
        try:
            since = _local(datetime.fromisoformat(str(holder.get("since"))), tz)
        except ValueError:  # a lock file someone edited: the pid still counts
            since = None
        is_daemon = (
            daemon is not None and daemon["pid"] == holder["pid"] and daemon["host"] == holder.get("host")
        )
        who = "the daemon" if is_daemon else "syncd"
        lock = {"held_by": f"{who} (pid {holder['pid']} on {holder.get('host')}, since {since})", **holder}
    elif alive and daemon is not None and daemon["state"] == "running":
        lock = {"held_by": f"the daemon (pid {daemon['pid']} on {daemon['host']})"}
    elif running and store.dialect != "sqlite":
        lock = {"held_by": f"a {running[0].mode} run started {_local(running[0].started_at, tz)}"}
    if running and holder is None and store.dialect == "sqlite":
        # the run's row says running, but nobody holds the lock: the process died mid-run
        lock["interrupted_run"] = (
            f"a {running[0].mode} run started {_local(running[0].started_at, tz)} ended without finishing (killed?)"
        )
    failed = next((r for r in recent if r.error), None)
    return {
        "now": _local(now, tz),
        "timezone": str(tz),
        "month": month_of(now),
        "daemon": daemon,
        "lock": lock,
        "next_run": _local(nxt, tz),
        "next_run_note": why,
        "runs": [
            {
                "run_id": r.id,
                "mode": r.mode,
                "started_at": _local(r.started_at, tz),
                "ended_at": _local(r.ended_at, tz),
                "duration_s": round((r.ended_at - r.started_at).total_seconds(), 3) if r.ended_at else None,
                "outcome": r.outcome,
                "counts": r.counts,
                "credits": r.counts.get("credits") or {},
                "error": r.error,
            }
            for r in recent
        ],
        "last_error": (
            {
                "run_id": failed.id,
                "at": _local(failed.ended_at or failed.started_at, tz),
                "error": failed.error,
            }
            if failed is not None
            else None
        ),
        "vendors": vendors,
        "pending_journal": [{"entry": e.id, "contact_id": e.contact_id, "run_id": e.run_id} for e in pending],
        "contacts": store.live_count(),
    }


def show_status(
    config: Config, *, as_json: bool = False, runs: int = 10, stream: TextIO | None = None
) -> int:
    out = stream or sys.stdout
    store = StateStore.open(config.sync.state_url, create=False)  # read-only: never creates one
    try:
        data = status_data(config, store, runs=runs)
    finally:
        store.close()
    if as_json:
        _line(data, out)  # one JSON object on one line, for scripts
    elif not _tty(out):
        out.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")  # piped: still JSON
    else:
        print_status(data, out)
    return EXIT_OK


def print_status(data: dict[str, Any], out: TextIO) -> None:
    from rich.table import Table

    console = _console(out)
    tz = zone_named(data.get("timezone"))
    console.print(
        f"[bold]syncd status[/bold]  {human_time(data['now'], tz)}  contacts known: {data['contacts']:,}"
    )
    daemon = data["daemon"]
    if daemon is None:
        console.print("daemon: none has run on this state store")
    elif daemon["alive"]:
        console.print(
            f"daemon: [green]alive[/green], {daemon['state']} (pid {daemon['pid']} on {daemon['host']}, since "
            f"{human_time(daemon['started_at'], tz)}; last heartbeat {daemon['heartbeat_age_s']:.0f} s ago)",
            soft_wrap=True,
        )
    else:
        console.print(
            f"daemon: [red]not running[/red] (last heartbeat {human_time(daemon['last_heartbeat'], tz)}, "
            f"pid {daemon['pid']} on {daemon['host']}, {daemon['state']})",
            soft_wrap=True,
        )
    held = data["lock"]["held_by"]
    console.print(f"lock: held by {held}" if held else "lock: free", markup=False, soft_wrap=True)
    if data["lock"].get("interrupted_run"):
        console.print(f"[yellow]{data['lock']['interrupted_run']}[/yellow]", soft_wrap=True)
    if data["next_run"]:
        console.print(f"next run: {human_time(data['next_run'], tz)}")
    else:
        console.print(f"next run: none ({data['next_run_note']})", soft_wrap=True)
    from rich import box

    zone = human_time(data["now"], tz, "%Z")
    table = Table(
        "started",
        "took",
        "outcome",
        *_COUNT_HEADS,
        "credits",
        title=f"recent runs (times in {zone})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        show_edge=False,
    )
    for column in table.columns:
        column.no_wrap = True
    for r in data["runs"]:
        c = r["counts"]
        started = human_time(r["started_at"], tz, "%m-%d %H:%M:%S")
        outcome = r["outcome"] + (" (dry run)" if r["mode"] == "dry_run" else "")
        table.add_row(
            started,
            human_duration(r["duration_s"]) if r["ended_at"] else "running",
            outcome,
            *(f"{c[k]:,}" if isinstance(c.get(k), int) else "-" for k in COUNT_KEYS),
            f"{sum(v for v in r['credits'].values() if isinstance(v, int)):,}",
        )
    console.print(table)
    if data["last_error"]:
        err = data["last_error"]
        line = f"last error ({human_time(err['at'], tz)}): {err['error']}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    credits = Table("vendor", "spent / budget / left", title=f"vendor credits {data['month']}")
    for name, v in data["vendors"].items():
        credits.add_row(name, budget_words(v["credits_this_month"], v["monthly_budget"]))
    console.print(credits)
    pending = data["pending_journal"]
    console.print(
        f"pending journal entries: {len(pending)}" + (" (resumed by the next run)" if pending else "")
    )


# --- links import ---------------------------------------------------------------------------------

LINKS_REJECTED_CAP = 100  # rejected rows printed one a line; the rest are counted by reason
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\b[0-9]+\b")


def reason_kind(reason: str) -> str:
    """A rejection's reason without its row's values: 'no PBX contact with id …'."""
    text = _VARIABLE.sub("…", reason)
    return text.split(" (", 1)[0].split(": ", 1)[0].strip()


def print_links_report(
    path: str,
    imported: int,
    rejected: Iterable[tuple[int, str]],
    out: TextIO,
    *,
    cap: int = LINKS_REJECTED_CAP,
) -> dict[str, int]:
    """Each rejected row once, by line, up to `cap`; then the counts by reason and the totals.

    Returns the counts by reason (most frequent first)."""
    rows = sorted(rejected)
    counts: dict[str, int] = {}
    for _, reason in rows:
        kind = reason_kind(reason)
        counts[kind] = counts.get(kind, 0) + 1
    lines = [f"{path}:{line}: rejected: {reason}" for line, reason in rows[:cap]]
    if len(rows) > cap:
        lines.append(f"... and {len(rows) - cap:,} more rejected row(s), counted by reason below")
    by_reason = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    if by_reason:
        lines.append("rejected rows by reason:")
        lines += [f"  {n:>9,}  {kind}" for kind, n in by_reason.items()]
    lines.append(f"{imported} link(s) imported, {len(rows)} row(s) rejected")
    out.write("\n".join(lines) + "\n")
    return by_reason


# --- history ----------------------------------------------------------------------------------------


def parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since: not an ISO 8601 date or time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def show_history(
    config: Config,
    *,
    contact: int | None = None,
    since: str | None = None,
    as_json: bool = False,
    limit: int | None = None,
    stream: TextIO | None = None,
) -> int:
    out = stream or sys.stdout
    when = parse_since(since)
    store = StateStore.open(config.sync.state_url, create=False)  # read-only: never creates one
    try:
        rows = store.history(contact_id=contact, since=when, limit=limit, kinds=None)
    finally:
        store.close()
    if as_json or not _tty(out):
        for row in rows:
            _line(row.as_dict(), out)
        return EXIT_OK
    from rich.table import Table

    table = Table("at", "contact", "kind", "field", "old", "new", "source", "run")
    for row in rows:
        table.add_row(
            row.at.isoformat()[:19],
            str(row.contact_id),
            row.kind,
            row.field,
            row.old,
            row.new,
            row.source,
            (row.run_id or "-")[:8],
        )
    console = _console(out)
    console.print(table)
    console.print(f"{len(rows)} change(s)")
    return EXIT_OK


# --- dry run and summary ----------------------------------------------------------------------------


def plan_rows(summary: RunSummary) -> Iterable[dict[str, Any]]:
    for planned in summary.planned:
        for change in planned.result.changes:
            yield {
                "event": "plan.change",
                "contact_id": change.contact_id,
                "name": planned.contact.name,
                "field": change.field,
                "old": change.old,
                "new": change.new,
                "source": change.source,
                "reason": change.reason,
            }
        for key in sorted(planned.result.person_touched):
            yield {
                "event": "plan.person_owned",
                "contact_id": planned.contact.id,
                "name": planned.contact.name,
                "field": key,
            }
    yield from _switchboard_rows(summary)
    yield from purchase_rows(summary)


def _switchboard_rows(summary: RunSummary) -> Iterable[dict[str, Any]]:
    """One `plan.skipped` row per switchboard number the plan left out (never written into a contact)."""
    for cid, name, skip in summary.switchboard_skips:
        yield {
            "event": "plan.skipped",
            "contact_id": cid,
            "name": name,
            "field": skip.field,
            "value": skip.value,
            "reason": skip.reason.value,
            "source": skip.source,
        }


def purchase_rows(summary: RunSummary) -> Iterable[dict[str, Any]]:
    """A dry run that bought nothing: per vendor, what a real run would buy (see `VendorTally`)."""
    for vendor, counts in (summary.counts.get("vendors") or {}).items():
        if "would_buy" in counts:
            yield {"event": "plan.purchase", "vendor": vendor, **counts["would_buy"]}


def print_plan(summary: RunSummary, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    rows = list(plan_rows(summary))
    if not _tty(out):
        for row in rows:
            _line(row, out)
        return
    from rich.table import Table

    table = Table("contact", "name", "field", "old", "new", "source", title="planned changes (dry run)")
    for row in rows:
        if row["event"] != "plan.change":
            continue
        table.add_row(
            str(row["contact_id"]),
            row["name"][:30],
            row["field"],
            row["old"] or "-",
            row["new"],
            row["source"],
        )
    console = _console(out)
    console.print(table)
    changes = sum(1 for r in rows if r["event"] == "plan.change")
    console.print(f"{changes} change(s) planned; nothing was written to the PBX")
    boards = summary.counts.get("switchboards_skipped", 0)
    if boards:
        console.print(f"{boards} switchboard number(s) skipped (a company's number is no person's line)")
    buys = [r for r in rows if r["event"] == "plan.purchase"]
    if buys:
        what = Table(
            "vendor",
            "lookups",
            "most credits",
            "budget left",
            "most within budget",
            title="a real run would buy",
        )
        for row in buys:
            left = row["budget_left"]
            what.add_row(
                row["vendor"],
                str(row["lookups"]),
                str(row["max_credits"]),
                "-" if left is None else str(left),
                str(row["max_credits_within_budget"]),
            )
        console.print(what)
        console.print("nothing was bought; --dry-run --buy buys and caches what the plan needs")


def print_summary(summary: RunSummary, stream: TextIO | None = None) -> None:
    """A short summary on a terminal; nothing extra otherwise (the run.finished event has it all)."""
    out = stream or sys.stdout
    if not _tty(out):
        return
    console = _console(out)
    c = summary.counts
    console.print(
        f"[bold]{summary.mode}[/bold] {summary.outcome}: {c.get('seen', 0)} contacts seen "
        f"({c.get('new', 0)} new, {c.get('changed', 0)} changed, {c.get('deleted', 0)} deleted), "
        f"{c.get('updated', 0)} updated"
    )
    if summary.changes_by_field:
        fields = ", ".join(f"{k} {v}" for k, v in sorted(summary.changes_by_field.items()))
        console.print(f"  changes by field: {fields}")
    credits = ", ".join(f"{k} {v}" for k, v in summary.credits.items()) or "none"
    console.print(f"  credits spent: {credits}")
    if c.get("switchboards_skipped"):
        console.print(f"  switchboards skipped: {c['switchboards_skipped']} (never written into a contact)")
    for vendor, why in summary.vendor_stops.items():
        console.print(f"  [yellow]{vendor} stopped for this run: {why}[/yellow]")
    for cid, reason in summary.failures[:20]:
        console.print(f"  [red]contact {cid} failed: {reason}[/red]")
    if len(summary.failures) > 20:
        console.print(f"  [red]... and {len(summary.failures) - 20} more failures[/red]")
