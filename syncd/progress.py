"""Progress bars per phase (resume, pull, enrich, push) for people at a terminal; nothing otherwise."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from syncd.engine import Progress

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
            console=Console(file=stream or sys.stdout),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._bars.start()

    def phase(self, name: str, total: int | None = None) -> None:
        task = self._tasks.get(name)
        if task is None:
            self._tasks[name] = self._bars.add_task(LABELS.get(name, name), total=total)
        else:
            self._bars.update(task, total=total)

    def advance(self, name: str, amount: int = 1) -> None:
        task = self._tasks.get(name)
        if task is not None:
            self._bars.advance(task, amount)

    def done(self) -> None:
        for task in self._tasks.values():
            t = self._bars.tasks[task]
            if t.total is None:
                self._bars.update(task, total=t.completed)
        self._bars.stop()


def for_terminal(stream: TextIO | None = None) -> Progress:
    """A progress display when stdout is a terminal, the silent default otherwise."""
    out = stream or sys.stdout
    return TerminalProgress(out) if out.isatty() else Progress()
