"""Fixtures shared across the suites: `make_env` builds simulators + config + state store per test
(tests/e2e/harness.py), closed when the test ends; `store` is a state store in a temporary SQLite file
(tests/store/ and tests/daemon/ have their own `store`, on both backends and on the daemon's URL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from syncd.store import StateStore

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield opened
    finally:
        opened.close()
