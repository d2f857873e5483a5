"""Secrets: nothing syncd prints, anywhere in this suite, holds a secret or a token; TLS verification is on
unless configured off, and off is a warning at every start.

This module runs last (see conftest.py). It runs every command with debug logs, in JSON and console
form, through failures that make syncd talk about credentials (a wrong secret, refused tokens, services
down), plus `syncd demo`; then it scans everything printed by the whole suite (every child process'
stdout and stderr, every in-process command, the hostile tests' logs) for every configured secret and
every token the simulators minted: PBX access and refresh tokens, InsideView tokens, the demo's tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from syncd.config import load_config
from syncd.sim.launch import CO_TOKEN, LF_KEY, PBX_SECRET
from tests.reliability.site import (
    OUTPUTS,
    SCANNED,
    SECRETS,
    Run,
    Site,
    add_figure,
    add_secret,
    assert_no_crash,
    run_syncd,
    scan,
)

WRONG_SECRET = "wrong-pbx-secret-5d1c8e"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with Site(tmp_path_factory.mktemp("secrets"), 60) as site:
        site.write_config()
        site.import_links()
        yield site


def commands(site: Site) -> list[Run]:
    """Every command an operator runs, with debug logs."""
    runs = []
    for args in (
        ["check-config"],
        ["--sync-now", "--dry-run"],
        ["--sync-now", "--dry-run", "--buy"],
        ["--sync-now"],
        ["status"],
        ["status", "--json"],
        ["history"],
        ["history", "--json"],
        ["links", "import", str(site.root / "links.csv")],
    ):
        run = site.cli("-vv", *args)
        assert_no_crash(run)
        runs.append(run)
    return runs


def test_every_command_with_debug_logs_in_both_formats(site: Site) -> None:
    for run in commands(site):
        assert run.code in (0, 1), run.describe()
    for args in (["--sync-now", "--dry-run"], ["status"], ["history"]):
        run = site.cli("-vv", "--log-format", "console", *args)
        assert_no_crash(run)
        assert run.code == 0, run.describe()


def test_failures_about_credentials_and_unreachable_services(tmp_path: Path) -> None:
    with Site(tmp_path / "failures", 30) as site:
        site.write_config()
        site.import_links()
        failures(site)


def failures(site: Site) -> None:
    text = site.config.read_text()
    # a wrong PBX secret (and no cached token to go on with): refused at once, never echoed
    add_secret(WRONG_SECRET)
    with contextlib.closing(sqlite3.connect(site.db)) as conn, conn:
        conn.execute("DELETE FROM tokens")
    site.write_config(text.replace(f'client_secret = "{PBX_SECRET}"', f'client_secret = "{WRONG_SECRET}"'))
    unknown = site.root / "unknown.csv"  # an id the store has not seen: checked against the PBX
    unknown.write_text("pbx_contact_id,vendor,vendor_id\n9999,insideview,16009999\n", encoding="utf-8")
    for args in (["--sync-now"], ["links", "import", str(unknown)]):
        run = site.cli("-vv", *args)
        assert_no_crash(run)
        assert run.code == 78, run.describe()
    site.sims.pbx.unblock()
    site.write_config(text)
    # every vendor refusing its credentials: the run goes on without them (and fails: exit 1)
    site.sims.insideview.accept_tokens = False
    site.sims.leadfeeder.api_key = "another-key"
    site.sims.contactout.token = "another-token"
    site.sims.pbx.expire_tokens()
    try:
        run = site.cli("-vv", "--sync-now")
        assert_no_crash(run)
        assert run.code == 1, run.describe()
        assert {e["vendor"] for e in run.event("vendor.stopped")} == {
            "insideview",
            "leadfeeder",
            "contactout",
        }
        # the PBX down ("come back in an hour"): exit 75 at once
        site.sims.pbx.faults.throttle_every = 1
        site.sims.pbx.faults.retry_after = 3600
        down = site.cli("-vv", "--sync-now")
        assert_no_crash(down)
        assert down.code == 75, down.describe()
    finally:
        site.sims.insideview.accept_tokens = True
        site.sims.leadfeeder.api_key = LF_KEY
        site.sims.contactout.token = CO_TOKEN
        for faults in site.sims.all_faults():
            faults.reset()


def test_the_demo(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    run = run_syncd(["demo", "--contacts", "25", "--keep", str(keep)], label="demo", timeout=300)
    assert_no_crash(run)
    assert run.code == 0, run.describe()
    # the tokens the demo's PBX minted are in its state store: they must not be in its output
    with contextlib.closing(sqlite3.connect(keep / "state.db")) as conn:
        for access, refresh in conn.execute("SELECT access_token, refresh_token FROM tokens"):
            add_secret(access)
            add_secret(refresh or "")
    for args in (["status"], ["history", "--json"]):  # its simulators are gone: nothing that calls out
        assert_no_crash(run_syncd(["--config", str(keep / "syncd.toml"), "-vv", *args], label="demo"))


# --- TLS ------------------------------------------------------------------------------------------------------


def test_tls_verification_is_on_by_default(site: Site) -> None:
    config = load_config(site.config)
    services = [config.pbx.http_settings()] + [
        section.http_settings()
        for section in (config.vendor(v) for v in config.vendors.configured())
        if section is not None
    ]
    assert services and all(s.verify is True for s in services)
    assert not site.cli("check-config").event("tls.verification_disabled")


def test_turning_tls_verification_off_is_a_warning_at_every_start(site: Site) -> None:
    text = site.config.read_text()
    off = text.replace("[pbx]\n", "[pbx]\nverify_tls = false\n").replace(
        "[vendors.leadfeeder]\n", "[vendors.leadfeeder]\nverify_tls = false\n"
    )
    site.write_config(off)
    try:
        for args in (
            ["check-config"],
            ["status"],
            ["history"],
            ["--sync-now", "--dry-run"],
            ["--sync-now", "--dry-run", "--buy"],
            ["--sync-now"],
            ["links", "import", str(site.root / "links.csv")],
        ):
            run = site.cli(*args)
            assert_no_crash(run)
            warned = {e["key"] for e in run.event("tls.verification_disabled") if e["level"] == "warning"}
            assert warned == {"pbx.verify_tls", "vendors.leadfeeder.verify_tls"}, run.describe()
    finally:
        site.write_config(text)


class TlsServer:
    """An ASGI app over HTTPS on loopback, with a self-signed certificate for 127.0.0.1."""

    def __init__(self, app: ASGIApp, cert: Path, key: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="critical",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def __enter__(self) -> TlsServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the TLS server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    done = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate: {done.stderr.decode()[:200]}")
    return cert, key


def test_a_pbx_with_an_unknown_certificate_is_refused_unless_trusted(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with Site(tmp_path / "tls", 30, vendors=()) as site, TlsServer(site.sims.pbx.app, cert, key) as tls:
        text = site.sims.config_text(site.state_url).replace(
            site.sims.url("pbx"), f"https://127.0.0.1:{tls.port}"
        )
        site.write_config(text)
        refused = site.sync()
        assert_no_crash(refused)
        assert refused.code == 75, refused.describe()
        assert "CERTIFICATE_VERIFY_FAILED" in refused.err and "not trusted" in refused.err
        assert not refused.event("http.retry"), "a certificate that is not trusted is not retried"
        assert site.sims.pbx.calls["get_token"] == 0, "the secret was sent to an unverified server"
        site.write_config(text.replace("[pbx]\n", f'[pbx]\nverify_tls = "{cert}"\n'))
        trusted = site.sync()
        assert trusted.code == 0, trusted.describe()
        assert not trusted.event("tls.verification_disabled")


# --- the scan -------------------------------------------------------------------------------------------------


def test_no_output_of_the_suite_holds_a_secret_or_a_token() -> None:
    secrets = {s for s in SECRETS if len(s) >= 8}
    assert len(secrets) >= 6, "the suite recorded the secrets and tokens it should look for"
    hits = [(label, found[:8] + "…") for label, text in OUTPUTS for found in scan(text, secrets)]
    assert not hits, f"secrets or tokens in the output: {hits[:10]}"
    total = sum(len(text) for _, text in OUTPUTS)
    add_figure("secrets_scan_outputs", len(OUTPUTS) + SCANNED["outputs"])
    add_figure("secrets_scan_bytes", total + SCANNED["bytes"])
    add_figure("secrets_scan_values", len(secrets))
    add_figure("secrets_scan_hits", 0)
    print(
        f"secrets scan: {len(OUTPUTS) + SCANNED['outputs']} outputs, {total + SCANNED['bytes']} bytes, "
        f"{len(secrets)} secrets and tokens, 0 hits"
    )
