"""Yeastar P-Series OpenAPI error codes and the typed errors they become."""

from __future__ import annotations

from syncd.errors import AuthError, ServiceError, ServiceUnavailable

ERRCODES: dict[int, str] = {
    -2: "INTERNAL SERVER ERROR",
    -1: "FAILURE",
    1: "PARTIAL SUCCESS",
    2: "PROCESSING",
    10001: "INTERFACE NOT EXISTED",
    10002: "API VERSION OUT OF MAINTENANCE",
    10003: "API VERSION UNSUPPORTED",
    10004: "TOKEN EXPIRED",
    10005: "ACCESS DENIED",
    20002: "LOGIN FAILED",  # not in the docs' table: a public client reports wrong credentials so
    40001: "PARAMETER SYNTAX ERROR",
    40002: "PARAMETER ERROR",
    40003: "DUPLICATE KEY VALUE",
    60001: "DATA NOT FOUND",
    60002: "MAX LIMITATION EXCEEDED",
    70004: "ACCOUNT IP BLOCKED",
    70082: "OVERLOAD_TASK_RUNNING",
    70084: "ACTION FORBIDDEN",
    70087: "IP FORBIDDEN",
    70091: "CONNECTION_RELATION_EXISTED",
    70093: "PHONEBOOK_NOT_EXISTED",
    70106: "RATE_NOT_EXISTED",
}

SERVICE = "pbx"


def meaning(errcode: int) -> str:
    return ERRCODES.get(errcode, "UNKNOWN ERROR CODE")


class PbxError(ServiceError):
    """A non-zero errcode from the PBX."""

    def __init__(self, errcode: int, errmsg: str, endpoint: str) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        detail = f" ({errmsg})" if errmsg and errmsg.upper() != meaning(errcode) else ""
        super().__init__(
            SERVICE, f"{endpoint}: errcode {errcode} {meaning(errcode)}{detail}", code=str(errcode)
        )


class TokenExpired(PbxError):
    """10004: refresh (or log in again) and retry once."""


class PbxRejected(PbxError):
    """The PBX refused this contact's data (40001/40002/40003/60001/70093...): fail this contact only."""


class PbxTokenUnavailable(ServiceUnavailable):
    """The PBX kept answering 10004 although every refresh succeeded: try the whole call later."""


class PbxAuthError(AuthError):
    """Login refused, IP blocked or not allowed, or token cap reached. Never retried automatically."""

    def __init__(self, errcode: int, errmsg: str, hint: str) -> None:
        self.errcode = errcode
        super().__init__(SERVICE, f"errcode {errcode} {meaning(errcode)}: {hint}", code=str(errcode))


AUTH_HINTS: dict[int, str] = {
    70004: (
        "the PBX has blocked this host's IP after failed logins; an administrator must remove it under "
        "Security > Security Rules > Blocked IPs"
    ),
    70087: "this host's IP is not in the API's allowed-IP list",
    60002: (
        "the application already holds the maximum number of access tokens (8); "
        "wait for one to expire or revoke one"
    ),
    10005: "the PBX refused the client ID / client secret (check [pbx] client_id and client_secret)",
    20002: "the PBX refused the client ID / client secret (check [pbx] client_id and client_secret)",
}

# Login refusals: never retried (five failed logins block the IP). 10005 and 20002 besides the
# documented codes: third-party clients report wrong credentials as either.
CREDENTIAL_CODES = frozenset({10005, 20002})

# What each endpoint family needs the API application to be allowed (Integrations > API > permissions).
PERMISSIONS: dict[str, str] = {
    "company_contact/list": "Contacts (read)",
    "company_contact/search": "Contacts (read)",
    "company_contact/get": "Contacts (read)",
    "company_contact/query": "Contacts (read)",
    "company_contact/create": "Contacts (write)",
    "company_contact/update": "Contacts (write)",
    "company_contact/delete": "Contacts (write)",
    "phonebook/list": "Phonebooks (read)",
    "phonebook/get": "Phonebooks (read)",
    "phonebook/query": "Phonebooks (read)",
}


class PbxPermissionError(PbxAuthError):
    """10005 on a data call: the API application lacks a permission. A configuration error (78)."""

    def __init__(self, errcode: int, errmsg: str, endpoint: str) -> None:
        self.endpoint = endpoint
        permission = PERMISSIONS.get(endpoint, endpoint)
        super().__init__(
            errcode,
            errmsg,
            f"the PBX's API application lacks the permission {permission!r} needed for {endpoint}; "
            "grant it under Integrations > API on the PBX, then reload syncd",
        )


REJECTED_CODES = frozenset({40001, 40002, 40003, 60001, 70091, 70093})


def error_for(errcode: int, errmsg: str, endpoint: str) -> PbxError:
    if errcode == 10004:
        return TokenExpired(errcode, errmsg, endpoint)
    if errcode in REJECTED_CODES:
        return PbxRejected(errcode, errmsg, endpoint)
    return PbxError(errcode, errmsg, endpoint)
