"""Progress bars per phase (resume, pull, enrich, push) for people at a terminal; nothing otherwise.

- a count never exceeds its total (an advance past it is clamped);
- a phase ends when the next one starts (or at `done()`): its total is fixed if it had none and its timer
  stops, so a finished phase does not keep counting seconds;
- the enrich bar counts contacts that went through the whole waterfall, whether asked, answered from the
  ledger or needing nothing (the engine reports them so);
- log lines are printed above the bars, not through them: the bars redirect stderr while they are shown and
  the log output follows `sys.stderr` (syncd.logs).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Hooks for a progress display; the default does nothing."""

    def phase(self, name: str, total: int | None = None) -> None: ...
    def advance(self, name: str, amount: int = 1) -> None: ...
    def done(self) -> None: ...


LABELS = {
    "resume": "resuming journal",
    "pull": "pulling contacts",
    "enrich": "enriching",
    "push": "pushing updates",
}


class TerminalProgress(Progress):
    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self._bars = Bars(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream or sys.stdout, soft_wrap=True),  # log lines are not re-wrapped
            transient=False,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self._tasks: dict[str, Any] = {}
        self._current: str | None = None
        self._bars.start()

    def phase(self, name: str, total: int | None = None) -> None:
        if self._current is not None and self._current != name:
            self._finish(self._current)
        self._current = name
        task = self._tasks.get(name)
        if task is None:
            self._tasks[name] = self._bars.add_task(LABELS.get(name, name), total=total)
        else:
            self._bars.update(task, total=total)

    def advance(self, name: str, amount: int = 1) -> None:
        task = self._tasks.get(name)
        if task is None:
            return
        t = self._bars.tasks[task]
        if t.total is not None:
            amount = max(0, min(amount, int(t.total - t.completed)))
        if amount:
            self._bars.advance(task, amount)

    def _finish(self, name: str) -> None:
        task = self._tasks[name]
        t = self._bars.tasks[task]
        if t.total is None:
            self._bars.update(task, total=t.completed)
        # a phase cut short (a failed run) keeps its true count: only its timer stops
        self._bars.stop_task(task)

    def done(self) -> None:
        if self._current is not None:
            self._finish(self._current)
            self._current = None
        self._bars.stop()

    def counts(self) -> dict[str, tuple[float, float | None, bool]]:
        """Per phase: (completed, total, timer stopped), for tests."""
        out: dict[str, tuple[float, float | None, bool]] = {}
        for name, task in self._tasks.items():
            t = self._bars.tasks[task]
            out[name] = (t.completed, t.total, t.stop_time is not None)
        return out


def for_terminal(stream: TextIO | None = None) -> Progress:
    """A progress display when stdout is a terminal, the silent default otherwise."""
    out = stream or sys.stdout
    return TerminalProgress(out) if out.isatty() else Progress()
