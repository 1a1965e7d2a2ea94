"""Download file names that cannot break a header or a file system.

A bill number comes from the billing system's CSV; a CR/LF or quote in it once broke the
PDF download's Content-Disposition header. Names are reduced to ASCII letters, digits,
dot, dash and underscore, so they need no quoting rules and mean the same everywhere.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+|\.{2,}")


def safe_filename(name: str, fallback: str = "download", limit: int = 100) -> str:
    """`name` with every run of other characters turned into one dash, at most `limit`
    characters, never starting with a dot (no hidden files) and never empty."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not re.fullmatch(r"[A-Za-z0-9]{1,8}", extension):
        stem, extension = name, ""
    cleaned = re.sub(r"-{2,}", "-", _UNSAFE.sub("-", stem)).strip("-.")
    cleaned = cleaned[: limit - len(extension) - 1] or fallback
    return f"{cleaned}.{extension}" if extension else cleaned


def attachment(name: str) -> str:
    """A Content-Disposition value for downloading `name` (made safe)."""
    return f'attachment; filename="{safe_filename(name)}"'
