"""gzip for the responses Litestar renders: pages, htmx fragments, CSV files.

(Signed-out pages and static files come gzipped already, made once: shared_pages.py and
static_files.py.) Litestar's own compression middleware built a GzipFile and a buffer
for every response, a 2-byte one included, and flushed twice; this compresses a body in
one call, only when it is worth it.
"""

from __future__ import annotations

import zlib

from litestar.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSIBLE = (b"text/", b"application/json", b"application/javascript", b"image/svg+xml")


class GzipPages:
    """A whole body (every response here is one) of at least `minimum_size` bytes, of a
    text type and not already encoded, goes gzipped to a client that accepts gzip,
    with `Vary: Accept-Encoding`. Anything else passes unchanged."""

    def __init__(self, app: ASGIApp, *, minimum_size: int = 500, level: int = 4) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope_accepts_gzip(scope):
            await self.app(scope, receive, send)
            return
        start: Message | None = None

        async def send_gzipped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message  # held until the body says whether to compress
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            first, start = start, None
            headers = list(first.get("headers", ()))
            body = message.get("body", b"")
            if message.get("more_body") or not self._worth_it(headers, body):
                await send(first)
                await send(message)
                return
            packer = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # 31: a gzip member
            packed = packer.compress(body) + packer.flush()
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-encoding", b"gzip"))
            headers = vary_accept_encoding(headers)
            headers.append((b"content-length", str(len(packed)).encode()))
            await send({**first, "headers": headers})
            await send({"type": "http.response.body", "body": packed})

        await self.app(scope, receive, send_gzipped)

    def _worth_it(self, headers: list, body: bytes) -> bool:
        if len(body) < self.minimum_size:
            return False
        content_type = b""
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-encoding":
                return False
            if lowered == b"content-type":
                content_type = value
        return content_type.startswith(COMPRESSIBLE)


def vary_accept_encoding(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`Accept-Encoding` added to the response's Vary header (or a Vary header with it)."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            headers[index] = (name, value + b",Accept-Encoding")
            return headers
    headers.append((b"vary", b"Accept-Encoding"))
    return headers


def scope_accepts_gzip(scope: Scope) -> bool:
    """Whether the request's Accept-Encoding takes gzip (see accepts_gzip)."""
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            return accepts_gzip(value)
    return False


def accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether an Accept-Encoding value takes gzip (RFC 9110, 12.5.3): listed, or `*`,
    without `q=0`. What browsers send ("gzip, deflate, br, zstd") takes the quick way."""
    value = accept_encoding.lower()
    if b"q=" not in value:
        return b"gzip" in value or b"*" in value
    weights = {}
    for item in value.split(b","):
        coding, _, params = item.partition(b";")
        weight = 1.0
        for param in params.split(b";"):
            name, _, number = param.partition(b"=")
            if name.strip() == b"q":
                try:
                    weight = float(number.strip())
                except ValueError:
                    weight = 0.0
        weights[coding.strip()] = weight
    for coding in (b"gzip", b"x-gzip", b"*"):
        if coding in weights:
            return weights[coding] > 0
    return False
