"""No secret, token or credential value in any log line or message.

Unit tests of the redaction (`redact`, `register_secret`, the structlog processor, stdlib logging, httpx
exception text), then whole CLI sessions in child processes with known credentials and the tokens the
simulators minted: every byte of stdout and stderr is searched for every one of them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from syncd.errors import ServiceError, ServiceUnavailable
from syncd.http import HttpSettings, ServiceClient
from syncd.logs import MASK, configure_logging, get_logger, redact, redaction_processor, register_secret
from syncd.sim.launch import CO_TOKEN, IV_SECRET, LF_KEY, PBX_SECRET, Simulators
from tests.e2e.harness import CaptureTokens, Env, EnvFactory, child_env, wrap


def fresh(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


# --- redact and register_secret ---------------------------------------------------------------------------


def test_a_registered_secret_is_masked_anywhere_in_a_string() -> None:
    secret = fresh("reg")
    register_secret(secret)
    assert redact(f"login failed for {secret}!") == f"login failed for {MASK}!"
    assert redact(f"{secret}{secret}") == MASK + MASK
    assert secret not in redact(json.dumps({"nested": {"value": f"x{secret}y"}}))


def test_short_and_empty_values_are_not_registered() -> None:
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert redact("abc abcabc") == "abc abcabc"


def test_the_longest_overlapping_secret_is_masked_whole() -> None:
    short = fresh("ov")
    long = short + "-and-more"
    register_secret(short)
    register_secret(long)
    assert redact(f"[{long}]") == f"[{MASK}]"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /openapi/v1.0/company_contact/list?page=1&access_token=4f2a9c1d&page_size=10", "4f2a9c1d"),
        ("POST /x?refresh_token=abcdef123456", "abcdef123456"),
        ("/Auth/login/v1/token.json?clientId=me&clientSecret=s3cr3tvalue&grantType=cred", "s3cr3tvalue"),
        ('{"username": "syncd", "password": "hunter2hunter2"}', "hunter2hunter2"),
        ('{"refresh_token":"r-tok-998877"}', "r-tok-998877"),
        ("token: co-live-token-1234", "co-live-token-1234"),
        ("X-Api-Key: lf-live-key-5678", "lf-live-key-5678"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("sent with bearer abcdefghijklmnop in the middle", "abcdefghijklmnop"),
        ("api_key=QWERTY123456", "QWERTY123456"),
    ],
)
def test_secret_looking_pairs_are_masked_even_when_never_registered(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert MASK in out


def test_ordinary_text_is_left_alone() -> None:
    text = "contact 42 email a.b@example.com number +14155550134 title: CFO"
    assert redact(text) == text


# --- the structlog processor and configured logging -------------------------------------------------------


def test_processor_masks_secret_named_fields_and_nested_values() -> None:
    secret = fresh("proc")
    register_secret(secret)
    event = {
        "event": "x",
        "token": "anything",
        "Authorization": "Bearer zzzz",
        "detail": {"client_secret": "not-registered-1", "ok": "kept", "list": [f"a {secret} b"]},
        "url": "https://h/p?access_token=qqqqqqqq",
        "error": ValueError(f"failed with {secret}"),
        "count": 3,
    }
    out = redaction_processor(None, "info", event)
    assert out["token"] == MASK
    assert out["Authorization"] == MASK
    assert out["detail"]["client_secret"] == MASK
    assert out["detail"]["ok"] == "kept"
    assert out["detail"]["list"] == [f"a {MASK} b"]
    assert "qqqqqqqq" not in out["url"]
    assert out["error"] == f"ValueError: failed with {MASK}"
    assert out["count"] == 3


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(json=True, verbosity=2, stream=stream)
    try:
        yield stream
    finally:
        structlog.contextvars.clear_contextvars()
        configure_logging(json=True, verbosity=1, stream=sys.stderr)


def test_configured_logging_redacts_events_exceptions_and_stdlib_records(captured_logs: io.StringIO) -> None:
    secret = fresh("conf")
    register_secret(secret)
    log = get_logger("test")
    log.info("event.one", note=f"value {secret}", password="pw-not-registered")
    try:
        raise RuntimeError(f"boom ?access_token={secret}")
    except RuntimeError:
        log.exception("event.two")
    logging.getLogger("httpx").warning("HTTP Request: GET http://h/x?access_token=tok-12345678")
    logging.getLogger("some.lib").error("password=%s", "pw-98765432")
    text = captured_logs.getvalue()
    assert "event.one" in text and "event.two" in text and "HTTP Request" in text
    for leaked in (secret, "pw-not-registered", "tok-12345678", "pw-98765432"):
        assert leaked not in text
    assert "RuntimeError" in text  # the traceback is kept, its secrets are not


# --- httpx exception text -----------------------------------------------------------------------------


def test_httpx_status_error_text_with_access_token_is_redacted(captured_logs: io.StringIO) -> None:
    token = fresh("tok")
    request = httpx.Request(
        "GET", f"https://pbx.example.com/openapi/v1.0/company_contact/list?access_token={token}"
    )
    response = httpx.Response(503, request=request)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    assert token in str(caught.value)  # httpx does embed it ...
    assert token not in redact(str(caught.value))  # ... the redactor takes it out
    get_logger("test").error("call.failed", error=caught.value)
    get_logger("test").error("call.failed", error=str(caught.value))
    assert token not in captured_logs.getvalue()
    assert ServiceError("pbx", str(caught.value)).__str__().count(token) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_service_errors_name_the_path_never_the_query_string() -> None:
    token = fresh("qs")
    settings = HttpSettings(
        service="pbx", base_url=f"http://127.0.0.1:{free_port()}", max_attempts=2, backoff_base=0.001
    )
    async with ServiceClient(settings) as client:
        with pytest.raises(ServiceUnavailable) as caught:
            await client.request("GET", "/openapi/v1.0/company_contact/list", params={"access_token": token})
    message = str(caught.value)
    assert "GET /openapi/v1.0/company_contact/list" in message
    assert token not in message and "access_token" not in message


# --- whole CLI sessions --------------------------------------------------------------------------------


class Session:
    """A configured environment whose secrets come from the environment and a file; each command runs as
    a child process with every byte of its output kept."""

    def __init__(self, env: Env, secrets_: dict[str, str], tokens: set[str]) -> None:
        self.env = env
        self.secrets = secrets_
        self.tokens = tokens
        self.outputs: list[str] = []

    def run(self, *args: str, expect: int, **env_over: str) -> str:
        variables = child_env(
            SYNCD_PBX_SECRET=self.secrets["pbx"],
            SYNCD_INSIDEVIEW_SECRET=self.secrets["insideview"],
            SYNCD_LEADFEEDER_KEY=self.secrets["leadfeeder"],
        )
        variables.update(env_over)
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(self.env.config), *args],
            capture_output=True,
            cwd=self.env.dir,
            env=variables,
            timeout=120,
            check=False,
        )
        text = done.stdout.decode() + done.stderr.decode()
        self.outputs.append(text)
        assert done.returncode == expect, f"{args}: exit {done.returncode}\n{text[-3000:]}"
        return text


def env_secrets(text: str, token_file: Path) -> str:
    return (
        text.replace(f'client_secret = "{PBX_SECRET}"', 'client_secret_env = "SYNCD_PBX_SECRET"')
        .replace(f'client_secret = "{IV_SECRET}"', 'client_secret_env = "SYNCD_INSIDEVIEW_SECRET"')
        .replace(f'api_key = "{LF_KEY}"', 'api_key_env = "SYNCD_LEADFEEDER_KEY"')
        .replace(f'token = "{CO_TOKEN}"', f'token_file = "{token_file}"')
    )


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    values = {name: fresh(name) for name in ("pbx", "insideview", "leadfeeder", "contactout")}
    tokens: set[str] = set()

    def setup(sims: Simulators) -> None:
        sims.pbx.client_secret = values["pbx"]
        sims.insideview.client_secret = values["insideview"]
        sims.leadfeeder.api_key = values["leadfeeder"]
        sims.contactout.token = values["contactout"]
        for name in ("pbx", *sims.vendors):
            wrap(sims, name, lambda app: CaptureTokens(app, tokens))

    token_file = tmp_path / "co-token"
    token_file.write_text(values["contactout"] + "\n")
    os.chmod(token_file, 0o600)
    factory = EnvFactory(tmp_path)
    try:
        env = factory(45, setup=setup, edit=lambda t: env_secrets(t, token_file))
        for inline in (PBX_SECRET, IV_SECRET, LF_KEY, CO_TOKEN):
            assert inline not in env.config.read_text()
        yield Session(env, values, tokens)
    finally:
        factory.close()


def test_no_secret_or_token_in_any_output_of_a_whole_session(session: Session) -> None:
    env = session.env
    links = env.sims.write_links(env.dir / "links.csv")
    wrong = {"pbx": fresh("wrong-pbx"), "leadfeeder": fresh("wrong-lf")}
    session.run("check-config", expect=0)
    session.run("links", "import", str(links), expect=0)
    # a dry run buying while Leadfeeder refuses its key: the vendor is dropped, the run goes on (exits 1)
    dry = session.run(
        "--sync-now", "--dry-run", "--buy", "-vv", expect=1, SYNCD_LEADFEEDER_KEY=wrong["leadfeeder"]
    )
    assert "vendor.stopped" in dry
    env.pbx.faults.error_every = 7  # retries are logged too
    session.run("--sync-now", "-vv", expect=0)
    env.pbx.faults.error_every = 0
    env.pbx.expire_tokens()  # the next run refreshes its token
    env.pbx.edit_contact(1, email="")
    session.run("--sync-now", "-vv", "--log-format", "console", expect=0)
    session.run("status", expect=0)
    session.run("history", "--json", expect=0)
    # the PBX refusing a changed secret: the cached token was minted with the old one, so it is not
    # used, and the refused login is a configuration error
    failed = session.run("--sync-now", "-vv", expect=78, SYNCD_PBX_SECRET=wrong["pbx"])
    assert "client_secret" in failed

    pbx_tokens = {t for t in session.tokens if len(t) == 32}
    assert len(pbx_tokens) >= 4  # access + refresh of the first login, and of the refresh
    assert len(session.tokens) > len(pbx_tokens)  # the InsideView token too
    assert env.pbx.calls["refresh_token"] >= 1
    everything = "\n".join(session.outputs)
    assert "contact.changed" in everything and "http.retry" in everything
    for name, value in {**session.secrets, **{f"wrong {k}": v for k, v in wrong.items()}}.items():
        assert value not in everything, f"the {name} secret leaked"
    for token in session.tokens:
        assert token not in everything, "a token the simulators minted leaked"
