"""Fixtures of the end-to-end suites (`make_env`, simulators + config + state store per test, is in
tests/conftest.py): `env` is a started 60-contact setup, `run_sync(env, *args)` one `syncd --sync-now` in this process."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Env, EnvFactory, Result


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
