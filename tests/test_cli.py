"""The command line of the operator contract: configuration errors (78, naming the key, no traceback), usage
errors (2), check-config (reaches nothing) and links import (rejected rows with their line numbers)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sim.dataset import INSIDEVIEW_ID_BASE, LEADFEEDER_ID_BASE
from tests.e2e.harness import REPO, Env, EnvFactory, Result, child_env, run_cli

BASE = """\
[sync]
state_url = "sqlite:///{state}"

[pbx]
base_url = "http://127.0.0.1:9"
client_id = "syncd"
client_secret_env = "SYNCD_TEST_PBX_SECRET"
"""


@pytest.fixture(autouse=True)
def _pbx_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_TEST_PBX_SECRET", "cli-test-secret-value")


def write(tmp_path: Path, text: str, name: str = "syncd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("{state}", str(tmp_path / "state.db")))
    path.chmod(0o600)
    return path


def cli(config: Path, *args: str) -> Result:
    return run_cli(["--config", str(config), "--log-format", "json", *args])


def assert_config_error(result: Result, *needles: str) -> str:
    assert result.code == 78, result.err
    assert "Traceback" not in result.err + result.out
    message = result.err.strip().splitlines()[-1]
    assert message.startswith("syncd: configuration error: ")
    for needle in needles:
        assert needle in result.err, (needle, result.err)
    return message


# --- configuration errors -----------------------------------------------------------------------------


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = assert_config_error(cli(path, "check-config"), str(path), "not found")
    assert message == f"syncd: configuration error: config file {path} not found"


@pytest.mark.parametrize(
    ("tail", "needles"),
    [
        pytest.param('\nbroken = "no end\n', ["invalid TOML at line 9"], id="unterminated-string"),
        pytest.param("\n[pbx]\n", ["invalid TOML at line 9", "pbx"], id="table-twice"),
        pytest.param("\nkey = value\n", ["invalid TOML at line 9"], id="bare-value"),
    ],
)
def test_toml_syntax_errors_name_the_line(tmp_path: Path, tail: str, needles: list[str]) -> None:
    path = write(tmp_path, BASE + tail)
    assert_config_error(cli(path, "check-config"), str(path.name), *needles)


@pytest.mark.parametrize(
    ("tail", "key", "problem"),
    [
        pytest.param("page_size_typo = 10\n", "pbx.page_size_typo", "unknown key", id="unknown-key"),
        pytest.param("\n[syncing]\n", "syncing", "unknown", id="unknown-table"),
        pytest.param('page_size = "many"\n', "pbx.page_size", "integer", id="wrong-type"),
        pytest.param("verify_tls = 3\n", "pbx.verify_tls", "", id="wrong-type-bool"),
        pytest.param(
            '\n[enrich]\norder = ["insideview", "zoominfo"]\n',
            "enrich.order",
            'unknown vendor "zoominfo"',
            id="unknown-vendor",
        ),
        pytest.param('\n[fields]\nemail = "sometimes"\n', "fields.email", "sometimes", id="bad-policy"),
        pytest.param(
            '\n[enrich]\nrefresh_after = "soon"\n', "enrich.refresh_after", "duration", id="duration"
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, tail: str, key: str, problem: str) -> None:
    path = write(tmp_path, BASE + tail)
    for command in (["check-config"], ["--sync-now"]):
        assert_config_error(cli(path, *command), key, problem)


def test_a_missing_secret_variable_is_named_without_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCD_TEST_PBX_SECRET")
    path = write(tmp_path, BASE)
    assert_config_error(cli(path, "check-config"), "pbx.client_secret", "SYNCD_TEST_PBX_SECRET")


def test_config_error_from_the_installed_entry_point_has_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "bogus = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(path), "--sync-now"],
        capture_output=True,
        text=True,
        env=child_env(SYNCD_TEST_PBX_SECRET="x-secret-value"),
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == "syncd: configuration error: pbx.bogus: unknown key"


# --- usage errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--dry-run"],
        ["--bogus-option"],
        ["--config", "x.toml", "--sync-now", "status"],
        ["--config", "x.toml", "history", "--contact", "abc"],
        ["--config", "x.toml", "links"],
        ["--config", "x.toml", "links", "export", "f.csv"],
        ["--config", "x.toml", "no-such-command"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    result = run_cli(argv)
    assert result.code == 2
    assert "usage: syncd" in result.err
    assert "Traceback" not in result.err


def test_version_and_help_exit_0() -> None:
    assert run_cli(["--version"]).code == 0
    assert run_cli(["--help"]).code == 0


# --- check-config -------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Any attempt to open a connection is recorded and refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise OSError("check-config must not reach anything")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts


def test_check_config_on_the_demo_config_reaches_nothing(tmp_path: Path, no_network: list[Any]) -> None:
    factory = EnvFactory(tmp_path)
    env = factory(3)
    factory.close()  # the simulators are gone: nothing answers on their ports
    result = env.cli("check-config")
    assert result.code == 0, result.err
    assert "OK" in result.out
    assert "waterfall: insideview -> leadfeeder -> contactout" in result.out
    [present] = [line for line in result.out.splitlines() if "credentials present for:" in line]
    assert set(present.split(":", 1)[1].replace(",", " ").split()) == {
        "pbx",
        "vendors.insideview",
        "vendors.leadfeeder",
        "vendors.contactout",
    }
    assert no_network == []
    assert not (env.dir / "state.db").exists()


def test_check_config_on_the_example_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[Any]
) -> None:
    for name in (
        "SYNCD_PBX_SECRET",
        "SYNCD_INSIDEVIEW_SECRET",
        "SYNCD_LEADFEEDER_KEY",
        "SYNCD_CONTACTOUT_TOKEN",
    ):
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    example = REPO / "config" / "syncd.example.toml"
    text = example.read_text(encoding="utf-8")
    default_store = "sqlite:////var/lib/syncd/state.db"
    assert default_store in text
    # the example's store lives in /var/lib/syncd (systemd's StateDirectory=): here, in a directory that exists
    local = tmp_path / "syncd.toml"
    local.write_text(text.replace(default_store, f"sqlite:///{tmp_path / 'state.db'}"), encoding="utf-8")
    local.chmod(0o600)
    result = run_cli(["--config", str(local), "check-config"])
    assert result.code == 0, result.err
    assert no_network == []
    if not Path("/var/lib/syncd").exists():
        # as it is, on a host without the state directory: reported, naming the key
        missing = run_cli(["--config", str(example), "check-config"])
        assert_config_error(missing, "sync.state_url", "/var/lib/syncd does not exist")
    monkeypatch.delenv("SYNCD_CONTACTOUT_TOKEN")
    absent = run_cli(["--config", str(local), "check-config"])
    assert_config_error(absent, "vendors.contactout.token", "SYNCD_CONTACTOUT_TOKEN")


# --- links import -----------------------------------------------------------------------------------------


@pytest.fixture
def env(make_env: EnvFactory) -> Env:
    return make_env(10)


def test_links_import_reports_rejected_rows_by_line_and_imports_the_valid_ones(env: Env) -> None:
    csv = env.dir / "ids.csv"
    csv.write_text(
        "pbx_contact_id,vendor,vendor_id\n"  # 1
        f"1,insideview,{INSIDEVIEW_ID_BASE + 1}\n"  # 2 ok
        f"2,leadfeeder,{LEADFEEDER_ID_BASE + 2}\n"  # 3 ok
        "abc,insideview,1\n"  # 4 not an id
        "3,zoominfo,42\n"  # 5 unknown vendor
        "4,insideview,not-digits\n"  # 6 malformed id
        f"1,insideview,{INSIDEVIEW_ID_BASE + 1}\n"  # 7 duplicate of 2
        f"9999,insideview,{INSIDEVIEW_ID_BASE + 9999}\n"  # 8 not on the PBX
        "5,contactout,https://www.linkedin.com/in/someone-5\n"  # 9 ok
        "6,insideview\n"  # 10 too few fields
        "\n"  # 11 blank: ignored
        "7,leadfeeder,https://example.com/x\n"  # 12 malformed id
    )
    result = env.cli("links", "import", str(csv))
    assert result.code == 1
    rejected = [line for line in result.out.splitlines() if ": rejected: " in line]  # the report: stdout
    assert ": rejected: " not in result.err  # each rejection once (it used to be a line and an event)
    assert [line.split(":")[1] for line in rejected] == ["4", "5", "6", "7", "8", "10", "12"]
    by_line = {line.split(":")[1]: line for line in rejected}
    assert all(line.startswith(f"{csv}:") for line in rejected)
    assert "'abc' is not a positive integer" in by_line["4"]
    assert "unknown vendor 'zoominfo'" in by_line["5"]
    assert "digits only" in by_line["6"]
    assert "duplicate of line 2" in by_line["7"]
    assert "no PBX contact with id 9999" in by_line["8"]
    assert "expected 3 fields, found 2" in by_line["10"]
    assert result.out.splitlines()[-1] == "3 link(s) imported, 7 row(s) rejected"
    by_reason = result.out.split("rejected rows by reason:\n")[1].splitlines()[:-1]
    assert {line.split(None, 1)[1]: int(line.split()[0]) for line in by_reason} == {
        "pbx_contact_id … is not a positive integer": 1,
        "unknown vendor …": 1,
        "malformed insideview id …": 1,
        "duplicate of line …": 1,
        "no PBX contact with id …": 1,
        "expected … fields, found …": 1,
        "malformed leadfeeder id …": 1,
    }
    [event] = result.event("links.imported")
    assert (event["imported"], event["rejected"]) == (3, 7)
    with env.store() as store:
        links = store.links_for(None, ids=range(1, 10_000))
    assert {(cid, vendor): link.vendor_id for (cid, vendor), link in links.items()} == {
        (1, "insideview"): str(INSIDEVIEW_ID_BASE + 1),
        (2, "leadfeeder"): str(LEADFEEDER_ID_BASE + 2),
        (5, "contactout"): "https://www.linkedin.com/in/someone-5",
    }
    assert {link.method for link in links.values()} == {"imported"}
    # the ids the store had not seen were checked against the PBX itself (before any sync)
    assert env.pbx.calls["company_contact/query"] == 1


def test_links_import_of_a_clean_file_exits_0(env: Env) -> None:
    result = env.import_links()
    assert "rejected: " not in result.out + result.err
    assert "link(s) imported, 0 row(s) rejected" in result.out


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("contact,vendor,id\n1,insideview,1\n", "missing pbx_contact_id"),
        ("", "the file is empty"),
        (None, "no such file"),
    ],
)
def test_links_import_of_an_unusable_file_is_a_usage_error(
    env: Env, content: str | None, needle: str
) -> None:
    csv = env.dir / "ids.csv"
    if content is not None:
        csv.write_text(content)
    result = env.cli("links", "import", str(csv))
    assert result.code == 2
    assert needle in result.err
    assert "Traceback" not in result.err
