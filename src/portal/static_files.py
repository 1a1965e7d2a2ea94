"""/static/: the stylesheet, scripts and images, answered from memory.

Each file under static/ is read when first asked for, with its gzip form (level 9, made
once, kept only when smaller), a strong ETag (its content hash) and its content type.
After that a request costs a dictionary look-up: no file read, no worker thread, no gzip
per request. Only files inside static/ are ever read (the resolved path is checked).

- `?v=<hash>` URLs (templating.asset) that match the file are `immutable`: a browser
  never asks again. Every /static/ answer may be kept for a year, as before.
- `If-None-Match` with the file's ETag answers 304 Not Modified, no body.
- A few files are also answered at the addresses browsers and crawlers ask for without
  a link (`AT_ROOT`: /favicon.ico, /apple-touch-icon.png, /robots.txt), kept a day.
- With `reload` (development), a file whose modification time changed is read again,
  so a designer's edit (or a new file) shows on the next request.

Anything else (a missing file, a method other than GET or HEAD) goes on to Litestar,
which answers it like any other unknown address. Security headers, the request id and
the log line are added around this, as for every response (app.py).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from litestar.types import ASGIApp, Receive, Scope, Send

from portal.compression import accepts_gzip

PREFIX = "/static/"
YEAR = b"public, max-age=31536000"
IMMUTABLE = b"public, max-age=31536000, immutable"
DAY = b"public, max-age=86400"
# Addresses that browsers and crawlers ask for by convention, not from our pages: old
# browsers and Safari before 26 want a bitmap icon (make them with scripts/make_icons.py).
AT_ROOT = {
    "/favicon.ico": "img/favicon.ico",
    "/apple-touch-icon.png": "img/apple-touch-icon.png",
    "/apple-touch-icon-precomposed.png": "img/apple-touch-icon.png",
    "/robots.txt": "robots.txt",
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    version: str  # the 10 characters templating.asset() puts in ?v=
    etag: bytes
    content_type: bytes
    modified_ns: int

    @classmethod
    def read(cls, path: Path) -> StaticFile:
        raw = path.read_bytes()
        version = hashlib.sha256(raw).hexdigest()[:10]  # as templating.asset() hashes it
        body = plain_css(raw.decode("utf-8")).encode("utf-8") if path.suffix == ".css" else raw
        digest = hashlib.sha256(body).hexdigest()
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        content_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        if content_type and content_type.startswith(("text/", "image/svg")):
            content_type += "; charset=utf-8" if "charset" not in content_type else ""
        return cls(
            body=body,
            gzipped=packed if len(packed) < len(body) else None,
            version=version,
            etag=f'"{digest[:32]}"'.encode(),
            content_type=(content_type or "application/octet-stream").encode(),
            modified_ns=path.stat().st_mtime_ns,
        )


# A custom property's definition (`--brand: #005ea2;`) and a use of one (`var(--brand)`).
_DEFINITION = re.compile(r"(--[A-Za-z0-9_-]+)\s*:\s*([^;{}]+?)\s*(?=[;}])")
_USE = re.compile(r"var\(\s*(--[A-Za-z0-9_-]+)\s*\)")
_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def plain_css(text: str) -> str:
    """The stylesheet with each `var(--name)` written out as its value, wherever the
    name has one value in the whole file (our colours: defined once, never changed).
    A browser without custom properties (Internet Explorer 11, Opera Mini, Safari
    before 9.1, Android's old stock browser) drops any declaration that uses var(),
    which left white text on a white header and white words on colourless buttons.
    Designers keep editing the variables; the definitions stay in the file. A name
    given two values (a dark theme, say) is left as var(), as are uses with a fallback."""
    values: dict[str, set[str]] = {}
    for name, value in _DEFINITION.findall(_COMMENT.sub("", text)):
        values.setdefault(name, set()).add(value)
    constant = {name: next(iter(found)) for name, found in values.items() if len(found) == 1}

    def written_out(use: re.Match) -> str:
        return constant.get(use.group(1), use.group(0))

    return _USE.sub(written_out, text)


class StaticFiles:
    def __init__(self, app: ASGIApp, directory: Path, reload: bool) -> None:
        self.app = app
        self.directory = directory.resolve()
        self.reload = reload
        self.files: dict[str, StaticFile] = {}  # by the name after /static/

    def _file(self, name: str) -> StaticFile | None:
        found = self.files.get(name)
        if found is not None and not self.reload:
            return found
        path = (self.directory / name).resolve()
        try:
            if not path.is_relative_to(self.directory) or not path.is_file():
                return None
            if found is None or path.stat().st_mtime_ns != found.modified_ns:
                found = self.files[name] = StaticFile.read(path)
        except (OSError, ValueError):  # unreadable, or a name the file system refuses
            return None
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        at_root = AT_ROOT.get(path)
        if scope["type"] != "http" or not (at_root or path.startswith(PREFIX)):
            await self.app(scope, receive, send)
            return
        found = self._file(at_root or path[len(PREFIX) :])
        if found is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        # the log line's and the metrics' route
        scope["path_template"] = path if at_root else "/static"
        request_headers = dict(scope["headers"])
        query = scope.get("query_string", b"")
        versioned = query == b"v=" + found.version.encode()
        packed = found.gzipped is not None and accepts_gzip(
            request_headers.get(b"accept-encoding", b"")
        )
        # Each encoding is its own representation, so its own strong ETag (RFC 9110).
        etag = found.etag[:-1] + b'-gzip"' if packed else found.etag
        headers = [
            (b"content-type", found.content_type),
            (b"etag", etag),
            (b"cache-control", DAY if at_root else IMMUTABLE if versioned else YEAR),
            (b"vary", b"Accept-Encoding"),
        ]
        if etag in request_headers.get(b"if-none-match", b""):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = found.body
        if packed:
            body = found.gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
