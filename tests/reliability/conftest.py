"""Session plumbing of the reliability suite: the secrets scan runs last (it scans what every other test
printed), and the figures the tests measured are printed at the end (and written to
`$SYNCD_FIGURES_JSON` when set)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability.site import FIGURES, OUTPUTS, SCANNED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [i for i in items if i.nodeid.startswith("tests/reliability/test_secrets_scan.py")]
    if last:
        items[:] = [i for i in items if i not in last] + last


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for key in sorted(FIGURES):
        terminalreporter.write_line(f"{key}: {json.dumps(FIGURES[key], sort_keys=True)}")
    terminalreporter.write_line(f"outputs recorded for the secrets scan: {len(OUTPUTS) + SCANNED['outputs']}")
    out = os.environ.get("SYNCD_FIGURES_JSON")
    if out:
        Path(out).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n", encoding="utf-8")
