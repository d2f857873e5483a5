"""The config loader: values and defaults, one clear ConfigError per problem, secrets, permissions."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigErrors,
    FieldPolicy,
    LogFormat,
    TitleTarget,
    default_config_path,
    load_config,
    parse_config,
    parse_duration,
)
from syncd.errors import EXIT_CONFIG, ConfigError
from syncd.model import Vendor
from syncd.normalize import NumberFormat

REPO = Path(__file__).resolve().parent.parent

# The example of the operator contract (CONTRACT.md), verbatim apart from the client ids.
CONTRACT_TOML = """\
[sync]
interval = "15m"                      # or: cron = "*/15 * * * *"
state_url = "sqlite:////var/lib/syncd/state.db"   # any SQLAlchemy URL; PostgreSQL for larger sites
default_region = "US"                 # region for numbers written without a country code
phonebooks = []                       # names of phonebooks to sync; empty = every company contact

[pbx]                                 # Yeastar P-Series OpenAPI
base_url = "https://pbx.example.com:8088"
client_id = "pbx-client-id"
client_secret_env = "SYNCD_PBX_SECRET"
verify_tls = true                     # true, false, or a path to a CA bundle

[enrich]
order = ["insideview", "leadfeeder", "contactout"]   # the waterfall
refresh_after = "30d"                 # re-buy a found result after this long
retry_not_found_after = "14d"         # ask again about a not-found contact after this long

[fields]                              # per PBX field: fill_empty (default) | refresh | never
email = "fill_empty"
numbers = "fill_empty"
title = "fill_empty"

[vendors.insideview]
base_url = "https://api.insideview.com"
login_url = "https://login.insideview.com"
client_id = "iv-client-id"
client_secret_env = "SYNCD_INSIDEVIEW_SECRET"
monthly_credit_budget = 5000

[vendors.contactout]
base_url = "https://api.contactout.com"
token_env = "SYNCD_CONTACTOUT_TOKEN"
monthly_credit_budget = 5000

[vendors.leadfeeder]
base_url = "https://api.leadfeeder.com"
api_key_env = "SYNCD_LEADFEEDER_KEY"
account_id = "123456"
monthly_credit_budget = 5000
"""

ENV = {
    "SYNCD_PBX_SECRET": "pbx-secret-value-1",
    "SYNCD_INSIDEVIEW_SECRET": "insideview-secret-value-2",
    "SYNCD_CONTACTOUT_TOKEN": "contactout-token-value-3",
    "SYNCD_LEADFEEDER_KEY": "leadfeeder-key-value-4",
}

MINIMAL = """\
[pbx]
base_url = "https://pbx.example.com"
client_id = "id"
client_secret_env = "SYNCD_PBX_SECRET"
"""


def write(tmp_path: Path, text: str, name: str = "syncd.toml", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def parse(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> Config:
    return parse_config(text, source=tmp_path / "syncd.toml", environ=ENV if environ is None else environ)


def edit(old: str, new: str, text: str = CONTRACT_TOML) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def without(*headers: str, text: str = CONTRACT_TOML) -> str:
    """`text` without the tables that start with these headers."""
    blocks = text.split("\n\n")
    kept = [b for b in blocks if not any(b.startswith(h) for h in headers)]
    assert len(kept) == len(blocks) - len(headers)
    return "\n\n".join(kept)


def config_error(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path, environ)
    return info.value


# --- values and defaults ----------------------------------------------------------------------------


def test_contract_example_loads_with_its_values_and_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONTRACT_TOML), environ=ENV)

    assert config.path == tmp_path / "syncd.toml"
    assert config.warnings == []
    sync = config.sync
    assert sync.interval == timedelta(minutes=15)
    assert sync.cron is None
    assert sync.state_url == "sqlite:////var/lib/syncd/state.db"
    assert sync.default_region == "US"
    assert sync.phonebooks == ()
    assert sync.run_at_start is True
    assert sync.misfire_grace is None
    assert sync.mass_loss_ratio == 0.5
    assert sync.mass_loss_min_known == 20
    assert sync.number_format is NumberFormat.e164
    assert sync.title_target is TitleTarget.remark
    assert sync.push_concurrency == 4

    pbx = config.pbx
    assert pbx.base_url == "https://pbx.example.com:8088"
    assert pbx.client_id == "pbx-client-id"
    assert pbx.client_secret == "pbx-secret-value-1"
    assert pbx.secret_source == "env:SYNCD_PBX_SECRET"
    assert pbx.verify_tls is True
    assert pbx.timeout == timedelta(seconds=30)
    assert pbx.rate_limit == 20
    assert pbx.page_size == 10000

    assert config.enrich.order == (Vendor.insideview, Vendor.leadfeeder, Vendor.contactout)
    assert config.enrich.refresh_after == timedelta(days=30)
    assert config.enrich.retry_not_found_after == timedelta(days=14)
    assert config.enrich.verify_emails is False
    assert config.enabled_vendors() == [Vendor.insideview, Vendor.leadfeeder, Vendor.contactout]
    assert (config.fields.email, config.fields.numbers, config.fields.title) == (FieldPolicy.fill_empty,) * 3

    iv = config.vendors.insideview
    assert iv is not None
    assert iv.base_url == "https://api.insideview.com"
    assert iv.login_url == "https://login.insideview.com"
    assert iv.client_id == "iv-client-id"
    assert iv.client_secret == "insideview-secret-value-2"
    assert iv.monthly_credit_budget == 5000
    assert (iv.rate_limit, iv.max_concurrency, iv.job_threshold) == (5, 4, 2000)
    co = config.vendors.contactout
    assert co is not None
    assert co.token == "contactout-token-value-3"
    assert co.rate_limit == pytest.approx(1000 / 60)
    assert (co.checker_rate_limit, co.max_concurrency) == (2.5, 8)
    lf = config.vendors.leadfeeder
    assert lf is not None
    assert lf.api_key == "leadfeeder-key-value-4"
    assert lf.account_id == "123456"
    assert (lf.rate_limit, lf.burst, lf.max_concurrency) == (10, 15, 4)
    assert config.vendor("leadfeeder") is lf

    assert config.metrics.enabled is False
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9464)
    assert config.log.format is LogFormat.auto


def test_minimal_config_gets_every_default_and_no_vendor(tmp_path: Path) -> None:
    config = parse(MINIMAL, tmp_path)
    assert config.sync.interval == timedelta(minutes=15)
    assert config.sync.state_url == "sqlite:////var/lib/syncd/state.db"
    assert config.vendors.insideview is None
    assert config.vendors.contactout is None
    assert config.vendors.leadfeeder is None
    assert config.enabled_vendors() == []
    assert any("no [vendors.*]" in w for w in config.warnings)


def test_default_order_is_the_configured_vendors_in_contract_order(tmp_path: Path) -> None:
    text = without(
        "[vendors.insideview]", text=edit('order = ["insideview", "leadfeeder", "contactout"]', "")
    )
    config = parse(text, tmp_path)
    assert config.vendors.insideview is None
    assert config.enrich.order == (Vendor.leadfeeder, Vendor.contactout)
    assert config.enabled_vendors() == [Vendor.leadfeeder, Vendor.contactout]


def test_configured_vendor_left_out_of_the_order_is_a_warning(tmp_path: Path) -> None:
    config = parse(edit('"leadfeeder", "contactout"]', '"contactout"]'), tmp_path)
    assert config.enabled_vendors() == [Vendor.insideview, Vendor.contactout]
    assert config.warnings == [
        "[vendors.leadfeeder] is configured but not listed in enrich.order: it will not be used"
    ]


def test_additions_are_read(tmp_path: Path) -> None:
    text = edit(
        '[sync]\ninterval = "15m"',
        '[sync]\ncron = "*/5 8-18 * * mon-fri"\nrun_at_start = false\nmisfire_grace = "1h30m"\n'
        'mass_loss_ratio = 1\nmass_loss_min_known = 0\nnumber_format = "national"\ntitle_target = "field"\n'
        'push_concurrency = 32\nphonebooks = ["Sales", "Support"]\ndefault_region = "gb"',
    )
    text = edit("phonebooks = []", "", text)
    text = edit('default_region = "US"', "", text)
    text = edit(
        "verify_tls = true",
        'verify_tls = false\ntimeout = "5s"\nrate_limit = 2.5\npage_size = 500',
        text,
    )
    text += '\n[metrics]\nenabled = true\nlisten = "[::1]:9100"\n\n[log]\nformat = "json"\n'
    text = edit('retry_not_found_after = "14d"', 'retry_not_found_after = "14d"\nverify_emails = true', text)
    config = parse(text, tmp_path)
    sync = config.sync
    assert sync.interval is None
    assert sync.cron == "*/5 8-18 * * mon-fri"
    assert sync.run_at_start is False
    assert sync.misfire_grace == timedelta(hours=1, minutes=30)
    assert sync.mass_loss_ratio == 1.0
    assert sync.mass_loss_min_known == 0
    assert sync.number_format is NumberFormat.national
    assert sync.title_target is TitleTarget.field
    assert sync.push_concurrency == 32
    assert sync.phonebooks == ("Sales", "Support")
    assert sync.default_region == "GB"
    assert config.pbx.verify_tls is False
    assert config.pbx.timeout == timedelta(seconds=5)
    assert config.pbx.page_size == 500
    assert config.enrich.verify_emails is True
    assert config.metrics.enabled is True
    assert (config.metrics.host, config.metrics.port) == ("::1", 9100)
    assert config.log.format is LogFormat.json


def test_http_settings_per_service(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    text = edit("verify_tls = true", 'verify_tls = "ca.pem"\ntimeout = "5s"\nrate_limit = 3')
    config = parse(text, tmp_path)

    pbx = config.pbx.http_settings()
    assert (pbx.service, pbx.base_url, pbx.verify) == ("pbx", "https://pbx.example.com:8088", str(ca))
    assert (pbx.timeout, pbx.connect_timeout, pbx.rate_per_second) == (5.0, 5.0, 3.0)

    assert config.vendors.insideview is not None
    iv = config.vendors.insideview.http_settings()
    assert (iv.service, iv.base_url, iv.rate_per_second, iv.max_concurrency) == (
        "insideview",
        "https://api.insideview.com",
        5.0,
        4,
    )
    assert (iv.timeout, iv.verify) == (30.0, True)
    login = config.vendors.insideview.login_http_settings()
    assert (login.service, login.base_url) == ("insideview-login", "https://login.insideview.com")

    assert config.vendors.contactout is not None
    co = config.vendors.contactout
    assert co.http_settings().service == "contactout"
    assert co.http_settings().rate_per_second == pytest.approx(1000 / 60)
    assert co.checker_http_settings().rate_per_second == 2.5

    assert config.vendors.leadfeeder is not None
    lf = config.vendors.leadfeeder.http_settings()
    assert (lf.service, lf.rate_per_second, lf.burst, lf.max_concurrency) == ("leadfeeder", 10.0, 15, 4)


def test_config_is_immutable(tmp_path: Path) -> None:
    config = parse(MINIMAL, tmp_path)
    with pytest.raises(ValueError, match="frozen"):
        config.sync.push_concurrency = 8


# --- errors -----------------------------------------------------------------------------------------

BAD = [
    # (what, old, new, key, words in the problem)
    ("string budget", "monthly_credit_budget = 5000", 'monthly_credit_budget = "abc"',
     "vendors.insideview.monthly_credit_budget", ['integer ≥ 0', 'got "abc"']),
    ("negative budget", "monthly_credit_budget = 5000", "monthly_credit_budget = -1",
     "vendors.insideview.monthly_credit_budget", ["integer ≥ 0", "got -1"]),
    ("float budget", "monthly_credit_budget = 5000", "monthly_credit_budget = 10.5",
     "vendors.insideview.monthly_credit_budget", ["integer"]),
    ("string bool", "verify_tls = true", 'verify_tls = "true"', "pbx.verify_tls", ["without quotes"]),
    ("int for bool", 'interval = "15m"', 'interval = "15m"\nrun_at_start = 1', "sync.run_at_start",
     ["true or false", "got 1"]),
    ("string number", "verify_tls = true", 'rate_limit = "20"', "pbx.rate_limit", ["number", 'got "20"']),
    ("zero rate", "verify_tls = true", "rate_limit = 0", "pbx.rate_limit", ["> 0"]),
    ("nan rate", "verify_tls = true", "rate_limit = nan", "pbx.rate_limit", ["> 0"]),
    ("page size too big", "verify_tls = true", "page_size = 10001", "pbx.page_size", ["1 to 10000"]),
    ("push_concurrency 0", 'interval = "15m"', 'interval = "15m"\npush_concurrency = 0',
     "sync.push_concurrency", ["1 to 32", "got 0"]),
    ("ratio 0", 'interval = "15m"', 'interval = "15m"\nmass_loss_ratio = 0', "sync.mass_loss_ratio",
     ["> 0 and ≤ 1"]),
    ("ratio 1.5", 'interval = "15m"', 'interval = "15m"\nmass_loss_ratio = 1.5', "sync.mass_loss_ratio",
     ["≤ 1"]),
    ("min known negative", 'interval = "15m"', 'interval = "15m"\nmass_loss_min_known = -1',
     "sync.mass_loss_min_known", ["≥ 0"]),
    ("bad number format", 'interval = "15m"', 'interval = "15m"\nnumber_format = "E.164"',
     "sync.number_format", ['"e164"']),
    ("bad title target", 'interval = "15m"', 'interval = "15m"\ntitle_target = "title"',
     "sync.title_target", ['"remark"']),
    ("bad field policy", 'title = "fill_empty"', 'title = "always"', "fields.title", ['"fill_empty"']),
    ("bad duration", 'refresh_after = "30d"', 'refresh_after = "a month"', "enrich.refresh_after",
     ["duration", 'got "a month"']),
    ("zero duration", 'interval = "15m"', 'interval = "0m"', "sync.interval", ["greater than zero"]),
    ("negative duration", 'interval = "15m"', 'interval = "-15m"', "sync.interval", ["duration"]),
    ("number as duration", 'interval = "15m"', "interval = 15", "sync.interval", ["duration", "got 15"]),
    ("bad timeout", "verify_tls = true", 'timeout = "30"', "pbx.timeout", ["duration"]),
    ("interval and cron", 'interval = "15m"', 'interval = "15m"\ncron = "*/15 * * * *"', "sync.cron",
     ["not both"]),
    ("cron with 4 fields", 'interval = "15m"', 'cron = "*/15 * * *"', "sync.cron", ["crontab"]),
    ("cron out of range", 'interval = "15m"', 'cron = "0 25 * * *"', "sync.cron", ["crontab"]),
    ("bad region", 'default_region = "US"', 'default_region = "XX"', "sync.default_region", ['got "XX"']),
    ("bad state url", 'state_url = "sqlite:////var/lib/syncd/state.db"', 'state_url = "not a url"',
     "sync.state_url", ["SQLAlchemy URL"]),
    ("unknown dialect", 'state_url = "sqlite:////var/lib/syncd/state.db"', 'state_url = "sqllite:///x.db"',
     "sync.state_url", ['"sqllite"']),
    ("phonebooks not a list", "phonebooks = []", 'phonebooks = "Sales"', "sync.phonebooks", ["list"]),
    ("duplicate phonebook", "phonebooks = []", 'phonebooks = ["A", "A"]', "sync.phonebooks", ["twice"]),
    ("unknown key", 'client_id = "pbx-client-id"', 'client_id = "pbx-client-id"\nclientid = "x"',
     "pbx.clientid", ["unknown key"]),
    ("unknown section", "[fields]", "[feilds]", "feilds", ["unknown section", '"fields"']),
    ("unknown vendor table", "[vendors.leadfeeder]", "[vendors.hubspot]\n[vendors.leadfeeder]",
     "vendors.hubspot", ["unknown vendor", "insideview, leadfeeder, contactout"]),
    ("section as value", "[fields]", "[fields.email]", "fields.email", ['"fill_empty"']),
    ("unknown vendor in order", '"leadfeeder", "contactout"]', '"hubspot", "contactout"]', "enrich.order",
     ['"hubspot"', "known: insideview, leadfeeder, contactout"]),
    ("duplicate vendor in order", '"leadfeeder", "contactout"]', '"leadfeeder", "insideview"]',
     "enrich.order", ["twice"]),
    ("pbx base_url missing", 'base_url = "https://pbx.example.com:8088"\n', "", "pbx.base_url", ["required"]),
    ("pbx base_url not http", 'base_url = "https://pbx.example.com:8088"', 'base_url = "pbx.example.com"',
     "pbx.base_url", ["http(s) URL"]),
    ("client_id empty", 'client_id = "pbx-client-id"', 'client_id = ""', "pbx.client_id", ["non-empty"]),
    ("account id as number", 'account_id = "123456"', "account_id = 123456", "vendors.leadfeeder.account_id",
     ["digits"]),
    ("account id letters", 'account_id = "123456"', 'account_id = "abc"', "vendors.leadfeeder.account_id",
     ["digits"]),
    ("account id missing", 'account_id = "123456"\n', "", "vendors.leadfeeder.account_id", ["required"]),
    ("verify_tls wrong type", "verify_tls = true", "verify_tls = 1", "pbx.verify_tls", ["CA bundle"]),
    ("verify_tls missing file", "verify_tls = true", 'verify_tls = "/nonexistent/ca.pem"', "pbx.verify_tls",
     ["/nonexistent/ca.pem not found"]),
    ("two forms of a secret", 'token_env = "SYNCD_CONTACTOUT_TOKEN"',
     'token_env = "SYNCD_CONTACTOUT_TOKEN"\ntoken = "inline-token-xyz"', "vendors.contactout.token",
     ["only one of token, token_env or token_file"]),
    ("no secret", 'api_key_env = "SYNCD_LEADFEEDER_KEY"\n', "", "vendors.leadfeeder.api_key",
     ["required", "api_key_env"]),
    ("missing env var", 'client_secret_env = "SYNCD_PBX_SECRET"', 'client_secret_env = "SYNCD_NOT_SET"',
     "pbx.client_secret_env", ["SYNCD_NOT_SET is not set"]),
    ("missing secret file", 'client_secret_env = "SYNCD_INSIDEVIEW_SECRET"',
     'client_secret_file = "no-such-secret"', "vendors.insideview.client_secret_file", ["not found"]),
    ("metrics listen", "[vendors.insideview]", '[metrics]\nlisten = "9464"\n\n[vendors.insideview]',
     "metrics.listen", ["host:port"]),
    ("log format", "[vendors.insideview]", '[log]\nformat = "xml"\n\n[vendors.insideview]', "log.format",
     ['"auto"']),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "key", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_each_problem_is_a_config_error_naming_the_key(
    tmp_path: Path, old: str, new: str, key: str, words: list[str]
) -> None:
    error = config_error(edit(old, new), tmp_path)
    assert error.exit_code == EXIT_CONFIG
    assert error.key == key, str(error)
    for word in words:
        assert word in error.problem, str(error)
    message = str(error)
    assert message.startswith(f"{key}: ")
    assert "Traceback" not in message
    assert "pydantic" not in message


def test_order_listing_an_unconfigured_vendor(tmp_path: Path) -> None:
    error = config_error(without("[vendors.leadfeeder]"), tmp_path)
    assert error.key == "enrich.order"
    assert '"leadfeeder"' in error.problem
    assert "[vendors.leadfeeder]" in error.problem


def test_verify_emails_needs_contactout(tmp_path: Path) -> None:
    text = without("[vendors.contactout]", text=edit('"leadfeeder", "contactout"]', '"leadfeeder"]'))
    error = config_error(edit("[fields]", "verify_emails = true\n\n[fields]", text), tmp_path)
    assert error.key == "enrich.verify_emails"
    assert "[vendors.contactout]" in error.problem


def test_missing_pbx_table(tmp_path: Path) -> None:
    error = config_error('[sync]\ninterval = "1h"\n', tmp_path)
    assert error.key == "pbx"
    assert "required" in error.problem


def test_several_problems_are_one_error_one_line_each(tmp_path: Path) -> None:
    text = edit('interval = "15m"', 'interval = "soon"')
    text = edit("monthly_credit_budget = 5000", 'monthly_credit_budget = "lots"', text)
    text = edit("[fields]", "[fields]\ncolour = 1", text)
    error = config_error(text, tmp_path)
    assert isinstance(error, ConfigErrors)
    assert error.key == "sync.interval"
    assert [key for key, _ in error.issues] == [
        "sync.interval",
        "fields.colour",
        "vendors.insideview.monthly_credit_budget",
    ]
    lines = str(error).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("sync.interval: ")
    assert lines[1] == "fields.colour: unknown key"
    assert lines[2].startswith("vendors.insideview.monthly_credit_budget: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    assert info.value.key == ""
    assert str(info.value) == f"config file {path} not found"
    assert info.value.exit_code == EXIT_CONFIG


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ=ENV)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL, mode=0o000)
    if os.geteuid() == 0:  # root reads any file: simulate the refusal

        def refuse(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError, match="not readable"):
        load_config(path, environ=ENV)


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[sync]\ninterval = "15m"\nstate_url = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    assert info.value.key == ""
    assert "line 3, column 13" in str(info.value)
    assert str(path) in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_bytes(b'[pbx]\nclient_id = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path, environ=ENV)


def test_secret_written_where_its_env_var_name_belongs_is_not_echoed(tmp_path: Path) -> None:
    text = MINIMAL.replace('"SYNCD_PBX_SECRET"', '"x7f-Kq9s.secret-in-the-wrong-key"')
    error = config_error(text, tmp_path)
    assert error.key == "pbx.client_secret_env"
    assert "x7f-Kq9s" not in str(error)


def test_empty_env_var(tmp_path: Path) -> None:
    error = config_error(MINIMAL, tmp_path, environ={"SYNCD_PBX_SECRET": ""})
    assert error.key == "pbx.client_secret_env"
    assert "SYNCD_PBX_SECRET is empty" in error.problem


# --- secrets ----------------------------------------------------------------------------------------

FILE_SECRET = MINIMAL.replace('client_secret_env = "SYNCD_PBX_SECRET"', 'client_secret_file = "pbx-secret"')


def test_secret_from_a_file_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pbx-secret").write_text("file-secret-value\n\n")
    config = load_config(write(tmp_path, FILE_SECRET), environ={})
    assert config.pbx.client_secret == "file-secret-value\n"  # exactly one trailing newline stripped
    assert config.pbx.secret_source == f"file:{tmp_path / 'pbx-secret'}"


def test_secret_file_with_crlf_and_absolute_path(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "s"
    secret.parent.mkdir()
    secret.write_bytes(b"crlf-secret-value\r\n")
    text = FILE_SECRET.replace('"pbx-secret"', f'"{secret}"')
    config = load_config(write(tmp_path, text), environ={})
    assert config.pbx.client_secret == "crlf-secret-value"


def test_secret_from_credentials_directory_first(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pbx-secret").write_text("from-credentials-dir")
    (tmp_path / "pbx-secret").write_text("from-config-dir")
    config = load_config(write(tmp_path, FILE_SECRET), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.pbx.client_secret == "from-credentials-dir"


def test_secret_falls_back_to_config_dir_when_not_in_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (tmp_path / "pbx-secret").write_text("from-config-dir")
    config = load_config(write(tmp_path, FILE_SECRET), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.pbx.client_secret == "from-config-dir"


def test_empty_secret_file(tmp_path: Path) -> None:
    (tmp_path / "pbx-secret").write_text("\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FILE_SECRET), environ={})
    assert info.value.key == "pbx.client_secret_file"
    assert "is empty" in info.value.problem


def test_secret_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "pbx-secret").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FILE_SECRET), environ={})
    assert info.value.key == "pbx.client_secret_file"


INLINE = MINIMAL.replace('client_secret_env = "SYNCD_PBX_SECRET"', 'client_secret = "inline-pbx-secret-42"')


def test_insecure_permissions_warning_for_inline_secret(tmp_path: Path) -> None:
    path = write(tmp_path, INLINE, mode=0o644)
    with capture_logs() as events:
        config = load_config(path, environ={})
    assert config.pbx.client_secret == "inline-pbx-secret-42"
    assert config.inline_secrets == ["pbx.client_secret"]
    warned = [e for e in events if e["event"] == "config.insecure_permissions"]
    assert len(warned) == 1
    assert warned[0]["path"] == str(path)
    assert warned[0]["mode"] == "0644"
    assert warned[0]["log_level"] == "warning"
    assert "inline-pbx-secret-42" not in repr(warned[0])
    assert any("readable by group or others" in w and "0644" in w for w in config.warnings)
    assert not any("inline-pbx-secret-42" in w for w in config.warnings)


@pytest.mark.parametrize(("text", "mode"), [(INLINE, 0o600), (INLINE, 0o400), (MINIMAL, 0o644)])
def test_no_permissions_warning_for_private_file_or_env_secret(tmp_path: Path, text: str, mode: int) -> None:
    with capture_logs() as events:
        config = load_config(write(tmp_path, text, mode=mode), environ=ENV)
    assert not [e for e in events if e["event"] == "config.insecure_permissions"]
    assert not any("readable" in w for w in config.warnings)


@pytest.mark.parametrize("secret_mode", [0o644, 0o640, 0o604])
def test_insecure_permissions_warning_for_a_secret_file_readable_by_others(
    tmp_path: Path, secret_mode: int
) -> None:
    secret = tmp_path / "pbx-secret"
    secret.write_text("file-secret-value-31\n")
    secret.chmod(secret_mode)
    path = write(tmp_path, FILE_SECRET, mode=0o600)  # the config file itself is private
    with capture_logs() as events:
        config = load_config(path, environ={})
    assert config.pbx.client_secret == "file-secret-value-31"
    warned = [e for e in events if e["event"] == "config.insecure_permissions"]
    assert len(warned) == 1
    assert warned[0]["path"] == str(secret)
    assert warned[0]["mode"] == f"{secret_mode:04o}"
    assert warned[0]["keys"] == "pbx.client_secret_file"
    assert warned[0]["log_level"] == "warning"
    [warning] = [w for w in config.warnings if "readable by group or others" in w]
    assert str(secret) in warning and f"{secret_mode:04o}" in warning and "chmod 600" in warning
    assert "file-secret-value-31" not in repr(events) + " ".join(config.warnings)


@pytest.mark.parametrize("secret_mode", [0o600, 0o400])
def test_no_permissions_warning_for_a_private_secret_file(tmp_path: Path, secret_mode: int) -> None:
    secret = tmp_path / "pbx-secret"
    secret.write_text("file-secret-value-32\n")
    secret.chmod(secret_mode)
    with capture_logs() as events:
        config = load_config(write(tmp_path, FILE_SECRET, mode=0o644), environ={})
    assert not [e for e in events if e["event"] == "config.insecure_permissions"]
    assert not any("readable" in w for w in config.warnings)


def test_password_in_state_url_counts_as_inline_secret_and_is_masked(tmp_path: Path) -> None:
    text = '[sync]\nstate_url = "postgresql+psycopg://syncd:db-password-77@db.example.com/syncd"\n' + MINIMAL
    with capture_logs() as events:
        config = load_config(write(tmp_path, text, mode=0o604), environ=ENV)
    assert config.inline_secrets == ["sync.state_url"]
    assert [e["event"] for e in events] == ["config.insecure_permissions"]
    assert "db-password-77" not in repr(config)
    assert "db.example.com" in repr(config)
    assert config.sync.state_url.endswith(":db-password-77@db.example.com/syncd")  # usable as is


def test_unparseable_state_url_is_not_echoed(tmp_path: Path) -> None:
    text = '[sync]\nstate_url = "postgresql://syncd:pw-in-url-88@db:notaport/syncd"\n' + MINIMAL
    error = config_error(text, tmp_path)
    assert error.key == "sync.state_url"
    assert "pw-in-url-88" not in str(error)


def test_secrets_never_in_repr_str_or_dump(tmp_path: Path) -> None:
    (tmp_path / "lf-key").write_text("leadfeeder-file-key-5\n")
    text = edit('client_secret_env = "SYNCD_PBX_SECRET"', 'client_secret = "inline-pbx-secret-6"')
    text = edit('api_key_env = "SYNCD_LEADFEEDER_KEY"', 'api_key_file = "lf-key"', text)
    config = load_config(write(tmp_path, text), environ=ENV)
    secrets = [
        "inline-pbx-secret-6",
        "insideview-secret-value-2",
        "contactout-token-value-3",
        "leadfeeder-file-key-5",
    ]
    assert config.pbx.client_secret == secrets[0]
    assert config.vendors.leadfeeder is not None
    assert config.vendors.leadfeeder.api_key == secrets[3]
    rendered = [
        repr(config),
        str(config),
        repr(config.pbx),
        str(config.vendors),
        repr(config.model_dump()),
        config.model_dump_json(),
        *config.warnings,
    ]
    for text_out in rendered:
        for secret in secrets:
            assert secret not in text_out


def test_wrong_type_for_an_inline_secret_does_not_echo_it(tmp_path: Path) -> None:
    text = MINIMAL.replace('client_secret_env = "SYNCD_PBX_SECRET"', "client_secret = 982734987234")
    error = config_error(text, tmp_path)
    assert error.key == "pbx.client_secret"
    assert "982734987234" not in str(error)


# --- the shipped example, durations, path default ---------------------------------------------------


def test_example_file_parses(tmp_path: Path) -> None:
    config = load_config(REPO / "config" / "syncd.example.toml", environ=ENV)
    assert config.enabled_vendors() == [Vendor.insideview, Vendor.leadfeeder, Vendor.contactout]
    assert config.warnings == []
    assert config.pbx.client_secret == ENV["SYNCD_PBX_SECRET"]
    # the example states the defaults: it must describe the same config as an empty [sync] etc.
    minimal = CONTRACT_TOML.replace("[pbx]", "[pbx]\n", 1)
    defaults = parse(minimal, tmp_path)
    assert config.sync == defaults.sync
    assert config.enrich == defaults.enrich
    assert config.fields == defaults.fields
    assert config.metrics == defaults.metrics
    assert config.log == defaults.log
    for vendor in Vendor:
        mine, theirs = config.vendor(vendor), defaults.vendor(vendor)
        assert mine is not None
        assert theirs is not None
        assert mine.model_dump(exclude={"client_id"}) == theirs.model_dump(exclude={"client_id"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("30d", timedelta(days=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0s", "0d0h", "-5m", "abc", "15", "15ms", "m", "1y", "9999999999999d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_default_config_path() -> None:
    assert default_config_path({}) == DEFAULT_CONFIG_PATH == Path("/etc/syncd/syncd.toml")
    assert default_config_path({"SYNCD_CONFIG": "/srv/s.toml"}) == Path("/srv/s.toml")
