"""Gettext for templates and Python, with the locale chosen per request.

Catalogs live in `src/portal/i18n/locale/<lang>/LC_MESSAGES/messages.po` (Babel). The
current request's locale sits in a context variable, so `_()` in a template or in a
validator always speaks the resident's language.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import cache
from gettext import NullTranslations
from pathlib import Path

from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = ("en", "es")
DEFAULT_LOCALE = "en"

current_locale: ContextVar[str] = ContextVar("current_locale", default=DEFAULT_LOCALE)


@cache
def translations(locale: str) -> NullTranslations:
    return Translations.load(str(LOCALE_DIR), [locale], domain="messages")


def gettext(message: str, **variables: object) -> str:
    text = translations(current_locale.get()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    text = translations(current_locale.get()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def N_(message: str) -> str:
    """Marks a message for extraction where it is translated later, at use."""
    return message
