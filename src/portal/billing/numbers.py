"""Customer and account numbers, compared the way residents type them.

"0012345", "12 345" and "12-345" all mean 12345: spaces, dashes and leading zeros are
removed on both sides before comparing. This is the one place that rule lives.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-]+")
_ALLOWED = re.compile(r"[0-9A-Z]+")


def number_key(raw: str) -> str | None:
    """The comparable form of a customer or account number, or None if it cannot be one."""
    cleaned = _SEPARATORS.sub("", raw or "").upper()
    if not cleaned or not _ALLOWED.fullmatch(cleaned):
        return None
    return cleaned.lstrip("0") or "0"
