"""Fixtures of the end-to-end suites: `make_env` builds simulators + config + state store per test,
`env` is a started 60-contact setup, `run_sync(env, *args)` one `syncd --sync-now` in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Env, EnvFactory, Result


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[EnvFactory]:
    factory = EnvFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def env(make_env: EnvFactory) -> Env:
    return make_env(60)


@pytest.fixture
def sims(env: Env) -> object:
    """The running simulators of `env`."""
    return env.sims


def run_sync(env: Env, *args: str) -> Result:
    """`syncd --config <env's> --sync-now ARGS...`, in this process."""
    return env.sync(*args)
