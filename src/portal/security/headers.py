"""Security headers on every response, static files and error pages included."""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader
from litestar.types import Message, Scope

from portal.templating import InlineStyle


# No inline script anywhere, and one inline style: the site's stylesheet, allowed by its
# hash (templating.InlineStyle). htmx is configured (meta htmx-config) not to inject its
# indicator style and not to eval.
def csp(style_source: str = "") -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self' {style_source}".rstrip(),
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


CSP = csp()
# Pages that show personal data: no copy in the browser's or a proxy's cache.
NO_STORE = CacheControlHeader(no_store=True)


def security_headers(production: bool, style_source: str = "") -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-security-policy", csp(style_source).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"x-frame-options", b"DENY"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if production:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


def _allow_style(header: tuple[bytes, bytes], source: str) -> tuple[bytes, bytes]:
    """A policy a page set itself (e.g. stripe_routes.allow_checkout) built from csp()
    without the stylesheet's hash: add it, so the page keeps its look."""
    name, value = header
    if name.lower() != b"content-security-policy" or source.encode() in value:
        return header
    return name, value.replace(b"style-src 'self'", f"style-src 'self' {source}".encode(), 1)


def security_headers_hook(production: bool, style: InlineStyle | None = None):
    """A `before_send` hook: Litestar runs it for every response, 404s included. The
    policy names the inlined stylesheet's hash, recomputed only when the file changes."""
    made: dict[str, list[tuple[bytes, bytes]]] = {}

    def headers_now() -> list[tuple[bytes, bytes]]:
        source = style.csp_source() if style else ""
        if source not in made:
            made.clear()
            made[source] = security_headers(production, source)
        return made[source]

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            present = {name.lower() for name, _ in headers}
            if b"content-security-policy" in present and style:
                headers = [_allow_style(h, style.csp_source()) for h in headers]
            message["headers"] = [*headers, *(h for h in headers_now() if h[0] not in present)]

    add_headers.headers_now = headers_now  # the static files' fast path sends the same
    return add_headers


# Pages that can show personal data to someone who is not signed in (the signed-in areas
# also get no-store from their own router): a shared or public computer's cache and the
# back button must not keep them. A path matches a prefix at a "/" or at its end.
NO_STORE_PREFIXES = (
    "/pay",  # amount page (name, address), confirm errors, /pay/receipt/…, /pay/again/…, /pay/return
    "/reset-password",
    "/verify",
    "/profile",  # includes /profile/email/confirm
    "/account",
    "/accounts",
    "/login",
    "/register",
    "/forgot-username",
    "/forgot-password",
    "/dev/mailbox",
)
NO_STORE_VALUE = b"no-store"
# The one exception: the amount form that POST /pay answers. Chrome cannot go Back to a
# POST answer marked no-store ("Confirm Form Resubmission"), and going Back to that very
# form, with its idempotency key, is what turns a second click into the same payment
# instead of a new one. no-store would not hide it from the next person at a shared
# computer either: the browser offers to send the form again. So it is kept out of
# shared caches and never reused without asking the server (private, no-cache), and it
# shows no more than initials and a masked address to a guest.
BACK_BUTTON_FORMS = {("POST", "/pay")}
PRIVATE_NO_CACHE = b"private, no-cache"
PRIVATE = b"private"  # the default: a browser may keep it, a shared cache may not


_NO_STORE_EXACT = frozenset(NO_STORE_PREFIXES)
_NO_STORE_STARTS = tuple(p + end for p in NO_STORE_PREFIXES for end in ("/", "."))


def needs_no_store(path: str) -> bool:
    """A NO_STORE_PREFIXES path itself, or below it (/account/…), or with a suffix
    (/pay.json). Asked for every response: one set look-up and one startswith."""
    return path in _NO_STORE_EXACT or path.startswith(_NO_STORE_STARTS)


async def no_store_hook(message: Message, scope: Scope) -> None:
    """A `before_send` hook: `Cache-Control: no-store` on NO_STORE_PREFIXES, replacing any
    other Cache-Control, on every status (a 422 form still shows what was typed). Any
    other answer that says nothing of caching is `private`: every page carries the
    visitor's own CSRF token, and often a new token cookie, so no shared cache (a
    proxy, a CDN in front of the portal) may keep one page for everybody."""
    if message["type"] != "http.response.start":
        return
    path = scope.get("path", "")
    if needs_no_store(path):
        kept = (scope.get("method"), path) in BACK_BUTTON_FORMS and message["status"] == 200
        message["headers"] = [
            *(h for h in message.get("headers", []) if h[0].lower() != b"cache-control"),
            (b"cache-control", PRIVATE_NO_CACHE if kept else NO_STORE_VALUE),
        ]
    elif not any(name.lower() == b"cache-control" for name, _ in message.get("headers", ())):
        message["headers"] = [*message.get("headers", []), (b"cache-control", PRIVATE)]
