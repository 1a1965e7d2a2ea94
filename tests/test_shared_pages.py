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


async def test_each_visitor_gets_the_page_with_their_own_token(visitor):
    for path in sorted(SHARED):
        answers, tokens = [], []
        for encoding in ("gzip", "identity"):
            visitor.cookies.clear()  # a new visitor
            response = await visitor.get(path, headers={"accept-encoding": encoding})
            assert response.status_code == 200, path
            token = visitor.cookies["portal_csrf"]
            assert TOKEN.fullmatch(token), path
            assert set(TOKEN.findall(response.text)) == {token}, path
            answers.append(response)
            tokens.append(token)
        one, two = answers
        assert one.headers["content-encoding"] == "gzip", path
        assert "content-encoding" not in two.headers, path
        assert tokens[0] != tokens[1]
        # The normal path (any other cookie takes it) renders the same page.
        visitor.cookies.set("other", "1")
        normal = await visitor.get(path, headers={"accept-encoding": "gzip"})
        visitor.cookies.delete("other")
        assert tokens_out(normal.text) == tokens_out(one.text) == tokens_out(two.text), path
        same = {k: v for k, v in normal.headers.items() if k not in VARYING}
        assert {k: v for k, v in one.headers.items() if k not in VARYING} == same, path
        # A visitor who has a token keeps it: no new cookie.
        again = await visitor.get(path)
        assert "set-cookie" not in again.headers and tokens[1] in again.text


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
