"""Water amounts in the units residents can picture. Pure: no HTTP, no database.

Meters read in HCF (hundred cubic feet) or gallons. 1 HCF = 100 cubic feet = 748
gallons (748.05, rounded the way utilities print it)."""

from __future__ import annotations

from datetime import date

GALLONS_PER_HCF = 748


def to_gallons(value: float, unit: str) -> float:
    """An amount read in `unit` ("HCF" or "gallons") as gallons."""
    return value * GALLONS_PER_HCF if unit == "HCF" else value


def gallons_per_day(
    value: float, unit: str, previous_read: str | None, read_date: str
) -> int | None:
    """Average gallons a day between two meter reads (ISO dates), rounded, or None when
    there is no earlier read or the dates do not make a period."""
    if not previous_read:
        return None
    days = (date.fromisoformat(read_date) - date.fromisoformat(previous_read)).days
    if days <= 0 or value < 0:
        return None
    return round(to_gallons(value, unit) / days)
