"""`syncd demo`: the second run's account says what it bought, what it wrote and how long it took."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path

from syncd.config import load_config
from syncd.demo import STATE_FILE, resume_demo, run_demo, second_run_report
from syncd.engine import run_locked


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


def test_resume_without_a_kept_demo_is_a_config_error(tmp_path: Path) -> None:
    assert resume_demo(tmp_path, stream=io.StringIO(), stop=threading.Event()) == 78


def test_a_resumed_demo_serves_the_kept_phonebook_on_the_same_ports(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    assert run_demo(contacts=25, keep=keep, stream=io.StringIO()) == 0
    saved = json.loads((keep / STATE_FILE).read_text())
    config = load_config(keep / "syncd.toml")
    assert config.pbx.base_url == f"http://127.0.0.1:{saved['ports']['pbx']}"

    out, stop = io.StringIO(), threading.Event()
    codes: list[int] = []
    server = threading.Thread(target=lambda: codes.append(resume_demo(keep, stream=out, stop=stop)))
    server.start()
    try:
        for _ in range(2000):  # until it serves (or gives up)
            if "Ctrl-C stops" in out.getvalue() or not server.is_alive():
                break
            time.sleep(0.01)
        assert "Ctrl-C stops" in out.getvalue(), out.getvalue()
        for name, port in saved["ports"].items():
            assert f"{name:<11} http://127.0.0.1:{port}\n" in out.getvalue()
        # a run against it finds the phonebook as the demo left it: nothing changed, nothing to buy or write
        again = run_locked(config)
        assert again.outcome == "ok", again.failures
        assert again.counts["unchanged"] == 25 and again.counts["changed"] == 0
        assert again.counts["new"] == 0 and again.counts["deleted"] == 0
        assert sum(again.credits.values()) == 0 and again.applied == []
    finally:
        stop.set()
        server.join()
    assert codes == [0]
    assert "the phonebook is saved" in out.getvalue()
    assert json.loads((keep / STATE_FILE).read_text())["pbx_phonebook"] == saved["pbx_phonebook"]
