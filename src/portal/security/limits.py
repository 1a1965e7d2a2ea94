"""Cheap requests must stay cheap: a form body is at most 64 KB and 200 fields.

The portal's largest real form (registration) is under 2 KB and 12 fields, and it takes
no file uploads. A 1 MB form with 110,000 fields cost 0.3-0.7 s of parsing; this
middleware refuses such a body before anything parses it (the CSRF check included),
with the friendly 413 page. Other bodies (the gateway's JSON notifications) keep
PORTAL_MAX_BODY_BYTES, which Litestar enforces.
"""

from __future__ import annotations

from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

FORM_MAX_BYTES = 64 * 1024
FORM_MAX_FIELDS = 200
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


class TooLarge(HTTPException):
    status_code = 413


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return b""


def field_count(content_type: bytes, body: bytes) -> int:
    if content_type.startswith(b"multipart/"):
        boundary = content_type.partition(b"boundary=")[2].split(b";")[0].strip(b'" ')
        return body.count(b"--" + boundary) - 1 if boundary else 0
    return body.count(b"&") + 1 if body else 0


class FormLimits:
    """ASGI middleware: read a form body whole (it is small), check it, replay it."""

    def __init__(self, app: ASGIApp, max_bytes: int = FORM_MAX_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = _header(scope, b"content-type").lower()
        if scope["type"] != "http" or not content_type.startswith(FORM_TYPES):
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length.isdigit() and int(length) > self.max_bytes:
            raise TooLarge(detail="form body over the limit")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise TooLarge(detail="form body over the limit")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if field_count(content_type, body) > FORM_MAX_FIELDS:
            raise TooLarge(detail="too many form fields")
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
