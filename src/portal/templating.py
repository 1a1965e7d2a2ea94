"""Jinja filters that format for the resident's locale: money, dates, numbers."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import Environment

from portal.i18n import current_locale
from portal.settings import Settings


def money(cents: int | None) -> str:
    if cents is None:
        return ""
    return format_currency(Decimal(cents) / 100, "USD", locale=current_locale.get())


def number(value: float | int | None) -> str:
    if value is None:
        return ""
    return format_decimal(value, locale=current_locale.get())


def long_date(value: str | date | None) -> str:
    if not value:
        return ""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date(day, format="long", locale=current_locale.get())


def install_filters(env: Environment, settings: Settings) -> None:
    zone = ZoneInfo(settings.timezone)

    def local_time(value: str | None) -> str:
        """A UTC timestamp from the database, shown in the utility's time zone."""
        if not value:
            return ""
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone)
        return format_datetime(moment, format="medium", tzinfo=zone, locale=current_locale.get())

    env.filters.update(money=money, number=number, long_date=long_date, local_time=local_time)
