"""structlog, configured once; and the redaction every log line and error message goes through.

Two layers of redaction:
- known values: every secret the config resolved (and every token a client minted) is registered
  with `register_secret`, and any occurrence in any string is replaced;
- patterns: `access_token=…`, `refresh_token=…`, `clientSecret=…`, `token: …`, `X-Api-Key: …`,
  `Authorization: …`, `"password": "…"` and friends, so that a secret we never saw still does not leak
  (httpx embeds full URLs, query strings included, in its exception text).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO, cast

import structlog

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary text
# Tokens minted at run time (a PBX token pair every half hour, for months, in the daemon): only the most
# recent are kept, long expired ones are dropped. Unbounded, every new token recompiled an ever longer
# pattern (0.2 s a token after a thousand, and `re`'s cache kept hundreds of those patterns alive).
_MAX_TOKENS = 32

_secrets: set[str] = set()  # configured secrets: for the life of the process
_tokens: dict[str, None] = {}  # minted tokens, oldest first, at most _MAX_TOKENS
_secrets_lock = threading.Lock()
_secret_re: re.Pattern[str] | None = None

# names of secret-bearing keys, not secrets themselves
_SECRET_KEYS = "|".join(
    [
        r"access_?token",
        r"refresh_?token",
        r"accessToken",
        r"client_?secret",
        r"clientSecret",
        r"password",
        r"passwd",
        r"secret",
        r"api_?key",
        r"x-api-key",
        r"token",
        r"authorization",
    ]
)
# key=value in query strings and form bodies
_QUERY_RE = re.compile(rf"(?i)\b({_SECRET_KEYS})=([^&\s\"'<>]+)")
# "key": "value" in JSON, and key: value in headers / reprs
_JSON_RE = re.compile(rf"(?i)([\"']?(?:{_SECRET_KEYS})[\"']?\s*[:=]\s*[\"'])([^\"']+)([\"'])")
_HEADER_RE = re.compile(rf"(?im)^(\s*(?:{_SECRET_KEYS})\s*:\s*)(\S.*)$")
_BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")

# Field names whose values are always masked in structured events.
SECRET_FIELD_NAMES = frozenset(
    {
        "access_token",
        "refresh_token",
        "accesstoken",
        "client_secret",
        "clientsecret",
        "password",
        "secret",
        "token",
        "api_key",
        "x-api-key",
        "authorization",
    }
)


def register_secret(value: str | None, *, token: bool = False) -> None:
    """Remember a secret value so that it is masked wherever it appears.

    `token=True` for values minted at run time (access and refresh tokens): the most recent
    `_MAX_TOKENS` of them are remembered, not every one the process ever saw.
    """
    global _secret_re  # noqa: PLW0603 (one process-wide registry, swapped atomically)
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if value in _secrets or value in _tokens:
            return
        if token:
            _tokens[value] = None
            while len(_tokens) > _MAX_TOKENS:
                del _tokens[next(iter(_tokens))]
        else:
            _secrets.add(value)
        ordered = sorted(_secrets | _tokens.keys(), key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """Mask every known secret and every secret-looking key/value pair in `text`."""
    if not text:
        return text
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _QUERY_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _JSON_RE.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    text = _HEADER_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)


def redact_value(value: Any) -> Any:
    """Redact strings inside nested event values (dicts, lists, exceptions)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {
            k: (MASK if str(k).lower() in SECRET_FIELD_NAMES and v else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


def redaction_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    for key in list(event_dict):
        value = event_dict[key]
        if key.lower() in SECRET_FIELD_NAMES and value:
            event_dict[key] = MASK
        else:
            event_dict[key] = redact_value(value)
    return event_dict


def _redact_rendered(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    # tracebacks are rendered into strings by format_exc_info / dict_tracebacks before this runs
    for key in ("exception", "exc_info", "stack"):
        if key in event_dict:
            event_dict[key] = redact_value(event_dict[key])
    return event_dict


LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


class _CurrentStderr:
    """Whatever `sys.stderr` is at the time of each write: progress bars redirect it while they are shown
    so that log lines print above them instead of through them."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(*, json: bool | None = None, verbosity: int = 1, stream: TextIO | None = None) -> None:
    """Configure structlog once. JSON lines when stdout is not a terminal (or json=True)."""
    # Events go to stderr so that stdout carries only what a command prints (history --json, the plan);
    # the format follows stdout, as the contract says: JSON lines unless stdout is a terminal.
    out = stream or cast(TextIO, _CurrentStderr())
    if json is None:
        json = not sys.stdout.isatty()
    level = LEVELS.get(verbosity, logging.DEBUG)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if json:
        tail: list[Any] = [
            structlog.processors.format_exc_info,
            _redact_rendered,
            redaction_processor,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
        renderer = tail
    else:
        renderer = [
            structlog.processors.format_exc_info,
            _redact_rendered,
            redaction_processor,
            structlog.dev.ConsoleRenderer(colors=out.isatty()),
        ]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (alembic, apscheduler, httpx) go through the same redaction.
    handler = logging.StreamHandler(out)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbosity < 2 else logging.DEBUG)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()
