"""What a run did: the summary the engine returns and the CLI, the daemon, the metrics and `syncd status` read.

Its own module, below the engine: the readers need the type, not the engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncd.errors import EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL
from syncd.merge import MergeResult, Skip
from syncd.model import Contact, FieldChange


@dataclass
class PlannedContact:
    contact: Contact
    result: MergeResult


@dataclass
class RunSummary:
    run_id: str
    mode: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str = "running"
    counts: dict[str, Any] = field(default_factory=dict)
    changes_by_field: Counter[str] = field(default_factory=Counter)
    credits: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[int, str]] = field(default_factory=list)
    planned: list[PlannedContact] = field(default_factory=list)
    applied: list[FieldChange] = field(default_factory=list)
    unreachable: str | None = None
    vendor_stops: dict[str, str] = field(default_factory=dict)
    # (contact id, name, skip) for every switchboard number the plan left out
    switchboard_skips: list[tuple[int, str, Skip]] = field(default_factory=list)

    interrupted: bool = False  # asked to stop (SIGTERM/SIGINT) and stopped before the end

    @property
    def unreachable_vendors(self) -> list[str]:
        return sorted(v for v, why in self.vendor_stops.items() if why == "unavailable")

    def settle(self) -> str:
        """The outcome of a run that returned: interrupted > unreachable > partial > ok."""
        if self.interrupted:
            return "interrupted"
        if self.unreachable or self.unreachable_vendors:
            return "unreachable"
        return "partial" if self.failures else "ok"

    @property
    def exit_code(self) -> int:
        # an interrupted run is "try later" while journal entries wait for the next run, else done;
        # a vendor that stayed unreachable is "try later"; refused credentials are a failed run;
        # a spent budget or exhausted credits are normal operation
        if self.outcome == "interrupted":
            return EXIT_TEMPFAIL if self.counts.get("pending") else EXIT_OK
        if self.unreachable or self.unreachable_vendors:
            return EXIT_TEMPFAIL
        if self.failures or self.outcome not in ("ok", "unreachable") or "auth" in self.vendor_stops.values():
            return EXIT_PARTIAL
        return EXIT_OK
