"""The managed `Title: <title>` line that carries a contact's job title inside the PBX `remark`.

The P-Series contact has no job-title field on most firmware, so syncd keeps the title as one line of the
remark. Everything else in the remark belongs to people and is kept byte for byte.

- The managed line is the first line that reads `title:` (any case, blanks around the colon allowed);
  its value is the rest of the line, stripped.
- syncd writes it as `Title: <title>`: replacing that line in place, or appending it (after a line break)
  when there is none. Line endings already in the remark (`\\n` or `\\r\\n`) are kept.

Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

TITLE_PREFIX = "Title: "
# syncd's own cap for a title it writes (the PBX's name and company fields allow 127 characters).
TITLE_MAX = 127

# `^` with MULTILINE matches at the start and after each "\n" only; `[^\n]*` keeps a CR of a CRLF line.
_TITLE_LINE_RE = re.compile(r"^[ \t]*title[ \t]*:([^\n]*)", re.IGNORECASE | re.ASCII | re.MULTILINE)


class TitleLine(NamedTuple):
    start: int  # offset of the line in the remark
    end: int  # offset just past the line (before its "\n")
    raw: str  # the line exactly as it is, without its "\n"
    value: str  # the title it holds, stripped ("" for a bare "Title:")


def find_title_line(remark: str) -> TitleLine | None:
    """The managed Title line of `remark`, or None when it has none."""
    m = _TITLE_LINE_RE.search(remark)
    if m is None:
        return None
    return TitleLine(start=m.start(), end=m.end(), raw=m.group(0), value=m.group(1).strip())


def title_in(remark: str) -> str:
    """The title the remark holds ("" when there is no Title line)."""
    m = _TITLE_LINE_RE.search(remark)
    return "" if m is None else m.group(1).strip()


def clean_title(raw: str | None) -> str:
    """A vendor's title as one line: control and format characters dropped, blanks collapsed."""
    if not raw:
        return ""
    text = raw
    if not text.isprintable():
        text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return " ".join(text.split())


def with_title(remark: str, title: str) -> str:
    """`remark` with its Title line set to `title` (a clean, non-empty one-line title).

    Replaces the existing Title line in place, or appends one; all other text is kept byte for byte.
    """
    new_line = TITLE_PREFIX + title
    line = find_title_line(remark)
    if line is not None:
        if line.raw.endswith("\r"):
            new_line += "\r"
        return remark[: line.start] + new_line + remark[line.end :]
    if not remark:
        return new_line
    if remark.endswith("\n"):
        return remark + new_line
    return remark + ("\r\n" if "\r\n" in remark else "\n") + new_line
