"""HEAD answered for every page, as GET is, without the body (RFC 9110, 9.3.2); the
methods an address takes (OPTIONS, a 405's Allow) include HEAD wherever GET is.

Litestar answers HEAD only for routes declared with it, so `HEAD /` got 405: uptime
monitors and link checkers that ask with HEAD saw a broken site. Here the app sees a
GET and the client gets its status and headers (Content-Length included, as GET would
send it) with an empty body. A HEAD runs exactly what the same GET runs (guards, look-up
budgets, audit rows), so it gives nobody anything a GET does not.

The scope's method is GET only while the app runs and is HEAD again afterwards, so the
request's log line and metrics (observe/logs.py, outside this) say HEAD, with the route
that Litestar found. (/static/ answers HEAD itself, before this: static_files.py.)
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":  # Litestar's answer lists GET: add HEAD
            await self.app(scope, receive, _with_head_allowed(send))
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        scope["method"] = "GET"
        try:
            await self.app(scope, receive, send_headers_only)
        finally:
            scope["method"] = "HEAD"


def _with_head_allowed(send: Send) -> Send:
    async def send_allow(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (name, allowed_methods(value.decode("latin-1")).encode("latin-1"))
                if name.lower() == b"allow"
                else (name, value)
                for name, value in message.get("headers", [])
            ]
            message = {**message, "headers": headers}
        await send(message)

    return send_allow


def allowed_methods(allow: str) -> str:
    """An Allow list (a 405's, an OPTIONS answer's) with HEAD wherever GET is in it."""
    methods = [method.strip() for method in allow.split(",") if method.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)
