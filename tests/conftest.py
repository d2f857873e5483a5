"""Fixtures shared across the suites: `make_env` builds simulators + config + state store per test
(tests/e2e/harness.py), closed when the test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.harness import EnvFactory


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[EnvFactory]:
    from tests.e2e.harness import EnvFactory  # the simulators load only for the tests that ask

    factory = EnvFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()
