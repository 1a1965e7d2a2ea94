"""Gettext for templates and Python, with the locale chosen per request.

Catalogs live in `src/portal/i18n/locale/<lang>/LC_MESSAGES/messages.po` (Babel). The
current request's locale sits in a context variable, so `_()` in a template or in a
validator always speaks the resident's language.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from functools import cache, lru_cache
from gettext import NullTranslations
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from litestar.datastructures import Cookie

from portal.security import cookies

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = ("en", "es")
DEFAULT_LOCALE = "en"
LOCALE_COOKIE = cookies.LANGUAGE  # __Host-portal_lang in production (security/cookies.py)

# Residents of Southern California: US formats in both languages ($84.10, not 84,10 US$).
FORMAT_LOCALES = {"en": "en_US", "es": "es_US"}

current_locale: ContextVar[str] = ContextVar("current_locale", default=DEFAULT_LOCALE)


def format_locale() -> str:
    """The Babel locale for numbers, money and dates in the current language."""
    return FORMAT_LOCALES.get(current_locale.get(), "en_US")


@cache
def translations(locale: str) -> NullTranslations:
    """The catalog for a language, compiled in memory from its .po file (the .po is the
    only source of truth; no compiled .mo files to keep in step)."""
    po_file = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po_file.exists():
        return NullTranslations()
    with po_file.open("rb") as stream:
        catalog = read_po(stream, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled, domain="messages")


@lru_cache(maxsize=256)
def browser_locale(accept_language: str) -> str:
    """For a visitor who never chose a language (no cookie): the first of ours that their
    browser or phone asks for (Accept-Language, by q-value; the earlier of equals), else
    English. A browser's language setting, never its location."""
    best, best_q = DEFAULT_LOCALE, 0.0
    for part in accept_language[:400].split(",")[:20]:
        tag, _, params = part.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if not 0.0 < q <= 1.0:  # also NaN
            continue
        primary = tag.strip().lower().partition("-")[0]
        if primary in LOCALES and q > best_q:
            best, best_q = primary, q
    return best


def request_locale(chosen: str | None, accept_language: str | None) -> str:
    """The language of a request: the one chosen with the language link (its cookie),
    else the browser's (browser_locale)."""
    if chosen in LOCALES:
        return chosen
    return browser_locale(accept_language) if accept_language else DEFAULT_LOCALE


def gettext(message: str, **variables: object) -> str:
    text = translations(current_locale.get()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    text = translations(current_locale.get()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def locale_cookie(locale: str, secure: bool):
    """The cookie that keeps a language choice for a year."""
    return Cookie(
        key=LOCALE_COOKIE,
        value=locale,
        max_age=365 * 24 * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
