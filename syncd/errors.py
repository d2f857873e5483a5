"""Typed errors and the exit codes of the operator contract.

Messages never carry secrets: callers pass already-redacted reasons, and `SyncdError.__str__`
runs the redactor once more as a last line of defence.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1  # run finished, some contacts failed
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75  # lock held, or a service stayed unreachable
EXIT_CONFIG = 78


class SyncdError(Exception):
    exit_code = EXIT_PARTIAL

    def __str__(self) -> str:
        from syncd.logs import redact  # late import: logs imports nothing from here at import time

        return redact(super().__str__())


class ConfigError(SyncdError):
    """A broken config: names the key and the problem."""

    exit_code = EXIT_CONFIG

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class UsageError(SyncdError):
    exit_code = EXIT_USAGE


class LockHeldError(SyncdError):
    """Another run holds the state store's lock."""

    exit_code = EXIT_TEMPFAIL


class StoreError(SyncdError):
    """The state store cannot be used (corrupt, read-only, full, newer schema...)."""

    exit_code = EXIT_TEMPFAIL


class StoreConfigError(StoreError):
    """The store cannot be created or written (permissions, a read-only file system, a path that is a
    directory or not there): retrying cannot help, so it is a configuration error and systemd's
    `RestartPreventExitStatus=78` stops the restart loop."""

    exit_code = EXIT_CONFIG


class MassLossError(SyncdError):
    """The PBX suddenly lists far fewer contacts than the store knows: refuse to act."""

    exit_code = EXIT_PARTIAL


class ServiceError(SyncdError):
    """A remote service answered with an error. Carries the service and the reason, never a secret."""

    def __init__(self, service: str, reason: str, *, status: int | None = None, code: str | None = None):
        self.service = service
        self.reason = reason
        self.status = status
        self.code = code
        super().__init__(f"{service}: {reason}")


class ServiceUnavailable(ServiceError):
    """Retries exhausted (timeouts, 5xx, 429 storms, refused connections): try later."""

    exit_code = EXIT_TEMPFAIL


class AuthError(ServiceError):
    """Credentials refused. Never retried: five failed PBX logins block the caller's IP."""

    exit_code = EXIT_CONFIG


class OutOfCredits(ServiceError):
    """The vendor refuses further paid calls (no credits, or no access to the endpoint)."""


class MalformedResponse(ServiceError):
    """A response that does not have the documented shape."""
