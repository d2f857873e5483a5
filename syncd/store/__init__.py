"""The state store: what syncd remembers between runs (SQLite by default, PostgreSQL by URL).

    store = StateStore.open("sqlite:////var/lib/syncd/state.db")
    with store.lock():
        ...

See `syncd.store.store.StateStore` for the API and `syncd.store.records` for the value types.
"""

from syncd.store.records import (
    CHANGE_KIND,
    CHANGE_KINDS,
    JOURNAL_APPLIED,
    JOURNAL_FAILED,
    JOURNAL_PENDING,
    JOURNAL_SUPERSEDED,
    OWNER_PERSON,
    OWNER_SYNCD,
    REMOVAL_KIND,
    RESET_KIND,
    TAKEOVER_KIND,
    TOMBSTONE_KIND,
    ChangeRecord,
    FieldOwner,
    FieldState,
    JournalEntry,
    LedgerEntry,
    Link,
    OwnershipNote,
    RunRecord,
    TokenRecord,
    lookup_fingerprint,
    month_of,
    result_from_json,
    result_to_json,
    update_from_json,
    update_to_json,
)
from syncd.store.store import StateStore

__all__ = [
    "CHANGE_KIND",
    "CHANGE_KINDS",
    "JOURNAL_APPLIED",
    "JOURNAL_FAILED",
    "JOURNAL_PENDING",
    "JOURNAL_SUPERSEDED",
    "OWNER_PERSON",
    "OWNER_SYNCD",
    "REMOVAL_KIND",
    "RESET_KIND",
    "TAKEOVER_KIND",
    "TOMBSTONE_KIND",
    "ChangeRecord",
    "FieldOwner",
    "FieldState",
    "JournalEntry",
    "LedgerEntry",
    "Link",
    "OwnershipNote",
    "RunRecord",
    "StateStore",
    "TokenRecord",
    "lookup_fingerprint",
    "month_of",
    "result_from_json",
    "result_to_json",
    "update_from_json",
    "update_to_json",
]
