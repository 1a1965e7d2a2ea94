"""The portal's cookies: their names in one place, `__Host-` names in production, and a
fresh CSRF token on demand.

Code reads and sets the plain names below (sessions.COOKIE, i18n.LOCALE_COOKIE and the
CSRF middleware all take them from here). In production, `HostPrefixCookies` (the
outermost middleware) puts them on the wire as `__Host-portal_session` and so on:

- outgoing `Set-Cookie` headers for these names are renamed and forced to `Secure;
  Path=/` with no `Domain` (what a browser requires of a `__Host-` cookie);
- incoming `Cookie` headers are renamed back, and a plain `portal_session` sent in
  production is dropped: a `__Host-` cookie can only have been set by this host over
  HTTPS, so a cookie planted from a sibling subdomain or over plain HTTP never counts.

In development the names stay plain (browsers refuse `__Host-` cookies over http://).
"""

from __future__ import annotations

from typing import Literal

from litestar import Response
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.csrf import generate_csrf_token
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from portal.settings import Settings

SESSION = "portal_session"
CSRF = "portal_csrf"
LANGUAGE = "portal_lang"
DEVICE = "portal_device"  # the remembered device (accounts/signin.py)
PENDING = "portal_pending"  # a login waiting for its two-step code (accounts/signin.py)
NAMES = (SESSION, CSRF, LANGUAGE, DEVICE, PENDING)
HOST_PREFIX = "__Host-"


def wire_name(name: str, production: bool) -> str:
    """The name a browser sees for one of NAMES."""
    return f"{HOST_PREFIX}{name}" if production and name in NAMES else name


def csrf_config(settings: Settings, exclude: tuple[str, ...] | list[str] = ()) -> CSRFConfig:
    """The CSRF check's configuration (the app's middleware and issue_csrf_cookie share it);
    `exclude`: paths besides /static/ that need no token cookie (the health probes)."""
    return CSRFConfig(
        secret=settings.secret_key,
        cookie_name=CSRF,
        cookie_path="/",
        cookie_secure=settings.production,
        cookie_httponly=True,
        cookie_samesite="lax",
        exclude=["/static/", *exclude],  # files need no token cookie; pages set it
    )


def issue_csrf_cookie(response: Response, settings: Settings) -> str:
    """Give `response` a new CSRF token cookie and return the token.

    Call it on the response that signs a resident in (or changes their privileges): a
    token planted or read before sign-in is then worth nothing. Forms rendered in the same
    response must use the returned token."""
    config = csrf_config(settings)
    token = generate_csrf_token(secret=config.secret)
    response.set_cookie(
        Cookie(
            key=config.cookie_name,
            value=token,
            path=config.cookie_path,
            secure=config.cookie_secure,
            httponly=config.cookie_httponly,
            samesite=config.cookie_samesite,
        )
    )
    return token


def session_cookie(
    name: str,
    value: str,
    settings: Settings,
    *,
    samesite: Literal["lax", "strict"],
    path: str = "/",
    max_age: int | None = None,
) -> Cookie:
    """A sign-in cookie: HttpOnly, Secure in production. An empty value with max_age=0
    clears it; max_age=None makes it last until the browser closes."""
    return Cookie(
        key=name,
        value=value,
        max_age=max_age,
        httponly=True,
        secure=settings.production,
        samesite=samesite,
        path=path,
    )


def _outgoing(value: str) -> str:
    """A Set-Cookie value with its name prefixed and the `__Host-` rules applied."""
    name, _, rest = value.partition("=")
    if name.strip() not in NAMES:
        return value
    cookie_value, *attributes = rest.split(";")
    kept = [
        a.strip()
        for a in attributes
        if a.strip() and a.strip().split("=", 1)[0].lower() not in {"domain", "path", "secure"}
    ]
    return "; ".join([f"{HOST_PREFIX}{name.strip()}={cookie_value}", "Path=/", "Secure", *kept])


def _incoming(value: str) -> str:
    """A Cookie header with `__Host-` names made plain and plain portal names dropped."""
    pairs = []
    for pair in value.split(";"):
        name, eq, rest = pair.strip().partition("=")
        if name in NAMES:
            continue  # not set by this host over HTTPS: ignore it
        if name.startswith(HOST_PREFIX) and name[len(HOST_PREFIX) :] in NAMES:
            name = name[len(HOST_PREFIX) :]
        if name:
            pairs.append(f"{name}{eq}{rest}")
    return "; ".join(pairs)


class HostPrefixCookies:
    """ASGI middleware: `__Host-` cookie names on the wire in production (see above)."""

    def __init__(self, app: ASGIApp, production: bool) -> None:
        self.app = app
        self.production = production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.production or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["headers"] = [
            (name, _incoming(value.decode("latin-1")).encode("latin-1"))
            if name == b"cookie"
            else (name, value)
            for name, value in scope["headers"]
        ]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                cookies = headers.getall("set-cookie", [])
                if cookies:
                    del headers["set-cookie"]
                    for cookie in cookies:
                        headers.add("set-cookie", _outgoing(cookie))
            await send(message)

        await self.app(scope, receive, send_wrapper)
