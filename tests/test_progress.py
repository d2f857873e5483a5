"""Progress on a terminal: counts never exceed their totals, cached answers advance the bar, each phase's
timer stops with its phase, and log lines print above the bars instead of through them."""

from __future__ import annotations

import io
import json
import sys
from collections import defaultdict
from pathlib import Path

from syncd.cli import run_once
from syncd.config import load_config
from syncd.logs import configure_logging, get_logger
from syncd.progress import Progress, TerminalProgress
from tests.e2e.harness import EnvFactory


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_counts_are_clamped_and_timers_stop_with_their_phase() -> None:
    bars = TerminalProgress(Tty())
    bars.phase("pull")
    bars.advance("pull", 300)
    assert bars.counts()["pull"] == (300, None, False)
    bars.phase("enrich", 100)
    assert bars.counts()["pull"] == (300, 300, True)  # the pull ended: total fixed, timer stopped
    bars.advance("enrich", 60)
    bars.advance("enrich", 60)  # past the total: clamped
    assert bars.counts()["enrich"] == (100, 100, False)
    bars.phase("push", 5)
    bars.advance("push", 2)
    bars.done()
    assert bars.counts() == {
        "pull": (300, 300, True),
        "enrich": (100, 100, True),
        "push": (2, 5, True),  # a phase cut short keeps its true count
    }


class Recorder(Progress):
    def __init__(self) -> None:
        self.totals: dict[str, int | None] = {}
        self.advanced: dict[str, int] = defaultdict(int)

    def phase(self, name: str, total: int | None = None) -> None:
        self.totals[name] = total

    def advance(self, name: str, amount: int = 1) -> None:
        self.advanced[name] += amount


def test_the_enrich_bar_counts_each_contact_once_cached_or_asked(tmp_path: Path) -> None:
    factory = EnvFactory(tmp_path)
    try:
        env = factory(40)
        env.import_links()
        config = load_config(env.config)
        for _ in range(2):  # the second run answers every contact from the ledger
            seen = Recorder()
            assert run_once(config, progress=seen) == 0
            assert seen.totals["enrich"] == 40
            assert seen.advanced["enrich"] == 40  # not once per vendor asked (it reached 1069/1000)
            assert seen.advanced["pull"] == 40
    finally:
        factory.close()


def test_log_lines_print_above_the_bars(capsys: object) -> None:
    screen = Tty()
    configure_logging(json=True)  # the default stream: whatever sys.stderr is at each write
    original = sys.stderr
    bars = TerminalProgress(screen)
    try:
        bars.phase("pull", 10)
        bars.advance("pull", 3)
        get_logger("syncd.test").warning("http.retry", service="pbx", attempt=2)
        bars.advance("pull", 7)
    finally:
        bars.done()
    assert sys.stderr is original  # restored once the bars are gone
    lines = screen.getvalue().splitlines()
    logged = [line for line in lines if "http.retry" in line]
    assert len(logged) == 1
    event = json.loads(logged[0][logged[0].index("{") :])  # a whole line of its own, not cut by a bar
    assert (event["event"], event["attempt"]) == ("http.retry", 2)
    assert "pulling contacts" not in logged[0]
