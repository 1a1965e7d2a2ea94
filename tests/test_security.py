"""The security baseline over HTTP: headers, CSRF, body limit, friendly error pages,
compression and long-cached static files.

Routes that exist only for a test (a POST that reads its body, a GET that crashes) are
added with `Litestar.register` to an app built by the real `create_app`, so they pass
through the real middleware, CSRF check, body limit and exception handlers.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from litestar import Litestar, Request, get, post
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.testing import AsyncTestClient

from portal import templating
from portal.app import create_app
from portal.security.errors import server_error
from portal.settings import Settings
from portal.static_files import plain_css
from portal.templating import STATIC_DIR, make_environment

from helpers import boom, csrf_token

BASE = "http://portal.test"


@post("/_test/echo")
async def echo(request: Request) -> str:
    body = await request.body()
    return f"received {len(body)} bytes"


def probe_app(settings: Settings) -> Litestar:
    app = create_app(settings)
    app.register(echo)
    app.register(boom)
    return app


@pytest.fixture
async def probe(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """The real app plus the two test-only routes, with a 1000-byte body limit."""
    app = probe_app(replace(settings, max_body_bytes=1000))
    async with AsyncTestClient(app=app, base_url=BASE) as client:
        yield client


@pytest.fixture
async def production(tmp_path: Path) -> AsyncIterator[AsyncTestClient]:
    settings = Settings(
        env="production",
        secret_key="x" * 40,
        base_url="https://portal.example",
        database=tmp_path / "production.sqlite3",
    )
    app = probe_app(settings)
    async with AsyncTestClient(app=app, base_url="https://portal.example") as client:
        yield client


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("content-security-policy")
    assert policy, f"no Content-Security-Policy on {response.request.url}"
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_friendly(response, status: int, heading: str) -> None:
    """A plain-words HTML page with a way home, and nothing a developer would read."""
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    text = re.sub(r"<style>.*?</style>", "", response.text, flags=re.S)  # site.css, inlined
    assert re.search(r"<h1[^>]*>\s*" + re.escape(heading), text), text[:500]
    assert 'href="/"' in text
    assert "(909) 395-2050" in text
    for leak in ("Traceback", 'File "', "litestar", "Exception", "detail"):
        assert leak not in text, f"{leak!r} leaked into the {status} page"


# --- headers on every response -----------------------------------------------------


async def _every_kind_of_response(client: AsyncTestClient) -> dict[str, object]:
    token = await csrf_token(client)
    return {
        "landing page": await client.get("/"),
        "static file": await client.get("/static/css/site.css"),
        "404": await client.get("/no-such-page"),
        "403 csrf": await client.post("/_test/echo", content=b"x"),
        "413": await client.post(
            "/_test/echo", content=b"x" * 5000, headers={"x-csrftoken": token}
        ),
        "500": await client.get("/_test/boom"),
    }


async def test_every_response_carries_the_security_headers(probe):
    responses = await _every_kind_of_response(probe)
    assert [r.status_code for r in responses.values()] == [200, 200, 404, 403, 413, 500]
    for kind, response in responses.items():
        csp = csp_directives(response)
        policy = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, kind
        assert csp["default-src"] == ["'self'"], kind
        assert csp["script-src"] == ["'self'"], kind
        assert csp["object-src"] == ["'none'"], kind
        assert csp["base-uri"] == ["'none'"], kind
        assert csp["frame-ancestors"] == ["'none'"], kind
        assert response.headers["x-content-type-options"] == "nosniff", kind
        assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin", kind
        assert "strict-transport-security" not in response.headers, kind


async def test_production_adds_strict_transport_security(production):
    responses = await _every_kind_of_response(production)
    for kind, response in responses.items():
        hsts = response.headers.get("strict-transport-security", "")
        max_age = int(re.search(r"max-age=(\d+)", hsts).group(1)) if hsts else 0
        assert max_age >= 31_536_000, kind
        assert "'unsafe-inline'" not in response.headers["content-security-policy"], kind


async def test_pages_need_no_inline_script_or_style(client):
    """The CSP forbids inline code, so a page that relied on it would silently break. The
    one exception is site.css written into the page, allowed by its hash and nothing else."""
    site_css = plain_css((STATIC_DIR / "css" / "site.css").read_text(encoding="utf-8"))
    allowed = "'sha256-" + base64.b64encode(hashlib.sha256(site_css.encode()).digest()).decode()
    for path in ("/", "/contact", "/dev/styleguide", "/no-such-page"):
        client.cookies.clear()  # a first visit: site.css inlined; after that, linked
        if path != "/no-such-page":  # (an unknown address never runs the middleware)
            first = await client.get(path)
            assert re.findall(r"<style>(.*?)</style>", first.text, flags=re.S) == [site_css]
            later = await client.get(path)
            assert "<style" not in later.text and 'rel="stylesheet"' in later.text
        response = await client.get(path)
        html = response.text
        for script in re.findall(r"<script\b[^>]*>", html, flags=re.I):
            assert "src=" in script, f"inline script on {path}: {script}"
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), f"inline script body on {path}"
        assert csp_directives(response)["style-src"] == ["'self'", allowed + "'"], path
        assert len(re.findall(r"<style\b", html)) <= 1, path
        assert not re.search(r"\sstyle\s*=", html, flags=re.I), f"style attribute on {path}"
        assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I), f"event handler on {path}"


async def test_style_guide_is_development_only(client, production):
    assert (await client.get("/dev/styleguide")).status_code == 200
    assert (await production.get("/dev/styleguide")).status_code == 404


# --- CSRF ----------------------------------------------------------------------------


def csrf_cookie(response) -> str:
    cookies = [
        c
        for c in response.headers.get_list("set-cookie")
        if c.split("=")[0] in ("portal_csrf", "__Host-portal_csrf")
    ]
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    return cookies[0]


def cookie_flags(cookie: str) -> set[str]:
    return {part.strip().lower() for part in cookie.split(";")[1:]}


async def test_csrf_cookie_is_httponly_and_samesite_lax(client):
    flags = cookie_flags(csrf_cookie(await client.get("/")))
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "secure" not in flags  # development runs on plain http://127.0.0.1


async def test_csrf_cookie_is_secure_in_production(production):
    flags = cookie_flags(csrf_cookie(await production.get("/")))
    assert {"httponly", "samesite=lax", "secure"} <= flags


async def test_a_post_without_the_csrf_token_is_refused_with_a_friendly_page(probe):
    await probe.get("/")  # the cookie exists; only the token is missing
    response = await probe.post("/_test/echo", data={"name": "value"})
    assert_friendly(response, 403, "This form could not be sent")
    assert "received" not in response.text


async def test_a_post_with_a_wrong_csrf_token_is_refused(probe):
    await csrf_token(probe)
    response = await probe.post("/_test/echo", content=b"x", headers={"x-csrftoken": "0" * 64})
    assert response.status_code == 403


async def test_a_post_with_another_genuine_token_than_its_cookie_is_refused(probe, settings):
    """Both tokens signed with our secret, but not the same one: a token lifted from
    someone else's page does not pass with this browser's cookie."""
    from litestar.middleware.csrf import generate_csrf_token

    await csrf_token(probe)
    other = generate_csrf_token(secret=settings.secret_key)
    response = await probe.post("/_test/echo", content=b"x", headers={"x-csrftoken": other})
    assert response.status_code == 403


async def test_a_post_with_the_csrf_token_passes(probe):
    token = await csrf_token(probe)
    by_header = await probe.post("/_test/echo", content=b"abc", headers={"x-csrftoken": token})
    assert (by_header.status_code, by_header.text) == (201, "received 3 bytes")
    by_form = await probe.post("/_test/echo", data={"_csrf_token": token, "name": "value"})
    assert by_form.status_code == 201


async def test_the_login_form_post_passes_csrf_with_its_token(client):
    """POST /login is the accounts feature's; whatever it answers, CSRF let it through."""
    token = await csrf_token(client)
    response = await client.post("/login", data={"_csrf_token": token, "username": "x"})
    assert response.status_code != 403


async def test_every_form_carries_the_csrf_token(client):
    html = (await client.get("/")).text
    forms = re.findall(r"<form\b[^>]*method=\"post\".*?</form>", html, flags=re.S | re.I)
    assert forms, "the landing page has a login form"
    for form in forms:
        assert 'name="_csrf_token"' in form


# --- body size, 404, 500 -------------------------------------------------------------


async def test_a_body_over_the_limit_gets_413_and_a_friendly_page(probe):
    token = await csrf_token(probe)
    small = await probe.post("/_test/echo", content=b"x" * 900, headers={"x-csrftoken": token})
    assert small.status_code == 201  # under the limit the same route works
    response = await probe.post("/_test/echo", content=b"x" * 5000, headers={"x-csrftoken": token})
    assert_friendly(response, 413, "What you sent is too large")


async def test_an_unknown_url_gets_a_friendly_404(client):
    response = await client.get("/no/such/page")
    assert_friendly(response, 404, "Page not found")


async def test_a_crash_gets_a_500_page_without_a_stack_trace(probe):
    response = await probe.get("/_test/boom")
    assert_friendly(response, 500, "Sorry, something went wrong on our side")
    assert "secret-detail" not in response.text
    assert "RuntimeError" not in response.text


async def test_server_error_handler_alone_leaks_nothing(settings):
    """The handler itself, outside create_app: a bare app with only our templates."""

    @get("/crash")
    async def crash() -> str:
        raise RuntimeError("secret-detail")

    app = Litestar(
        route_handlers=[crash],
        exception_handlers={Exception: server_error},
        template_config=TemplateConfig(
            instance=JinjaTemplateEngine.from_environment(make_environment(settings))
        ),
    )
    async with AsyncTestClient(app=app) as bare:
        response = await bare.get("/crash")
    assert response.status_code == 500
    assert "secret-detail" not in response.text
    assert "Traceback" not in response.text
    assert "Sorry, something went wrong on our side" in response.text


# --- compression, caching, Vary -------------------------------------------------------


async def test_pages_are_gzip_compressed_when_the_client_accepts_it(client):
    await client.get("/")  # not a first visit: both answers link site.css
    zipped = await client.get("/", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers.get("content-encoding") == "gzip"
    plain = await client.get("/", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert "Login to My Account" in zipped.text
    # httpx counts the bytes on the wire before decoding them.
    assert zipped.num_bytes_downloaded < len(plain.content) / 2


async def test_rendered_pages_are_gzipped_whole_and_small_answers_are_not(client):
    """What Litestar renders (here a page with a query string, so not the stored
    signed-out page) is gzipped in one piece: the right length, the same text, Vary on
    both headers. A two-byte answer is sent as it is."""
    await client.get("/")  # not a first visit
    plain = await client.get("/?lang=x", headers={"Accept-Encoding": "identity"})
    zipped = await client.get("/?lang=x", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) == zipped.num_bytes_downloaded
    assert zipped.num_bytes_downloaded < len(plain.content) / 2
    assert _without_tokens(zipped.text) == _without_tokens(plain.text)
    vary = {v.strip().lower() for v in zipped.headers["vary"].split(",")}
    assert {"accept-encoding", "hx-request"} <= vary
    health = await client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in health.headers and health.text.strip() == "ok"


def _without_tokens(html: str) -> str:
    return re.sub(r"[A-Za-z0-9_\-]{30,}", "TOKEN", html)


async def test_landing_page_varies_on_hx_request(client):
    response = await client.get("/")
    vary = {v.strip().lower() for v in response.headers.get("vary", "").split(",")}
    assert "hx-request" in vary


def sha10(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


async def test_static_assets_have_a_content_hash_and_are_cached_for_a_year(client):
    html = (await client.get("/register")).text
    js = f"/static/js/htmx.min.js?v={sha10(STATIC_DIR / 'js' / 'htmx.min.js')}"
    assert f'src="{js}"' in html
    referenced = re.findall(r'(?:href|src)="(/static/[^"?]+)\?v=([0-9a-f]+)"', html)
    assert {path for path, _ in referenced} >= {"/static/js/portal.js", "/static/js/htmx.min.js"}
    for path, version in referenced:
        file = STATIC_DIR / path.removeprefix("/static/")
        assert version == sha10(file), path
        response = await client.get(f"{path}?v={version}")
        assert response.status_code == 200, path
        served = file.read_bytes()
        if file.suffix == ".css":  # var() written out for old browsers
            served = plain_css(served.decode()).encode()
        assert response.content == served
        cache = response.headers.get("cache-control", "")
        assert "max-age=31536000" in cache and "immutable" in cache, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"].startswith("default-src 'self'")


async def test_static_files_answer_from_memory_with_gzip_etag_and_304(client):
    file = STATIC_DIR / "js" / "htmx.min.js"
    plain = await client.get("/static/js/htmx.min.js", headers={"accept-encoding": "identity"})
    assert plain.content == file.read_bytes() and "content-encoding" not in plain.headers
    assert plain.headers["content-type"].startswith("text/javascript")
    assert "immutable" not in plain.headers["cache-control"]  # no ?v=: may change
    packed = await client.get("/static/js/htmx.min.js", headers={"accept-encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and packed.content == file.read_bytes()
    assert int(packed.headers["content-length"]) < len(file.read_bytes()) / 2
    assert "accept-encoding" in packed.headers["vary"].lower()
    etag = packed.headers["etag"]
    again = await client.get(
        "/static/js/htmx.min.js", headers={"if-none-match": etag, "accept-encoding": "gzip"}
    )
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    # Each encoding is its own representation, with its own strong ETag (RFC 9110 8.8.3):
    # a plain copy is not the gzipped one, so its tag gets the whole file.
    assert plain.headers["etag"] != etag
    other = {"if-none-match": etag, "accept-encoding": "identity"}
    whole = await client.get("/static/js/htmx.min.js", headers=other)
    assert whole.status_code == 200 and whole.content == file.read_bytes()
    same = {"if-none-match": plain.headers["etag"], "accept-encoding": "identity"}
    assert (await client.get("/static/js/htmx.min.js", headers=same)).status_code == 304
    assert (await client.get("/static/js/nothing-here.js")).status_code == 404
    assert (await client.get("/static/../pyproject.toml")).status_code == 404
    wrong_method = await client.post("/static/js/htmx.min.js")
    assert wrong_method.status_code in (403, 404, 405)  # never the file


async def test_icons_and_robots_txt_answer_where_browsers_and_crawlers_look(client):
    """Browsers without SVG icons ask for /favicon.ico (and iPhones for
    /apple-touch-icon.png), crawlers for /robots.txt: each is a file, not a 404."""
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content == (STATIC_DIR / "img" / "favicon.ico").read_bytes()
    assert icon.content[:4] == b"\x00\x00\x01\x00" and icon.content[6:8] == b"\x20\x20"  # 32 px
    for path in ("/apple-touch-icon.png", "/apple-touch-icon-precomposed.png"):
        touch = await client.get(path)
        assert touch.status_code == 200 and touch.headers["content-type"] == "image/png"
        assert touch.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", touch.content[16:24]) == (180, 180), path
    robots = await client.get("/robots.txt")
    assert robots.headers["content-type"] == "text/plain; charset=utf-8"
    rules = [line for line in robots.text.splitlines() if line and not line.startswith("#")]
    assert rules[0] == "User-agent: *" and "Disallow: /account" in rules
    assert "Disallow: /" not in rules  # the public pages stay findable
    assert not any("staff" in line for line in robots.text.splitlines())  # not advertised
    for response in (icon, robots):
        assert response.headers["cache-control"] == "public, max-age=86400"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/favicon.png")).status_code == 404  # only those names


async def test_stylesheet_works_in_browsers_without_css_variables(client):
    """Internet Explorer 11, Opera Mini and old Safari and Android browsers drop every
    declaration that uses var(): the header's blue and the buttons' colour went, leaving
    white words on white. What is served, linked or inlined, has the values written out."""
    source = (STATIC_DIR / "css" / "site.css").read_text(encoding="utf-8")
    assert "var(--brand-dark)" in source  # designers keep the variables
    linked = (
        await client.get("/static/css/site.css", headers={"accept-encoding": "identity"})
    ).text
    client.cookies.clear()
    inlined = re.findall(r"<style>(.*?)</style>", (await client.get("/")).text, flags=re.S)
    for css in (linked, *inlined):
        assert "var(" not in re.sub(r"/\*.*?\*/", "", css, flags=re.S)  # outside comments
        assert ".site-header { background: #1a4480; color: #fff; }" in css
        assert "--brand-dark: #1a4480;" in css  # the definitions stay
        # Nor the `inset` shorthand (Chrome before 87, Safari before 14.1): the dialog's
        # backdrop would lose its place over the page.
        assert not re.search(r"[{;\s]inset\s*:", css)


def test_plain_css_writes_out_only_constant_variables():
    css = (
        ":root { --ink: #1b1b1b; --theme: white; }\n"
        "@media (prefers-color-scheme: dark) { :root { --theme: black; } }\n"
        "/* --ink: red; is only a comment */\n"
        "p { color: var(--ink); background: var( --theme ); border-color: var(--ink, red); }\n"
        "q { color: var(--nowhere); }"
    )
    out = plain_css(css)
    assert "p { color: #1b1b1b; background: var( --theme ); border-color: var(--ink, red); }" in out
    assert "q { color: var(--nowhere); }" in out  # an undefined name is left to the browser
    assert out.startswith(":root { --ink: #1b1b1b; --theme: white; }")


def test_asset_hash_follows_the_content(tmp_path, monkeypatch):
    monkeypatch.setattr(templating, "STATIC_DIR", tmp_path)
    (tmp_path / "a.css").write_text("body { color: black }")
    (tmp_path / "b.css").write_text("body { color: navy }")
    a, b = templating.asset("a.css"), templating.asset("b.css")
    assert a == f"/static/a.css?v={sha10(tmp_path / 'a.css')}"
    assert b == f"/static/b.css?v={sha10(tmp_path / 'b.css')}"
    assert a.split("?v=")[1] != b.split("?v=")[1]


async def test_static_files_pick_up_a_new_file_in_development_and_read_nothing_outside(
    tmp_path,
):
    from portal.static_files import StaticFiles

    static = tmp_path / "static"
    static.mkdir()
    (tmp_path / "secret.txt").write_text("not for the web")

    async def elsewhere(scope, receive, send):  # what Litestar would answer: not found
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    files = StaticFiles(elsewhere, static, reload=True)

    async def get(path: str) -> tuple[int, bytes]:
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
        await files(scope, None, send)
        return sent[0]["status"], sent[1]["body"]

    assert (await get("/static/new.css"))[0] == 404
    (static / "new.css").write_text("p { color: navy }")  # a designer adds a file
    assert await get("/static/new.css") == (200, b"p { color: navy }")
    assert (await get("/static/../secret.txt"))[0] == 404
    assert (await get("/static/%2e%2e/secret.txt"))[0] == 404


async def test_a_form_body_that_cannot_be_read_is_refused_like_a_forged_form(probe):
    await csrf_token(probe)  # the cookie exists; the form carrying the token is broken
    response = await probe.post(
        "/_test/echo",
        content=b'--x\r\nContent-Disposition: form-data; name="_csrf_token"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert_friendly(response, 403, "This form could not be sent")
