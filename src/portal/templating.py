"""The Jinja environment: templates, gettext, static asset URLs, and filters that
format for the resident's locale (money, dates, numbers). Pages and emails share it."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import MutableMapping
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import (
    Environment,
    FileSystemLoader,
    Template,
    TemplateNotFound,
    nodes,
    pass_environment,
    pass_eval_context,
    select_autoescape,
)
from jinja2.nodes import EvalContext
from jinja2.visitor import NodeTransformer
from litestar.exceptions import TemplateNotFoundException
from litestar.plugins.jinja import JinjaTemplateEngine
from markupsafe import Markup, escape

from portal import i18n
from portal.accounts import sessions
from portal.i18n import format_locale
from portal.settings import PROJECT_ROOT, Settings
from portal.static_files import plain_css


# Babel parses the locale and the pattern on every call; a bill history formats ~100
# amounts and dates. The same values recur (bill dates, amounts), so each formatted text
# is kept per language: values are small and the caches bounded.
@lru_cache(maxsize=8192)
def _money(cents: int, locale: str) -> str:
    return format_currency(Decimal(cents) / 100, "USD", locale=locale)


@lru_cache(maxsize=8192)
def _number(value: float, locale: str) -> str:
    return format_decimal(value, locale=locale)


@lru_cache(maxsize=8192)
def _long_date(day: date, locale: str) -> str:
    return format_date(day, format="long", locale=locale)


@lru_cache(maxsize=8192)
def _month_year(day: date, locale: str) -> str:
    return format_date(day, format="MMM yyyy", locale=locale)


@lru_cache(maxsize=8192)
def _local_time(value: str, zone: str, locale: str) -> str:
    """A UTC timestamp from the database in the utility's time zone. The same ones recur:
    "Amount due as of" is the import's time, shared by every account it brought."""
    tz = ZoneInfo(zone)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz)
    return format_datetime(moment, format="medium", tzinfo=tz, locale=locale)


def money(cents: int | None) -> str:
    if cents is None:
        return ""
    return _money(cents, format_locale())


def number(value: float | None) -> str:
    if value is None:
        return ""
    return _number(value, format_locale())


def long_date(value: str | date | None) -> str:
    if not value:
        return ""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return _long_date(day, format_locale())


def month_year(value: str | date) -> str:
    """A month as "Mar 2026" ("mar 2026" in Spanish): the usage chart's and table's
    labels (24 of each on a page)."""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return _month_year(day, format_locale())


@lru_cache(maxsize=64, typed=True)  # a Markup key is not a str key: its escaping differs
def tel(phone: str | None) -> Markup:
    """A phone number as a link that dials it: `(909) 395-2050` becomes
    `<a href="tel:9093952050">(909) 395-2050</a>` (digits and a leading + only). Two on
    every page, almost always the same number: kept once made."""
    if not phone:
        return Markup("")
    digits = ("+" if phone.strip().startswith("+") else "") + "".join(
        c for c in phone if c.isdigit()
    )
    return Markup('<a href="tel:{}" class="tel">{}</a>').format(digits, escape(phone))


def install_filters(env: Environment, settings: Settings) -> None:
    zone = settings.timezone

    def local_time(value: str | None) -> str:
        """A UTC timestamp from the database, shown in the utility's time zone."""
        if not value:
            return ""
        return _local_time(value, zone, format_locale())

    env.filters.update(
        money=money, number=number, long_date=long_date, local_time=local_time, tel=tel
    )


def _shipped(name: str) -> Path:
    """templates/ or static/: inside the installed package (a wheel ships them as
    portal/templates and portal/static), else at the top of the source checkout, where
    designers edit them and a running development server picks up their edits."""
    installed = Path(__file__).parent / name
    return installed if installed.is_dir() else PROJECT_ROOT / name


TEMPLATES_DIR = _shipped("templates")
STATIC_DIR = _shipped("static")


@lru_cache(maxsize=256)
def _asset_version(path: Path, modified_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def asset(file_path: str) -> str:
    """URL of a static file with a content hash, so browsers may cache it for a year.
    Keyed on the file's modification time, so a designer's edit shows without a restart."""
    path = STATIC_DIR / file_path
    return f"/static/{file_path}?v={_asset_version(path, path.stat().st_mtime_ns)}"


@lru_cache(maxsize=256)
def _asset_once(file_path: str) -> str:
    """asset() without the stat() of every call: files hashed once (production)."""
    return asset(file_path)


@lru_cache(maxsize=32)
def _data_uri(path: Path, modified_ns: int) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(path.read_bytes()).decode()


# A first visit: the request carries no CSRF cookie yet (every page sets one). Set per
# request by the authentication middleware (security/auth.py).
first_visit: ContextVar[bool] = ContextVar("first_visit", default=False)


def _image_data(file_path: str) -> str:
    path = STATIC_DIR / file_path
    return _data_uri(path, path.stat().st_mtime_ns)


class InlineStyle:
    """static/css/site.css, written into a <style> element on a first visit instead of a
    <link>: a phone's first page then paints after one round trip, not two (on slow 4G
    each one is half a second). Later pages link the file, which the browser then keeps.
    The Content-Security-Policy allows exactly this text by its hash (security/
    headers.py), so no other inline style can run. With `reload` (development) an edit
    to the file shows on the next page."""

    FILE = "css/site.css"

    def __init__(self, reload: bool) -> None:
        self.reload = reload
        self._key: int | None = None
        self._css = Markup("")
        self._source = ""

    def _current(self) -> None:
        if self._key is not None and not self.reload:
            return
        path = STATIC_DIR / self.FILE
        key = path.stat().st_mtime_ns
        if key != self._key:
            text = plain_css(path.read_text(encoding="utf-8"))  # as /static/ serves it
            digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
            self._css, self._source, self._key = Markup(text), f"'sha256-{digest}'", key

    def css(self) -> Markup:
        self._current()
        return self._css

    def csp_source(self) -> str:
        """The CSP source expression ('sha256-…') that allows the inlined stylesheet."""
        self._current()
        return self._source


def install_gettext(env: Environment) -> None:
    """`_`, `gettext` and `ngettext` for templates, as Jinja's newstyle gettext behaves
    (with autoescape the translation is markup and `%(name)s` values are escaped; in a
    plain-text email neither), without its three nested context calls per text: a page
    says `_()` thirty times. Translations are memoized per language and text."""
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)
    done: dict[tuple[str, str], Markup] = {}

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, message: str, **variables: object) -> str:
        locale = i18n.current_locale.get()
        text = done.get((locale, message))
        if text is None:
            text = Markup(i18n.translations(locale).gettext(message))
            done[(locale, message)] = text
        return text % variables if eval_ctx.autoescape else str(text) % variables

    @pass_eval_context
    def ngettext(
        eval_ctx: EvalContext, singular: str, plural: str, n: int, **variables: object
    ) -> str:
        text = i18n.translations(i18n.current_locale.get()).ngettext(singular, plural, n)
        return (Markup(text) if eval_ctx.autoescape else text) % {"num": n, **variables}

    env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext)


class _TranslateConstants(NodeTransformer):
    """`_("text")` and `_("text %(name)s", name=value)` with a literal text become the
    translation itself (a constant) formatted with the values, exactly as gettext() does
    at run time: markup under autoescape, so the values are escaped; plain text in a
    plain-text template; `%%` is `%`. Anything else (a text from a variable, ngettext)
    stays a call."""

    def __init__(self, locale: str) -> None:
        self.translations = i18n.translations(locale)

    def visit_Call(self, node: nodes.Call) -> nodes.Node:
        node = self.generic_visit(node)
        literal = (
            isinstance(node.node, nodes.Name)
            and node.node.name in ("_", "gettext")
            and len(node.args) == 1
            and isinstance(node.args[0], nodes.Const)
            and isinstance(node.args[0].value, str)
            and node.dyn_args is None
            and node.dyn_kwargs is None
        )
        if not literal:
            return node
        text = nodes.MarkSafeIfAutoescape(
            nodes.Const(self.translations.gettext(node.args[0].value)), lineno=node.lineno
        )
        values = [nodes.Pair(nodes.Const(k.key), k.value, lineno=node.lineno) for k in node.kwargs]
        return nodes.Mod(text, nodes.Dict(values, lineno=node.lineno), lineno=node.lineno)


class PortalEnvironment(Environment):
    """Jinja's environment, plus one compiled copy of the templates per language
    (`for_locale`): a page's fixed texts are translated once, when its template is
    compiled, not at every request (a dashboard says `_()` about forty times). The
    templates, filters and globals are the same objects; only the compiled code differs.
    Texts that come from variables are still translated at run time by gettext()."""

    translated_for: str | None = None
    session_warnings: dict[Any, Markup]  # each copy's own (for_locale): session_warning

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one dict, not Jinja's ChainMap over the environment's:
        every include, macro import and context copied or searched the ChainMap key by
        key in Python (about 5% of a usage page). The environment's globals are all set
        before the first template loads (make_environment, Litestar's engine)."""
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`{{ bill.bill_date }}` on a database row: a sqlite3.Row has no attributes, only
        keys, so Jinja's way (getattr, its AttributeError, then the key) raised and caught
        an exception for every value shown: about 0.6 µs each, 200 on a bill history."""
        if type(obj) is sqlite3.Row:
            try:
                return obj[attribute]
            except IndexError:
                pass
        return super().getattr(obj, attribute)

    def for_locale(self, locale: str) -> PortalEnvironment:
        cache = self.__dict__.setdefault("_per_locale", {})
        env = cache.get(locale)
        if env is None:
            # Its own (empty) cache of compiled templates: see template_cache_size.
            env = self.overlay(cache_size=template_cache_size(self.auto_reload))
            env.translated_for = locale
            env.session_warnings = {}
            cache[locale] = env
        return env

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        if self.translated_for:
            tree = _TranslateConstants(self.translated_for).visit(tree)
        return tree


class PageTemplates(JinjaTemplateEngine):
    """Litestar's Jinja engine, taking each page from the resident's language's copy of
    the templates (PortalEnvironment.for_locale)."""

    def get_template(self, template_name: str) -> Template:
        try:
            return self.engine.for_locale(i18n.current_locale.get()).get_template(template_name)
        except TemplateNotFound as exc:
            raise TemplateNotFoundException(template_name=template_name) from exc


def template_cache_size(reload: bool) -> int:
    """Without reloading, every compiled template is kept in a plain dict (Jinja's -1):
    the templates are a fixed set of files, and Jinja's bounded cache moves each template
    it hands out to the end of a list, under a lock, about ten times per page."""
    return 400 if reload else -1


@pass_environment
def session_warning(env: PortalEnvironment, user: Any) -> Markup:
    """The hidden warning before an idle sign-out for a signed-in page (base.html), or
    nothing (a visitor; Remember me). Its markup has nothing of one visitor's, so each
    language's copy of the templates renders it once per kind of session and keeps it
    (unless templates reload); including it on every page cost a dashboard about 35 µs."""
    timeout = getattr(user, "timeout", None)
    if timeout is None:
        return Markup("")
    kept = env.session_warnings
    html = None if env.auto_reload else kept.get(timeout)
    if html is None:
        template = env.get_template("partials/session_timeout.html")
        html = kept[timeout] = Markup(template.render(timeout=timeout))
    return html


def make_environment(settings: Settings) -> PortalEnvironment:
    reload = settings.reload_templates
    env = PortalEnvironment(
        auto_reload=reload,  # off: no stat() of every template on every page
        cache_size=template_cache_size(reload),
        # PORTAL_TEMPLATES_DIR's files win; the shipped ones fill in the rest.
        loader=FileSystemLoader([*settings.template_dirs, TEMPLATES_DIR]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.session_warnings = {}
    install_gettext(env)
    env.globals.update(
        site=settings,
        asset=asset if reload else _asset_once,
        image_data=_image_data if reload else lru_cache(maxsize=32)(_image_data),
        inline_style=InlineStyle(reload),
        first_visit=first_visit.get,
        current_locale=i18n.current_locale.get,
        dev_mailbox=settings.dev_mailbox,
        session_warning=session_warning,
        site_notice=lambda: None,  # the service notice's text: create_app sets the real one
        # For the Remember me hint (partials/login_form.html).
        session_idle_minutes=sessions.RESIDENT_TIMEOUT.idle_minutes,
        session_remember_days=sessions.REMEMBER.days,
    )
    install_filters(env, settings)
    return env
