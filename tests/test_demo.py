"""`syncd demo`: the second run's account says what it bought, what it wrote and how long it took."""

from __future__ import annotations

import io
import re
from pathlib import Path

from syncd.demo import run_demo, second_run_report


def test_the_second_run_report_names_both_halves_and_the_duration() -> None:
    text = second_run_report(vendor_calls=0, credits=0, pbx_writes=0, seconds=0.42, first_seconds=3.05)
    assert text.splitlines() == [
        "  bought: 0 vendor calls, 0 credits",
        "  written: 0 PBX writes",
        "  it took 0.4 s (the first run 3.0 s)",
    ]
    busy = second_run_report(vendor_calls=3, credits=5, pbx_writes=2, seconds=None, first_seconds=1.0)
    assert busy.splitlines() == ["  bought: 3 vendor calls, 5 credits", "  written: 2 PBX writes"]


def test_the_demo_shows_a_second_run_that_buys_and_writes_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_demo(contacts=25, keep=tmp_path / "demo", stream=out)
    text = out.getvalue()
    assert code == 0, text
    written = re.search(r"^(\d+) field changes were written", text, re.M)
    assert written and int(written[1]) > 0  # the first run did write: the second run's zeros mean something
    _, second = text.split("A second run finds nothing to buy and nothing to write:")
    assert "  bought: 0 vendor calls, 0 credits\n" in second
    assert "  written: 0 PBX writes\n" in second
    took = re.search(r"  it took (\d+\.\d) s \(the first run (\d+\.\d) s\)\n", second)
    assert took, second
