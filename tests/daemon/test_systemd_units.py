"""The unit files: `systemd-analyze verify`, the security exposure score, and the directives we rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.config import parse_config

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SERVICES = ("syncd.service", "syncd-oneshot.service")
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")


def directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def installed_copy(tmp_path: Path) -> Path:
    """The units with ExecStart= pointing at this environment's syncd (verify checks the binary exists)."""
    syncd = Path(sys.executable).parent / "syncd"
    if not syncd.exists():
        pytest.skip(f"no syncd console script next to {sys.executable}")
    for unit in (*SERVICES, "syncd.timer"):
        text = (UNITS / unit).read_text().replace("/opt/syncd/bin/syncd", str(syncd))
        (tmp_path / unit).write_text(text)
    return tmp_path


@needs_analyze
def test_units_verify(tmp_path: Path) -> None:
    where = installed_copy(tmp_path)
    files = [str(where / u) for u in (*SERVICES, "syncd.timer")]
    result = subprocess.run(
        [str(ANALYZE), "verify", *files], capture_output=True, text=True, timeout=60, check=False
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "syncd" in line]
    assert result.returncode == 0, result.stdout + result.stderr
    assert ours == []


@needs_analyze
@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_is_at_most_2(unit: str) -> None:
    result = subprocess.run(
        [str(ANALYZE), "security", "--offline=yes", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    if match is None and "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {result.stderr.strip()}")
    assert match is not None, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def test_daemon_unit_directives() -> None:
    d = directives("syncd.service")
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["78"]
    assert d["StateDirectory"] == ["syncd"]
    assert d["ConfigurationDirectory"] == ["syncd"]
    assert d["DynamicUser"] == ["yes"]
    assert d["ExecReload"] == ["kill -HUP $MAINPID"]
    assert "pbx_secret:/etc/syncd/credentials/pbx_secret" in d["LoadCredential"]
    assert d["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert d["WatchdogSec"]


def test_timer_runs_the_oneshot() -> None:
    assert directives("syncd.timer")["Unit"] == ["syncd-oneshot.service"]
    one = directives("syncd-oneshot.service")
    assert one["Type"] == ["oneshot"]
    assert one["ExecStart"][0].endswith("--sync-now")
    # the same identity and state directory as the daemon (they share the store)
    daemon = directives("syncd.service")
    for key in ("User", "DynamicUser", "StateDirectory", "LoadCredential", "SystemCallFilter"):
        assert one[key] == daemon[key]


def test_a_config_names_the_credential_systemd_loads(tmp_path: Path) -> None:
    """`client_secret_file = "pbx_secret"` reads $CREDENTIALS_DIRECTORY/pbx_secret (LoadCredential=)."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "pbx_secret").write_text("s3cret-from-credential\n")
    config = parse_config(
        '[pbx]\nbase_url = "https://pbx.example.com:8088"\nclient_id = "id"\nclient_secret_file = "pbx_secret"\n',
        source=tmp_path / "etc" / "syncd.toml",
        environ={"CREDENTIALS_DIRECTORY": str(credentials)},
    )
    assert config.pbx.client_secret == "s3cret-from-credential"
    assert config.pbx.secret_source == f"file:{credentials / 'pbx_secret'}"
