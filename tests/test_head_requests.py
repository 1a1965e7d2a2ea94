"""HEAD is answered wherever GET is, with GET's status and headers and no body, and a
405 says which methods the address takes (src/portal/head_requests.py)."""

from __future__ import annotations

import http.client
import re

GZIP = {"Accept-Encoding": "gzip"}
SAME = ("content-type", "content-length", "content-encoding", "cache-control", "vary")


async def test_head_answers_like_get_without_the_body(client, caplog):
    await client.get("/")  # the CSRF cookie, so GET and HEAD get the same page
    for path in ("/", "/login", "/pay", "/contact", "/healthz", "/no-such-page"):
        got = await client.get(path, headers=GZIP)
        head = await client.head(path, headers=GZIP)
        assert head.status_code == got.status_code, path
        assert got.content and head.content == b"", path
        for name in SAME:
            if name == "content-length" and got.status_code == 404:
                # the error page quotes its own request id, so its size varies by a byte
                assert int(head.headers[name]) > 500, path
                continue
            assert head.headers.get(name) == got.headers.get(name), (path, name)
        assert head.headers["content-security-policy"], path
    # The log line says HEAD, with the route Litestar found while the app saw a GET.
    assert any(re.match(r"HEAD /login 200 route=/login ", m) for m in caplog.messages)


async def test_a_405_lists_the_methods_the_address_takes(client):
    page = await client.delete("/pay")
    assert page.status_code == 405
    assert page.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert "<h1" in page.text  # the friendly error page, as before
    check = await client.get("/register/check/username")
    assert check.status_code == 405 and check.headers["allow"] == "POST, OPTIONS"
    options = await client.options("/contact")
    assert options.status_code == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS"


def test_head_over_http_keeps_the_connection_usable(live_server):
    """Under uvicorn a HEAD answer carries no body bytes, so the next answer on the same
    connection is read whole."""
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    try:
        conn.request("HEAD", "/login")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        assert int(head.getheader("content-length")) > 1000
        conn.request("GET", "/healthz")
        after = conn.getresponse()
        assert after.status == 200 and after.read() == b"ok\n"
    finally:
        conn.close()
