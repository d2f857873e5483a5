"""requirements.lock and requirements-dev.lock agree with pyproject.toml's ranges and with each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text(encoding="utf-8")
    found = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = re.match(r"([A-Za-z0-9._-]+)==([^\s\\;]+)", block)
        if head is None:
            continue
        assert "--hash=sha256:" in block, f"{name}: {head.group(1)} has no hash"
        found[canonicalize_name(head.group(1))] = head.group(2)
    return found


def project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def test_every_dependency_is_pinned_within_its_range() -> None:
    meta = project()["project"]
    assert isinstance(meta, dict)
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    build = project()["build-system"]
    assert isinstance(build, dict)
    for lock, specs in (
        (runtime, [*meta["dependencies"], *meta["optional-dependencies"]["postgres"], *build["requires"]]),
        (dev, meta["optional-dependencies"]["dev"]),
    ):
        for spec in specs:
            req = Requirement(spec)
            name = canonicalize_name(req.name)
            assert name in lock, f"{req.name} is not in the lock"
            assert req.specifier.contains(lock[name], prereleases=True), (
                f"{name}=={lock[name]} outside {spec}"
            )


def test_the_dev_lock_has_the_install_locks_pins() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert len(runtime) > 20
    differ = {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v}
    assert not differ, f"the two locks disagree: {differ}"
    assert {"pytest", "hypothesis", "mypy", "ruff"} <= set(dev) - set(runtime)


def test_the_license_is_an_spdx_string() -> None:
    meta = project()["project"]
    assert isinstance(meta, dict)
    assert meta["license"] == "MIT"  # a table is deprecated and warns at every build
