"""`syncd check` against the simulators: all green, then each failure an admin meets on day one (wrong
secret, IP not allowed, closed port, TLS, a key without access, no such account), each one clear line and
the documented exit code, no secret in any output, nothing bought and the PBX token revoked."""

from __future__ import annotations

import http.server
import io
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.check import host_port, print_report, run_checks
from syncd.config import load_config
from syncd.sim.dataset import Dataset
from syncd.sim.launch import CO_TOKEN, IV_SECRET, LF_KEY, PBX_SECRET, Simulators
from tests.e2e.harness import Result, run_cli

SECRETS = (PBX_SECRET, IV_SECRET, LF_KEY, CO_TOKEN)


@pytest.fixture(scope="module")
def sims() -> Iterator[Simulators]:
    with Simulators(Dataset(20)) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(sims: Simulators) -> None:
    sims.pbx.denied = set()
    sims.pbx.allowed_ips = None
    sims.pbx.failed_logins.clear()
    sims.pbx.blocked.clear()
    sims.contactout.denied = set()
    sims.pbx.calls.clear()


def write_config(sims: Simulators, tmp_path: Path, *replace: tuple[str, str]) -> Path:
    text = sims.config_text(f"sqlite:///{tmp_path / 'state.db'}")
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def check(config: Path, *args: str) -> Result:
    result = run_cli(["--config", str(config), "--log-format", "json", "check", *args])
    for secret in SECRETS:
        assert secret not in result.out + result.err, "a secret in the output"
    assert "Traceback" not in result.out + result.err
    return result


def services(result: Result) -> dict[str, dict[str, Any]]:
    report = json.loads(result.out)  # piped: one JSON document
    assert report["exit_code"] == result.code
    return {s["service"]: s for s in report["services"]}


def failed(result: Result) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services(result).items() if not s["ok"]}


def test_all_green_buys_nothing_and_revokes_the_token(sims: Simulators, tmp_path: Path) -> None:
    lf_before, co_before = sims.leadfeeder.credits_charged, sum(sims.contactout.charged.values())
    result = check(write_config(sims, tmp_path))
    assert result.code == 0, result.out
    report = services(result)
    assert list(report) == ["pbx", "insideview", "leadfeeder", "contactout"]
    assert all(s["ok"] and s["problem"] is None for s in report.values())
    assert all(s["latency_ms"] is not None and s["latency_ms"] >= 0 for s in report.values())
    pbx = report["pbx"]
    assert "company_contact/list: 20 contact(s)" in pbx["detail"]
    assert "token revoked" in pbx["detail"]
    assert sims.pbx.calls["get_token"] == 1
    assert sims.pbx.calls["del_token"] == 1
    assert sims.pbx.updates == []  # the update probe wrote nothing
    assert sims.pbx._live_count() == 0  # the check's token is gone
    # credits: read from the vendors, against the budget, and none spent
    assert report["leadfeeder"]["credits_left"] == {"credits": sims.leadfeeder.credits_available}
    assert set(report["contactout"]["credits_left"]) == {"email", "phone", "search"}
    assert report["contactout"]["budget"] == {"monthly_budget": 100000, "spent_this_month": 0, "left": 100000}
    assert sims.leadfeeder.credits_charged == lf_before
    assert sum(sims.contactout.charged.values()) == co_before


def test_wrong_pbx_secret_is_one_login_and_exit_78(sims: Simulators, tmp_path: Path) -> None:
    config = write_config(
        sims, tmp_path, (f'client_secret = "{PBX_SECRET}"', 'client_secret = "wrong-one-x"')
    )
    result = check(config)
    assert result.code == 78
    bad = failed(result)
    assert list(bad) == ["pbx"]
    assert bad["pbx"]["kind"] == "credentials"
    assert bad["pbx"]["problem"].startswith("wrong client_id or client_secret")
    assert sims.pbx.calls["get_token"] == 1  # never retried: five failures block the IP
    assert sum(sims.pbx.failed_logins.values()) == 1
    assert "wrong-one-x" not in result.out + result.err


def test_ip_not_allowed(sims: Simulators, tmp_path: Path) -> None:
    sims.pbx.allowed_ips = {"192.0.2.10"}
    result = check(write_config(sims, tmp_path))
    assert result.code == 78
    assert failed(result)["pbx"]["problem"].startswith("IP not allowed")
    assert sims.pbx.calls["get_token"] == 1


def test_pbx_app_without_update_permission(sims: Simulators, tmp_path: Path) -> None:
    sims.pbx.denied = {"company_contact/update"}
    result = check(write_config(sims, tmp_path))
    assert result.code == 78
    pbx = failed(result)["pbx"]
    assert pbx["kind"] == "permission"
    assert "no permission for company_contact/update" in pbx["problem"]
    assert "token revoked" in pbx["detail"]
    assert sims.pbx._live_count() == 0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on leaving: nothing listens there


def test_closed_port_is_unreachable_75(sims: Simulators, tmp_path: Path) -> None:
    port = closed_port()
    config = write_config(sims, tmp_path, (sims.url("leadfeeder"), f"http://127.0.0.1:{port}"))
    result = check(config)
    assert result.code == 75
    bad = failed(result)
    assert list(bad) == ["leadfeeder"]
    assert bad["leadfeeder"]["kind"] == "unreachable"
    assert bad["leadfeeder"]["problem"].startswith(f"connection refused on 127.0.0.1:{port}")


def test_a_credential_problem_outranks_an_unreachable_service(sims: Simulators, tmp_path: Path) -> None:
    config = write_config(
        sims,
        tmp_path,
        (sims.url("leadfeeder"), f"http://127.0.0.1:{closed_port()}"),
        (f'token = "{CO_TOKEN}"', 'token = "not-the-token"'),
    )
    result = check(config)
    assert result.code == 78
    bad = failed(result)
    assert (bad["leadfeeder"]["kind"], bad["contactout"]["kind"]) == ("unreachable", "credentials")
    assert bad["contactout"]["problem"] == "wrong token: ContactOut refused it"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS server with a self-signed certificate no CA bundle trusts."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate to serve")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run([openssl, *args, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_untrusted_certificate_is_named_as_tls(sims: Simulators, tmp_path: Path, tls_server: str) -> None:
    config = write_config(sims, tmp_path, (sims.url("pbx"), tls_server))
    result = check(config)
    assert result.code == 75
    pbx = failed(result)["pbx"]
    assert pbx["problem"].startswith(f"TLS: the certificate of {host_port(tls_server)} is not trusted")
    assert "verify_tls" in pbx["problem"]


def test_contactout_key_without_access(sims: Simulators, tmp_path: Path) -> None:
    sims.contactout.denied = {"stats"}
    result = check(write_config(sims, tmp_path))
    assert result.code == 78
    bad = failed(result)
    assert list(bad) == ["contactout"]
    assert bad["contactout"]["kind"] == "permission"
    assert "no access" in bad["contactout"]["problem"]


def test_leadfeeder_wrong_key_and_wrong_account(sims: Simulators, tmp_path: Path) -> None:
    result = check(write_config(sims, tmp_path, (f'api_key = "{LF_KEY}"', 'api_key = "lf-wrong-key"')))
    assert result.code == 78
    assert failed(result)["leadfeeder"]["problem"].startswith("wrong api_key")
    result = check(write_config(sims, tmp_path, ('account_id = "123456"', 'account_id = "999"')))
    assert result.code == 78
    problem = failed(result)["leadfeeder"]["problem"]
    assert problem.startswith("no such account: account_id '999'") and "123456" in problem


def test_dns_failure_names_the_host(sims: Simulators, tmp_path: Path) -> None:
    config = write_config(sims, tmp_path, (sims.url("contactout"), "http://no-such-host.invalid:8088"))
    result = check(config)
    assert result.code == 75
    assert failed(result)["contactout"]["problem"].startswith("DNS: the host name 'no-such-host.invalid'")


def test_terminal_table(sims: Simulators, tmp_path: Path) -> None:
    import asyncio

    config = load_config(write_config(sims, tmp_path, (f'token = "{CO_TOKEN}"', 'token = "not-the-token"')))
    report = asyncio.run(run_checks(config))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    print_report(report, out)
    text = out.getvalue()
    lines = re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
    heads = {line.split()[1]: (n, line) for n, line in enumerate(lines) if not line.startswith(" ")}
    n, head = heads["contactout"]
    assert head.startswith("FAILED  contactout  127.0.0.1:") and head.endswith(" ms")
    assert lines[n + 1].strip() == "wrong token: ContactOut refused it"
    n, head = heads["pbx"]
    assert head.startswith("ok      pbx         127.0.0.1:")
    assert "token revoked" in lines[n + 1]
    n, head = heads["leadfeeder"]
    assert lines[n + 2].strip() == "credits: 100,000 left at the vendor"  # (the budget comes from the store)
    assert "credential, permission or configuration problem" in text
    assert CO_TOKEN not in text


def test_a_run_against_an_unreachable_pbx_says_so_once(sims: Simulators, tmp_path: Path) -> None:
    port = closed_port()
    config = write_config(sims, tmp_path, (sims.url("pbx"), f"http://127.0.0.1:{port}"))
    config.write_text(config.read_text().replace("rate_limit = 500", 'rate_limit = 500\ntimeout = "1s"'))
    result = run_cli(["--config", str(config), "--log-format", "json", "--sync-now"])
    assert result.code == 75
    lines = [line for line in result.err.splitlines() if line.startswith("syncd: error:")]
    assert len(lines) == 1, result.err  # the error line only, no `syncd.failed` event repeating it
    assert lines[0].startswith(f"syncd: error: pbx: POST /openapi/v1.0/get_token on 127.0.0.1:{port}: ")
    assert [line for line in result.err.splitlines() if "syncd.failed" in line] == []
    assert "Connection refused" in lines[0]


def test_a_base_url_that_is_not_the_pbx(sims: Simulators, tmp_path: Path) -> None:
    config = write_config(
        sims, tmp_path, (f'base_url = "{sims.url("pbx")}"', f'base_url = "{sims.url("leadfeeder")}"')
    )
    result = check(config)
    assert result.code == 78
    problem = failed(result)["pbx"]["problem"]
    assert "did not answer as a Yeastar P-Series OpenAPI would" in problem and problem.endswith(
        "check base_url"
    )
