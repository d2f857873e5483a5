"""The state store: what syncd remembers between runs (SQLite by default, PostgreSQL by URL).

    store = StateStore.open("sqlite:////var/lib/syncd/state.db")
    with store.lock():
        ...

See `syncd.store.store.StateStore` for the API and `syncd.store.records` for the value types.
"""

from syncd.store.records import (
    JOURNAL_APPLIED,
    JOURNAL_FAILED,
    JOURNAL_PENDING,
    JOURNAL_SUPERSEDED,
    OWNER_PERSON,
    OWNER_SYNCD,
    ChangeRecord,
    FieldState,
    JournalEntry,
    LedgerEntry,
    Link,
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
    "JOURNAL_APPLIED",
    "JOURNAL_FAILED",
    "JOURNAL_PENDING",
    "JOURNAL_SUPERSEDED",
    "OWNER_PERSON",
    "OWNER_SYNCD",
    "ChangeRecord",
    "FieldState",
    "JournalEntry",
    "LedgerEntry",
    "Link",
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
