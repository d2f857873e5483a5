"""Can this process use the configured store? Checked by `check-config`, which reaches nothing.

Only SQLite files are checked (a PostgreSQL server would have to be reached): the file's directory must
exist and be writable (SQLite writes its -wal, -shm and lock files next to the database), and an existing
file must be a readable and writable file. The directory is not created here: under systemd,
`StateDirectory=syncd` creates /var/lib/syncd; elsewhere the operator does, so that a mistyped path is
reported instead of silently becoming a new, empty store.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def state_url_problems(url: str) -> list[str]:
    """What keeps `url` from being created or written by this process (empty: nothing found)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return []  # the config's own validation reports a malformed URL
    if parsed.get_backend_name() != "sqlite":
        return []
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return []
    path = Path(os.path.abspath(os.path.expanduser(database)))
    parent = path.parent
    if path.is_dir():
        return [f"{path} is a directory, not a database file"]
    if not parent.exists():
        return [f"directory {parent} does not exist (create it, or let systemd's StateDirectory= create it)"]
    if not parent.is_dir():
        return [f"{parent} is not a directory"]
    problems = []
    if not os.access(parent, os.W_OK | os.X_OK):
        problems.append(f"directory {parent} is not writable by this user (uid {os.geteuid()})")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        problems.append(f"{path} is not readable and writable by this user (uid {os.geteuid()})")
    return problems
