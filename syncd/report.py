"""What syncd shows people: check-config, status, history, the dry-run plan and the run summary.

On a terminal: readable tables (rich). Otherwise: JSON, one object a line, for scripts and journald.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from syncd.errors import EXIT_OK, UsageError
from syncd.store import StateStore, month_of

if TYPE_CHECKING:
    from syncd.config import Config
    from syncd.engine import RunSummary


def _tty(stream: TextIO) -> bool:
    return stream.isatty()


def _console(stream: TextIO) -> Any:
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=False)


def _line(obj: dict[str, Any], stream: TextIO) -> None:
    stream.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


# --- check-config -----------------------------------------------------------------------------------


def check_config(config: Config, stream: TextIO | None = None) -> int:
    from syncd.errors import ConfigError
    from syncd.store.access import state_url_problems

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


def next_run(config: Config, last_start: datetime | None, now: datetime) -> datetime | None:
    """When the daemon's schedule fires next: the daemon's own function (cron in local time)."""
    from syncd.daemon import next_run as schedule_next_run

    return schedule_next_run(config, last_start, now)


def status_data(
    config: Config, store: StateStore, *, runs: int = 10, now: datetime | None = None
) -> dict[str, Any]:
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
        }
    pending = store.journal_pending()
    last_start = next((r.started_at for r in recent if r.mode != "dry_run"), None)
    nxt = next_run(config, last_start, now)
    return {
        "month": month_of(now),
        "next_run": nxt.isoformat() if nxt else None,
        "runs": [
            {
                "run_id": r.id,
                "mode": r.mode,
                "started_at": r.started_at.isoformat(),
                "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                "outcome": r.outcome,
                "counts": r.counts,
                "error": r.error,
            }
            for r in recent
        ],
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
    if as_json or not _tty(out):
        _line(data, out)
        return EXIT_OK
    from rich.table import Table

    console = _console(out)
    console.print(
        f"[bold]syncd status[/bold]  contacts known: {data['contacts']}  next run: {data['next_run']}"
    )
    table = Table("started", "ended", "mode", "outcome", "seen", "updated", "failed", "error")
    for r in data["runs"]:
        c = r["counts"]
        table.add_row(
            r["started_at"][:19],
            (r["ended_at"] or "")[:19],
            r["mode"],
            r["outcome"],
            str(c.get("seen", "")),
            str(c.get("updated", "")),
            str(c.get("failed", "")),
            (r["error"] or "")[:60],
        )
    console.print(table)
    credits = Table("vendor", f"credits {data['month']}", "budget", "remaining", title="vendor credits")
    for name, v in data["vendors"].items():
        credits.add_row(
            name, str(v["credits_this_month"]), str(v["monthly_budget"] or "-"), str(v["remaining"] or "-")
        )
    console.print(credits)
    pending = data["pending_journal"]
    console.print(
        f"pending journal entries: {len(pending)}" + (" (resumed by the next run)" if pending else "")
    )
    return EXIT_OK


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
        rows = store.history(contact_id=contact, since=when, limit=limit)
    finally:
        store.close()
    if as_json or not _tty(out):
        for row in rows:
            _line(row.as_dict(), out)
        return EXIT_OK
    from rich.table import Table

    table = Table("at", "contact", "field", "old", "new", "source", "run")
    for row in rows:
        table.add_row(
            row.at.isoformat()[:19],
            str(row.contact_id),
            row.field,
            row.old,
            row.new,
            row.source,
            row.run_id[:8],
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
    for vendor, why in summary.vendor_stops.items():
        console.print(f"  [yellow]{vendor} stopped for this run: {why}[/yellow]")
    for cid, reason in summary.failures[:20]:
        console.print(f"  [red]contact {cid} failed: {reason}[/red]")
    if len(summary.failures) > 20:
        console.print(f"  [red]... and {len(summary.failures) - 20} more failures[/red]")
