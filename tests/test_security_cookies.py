"""`__Host-` cookie names in production and a fresh CSRF token on demand (issue 11,
item 14, cookie part)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from litestar import Request, Response, post
from litestar.testing import AsyncTestClient

from portal.accounts import sessions
from portal.accounts.signin import DEVICE_COOKIE
from portal.app import create_app
from portal.i18n import LOCALE_COOKIE
from portal.security import cookies
from portal.security.cookies import issue_csrf_cookie
from portal.security.csrf import CSRFGuard

from helpers import csrf_token

BASE = "https://portal.example"
SECRET = "q8Zr-3vKw_T1mXy7LpD4nH0sBcJ9eUfA2gQ6tVoR5iW"


def set_cookies(response) -> dict[str, str]:
    """name -> the whole Set-Cookie header."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def attributes(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


@post("/_test/sign-in")
async def fake_sign_in(request: Request) -> Response:
    """Stands in for the sign-in handler: answers with a rotated CSRF token."""
    response = Response("signed in", status_code=200)
    issue_csrf_cookie(response, request.app.state.services.settings)
    return response


@post("/_test/echo")
async def echo() -> str:
    return "ok"


@pytest.fixture
def production_settings(settings):
    return replace(settings, env="production", secret_key=SECRET, base_url=BASE)


@pytest.fixture
async def production(production_settings):
    app = create_app(production_settings)
    app.register(fake_sign_in)
    app.register(echo)
    async with AsyncTestClient(app=app, base_url=BASE) as client:
        yield client


@pytest.fixture
async def development(settings):
    app = create_app(settings)
    app.register(fake_sign_in)
    app.register(echo)
    async with AsyncTestClient(app=app, base_url="http://portal.test") as client:
        yield client


def test_every_portal_cookie_name_comes_from_one_module():
    assert sessions.COOKIE == cookies.SESSION
    assert LOCALE_COOKIE == cookies.LANGUAGE
    assert DEVICE_COOKIE == cookies.DEVICE
    assert cookies.NAMES == (
        cookies.SESSION,
        cookies.CSRF,
        cookies.LANGUAGE,
        cookies.DEVICE,
        cookies.PENDING,
    )
    assert cookies.wire_name(cookies.SESSION, production=True) == "__Host-portal_session"
    assert cookies.wire_name(cookies.SESSION, production=False) == "portal_session"


async def test_production_cookies_have_host_names_secure_root_path_and_no_domain(production):
    page = await production.get("/")
    found = set_cookies(page)
    assert "__Host-portal_csrf" in found and "portal_csrf" not in found
    flags = attributes(found["__Host-portal_csrf"])
    assert {"path=/", "secure", "httponly", "samesite=lax"} <= flags
    assert not [f for f in flags if f.startswith("domain")]
    switched = await production.get("/language?lang=es&next=/", follow_redirects=False)
    language = set_cookies(switched)["__Host-portal_lang"]
    assert {"path=/", "secure"} <= attributes(language)
    # the renamed cookies work: Spanish pages, and a POST with the token passes
    assert 'lang="es"' in (await production.get("/")).text
    token = await csrf_token(production)
    assert (await production.post("/_test/echo", data={"_csrf_token": token})).status_code == 201


async def test_production_ignores_a_cookie_without_the_host_prefix(production):
    """A plain portal_csrf could be planted from a sibling subdomain or over plain http."""
    token = await csrf_token(production)
    production.cookies.clear()
    refused = await production.post(
        "/_test/echo", data={"_csrf_token": token}, headers={"Cookie": f"portal_csrf={token}"}
    )
    assert refused.status_code == 403
    allowed = await production.post(
        "/_test/echo",
        data={"_csrf_token": token},
        headers={"Cookie": f"__Host-portal_csrf={token}"},
    )
    assert allowed.status_code == 201


async def test_development_keeps_plain_names(development):
    found = set_cookies(await development.get("/"))
    assert "portal_csrf" in found and "secure" not in attributes(found["portal_csrf"])


def test_issue_csrf_cookie_sets_a_valid_new_token_on_a_response(settings):
    response = Response("x")
    token = issue_csrf_cookie(response, settings)
    [cookie] = response.cookies
    assert (cookie.key, cookie.value, cookie.path) == ("portal_csrf", token, "/")
    assert cookie.httponly and cookie.samesite == "lax" and not cookie.secure
    guard = CSRFGuard(app=None, config=cookies.csrf_config(settings))
    assert guard._csrf_tokens_match(token, token)  # signed with the secret key
    assert issue_csrf_cookie(Response("y"), settings) != token  # new every time
    production = replace(settings, env="production", secret_key=SECRET)
    secure = Response("z")
    issue_csrf_cookie(secure, production)
    assert secure.cookies[0].secure


@pytest.mark.parametrize("kind", ["development", "production"])
async def test_after_a_rotation_the_old_token_is_refused_and_the_new_one_passes(
    kind, development, production
):
    client = development if kind == "development" else production
    old = await csrf_token(client)
    rotated = await client.post("/_test/sign-in", data={"_csrf_token": old})
    assert rotated.status_code == 200
    name = "portal_csrf" if kind == "development" else "__Host-portal_csrf"
    new = client.cookies[name]
    assert new != old and name in set_cookies(rotated)
    stale = await client.post("/_test/echo", data={"_csrf_token": old})
    assert stale.status_code == 403
    fresh = await client.post("/_test/echo", data={"_csrf_token": new})
    assert fresh.status_code == 201
