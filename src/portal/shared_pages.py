"""Signed-out pages that every visitor in a language sees alike, rendered once.

The landing page, registration, Pay My Bill, the login and "forgot" forms and the
information pages differ between two signed-out visitors only by their CSRF token (and
whether it is their first page: then site.css is inlined, see templating.InlineStyle).
So one visitor's request renders the page as usual (through every middleware, the
handler and the template), the page is kept with their token cut out, and later
visitors get it with their own token written in: no routing, no template, and gzip
done once, not per request (`Gzipped` below splices the token into the stored
compressed page).

A request takes this path only when it could not see anything else: a GET of one of
SHARED with no query string, no htmx headers, and no cookie but the CSRF token and the
language (a session, a remembered device, anything else: the normal path). The stored
page is keyed by path, language and first visit or not, and all are made again when the
service notice changes (pages/notice.py). It is never used in development
(PORTAL_TEMPLATES_RELOAD on), where a designer's edit must show at once. A page
answered with anything but 200, or with a cookie besides the CSRF token, is not stored.

What a visitor receives is what the normal path sends: the same headers (security
headers and Cache-Control come from app.py's before_send hooks, around this), and a
new token cookie when they had none, named and flagged as security/cookies.py does.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from litestar.datastructures import Cookie
from litestar.middleware.csrf import generate_csrf_token
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from portal import i18n
from portal.compression import scope_accepts_gzip, vary_accept_encoding
from portal.pages.notice import SiteNotice
from portal.security import cookies
from portal.settings import Settings

SHARED = frozenset(
    {
        "/",
        "/register",
        "/pay",
        "/login",
        "/forgot-username",
        "/forgot-password",
        "/contact",
        "/accessibility",
        "/privacy",
    }
)
TOKEN = re.compile(rb"[0-9a-f]{128}")  # what Litestar's generate_csrf_token makes


class Gzipped:
    """A gzip member built from stored pieces: each segment of the page is compressed
    once (a raw deflate run ending on a byte boundary, Z_FULL_FLUSH), and the token
    between them goes in as a stored (uncompressed) deflate block. Per request only the
    CRC-32 of the whole text is computed."""

    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    LAST_BLOCK = b"\x01\x00\x00\xff\xff"  # an empty final stored block

    def __init__(self, segments: list[bytes]) -> None:
        self.segments = segments
        self.packed = []
        for segment in segments:
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            self.packed.append(packer.compress(segment) + packer.flush(zlib.Z_FULL_FLUSH))

    def with_token(self, token: bytes) -> bytes:
        stored = b"\x00" + struct.pack("<HH", len(token), 0xFFFF ^ len(token)) + token
        crc, size, parts = 0, 0, [self.HEADER]
        for index, (segment, packed) in enumerate(zip(self.segments, self.packed, strict=True)):
            if index:
                crc, size = zlib.crc32(token, crc), size + len(token)
                parts.append(stored)
            crc, size = zlib.crc32(segment, crc), size + len(segment)
            parts.append(packed)
        parts += [self.LAST_BLOCK, struct.pack("<II", crc, size & 0xFFFFFFFF)]
        return b"".join(parts)


@dataclass
class Stored:
    """A 200 page: its headers (no length, no encoding, no cookie) and its text cut at
    the token."""

    headers: list[tuple[bytes, bytes]]
    segments: list[bytes]
    gzipped: Gzipped


class SharedPages:
    def __init__(self, app: ASGIApp, settings: Settings, notice: SiteNotice | None = None) -> None:
        self.app = app
        self.enabled = not settings.reload_templates
        self.stored: dict[tuple[str, str, bool], Stored] = {}
        self.notice = notice  # its text is on every page: a new one, new pages
        self.notice_version = ""
        self.secret = settings.secret_key
        production = settings.production
        self.csrf_name = cookies.wire_name(cookies.CSRF, production).encode()
        self.language_name = cookies.wire_name(cookies.LANGUAGE, production).encode()
        self.cookie_format = self._cookie_format(settings)

    @staticmethod
    def _cookie_format(settings: Settings) -> str:
        """Set-Cookie for a new token, as the CSRF middleware and, in production,
        HostPrefixCookies would write it; TOKENVALUE is where the token goes."""
        config = cookies.csrf_config(settings)
        header = Cookie(
            key=config.cookie_name,
            value="TOKENVALUE",
            path=config.cookie_path,
            secure=config.cookie_secure,
            httponly=config.cookie_httponly,
            samesite=config.cookie_samesite,
        ).to_header(header="")
        return cookies._outgoing(header) if settings.production else header

    def _visitor(self, scope: Scope) -> tuple[bytes | None, str] | None:
        """(their token or None, language) when this request may use a stored page."""
        token, chosen, browser = None, None, None
        for name, value in scope["headers"]:
            if name.startswith(b"hx-"):
                return None
            if name == b"accept-language":
                browser = value.decode("latin-1")
                continue
            if name != b"cookie":
                continue
            for pair in value.split(b";"):
                key, _, content = pair.strip().partition(b"=")
                if key == self.csrf_name and TOKEN.fullmatch(content):
                    token = content
                elif key == self.language_name:
                    chosen = content.decode("latin-1")
                elif key:
                    return None  # a session or anything else: the normal path
        return token, i18n.request_locale(chosen, browser)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] not in SHARED
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        visitor = self._visitor(scope)
        if visitor is None:
            await self.app(scope, receive, send)
            return
        token, language = visitor
        if self.notice is not None and self.notice.version != self.notice_version:
            self.stored.clear()
            self.notice_version = self.notice.version
        key = (scope["path"], language, token is None)
        stored = self.stored.get(key)
        new_cookie = token is None
        if stored is None:
            rendered = await self._render(scope, receive, token)
            if rendered is None:  # not a shareable answer: the normal path, as if never tried
                await self.app(scope, receive, send)
                return
            stored, token = rendered
            if self.notice is None or self.notice.version == self.notice_version:
                self.stored[key] = stored  # (not if the notice changed while it rendered)
        if token is None:
            token = generate_csrf_token(secret=self.secret).encode()
        scope["path_template"] = scope["path"]  # the log line's and the metrics' route
        await self._send(scope, send, stored, token, new_cookie)

    async def _render(
        self, scope: Scope, receive: Receive, token: bytes | None
    ) -> tuple[Stored, bytes] | None:
        """Render the page through the whole app, uncompressed; cut the token out of it
        (the visitor's, or the one the CSRF middleware made for a first visit)."""
        inner = {
            **scope,
            "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"],
        }
        started: list[Message] = []
        body: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.append(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(inner, receive, capture)
        if not started or started[0]["status"] != 200:
            return None
        kept, made = [], None
        for name, value in started[0].get("headers", []):
            lowered = name.lower()
            if lowered == b"set-cookie":
                cookie_name, _, rest = value.partition(b"=")
                made = rest.split(b";", 1)[0]
                if cookie_name != self.csrf_name or token or not TOKEN.fullmatch(made):
                    return None  # another cookie, or one we did not expect
            elif lowered not in (b"content-length", b"content-encoding"):
                kept.append((lowered, value))
        token = token or made
        if token is None:
            return None
        segments = b"".join(body).split(token)
        return Stored(kept, segments, Gzipped(segments)), token

    async def _send(
        self, scope: Scope, send: Send, stored: Stored, token: bytes, new_cookie: bool
    ) -> None:
        headers = list(stored.headers)
        if new_cookie:
            cookie = self.cookie_format.replace("TOKENVALUE", token.decode())
            headers.append((b"set-cookie", cookie.encode()))
        if scope_accepts_gzip(scope):
            content = stored.gzipped.with_token(token)
            headers.append((b"content-encoding", b"gzip"))
        else:
            content = token.join(stored.segments)
        headers = vary_accept_encoding(headers)
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})
