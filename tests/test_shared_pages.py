"""Signed-out pages rendered once per language (src/portal/shared_pages.py): what a
visitor gets from the stored page is what the normal path would have sent them."""

from __future__ import annotations

import gzip
import re
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient

from portal.app import create_app
from portal.settings import Settings
from portal.shared_pages import SHARED, Gzipped

from resident_steps import post_form
from sample_data import GOOD_PASSWORD, add_resident, load_billing

TOKEN = re.compile(r"[0-9a-f]{128}")
VARYING = {"set-cookie", "x-request-id", "content-length", "date"}


def tokens_out(html: str) -> str:
    return TOKEN.sub("TOKEN", html)


def test_the_spliced_gzip_is_a_valid_gzip_of_the_page_with_the_token():
    segments = [b"<p>" + b"a" * 5000 + b"</p>", b'<input value="', b'"> the end ' * 300, b""]
    token = b"f" * 128
    packed = Gzipped(segments).with_token(token)
    assert gzip.decompress(packed) == token.join(segments)  # checks the CRC and the size
    assert len(packed) < len(token.join(segments)) / 4
    assert gzip.decompress(Gzipped([b"no token here"]).with_token(token)) == b"no token here"


@pytest.fixture
async def visitor(settings: Settings):
    """A client of the app with the stored pages on (as in production); clearing its
    cookies makes it a new visitor."""
    app = create_app(replace(settings, templates_reload=False))
    async with AsyncTestClient(app=app, base_url="http://portal.test") as client:
        yield client


async def normal_path(visitor, path: str):
    """The same request through the normal path (any other cookie takes it)."""
    visitor.cookies.set("other", "1")
    response = await visitor.get(path, headers={"accept-encoding": "gzip"})
    visitor.cookies.delete("other")
    return response


def same_headers(one, other) -> bool:
    keep = lambda r: {k: v for k, v in r.headers.items() if k not in VARYING}  # noqa: E731
    return keep(one) == keep(other)


async def test_each_visitor_gets_the_page_with_their_own_token(visitor):
    for path in sorted(SHARED):
        answers, tokens = [], []
        for encoding in ("gzip", "identity", "gzip"):
            visitor.cookies.clear()  # a new visitor
            response = await visitor.get(path, headers={"accept-encoding": encoding})
            assert response.status_code == 200, path
            token = visitor.cookies["portal_csrf"]
            assert TOKEN.fullmatch(token), path
            assert set(TOKEN.findall(response.text)) == {token}, path
            assert "<style>" in response.text, path  # a first visit: site.css inlined
            answers.append(response)
            tokens.append(token)
        assert answers[0].headers["content-encoding"] == "gzip", path
        assert "content-encoding" not in answers[1].headers, path
        assert len(set(tokens)) == 3
        # The normal path renders the same first page ...
        visitor.cookies.clear()
        normal = await normal_path(visitor, path)
        assert len({tokens_out(r.text) for r in [normal, *answers]}) == 1, path
        assert same_headers(answers[0], normal), path
        # ... and the same later page, for a visitor who has a token: theirs, no new cookie.
        later = await visitor.get(path, headers={"accept-encoding": "gzip"})
        assert "set-cookie" not in later.headers and "<style>" not in later.text, path
        assert set(TOKEN.findall(later.text)) == {visitor.cookies["portal_csrf"]}, path
        normal = await normal_path(visitor, path)
        assert tokens_out(normal.text) == tokens_out(later.text), path
        assert same_headers(later, normal), path


async def test_the_stored_pages_token_signs_a_form_in(visitor, settings):
    first = visitor
    load_billing(settings.database)
    add_resident(settings.database, "maria1", "2000001", "maria@example.com")
    landing = await first.get("/")
    assert "set-cookie" in landing.headers
    signed_in = await post_form(
        first, "/login", {"username": "maria1", "password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert signed_in.status_code == 303
    # Signed in, the front page is not the stored one: it sends the resident to My Account.
    home = await first.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/account"


async def test_each_language_has_its_own_stored_page(visitor):
    english = await visitor.get("/register")
    visitor.cookies.set("portal_lang", "es")
    spanish = await visitor.get("/register")
    assert 'lang="en"' in english.text and 'lang="es"' in spanish.text
    assert "Registro" in spanish.text or "registr" in spanish.text.lower()
    assert tokens_out(english.text) != tokens_out(spanish.text)


async def test_production_cookie_is_the_host_prefixed_one(tmp_path):
    settings = Settings(
        env="production",
        secret_key="x" * 40,
        base_url="https://portal.example",
        database=tmp_path / "production.sqlite3",
    )
    async with AsyncTestClient(app=create_app(settings), base_url="https://portal.example") as c:
        normal = await c.get("/", headers={"cookie": "other=1"})
        assert "set-cookie" in normal.headers
        c.cookies.clear()
        shared = await c.get("/")
    shape = [
        TOKEN.sub("T", normal.headers["set-cookie"]),
        TOKEN.sub("T", shared.headers["set-cookie"]),
    ]
    assert shape[0] == shape[1] and shape[0].startswith("__Host-portal_csrf=T; Path=/; Secure")
    assert (
        shared.headers["strict-transport-security"] == normal.headers["strict-transport-security"]
    )
