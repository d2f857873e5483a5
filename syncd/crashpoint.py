"""Deterministic crash points for the reliability tests. Off unless `SYNCD_CRASH_AT` is set.

`SYNCD_CRASH_AT="<point>:<n>"` makes the process kill itself with SIGKILL the n-th time it reaches
`<point>` (n defaults to 1): no `finally` block, no flush, no lock release, exactly what `kill -9` does.
The points, in the order a run passes them:

  pull_page       the n-th page of company contacts was received (nothing stored yet)
  vendor_answer   the n-th batch of vendor answers was stored in the ledger
  enriched        enrichment is over; the plan is not committed yet
  plan_commit     inside commit_plan's transaction, before it commits
  committed       commit_plan committed (the journal holds the run's updates)
  marked_sent     the n-th journal entry was marked sent; its update has not gone out
  sent            the PBX accepted the n-th update; it is not read back or confirmed yet
  journal_commit  inside the n-th journal_apply transaction (change log, record), before it commits
  applied         the n-th journal_apply committed

Counts are per process and include the journal resume at the start of a run. Used by
tests/reliability/test_crash_matrix.py; with the variable unset, `reached` costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SYNCD_CRASH_AT"
POINTS = frozenset(
    {
        "pull_page",
        "vendor_answer",
        "enriched",
        "plan_commit",
        "committed",
        "marked_sent",
        "sent",
        "journal_commit",
        "applied",
    }
)

_counts: Counter[str] = Counter()


def reached(point: str) -> None:
    """Kill this process with SIGKILL if `SYNCD_CRASH_AT` names `point` and this is its n-th time."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _counts[point] += 1
    if _counts[point] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
