"""Security headers on every response, static files and error pages included."""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader
from litestar.types import Message, Scope

# No inline script or style anywhere: htmx is configured (meta htmx-config) not to
# inject its indicator style and not to eval.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)

# Pages that show personal data: no copy in the browser's or a proxy's cache.
NO_STORE = CacheControlHeader(no_store=True)


def security_headers(production: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"x-frame-options", b"DENY"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if production:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


def security_headers_hook(production: bool):
    """A `before_send` hook: Litestar runs it for every response, 404s included."""
    headers = security_headers(production)

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            message["headers"] = [
                *message.get("headers", []),
                *(h for h in headers if h[0] not in present),
            ]

    return add_headers
