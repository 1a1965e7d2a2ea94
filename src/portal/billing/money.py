"""Money is integer cents; this parses the decimal dollars that CSV files carry."""

from __future__ import annotations

import re

_AMOUNT = re.compile(r"(-?)(\d{1,9})(?:\.(\d{1,2}))?")


def parse_cents(text: str) -> int | None:
    """'123.45' -> 12345; None for anything that is not a plain dollar amount."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        return None
    sign, dollars, cents = match.groups()
    value = int(dollars) * 100 + int((cents or "0").ljust(2, "0"))
    return -value if sign else value
