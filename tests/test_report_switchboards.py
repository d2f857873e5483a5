"""The dry run and the run summary show the switchboards the plan left out."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from syncd.engine import RunSummary
from syncd.merge import Skip, SkipReason
from syncd.report import plan_rows, print_plan, print_summary


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def summary() -> RunSummary:
    s = RunSummary(run_id="r1", mode="dry_run", started_at=datetime(2026, 3, 1, tzinfo=UTC), outcome="ok")
    s.switchboard_skips = [
        (56, "Ada Lovelace", Skip("direct", "+1 312 272 1304", SkipReason.switchboard, "leadfeeder"))
    ]
    s.counts = {"seen": 60, "switchboards_skipped": 1}
    return s


def test_the_dry_run_lists_each_switchboard_left_out() -> None:
    rows = list(plan_rows(summary()))
    assert rows == [
        {
            "event": "plan.skipped",
            "contact_id": 56,
            "name": "Ada Lovelace",
            "field": "direct",
            "value": "+1 312 272 1304",
            "reason": "switchboard",
            "source": "leadfeeder",
        }
    ]
    out = Tty()
    print_plan(summary(), out)
    assert "1 switchboard number(s) skipped" in out.getvalue()


def test_the_summary_counts_the_switchboards_skipped() -> None:
    out = Tty()
    print_summary(summary(), out)
    assert "switchboards skipped: 1" in out.getvalue()
    quiet = summary()
    quiet.counts = {"seen": 60, "switchboards_skipped": 0}
    out = Tty()
    print_summary(quiet, out)
    assert "switchboards skipped" not in out.getvalue()
