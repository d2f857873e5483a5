"""The configuration: a TOML file loaded into a validated, typed, immutable model.

Every problem becomes one `ConfigError(key, problem)` naming the dotted key (`vendors.insideview.
monthly_credit_budget`) and what is wrong with it; several problems are reported together, one a line.
The CLI turns it into exit status 78, which systemd's `RestartPreventExitStatus=78` does not restart.

Types are strict: a string where a number belongs, or `1` where a boolean belongs, is an error, never
silently coerced. Unknown sections and keys are errors (typos must not be ignored).

Secrets (`client_secret`, `token`, `api_key`) are given inline, as `NAME_env` (an environment variable)
or as `NAME_file` (a file; relative names are looked up in systemd's `$CREDENTIALS_DIRECTORY` first,
then next to the config file). Each resolved secret is registered with the log redactor, is readable
as a plain `str` attribute, and never appears in a repr, a dump or an error message.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from syncd.errors import ConfigError
from syncd.http import HttpSettings
from syncd.logs import get_logger, register_secret
from syncd.merge import Policy, TitleTarget
from syncd.model import Vendor
from syncd.normalize import NumberFormat

log = get_logger("syncd.config")

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.toml")
DEFAULT_STATE_URL = "sqlite:////var/lib/syncd/state.db"
KNOWN_VENDORS = tuple(v.value for v in Vendor)  # the contract's waterfall order

_INLINE = "inline"  # source of a secret written in the config file itself
_ERROR = "syncd_config"  # pydantic error type of the problems raised by this module's validators


# --- small enums ------------------------------------------------------------------------------------


# The merge owns the meaning of these; the config only names them.
FieldPolicy = Policy


class LogFormat(StrEnum):
    auto = "auto"  # JSON lines unless stdout is a terminal
    json = "json"
    console = "console"


# --- validation context -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    environ: Mapping[str, str]
    base_dir: Path  # relative paths in the config resolve against this (the config file's directory)
    credentials_dir: Path | None  # systemd's $CREDENTIALS_DIRECTORY


def _context(info: ValidationInfo) -> _Context:
    ctx = info.context.get("syncd") if isinstance(info.context, dict) else None
    if isinstance(ctx, _Context):
        return ctx
    environ = os.environ
    creds = environ.get("CREDENTIALS_DIRECTORY")
    return _Context(environ=environ, base_dir=Path.cwd(), credentials_dir=Path(creds) if creds else None)


def _problem(problem: str, key: str | None = None) -> PydanticCustomError:
    """A validation error whose message is `problem`, optionally for a sub-key (dotted, relative)."""
    ctx: dict[str, Any] = {"problem": problem}
    if key:
        ctx["key"] = key
    return PydanticCustomError(_ERROR, "{problem}", ctx)


def _show(value: Any, limit: int = 60) -> str:
    """A value as the operator wrote it in TOML, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (datetime, date, time)):
        text = value.isoformat()
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v, limit) for v in value) + "]"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _expect(expect: str, *, secret: bool = False) -> dict[str, Any]:
    return {"expect": expect, "secret": secret}


# --- durations --------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*[smhd])+\s*")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_HINT = 'a duration such as "30s", "15m", "2h", "30d" or "1h30m"'


def _duration_or_none(text: str) -> timedelta | None:
    """The duration in `text`, or None when it is not one. Zero is returned as is."""
    lowered = text.lower()
    if not _DURATION_RE.fullmatch(lowered):
        return None
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(lowered))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return None


def parse_duration(text: str) -> timedelta:
    """'30s', '15m', '2h', '30d', '1h30m' (also '1.5h') as a positive timedelta; ValueError otherwise."""
    value = _duration_or_none(text) if isinstance(text, str) else None
    if value is None:
        raise ValueError(f"{_show(text)} is not {_DURATION_HINT}")
    if value <= timedelta(0):
        raise ValueError(f"{_show(text)} is not a positive duration")
    return value


def _validate_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta) and value > timedelta(0):  # programmatic construction
        return value
    parsed = _duration_or_none(value) if isinstance(value, str) else None
    if parsed is None:
        raise _problem(f"must be {_DURATION_HINT}, got {_show(value)}")
    if parsed <= timedelta(0):
        raise _problem(f"must be a duration greater than zero, got {_show(value)}")
    return parsed


Duration = Annotated[timedelta, BeforeValidator(_validate_duration)]


# --- other value types ------------------------------------------------------------------------------


def _validate_http_url(value: Any) -> str:
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        try:
            parts.port  # noqa: B018 (raises ValueError on a bad port)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if ok and not parts.query and not parts.fragment:
            return value.strip().rstrip("/")
    raise _problem(f'must be an http(s) URL such as "https://host.example.com:8088", got {_show(value)}')


HttpUrl = Annotated[str, BeforeValidator(_validate_http_url)]


def _validate_verify_tls(value: Any, info: ValidationInfo) -> bool | str:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _problem(f"must be true, false or the path of a CA bundle file, got {_show(value)}")
    if value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        raise _problem(
            f"must be true or false without quotes, or the path of a CA bundle file, got {_show(value)}"
        )
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = _context(info).base_dir / path
    if not path.exists():
        raise _problem(f"CA bundle {path} not found")
    if not path.is_file():
        raise _problem(f"CA bundle {path} is not a file")
    if not os.access(path, os.R_OK):
        raise _problem(f"CA bundle {path} is not readable")
    return str(path)


VerifyTls = Annotated[bool | str, BeforeValidator(_validate_verify_tls)]


def _validate_state_url(value: Any) -> str:
    from sqlalchemy.engine import make_url

    # never echo the value: a database URL may carry a password
    hint = 'must be an SQLAlchemy URL such as "sqlite:////var/lib/syncd/state.db"'
    if not isinstance(value, str):
        raise _problem(f"{hint}, got {_show(value)}")
    if not value.strip():
        raise _problem(f"{hint}, got an empty string")
    try:
        url = make_url(value)
    except Exception:  # sqlalchemy raises ArgumentError, and ValueError on a bad port
        raise _problem(f"{hint} (the value could not be parsed as a URL)") from None
    if url.password:
        register_secret(str(url.password))
    try:
        url.get_dialect()  # loads the dialect module only: no driver, no connection
    except Exception:
        raise _problem(
            f'unknown database dialect "{url.drivername}" (use e.g. "sqlite:////var/lib/syncd/state.db" '
            'or "postgresql+psycopg://syncd@db.example.com/syncd")'
        ) from None
    return value


def _validate_region(value: Any) -> str:
    import phonenumbers

    if isinstance(value, str) and value.upper() in phonenumbers.SUPPORTED_REGIONS:
        return value.upper()
    raise _problem(f'must be a two-letter region code such as "US", "GB" or "DE", got {_show(value)}')


def _validate_cron(value: Any) -> str:
    from apscheduler.triggers.cron import CronTrigger

    if not isinstance(value, str):
        raise _problem(f'must be a crontab expression such as "*/15 * * * *", got {_show(value)}')
    try:
        CronTrigger.from_crontab(value, timezone="UTC")  # syntax only: the daemon picks the time zone
    except ValueError as exc:
        raise _problem(f"not a valid 5-field crontab expression ({exc}), got {_show(value)}") from None
    return value


def _validate_phonebooks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _problem(f'must be a list of phonebook names such as ["Sales", "Support"], got {_show(value)}')
    seen: set[str] = set()
    for name in value:
        if name in seen:
            raise _problem(f"phonebook {_show(name)} is listed twice")
        seen.add(name)
    return tuple(value)


def _validate_order(value: Any) -> tuple[Vendor, ...]:
    known = ", ".join(KNOWN_VENDORS)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _problem(f"must be a list of vendor names (known: {known}), got {_show(value)}")
    order: list[Vendor] = []
    for name in value:
        if name not in KNOWN_VENDORS:
            raise _problem(f"unknown vendor {_show(name)} (known: {known})")
        vendor = Vendor(name)
        if vendor in order:
            raise _problem(f"vendor {_show(name)} is listed twice")
        order.append(vendor)
    return tuple(order)


_LISTEN_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})")


def _validate_listen(value: Any) -> str:
    match = _LISTEN_RE.fullmatch(value) if isinstance(value, str) else None
    if isinstance(value, str) and match and 1 <= int(match[2]) <= 65535:
        return value
    raise _problem(f'must be "host:port" such as "127.0.0.1:9464" or "[::1]:9464", got {_show(value)}')


def _validate_digits(value: Any) -> str:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    raise _problem(f'must be a string of digits such as "123456" (quoted), got {_show(value)}')


# --- sections ---------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, validate_default=False)


class _SecretSection(_Section):
    """A section with one secret given as NAME, NAME_env or NAME_file (exactly one of them).

    The inline form is stored in the field `<NAME>_inline` (alias NAME, never in repr or dumps); the
    resolved value is private and read through the subclass's property NAME.
    """

    _CREDENTIAL: ClassVar[str]
    _secret: str = PrivateAttr(default="")
    _secret_source: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _resolve_secret(self, info: ValidationInfo) -> Self:
        name = self._CREDENTIAL
        ctx = _context(info)
        forms = [
            (name, getattr(self, f"{name}_inline")),
            (f"{name}_env", getattr(self, f"{name}_env")),
            (f"{name}_file", getattr(self, f"{name}_file")),
        ]
        given = [(key, value) for key, value in forms if value is not None]
        if not given:
            raise _problem(f"required: set one of {name}, {name}_env or {name}_file", key=name)
        if len(given) > 1:
            found = " and ".join(key for key, _ in given)
            raise _problem(f"give only one of {name}, {name}_env or {name}_file (found {found})", key=name)
        key, value = given[0]
        if key == name:
            secret, source = value, _INLINE
        elif key.endswith("_env"):
            secret, source = _secret_from_env(value, key, ctx), f"env:{value}"
        else:
            path = _secret_path(value, ctx)
            secret, source = _secret_from_file(path, key), f"file:{path}"
        register_secret(secret)
        self._secret = secret
        self._secret_source = source
        return self

    @property
    def secret_source(self) -> str:
        """Where the secret came from: "inline", "env:NAME" or "file:/path" (never the value)."""
        return self._secret_source


_ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")


def _secret_from_env(name: str, key: str, ctx: _Context) -> str:
    value = ctx.environ.get(name)
    if value is None and not _ENV_NAME_RE.fullmatch(name):
        # not echoed: an operator may have written the secret itself where its variable's name belongs
        raise _problem(
            "names no set environment variable, and does not look like one (A-Z, 0-9, _): "
            "is it the secret itself? Then use the inline or the _file form",
            key=key,
        )
    if value is None:
        raise _problem(f"environment variable {name} is not set", key=key)
    if not value:
        raise _problem(f"environment variable {name} is empty", key=key)
    return value


def _secret_path(value: str, ctx: _Context) -> Path:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    if ctx.credentials_dir is not None and (ctx.credentials_dir / path).exists():
        return ctx.credentials_dir / path
    return ctx.base_dir / path


def _secret_from_file(path: Path, key: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _problem(f"secret file {path} not found", key=key) from None
    except IsADirectoryError:
        raise _problem(f"secret file {path} is a directory", key=key) from None
    except PermissionError:
        raise _problem(f"secret file {path} is not readable (permission denied)", key=key) from None
    except OSError as exc:
        raise _problem(f"secret file {path} cannot be read ({exc.strerror})", key=key) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _problem(f"secret file {path} is not UTF-8 text", key=key) from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise _problem(f"secret file {path} is empty", key=key)
    return text


_NONEMPTY = "a non-empty string"


def _inline_secret(name: str) -> Any:
    """The field of a secret written inline: alias `name`, never in a repr or a dump."""
    return Field(
        None,
        alias=name,
        min_length=1,
        repr=False,
        exclude=True,
        json_schema_extra=_expect(_NONEMPTY, secret=True),
    )


_RATE = "a number of requests per second > 0"
_CONCURRENCY = "an integer from 1 to 64"
_BUDGET = "an integer ≥ 0 (credits per calendar month)"


class SyncConfig(_Section):
    interval: Duration | None = None  # None when cron is given; 15m when neither is
    cron: Annotated[str, BeforeValidator(_validate_cron)] | None = None
    state_url: Annotated[str, BeforeValidator(_validate_state_url)] = Field(DEFAULT_STATE_URL, repr=False)
    default_region: Annotated[str, BeforeValidator(_validate_region)] = "US"
    phonebooks: Annotated[tuple[str, ...], BeforeValidator(_validate_phonebooks)] = ()
    run_at_start: bool = Field(True, json_schema_extra=_expect("true or false"))
    misfire_grace: Duration | None = None  # None: the daemon derives it from the schedule
    mass_loss_ratio: float = Field(
        0.5, gt=0, le=1, allow_inf_nan=False, json_schema_extra=_expect("a number > 0 and ≤ 1")
    )
    mass_loss_min_known: int = Field(20, ge=0, json_schema_extra=_expect("an integer ≥ 0"))
    takeover_ratio: float = Field(
        0.5, gt=0, le=1, allow_inf_nan=False, json_schema_extra=_expect("a number > 0 and ≤ 1")
    )
    takeover_min_fields: int = Field(20, ge=0, json_schema_extra=_expect("an integer ≥ 0"))
    number_format: NumberFormat = Field(
        NumberFormat.e164, strict=False, json_schema_extra=_expect('"e164", "international" or "national"')
    )
    title_target: TitleTarget = Field(
        TitleTarget.remark, strict=False, json_schema_extra=_expect('"remark", "field" or "none"')
    )
    push_concurrency: int = Field(4, ge=1, le=32, json_schema_extra=_expect("an integer from 1 to 32"))

    @model_validator(mode="after")
    def _schedule(self) -> Self:
        if self.interval is not None and self.cron is not None:
            raise _problem("give either sync.interval or sync.cron, not both", key="cron")
        if self.interval is None and self.cron is None:
            self.__dict__["interval"] = timedelta(minutes=15)
        return self

    def __repr_args__(self) -> Any:
        from sqlalchemy.engine import make_url

        yield from super().__repr_args__()
        yield "state_url", make_url(self.state_url).render_as_string(hide_password=True)


class PbxConfig(_SecretSection):
    _CREDENTIAL: ClassVar[str] = "client_secret"

    base_url: HttpUrl
    client_id: str = Field(min_length=1, json_schema_extra=_expect(_NONEMPTY))
    client_secret_inline: str | None = _inline_secret("client_secret")
    client_secret_env: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    client_secret_file: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    verify_tls: VerifyTls = True
    timeout: Duration = timedelta(seconds=30)
    rate_limit: float = Field(20.0, gt=0, allow_inf_nan=False, json_schema_extra=_expect(_RATE))
    page_size: int = Field(10000, ge=1, le=10000, json_schema_extra=_expect("an integer from 1 to 10000"))

    @property
    def client_secret(self) -> str:
        return self._secret

    def http_settings(self) -> HttpSettings:
        return _http("pbx", self.base_url, timeout=self.timeout, verify=self.verify_tls, rate=self.rate_limit)


class EnrichConfig(_Section):
    # None in the file = every configured vendor in the contract's order; always a tuple after loading
    order: Annotated[tuple[Vendor, ...], BeforeValidator(_validate_order)] | None = None
    refresh_after: Duration = timedelta(days=30)
    retry_not_found_after: Duration = timedelta(days=14)
    verify_emails: bool = Field(False, json_schema_extra=_expect("true or false"))


_POLICY = '"fill_empty", "refresh" or "never"'


class FieldsConfig(_Section):
    email: FieldPolicy = Field(FieldPolicy.fill_empty, strict=False, json_schema_extra=_expect(_POLICY))
    numbers: FieldPolicy = Field(FieldPolicy.fill_empty, strict=False, json_schema_extra=_expect(_POLICY))
    title: FieldPolicy = Field(FieldPolicy.fill_empty, strict=False, json_schema_extra=_expect(_POLICY))


class InsideViewConfig(_SecretSection):
    _CREDENTIAL: ClassVar[str] = "client_secret"
    vendor: ClassVar[Vendor] = Vendor.insideview

    base_url: HttpUrl = "https://api.insideview.com"
    login_url: HttpUrl = "https://login.insideview.com"
    client_id: str = Field(min_length=1, json_schema_extra=_expect(_NONEMPTY))
    client_secret_inline: str | None = _inline_secret("client_secret")
    client_secret_env: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    client_secret_file: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    monthly_credit_budget: int | None = Field(None, ge=0, json_schema_extra=_expect(_BUDGET))
    rate_limit: float = Field(5.0, gt=0, allow_inf_nan=False, json_schema_extra=_expect(_RATE))
    max_concurrency: int = Field(4, ge=1, le=64, json_schema_extra=_expect(_CONCURRENCY))
    job_threshold: int = Field(2000, ge=1, json_schema_extra=_expect("an integer ≥ 1"))
    verify_tls: VerifyTls = True
    timeout: Duration = timedelta(seconds=30)

    @property
    def client_secret(self) -> str:
        return self._secret

    def http_settings(self) -> HttpSettings:
        """The data API (service "insideview")."""
        return _http(
            "insideview",
            self.base_url,
            timeout=self.timeout,
            verify=self.verify_tls,
            rate=self.rate_limit,
            max_concurrency=self.max_concurrency,
        )

    def login_http_settings(self) -> HttpSettings:
        """The token endpoint (service "insideview-login"): rare calls, one at a time."""
        return _http(
            "insideview-login",
            self.login_url,
            timeout=self.timeout,
            verify=self.verify_tls,
            rate=None,
            max_concurrency=1,
        )


class ContactOutConfig(_SecretSection):
    _CREDENTIAL: ClassVar[str] = "token"
    vendor: ClassVar[Vendor] = Vendor.contactout

    base_url: HttpUrl = "https://api.contactout.com"
    token_inline: str | None = _inline_secret("token")
    token_env: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    token_file: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    monthly_credit_budget: int | None = Field(None, ge=0, json_schema_extra=_expect(_BUDGET))
    rate_limit: float = Field(1000 / 60, gt=0, allow_inf_nan=False, json_schema_extra=_expect(_RATE))
    checker_rate_limit: float = Field(2.5, gt=0, allow_inf_nan=False, json_schema_extra=_expect(_RATE))
    max_concurrency: int = Field(8, ge=1, le=64, json_schema_extra=_expect(_CONCURRENCY))
    verify_tls: VerifyTls = True
    timeout: Duration = timedelta(seconds=30)

    @property
    def token(self) -> str:
        return self._secret

    def http_settings(self) -> HttpSettings:
        """Person lookups (service "contactout", `rate_limit`)."""
        return self._settings(self.rate_limit)

    def checker_http_settings(self) -> HttpSettings:
        """The email verifier endpoint (`checker_rate_limit`)."""
        return self._settings(self.checker_rate_limit)

    def _settings(self, rate: float) -> HttpSettings:
        return _http(
            "contactout",
            self.base_url,
            timeout=self.timeout,
            verify=self.verify_tls,
            rate=rate,
            max_concurrency=self.max_concurrency,
        )


class LeadfeederConfig(_SecretSection):
    _CREDENTIAL: ClassVar[str] = "api_key"
    vendor: ClassVar[Vendor] = Vendor.leadfeeder

    base_url: HttpUrl = "https://api.leadfeeder.com"
    api_key_inline: str | None = _inline_secret("api_key")
    api_key_env: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    api_key_file: str | None = Field(None, min_length=1, json_schema_extra=_expect(_NONEMPTY))
    account_id: Annotated[str, BeforeValidator(_validate_digits)]
    monthly_credit_budget: int | None = Field(None, ge=0, json_schema_extra=_expect(_BUDGET))
    rate_limit: float = Field(10.0, gt=0, allow_inf_nan=False, json_schema_extra=_expect(_RATE))
    burst: int = Field(15, ge=1, le=1000, json_schema_extra=_expect("an integer from 1 to 1000"))
    max_concurrency: int = Field(4, ge=1, le=64, json_schema_extra=_expect(_CONCURRENCY))
    verify_tls: VerifyTls = True
    timeout: Duration = timedelta(seconds=30)

    @property
    def api_key(self) -> str:
        return self._secret

    def http_settings(self) -> HttpSettings:
        return _http(
            "leadfeeder",
            self.base_url,
            timeout=self.timeout,
            verify=self.verify_tls,
            rate=self.rate_limit,
            max_concurrency=self.max_concurrency,
            burst=self.burst,
        )


VendorConfig = InsideViewConfig | ContactOutConfig | LeadfeederConfig


class VendorsConfig(_Section):
    """One optional table per vendor; an absent table disables the vendor."""

    insideview: InsideViewConfig | None = None
    leadfeeder: LeadfeederConfig | None = None
    contactout: ContactOutConfig | None = None

    def get(self, vendor: Vendor | str) -> VendorConfig | None:
        config: VendorConfig | None = getattr(self, Vendor(vendor).value)
        return config

    def configured(self) -> list[Vendor]:
        """Vendors with a table, in the contract's order."""
        return [v for v in Vendor if self.get(v) is not None]


class MetricsConfig(_Section):
    enabled: bool = Field(False, json_schema_extra=_expect("true or false"))
    listen: Annotated[str, BeforeValidator(_validate_listen)] = "127.0.0.1:9464"

    @property
    def host(self) -> str:
        host = self.listen.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LogConfig(_Section):
    format: LogFormat = Field(
        LogFormat.auto, strict=False, json_schema_extra=_expect('"auto", "json" or "console"')
    )


class Config(_Section):
    sync: SyncConfig = Field(default_factory=SyncConfig)
    pbx: PbxConfig
    enrich: EnrichConfig = Field(default_factory=EnrichConfig)
    fields: FieldsConfig = Field(default_factory=FieldsConfig)
    vendors: VendorsConfig = Field(default_factory=VendorsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    _path: Path = PrivateAttr(default=Path())
    _warnings: list[str] = PrivateAttr(default_factory=list)
    _inline_secrets: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        from sqlalchemy.engine import make_url

        if make_url(self.sync.state_url).password:
            self._inline_secrets.append("sync.state_url")
        for key, section in self.secret_sections():
            if section.secret_source == _INLINE:
                self._inline_secrets.append(f"{key}.{section._CREDENTIAL}")
        configured = self.vendors.configured()
        if self.enrich.order is None:
            self.enrich.__dict__["order"] = tuple(configured)
        else:
            for vendor in self.enrich.order:
                if vendor not in configured:
                    raise _problem(
                        f'vendor "{vendor}" is listed but [vendors.{vendor}] is not configured '
                        "(add the table or remove the vendor from the order)",
                        key="enrich.order",
                    )
            for vendor in configured:
                if vendor not in self.enrich.order:
                    self._warnings.append(
                        f"[vendors.{vendor}] is configured but not listed in enrich.order: it will not be used"
                    )
        if self.enrich.verify_emails and Vendor.contactout not in configured:
            raise _problem(
                "ContactOut's email checker needs a [vendors.contactout] table", key="enrich.verify_emails"
            )
        if not configured:
            self._warnings.append("no [vendors.*] table is configured: contacts will not be enriched")
        return self

    @property
    def path(self) -> Path:
        """The file the config was loaded from."""
        return self._path

    @property
    def warnings(self) -> list[str]:
        """Problems that do not stop syncd (e.g. a world-readable file holding a secret)."""
        return self._warnings

    @property
    def inline_secrets(self) -> list[str]:
        """The keys whose secret value is written in the config file itself."""
        return list(self._inline_secrets)

    def secret_sections(self) -> list[tuple[str, PbxConfig | VendorConfig]]:
        """("pbx", …), ("vendors.insideview", …): every configured section that holds a secret."""
        sections: list[tuple[str, PbxConfig | VendorConfig]] = [("pbx", self.pbx)]
        for vendor in self.vendors.configured():
            section = self.vendors.get(vendor)
            if section is not None:
                sections.append((f"vendors.{vendor}", section))
        return sections

    def enabled_vendors(self) -> list[Vendor]:
        """The vendors to ask, in waterfall order."""
        return list(self.enrich.order or ())

    def vendor(self, vendor: Vendor | str) -> VendorConfig | None:
        return self.vendors.get(vendor)


def _http(
    service: str,
    base_url: str,
    *,
    timeout: timedelta,
    verify: bool | str,
    rate: float | None,
    max_concurrency: int = 8,
    burst: int = 1,
) -> HttpSettings:
    seconds = timeout.total_seconds()
    return HttpSettings(
        service=service,
        base_url=base_url,
        timeout=seconds,
        connect_timeout=min(10.0, seconds),
        verify=verify,
        rate_per_second=rate,
        burst=burst,
        max_concurrency=max_concurrency,
    )


# --- error reporting --------------------------------------------------------------------------------


class ConfigErrors(ConfigError):
    """Several config problems at once; `key`/`problem` are the first, `issues` has them all."""

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        self.issues = issues
        key, problem = issues[0]
        rest = "".join(f"\n{k}: {p}" if k else f"\n{p}" for k, p in issues[1:])
        super().__init__(key, problem + rest)


_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
}


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _walk(loc: tuple[str | int, ...]) -> FieldInfo | None:
    """The field named by `loc` (None for list items and unknown keys)."""
    model: type[BaseModel] | None = Config
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int) or model is None:
            return None
        info = _fields_by_key(model).get(part)
        model = _submodel(info.annotation) if info is not None else None
    return info


def _format_key(loc: tuple[str | int, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


def _describe(error: ErrorDetails) -> tuple[str, str]:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    info = _walk(loc)
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    secret = bool(extra.get("secret"))
    got = "" if secret else f", got {_show(value)}"

    if kind == _ERROR:
        sub = ctx.get("key")
        key = _format_key(loc + tuple(str(sub).split("."))) if sub else _format_key(loc)
        return key, str(ctx["problem"])
    key = _format_key(loc)
    if kind == "missing":
        if info is not None and _submodel(info.annotation) is not None:
            return key, f"required: the [{key}] table is missing"
        return key, "required"
    if kind == "extra_forbidden":
        return key, _unknown(loc, value)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return key, f"must be a table ([{key}]){got}"
    expect = extra.get("expect")
    if expect:
        return key, f"must be {expect}{got}"
    if kind in _TYPE_WORDS:
        return key, f"must be {_TYPE_WORDS[kind]}{got}"
    message = error["msg"]
    message = message[:1].lower() + message[1:]
    return key, f"{message}{got}"


def _unknown(loc: tuple[str | int, ...], value: Any) -> str:
    name = str(loc[-1])
    if loc[:-1] == ("vendors",):
        return f"unknown vendor [vendors.{name}] (known: {', '.join(KNOWN_VENDORS)})"
    if len(loc) == 1:
        model: type[BaseModel] | None = Config
    else:
        container = _walk(loc[:-1])
        model = _submodel(container.annotation) if container is not None else None
    what = "section" if len(loc) == 1 and isinstance(value, dict) else "key"
    close = difflib.get_close_matches(name, list(_fields_by_key(model)), n=1, cutoff=0.6) if model else []
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"unknown {what}{hint}"


def _config_error(exc: ValidationError) -> ConfigError:
    issues: list[tuple[str, str]] = []
    seen: set[str] = set()
    for error in exc.errors():
        key, problem = _describe(error)
        if key in seen:  # unions report one error per member: keep the first
            continue
        seen.add(key)
        issues.append((key, problem))
    if len(issues) == 1:
        return ConfigError(*issues[0])
    return ConfigErrors(issues)


# --- loading ----------------------------------------------------------------------------------------

_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END_RE = re.compile(r"\s*\(at end of document\)\s*$")


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$SYNCD_CONFIG`, else /etc/syncd/syncd.toml."""
    value = (os.environ if environ is None else environ).get("SYNCD_CONFIG")
    return Path(value) if value else DEFAULT_CONFIG_PATH


def parse_config(text: str, *, source: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate TOML `text` as read from `source` (relative paths resolve against its directory)."""
    source = Path(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", _toml_problem(source, str(exc))) from None
    env = os.environ if environ is None else environ
    creds = env.get("CREDENTIALS_DIRECTORY")
    ctx = _Context(
        environ=env,
        base_dir=source.parent.absolute(),
        credentials_dir=Path(creds) if creds else None,
    )
    try:
        config = Config.model_validate(data, context={"syncd": ctx})
    except ValidationError as exc:
        raise _config_error(exc) from None
    config._path = source
    return config


def _toml_problem(source: Path, message: str) -> str:
    match = _TOML_POS_RE.search(message)
    if match:
        reason = message[: match.start()]
        return f"{source}: invalid TOML at line {match[1]}, column {match[2]}: {reason}"
    match = _TOML_END_RE.search(message)
    if match:
        return f"{source}: invalid TOML at the end of the file: {message[: match.start()]}"
    return f"{source}: invalid TOML: {message}"


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file at `path`; raises `ConfigError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError("", f"config file {path} is a directory") from None
    except PermissionError:
        raise ConfigError("", f"config file {path} is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError("", f"config file {path} cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    config = parse_config(text, source=path, environ=environ)
    inline = config.inline_secrets
    if inline and mode & 0o044:
        log.warning("config.insecure_permissions", path=str(path), mode=f"{mode:04o}", keys=",".join(inline))
        config.warnings.append(
            f"{path} holds an inline secret ({', '.join(inline)}) and is readable by group or others "
            f"(mode {mode:04o}): chmod 600 it, or use *_env / *_file"
        )
    _warn_open_secret_files(config)
    return config


def _warn_open_secret_files(config: Config) -> None:
    """A `*_file` secret readable by group or others gets the inline secret's warning."""
    for key, section in config.secret_sections():
        source = section.secret_source
        if not source.startswith("file:"):
            continue
        secret_path = Path(source.removeprefix("file:"))
        try:
            mode = secret_path.stat().st_mode & 0o777
        except OSError:
            continue  # it was read a moment ago; a file gone since is the next run's problem
        if mode & 0o044:
            keys = f"{key}.{section._CREDENTIAL}_file"
            log.warning("config.insecure_permissions", path=str(secret_path), mode=f"{mode:04o}", keys=keys)
            config.warnings.append(
                f"{secret_path} holds a secret ({keys}) and is readable by group or others "
                f"(mode {mode:04o}): chmod 600 it"
            )


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_URL",
    "KNOWN_VENDORS",
    "Config",
    "ConfigErrors",
    "ContactOutConfig",
    "EnrichConfig",
    "FieldPolicy",
    "FieldsConfig",
    "InsideViewConfig",
    "LeadfeederConfig",
    "LogConfig",
    "LogFormat",
    "MetricsConfig",
    "PbxConfig",
    "SyncConfig",
    "TitleTarget",
    "VendorConfig",
    "VendorsConfig",
    "default_config_path",
    "load_config",
    "parse_config",
    "parse_duration",
]
