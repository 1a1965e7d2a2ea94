"""Online accounts over HTTP after registration: sign-in, sessions, brute force,
password hashing, Forgot Username / Forgot Password, My Profile, CSRF and the audit log.

Registration and the verification link are covered in test_accounts_register.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urljoin, urlparse

import argon2
import pytest
from litestar.testing import AsyncTestClient

from portal import db as portal_db
from portal.app import create_app

from resident_steps import link_in, link_params, local, outbox, post_form, query, registration
from sample_data import GOOD_PASSWORD, load_billing

COOKIE = "portal_session"
WRONG = "not the right password at all"
NEW_PASSWORD = "copper kettle on the porch"
OTHER_PASSWORD = "seven quiet lanterns glow"
GENERIC = "Username or password is incorrect"
JAMES = {
    "username": "james2",
    "customer_number": "22222",
    "account_number": "33333",
    "email": "james@example.com",
    "confirm_email": "james@example.com",
}


# --- helpers ----------------------------------------------------------------------


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def execute(path, sql: str, params=()) -> None:
    conn = portal_db.connect_sync(path)
    conn.execute(sql, params)
    conn.close()


def user_row(settings, username: str = "maria1"):
    [row] = query(settings.database, "SELECT * FROM users WHERE username = ?", (username,))
    return row


async def make_user(settings, client, verified: bool = True, **overrides: str) -> dict[str, str]:
    """Register through the form; mark the user verified in the database."""
    form = registration(**overrides)
    response = await post_form(client, "/register", form)
    assert response.status_code == 200, response.text
    if verified:
        execute(
            settings.database,
            "UPDATE users SET verified_at = ? WHERE username = ?",
            (ago(seconds=1), form["username"]),
        )
    return form


async def sign_in(
    client,
    username: str = "maria1",
    password: str = GOOD_PASSWORD,
    remember: bool = False,
    next_: str | None = None,
    headers: dict[str, str] | None = None,
):
    data = {"username": username, "password": password}
    if remember:
        data["remember"] = "on"
    if next_ is not None:
        data["next"] = next_
    return await post_form(client, "/login", data, follow_redirects=False, headers=headers or {})


def set_cookie_header(response, name: str = COOKIE) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def cookie_value(response, name: str = COOKIE) -> str:
    return set_cookie_header(response, name).split(";", 1)[0].split("=", 1)[1]


async def signed_in_ok(client, session_id: str, path: str = "/profile") -> bool:
    """Does this session id (sent alone) reach a signed-in page?"""
    response = await client.get(
        path, headers={"Cookie": f"{COOKIE}={session_id}"}, follow_redirects=False
    )
    if response.status_code == 200:
        return True
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?notice=session-ended")
    return False


def second_device(client) -> AsyncTestClient:
    """Another browser on the same running app (shares the first client's event loop)."""
    other = AsyncTestClient(app=client.app, base_url="http://portal.test")
    other.blocking_portal = client.blocking_portal
    return other


def session_count(settings, username: str = "maria1") -> int:
    return query(
        settings.database,
        "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = ?",
        (username,),
    )[0][0]


def audit_rows(settings, event: str | None = None):
    if event is None:
        return query(settings.database, "SELECT * FROM audit_log ORDER BY id")
    return query(settings.database, "SELECT * FROM audit_log WHERE event = ? ORDER BY id", (event,))


def last_mail(settings, to: str | None = None):
    rows = [row for row in outbox(settings.database) if to is None or row["to_addr"] == to]
    assert rows, f"no mail to {to}"
    return rows[-1]


async def reset_link(settings, client, identifier: str = "maria1") -> str:
    before = len(outbox(settings.database))
    response = await post_form(client, "/forgot-password", {"identifier": identifier})
    assert response.status_code == 200
    mails = outbox(settings.database)
    assert len(mails) == before + 1, "no reset email was queued"
    return local(link_in(mails[-1]["body_text"], "/reset-password"))


async def reset_password(client, link: str, password: str, confirm: str | None = None):
    token = link_params(link)["token"]
    data = {"token": token, "password": password, "confirm_password": confirm or password}
    return await post_form(client, "/reset-password", data, follow_redirects=False)


@pytest.fixture
async def portal(settings, client):
    load_billing(settings.database)
    return client


@pytest.fixture
async def maria(settings, portal):
    await make_user(settings, portal)
    return portal


# --- sign-in ----------------------------------------------------------------------


async def test_sign_in_failure_reads_the_same_for_unknown_users_and_wrong_passwords(
    settings, maria
):
    wrong = await sign_in(maria, password=WRONG)
    unknown = await sign_in(maria, username="nobody7", password=WRONG)
    assert wrong.status_code == unknown.status_code == 422
    assert GENERIC in wrong.text and GENERIC in unknown.text
    # the pages differ only in the username echoed back into the field
    assert wrong.text.replace("maria1", "X") == unknown.text.replace("nobody7", "X")
    assert COOKIE not in maria.cookies


async def test_unknown_user_sign_in_costs_about_as_much_as_a_known_one(settings, maria):
    async def timed(username: str) -> float:
        start = time.perf_counter()
        response = await sign_in(maria, username=username, password=WRONG)
        elapsed = time.perf_counter() - start
        assert response.status_code == 422
        return elapsed

    await timed("maria1")  # warm-up
    known, unknown = [], []
    for i in range(4):  # interleaved, so a busy moment hits both sides (5 tries: no wait)
        known.append(await timed("maria1"))
        unknown.append(await timed(f"ghost{i}"))
    known_median, unknown_median = statistics.median(known), statistics.median(unknown)
    print(
        f"sign-in medians: known user {known_median * 1000:.1f} ms, unknown {unknown_median * 1000:.1f} ms"
    )
    assert unknown_median >= 0.5 * known_median, (known, unknown)


@pytest.mark.parametrize(
    ("username", "password"), [("", ""), ("maria1", ""), ("", GOOD_PASSWORD), ("   ", "x")]
)
async def test_empty_fields_ask_for_both(settings, maria, username, password):
    response = await sign_in(maria, username=username, password=password)
    assert response.status_code == 422
    assert "Enter your username and password" in response.text
    assert user_row(settings)["failed_logins"] == 0


async def test_unverified_account_is_told_to_verify_only_with_the_right_password(settings, portal):
    await make_user(settings, portal, verified=False)
    right = await sign_in(portal)
    assert right.status_code == 422
    assert "You need to verify your registration before you can log in" in right.text
    assert 'href="/verify/resend?username=maria1"' in right.text
    assert COOKIE not in portal.cookies and session_count(settings) == 0
    wrong = await sign_in(portal, password=WRONG)
    assert wrong.status_code == 422 and GENERIC in wrong.text
    assert "/verify/resend" not in wrong.text and "verify your registration" not in wrong.text
    unknown = await sign_in(portal, username="nobody7", password=WRONG)
    assert wrong.text.replace("maria1", "X") == unknown.text.replace("nobody7", "X")


async def test_successful_sign_in_lands_on_my_account(settings, maria):
    response = await sign_in(maria, username="MARIA1")  # usernames ignore case
    assert response.status_code == 303 and response.headers["location"] == "/account"
    assert (await maria.get("/account", follow_redirects=False)).status_code == 200
    profile = await maria.get("/profile", follow_redirects=False)
    assert profile.status_code == 200 and "<strong>maria1</strong>" in profile.text


def new_login_mails(settings):
    return [m for m in outbox(settings.database) if m["subject"].startswith("New login to")]


async def test_a_login_from_a_new_device_is_emailed_but_not_the_first_or_a_known_one(
    settings, maria
):
    assert (await sign_in(maria)).status_code == 303  # her first device: nothing to tell
    assert new_login_mails(settings) == []
    execute(settings.database, "UPDATE known_devices SET created_at = ?", (ago(minutes=20),))
    other = second_device(maria)
    assert (await sign_in(other)).status_code == 303
    [mail] = new_login_mails(settings)
    assert mail["to_addr"] == "maria@example.com"
    assert "not used for it before" in mail["body_text"] and "testclient" in mail["body_text"]
    assert "Forgot Password" in mail["body_text"]
    assert len(audit_rows(settings, "new_device_email")) == 1
    # Her known device again: nothing. A third new one right after: still one email (a
    # resident in private windows is not flooded).
    assert (await sign_in(maria)).status_code == 303
    third = second_device(maria)
    assert (await sign_in(third)).status_code == 303
    assert len(new_login_mails(settings)) == 1
    # A wrong password from a new device tells nothing (no login happened).
    execute(settings.database, "UPDATE known_devices SET created_at = ?", (ago(minutes=20),))
    fourth = second_device(maria)
    assert (await sign_in(fourth, password="not the password")).status_code == 422
    assert len(new_login_mails(settings)) == 1


async def test_recent_activity_shows_her_logins_and_security_changes_only(settings, maria):
    other = second_device(maria)
    await make_user(
        settings,
        other,
        username="james2",
        email="james@example.com",
        confirm_email="james@example.com",
        customer_number="22222",
        account_number="33333",
    )
    assert (await sign_in(other, username="james2")).status_code == 303
    assert (await sign_in(maria, password="not her password")).status_code == 422
    assert (await sign_in(maria)).status_code == 303
    page = (await maria.get("/profile")).text
    assert 'href="/profile/activity"' in page
    page = (await maria.get("/profile/activity")).text
    rows = re.findall(r"<tr><td>[^<]+</td><td>([^<]+)</td><td>([^<]*)</td></tr>", page)
    assert rows == [("Logged in", "testclient"), ("Wrong password", "testclient")]
    await maria.get("/language?lang=es")
    page = (await maria.get("/profile/activity")).text
    assert "Actividad reciente" in page and "Inició sesión" in page


# --- sessions ---------------------------------------------------------------------


async def test_session_id_is_rotated_at_sign_in(settings, maria):
    # a value planted before sign-in (session fixation) is not kept
    maria.cookies.set(COOKIE, "planted-by-someone-else", domain="portal.test")
    first = cookie_value(await sign_in(maria))
    assert first != "planted-by-someone-else"
    assert await signed_in_ok(maria, first)
    # signing in again from the same browser issues a new id and ends the old session
    second = cookie_value(await sign_in(maria))
    assert second != first
    hashes = [row[0] for row in query(settings.database, "SELECT id_hash FROM sessions")]
    assert hashes == [hashlib.sha256(second.encode()).hexdigest()]
    assert not await signed_in_ok(maria, first)
    assert await signed_in_ok(maria, second)


async def test_session_cookie_flags(settings, maria):
    header = set_cookie_header(await sign_in(maria)).lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert "max-age" not in header and "expires" not in header  # ends with the browser
    assert "secure" not in header  # plain http on a laptop
    remembered = set_cookie_header(await sign_in(maria, remember=True)).lower()
    assert "max-age=2592000" in remembered  # 30 days
    assert "httponly" in remembered and "samesite=lax" in remembered


async def test_session_cookie_is_secure_in_production(settings):
    load_billing(settings.database)
    production = replace(
        settings, env="production", secret_key="x" * 40, base_url="https://portal.example"
    )
    async with AsyncTestClient(
        app=create_app(production), base_url="https://portal.example"
    ) as client:
        page = await client.get("/login")
        assert "secure" in set_cookie_header(page, "__Host-portal_csrf").lower()
        await make_user(settings, client)
        response = await sign_in(client)
        assert response.status_code == 303, response.text
        header = set_cookie_header(response, f"__Host-{COOKIE}").lower()
        assert "secure" in header and "httponly" in header and "samesite=lax" in header
        logout = await post_form(client, "/logout", {}, follow_redirects=False)
        assert "secure" in set_cookie_header(logout, f"__Host-{COOKIE}").lower()


async def test_only_a_hash_of_the_session_id_is_stored(settings, maria):
    session_id = cookie_value(await sign_in(maria, remember=True))
    assert len(base64.urlsafe_b64decode(session_id + "==")) >= 16  # >= 128 random bits
    [row] = query(settings.database, "SELECT * FROM sessions")
    assert all(session_id not in str(value) for value in tuple(row))
    assert row["id_hash"] == hashlib.sha256(session_id.encode()).hexdigest()


async def test_sign_out_ends_the_session_on_the_server(settings, maria):
    session_id = cookie_value(await sign_in(maria))
    assert (await maria.get("/account", follow_redirects=False)).status_code == 200
    response = await post_form(maria, "/logout", {}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?notice=signed-out"
    assert "max-age=0" in set_cookie_header(response).lower()
    assert session_count(settings) == 0
    # a copy of the old cookie no longer works
    assert not await signed_in_ok(maria, session_id, "/account")
    assert not await signed_in_ok(maria, session_id, "/profile")
    assert [row["event"] for row in audit_rows(settings)][-1] == "sign_out"


async def test_idle_session_ends_after_30_minutes_without_remember_me(settings, maria):
    session_id = cookie_value(await sign_in(maria))
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=29),))
    assert await signed_in_ok(maria, session_id)  # 29 idle minutes are fine
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=31),))
    assert not await signed_in_ok(maria, session_id)
    assert session_count(settings) == 0


async def session_left(client, method: str = "GET", cookie: str | None = None) -> int:
    """The idle warning's question (GET /session) or its "Stay signed in" (POST), as
    session_timeout.js asks it; the seconds the answer gives."""
    headers = {"Accept": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    if method == "POST":
        response = await post_form(client, "/session", {}, headers=headers)
    else:
        response = await client.get("/session", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    return response.json()["left"]


def last_seen(settings):
    [row] = query(settings.database, "SELECT last_seen_at FROM sessions")
    return row["last_seen_at"]


async def test_idle_warning_asks_how_long_is_left_without_counting_as_a_visit(settings, maria):
    """GET /session says how long until the idle sign-out, and asking is not activity:
    a page left open, asking every so often, does not keep its session alive."""
    assert await session_left(maria) == 0  # nobody signed in
    await sign_in(maria)
    assert 30 * 60 - 5 <= await session_left(maria) <= 30 * 60
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=28),))
    seen = last_seen(settings)
    for _ in range(3):
        assert 110 <= await session_left(maria) <= 120
    assert last_seen(settings) == seen
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=31),))
    assert await session_left(maria) == 0
    # another resident's cookie, or rubbish, is no session at all
    assert await session_left(maria, cookie=f"{COOKIE}=made-up") == 0


async def test_stay_signed_in_restarts_the_idle_limit(settings, maria):
    session_id = cookie_value(await sign_in(maria))
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=29),))
    assert await session_left(maria) <= 60
    assert 30 * 60 - 5 <= await session_left(maria, "POST") <= 30 * 60
    assert datetime.fromisoformat(last_seen(settings)) > datetime.now(UTC) - timedelta(seconds=5)
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=29),))
    assert await signed_in_ok(maria, session_id)  # still signed in after 29 + 29 minutes
    # Without the form's token it is refused, and changes nothing.
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=20),))
    seen = last_seen(settings)
    refused = await maria.post("/session", headers={"Accept": "application/json"})
    assert refused.status_code == 403
    assert last_seen(settings) == seen
    # A session already over stays over.
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=31),))
    assert await session_left(maria, "POST") == 0
    assert not await signed_in_ok(maria, session_id)


async def test_stay_signed_in_without_the_script_goes_back_to_my_account(settings, maria):
    await sign_in(maria)
    response = await post_form(maria, "/session", {}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/account"
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=31),))
    response = await post_form(maria, "/session", {}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?notice=timed-out"
    page = await maria.get(response.headers["location"])
    assert "You were signed out" in page.text
    assert "we sign you out after 30 minutes without activity" in page.text


def warning_markup(page: str) -> str:
    start = page.index('<div class="dialog-backdrop" data-session-timeout')
    return page[start : page.index("</div>\n</div>", start)]


async def test_remember_me_has_no_idle_warning(settings, maria):
    """With Remember me the session has no idle limit: its pages carry no warning, and
    the time left is its 30 days. Without it, every page carries the same warning,
    nothing of the visitor's in it (it is made once per language), in their language."""
    await sign_in(maria)
    page = (await maria.get("/account")).text
    warning = warning_markup(page)
    assert "You will be signed out soon" in warning and 'data-url="/session"' in warning
    assert warning_markup((await maria.get("/profile")).text) == warning
    token = maria.cookies.get("portal_csrf")
    assert token and token in page and token not in warning and "maria" not in warning
    await make_user(settings, maria, **JAMES)
    other = second_device(maria)
    await sign_in(other, username="james2")
    assert warning_markup((await other.get("/profile")).text) == warning
    await other.get("/language?lang=es&next=/profile")
    spanish = warning_markup((await other.get("/profile")).text)
    assert "Su sesión se cerrará pronto" in spanish and "Mantener la sesión abierta" in spanish
    await sign_in(maria, remember=True)
    page = await maria.get("/account")
    assert "data-session-timeout" not in page.text
    assert 29 * 86400 < await session_left(maria) <= 30 * 86400


async def test_login_form_says_what_remember_me_changes(settings, portal):
    for path in ("/login", "/"):
        page = await portal.get(path)
        assert 'aria-describedby="remember-hint"' in page.text
        assert (
            "Keeps you logged in on this device for 30 days. Without it, we sign you out"
            " after 30 minutes without activity." in page.text
        )
    spanish = await portal.get("/login", headers={"Cookie": "portal_lang=es"})
    assert "cerramos su sesión después de 30 minutos sin actividad" in spanish.text


def _wal_frames(path) -> int:
    """Pages written to the database since the last call (each write adds its pages to
    the WAL; a full checkpoint then empties it)."""
    conn = portal_db.connect_sync(path)
    try:
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return frames


async def _get_at_once(app, path: str, cookie: str) -> int:
    """A GET straight to the app, so that several run at once (the test client sends
    one request at a time)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver.local"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver.local", 80),
        "state": {},
    }
    status = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def test_requests_arriving_together_note_a_visit_once(settings, maria):
    """A page and the requests it starts arrive together, each with the same session
    last seen minutes ago: the visit is written once, not once per request (each write
    waits behind the one before it; 32 at once held a benchmark's pages up a second)."""
    await sign_in(maria)
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=5),))
    _wal_frames(settings.database)
    assert (await maria.get("/account")).status_code == 200
    one_visit = _wal_frames(settings.database)
    assert one_visit >= 1
    session_id = cookie_value(await sign_in(maria))  # a new session, not seen here yet
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(minutes=5),))
    _wal_frames(settings.database)
    statuses = await asyncio.gather(
        *(_get_at_once(maria.app, "/account", f"{COOKIE}={session_id}") for _ in range(10))
    )
    assert statuses == [200] * 10
    assert _wal_frames(settings.database) == one_visit
    [row] = query(settings.database, "SELECT last_seen_at FROM sessions ORDER BY created_at DESC")[
        :1
    ]
    assert datetime.fromisoformat(row["last_seen_at"]) > datetime.now(UTC) - timedelta(seconds=30)


async def test_remember_me_survives_idle_time_but_not_its_expiry(settings, maria):
    session_id = cookie_value(await sign_in(maria, remember=True))
    [row] = query(settings.database, "SELECT * FROM sessions")
    expires = datetime.fromisoformat(row["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    execute(settings.database, "UPDATE sessions SET last_seen_at = ?", (ago(days=3),))
    assert await signed_in_ok(maria, session_id)
    execute(settings.database, "UPDATE sessions SET expires_at = ?", (ago(seconds=1),))
    assert not await signed_in_ok(maria, session_id)
    assert session_count(settings) == 0


async def test_sign_out_everywhere_ends_every_session_of_the_user(settings, maria):
    await make_user(settings, maria, **JAMES)
    laptop_id = cookie_value(await sign_in(maria))
    phone_id = cookie_value(await sign_in(second_device(maria)))
    james_id = cookie_value(await sign_in(second_device(maria), username="james2"))
    assert session_count(settings) == 2 and session_count(settings, "james2") == 1
    assert await signed_in_ok(maria, phone_id)
    response = await post_form(maria, "/profile/sign-out-everywhere", {}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?notice=signed-out-everywhere"
    assert session_count(settings) == 0
    assert not await signed_in_ok(maria, laptop_id)
    assert not await signed_in_ok(maria, phone_id)
    assert await signed_in_ok(maria, james_id)  # other residents are not touched


@pytest.mark.parametrize("path", ["/account", "/profile"])
async def test_signed_in_page_without_session_goes_to_login_and_back(settings, maria, path):
    response = await maria.get(path, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert urlparse(location).path == "/login"
    assert parse_qs(urlparse(location).query) == {"notice": ["session-ended"], "next": [path]}
    page = await maria.get(location)
    assert "Log in to continue" in page.text and f'name="next" value="{path}"' in page.text
    signed = await sign_in(maria, next_=path)
    assert signed.status_code == 303 and signed.headers["location"] == path


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example", "/\\evil.example", "javascript:alert(1)", "evil"],
)
async def test_next_never_leaves_the_site(settings, maria, target):
    response = await sign_in(maria, next_=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/account"


@pytest.mark.parametrize("target", ["/\t/evil.example", "/\n/evil.example", "/\r/evil.example"])
async def test_next_with_control_characters_stays_on_the_site(settings, maria, target):
    # browsers drop raw tabs and line breaks from a URL, which would make //evil.example
    location = (await sign_in(maria, next_=target)).headers["location"]
    assert not re.search(r"[\x00-\x1f\x7f\\]", location), location
    assert location.startswith("/") and not location.startswith("//")
    assert urlparse(urljoin("http://portal.test/login", location)).netloc == "portal.test"


async def test_next_inside_the_site_is_followed(settings, maria):
    response = await sign_in(maria, next_="/profile")
    assert response.headers["location"] == "/profile"
    assert (await maria.get("/profile")).status_code == 200


# --- brute force ------------------------------------------------------------------
# Failures count per (username, network): after 5 from one network, that network waits
# 1, 2, 4 … minutes for that username; the owner elsewhere, or on a device they signed in
# from before, is not held up. 100 in a row from anywhere lock the name until a reset.


async def fail(client, times: int, username: str = "maria1", **headers: str) -> None:
    for _ in range(times):
        response = await sign_in(client, username=username, password=WRONG, headers=headers)
        assert response.status_code == 422 and GENERIC in response.text, response.text


@pytest.fixture
async def behind_proxy(settings, maria):
    """The same portal behind a trusted proxy, so a test can choose each client address
    with X-Forwarded-For (as the proxy would)."""
    app = create_app(replace(settings, trusted_proxies=("testclient",)))
    async with AsyncTestClient(app=app, base_url="http://portal.test") as proxied:
        yield proxied


def from_(address: str) -> dict[str, str]:
    return {"x-forwarded-for": address}


async def test_five_failures_make_that_network_wait_longer_each_time(settings, behind_proxy):
    await fail(behind_proxy, 5, **from_("198.51.100.7"))
    refused = await sign_in(behind_proxy, headers=from_("198.51.100.7"))  # the right password
    assert refused.status_code == 429
    assert re.search(r"Wait 1 minutes and try again", refused.text), refused.text
    assert session_count(settings) == 0
    [lockout] = audit_rows(settings, "lockout")
    assert lockout["username"] == "maria1" and lockout["client"] == "198.51.100.7"
    # the wait over, one more wrong try doubles the next wait
    execute(settings.database, "UPDATE login_failures SET at = ?", (ago(minutes=2),))
    await fail(behind_proxy, 1, **from_("198.51.100.7"))
    assert "Wait 2 minutes" in (await sign_in(behind_proxy, headers=from_("198.51.100.7"))).text
    # the owner at home (another network) signs in at once
    assert (await sign_in(behind_proxy, headers=from_("203.0.113.40"))).status_code == 303
    assert user_row(settings)["failed_logins"] == 0


async def test_ipv6_addresses_of_one_slash_64_count_together(settings, behind_proxy):
    for host in range(1, 6):
        await fail(behind_proxy, 1, **from_(f"2001:db8:1:2::{host}"))
    refused = await sign_in(behind_proxy, headers=from_("2001:db8:1:2:ffff::9"))
    assert refused.status_code == 429
    assert (await sign_in(behind_proxy, headers=from_("2001:db8:1:3::1"))).status_code == 303


async def test_the_owners_usual_device_is_not_held_up_by_someone_elses_failures(
    settings, behind_proxy
):
    # The owner signed in on this device before: it got a remembered-device cookie.
    first = await sign_in(behind_proxy, headers=from_("192.0.2.10"))
    assert first.status_code == 303
    device = cookie_value(first, "portal_device")
    await behind_proxy.post("/logout", data={"_csrf_token": behind_proxy.cookies["portal_csrf"]})
    # An attacker on the same shared address (a library, a carrier's NAT) fails on.
    attacker = second_device(behind_proxy)
    attacker.cookies.clear()
    await fail(attacker, 5, **from_("192.0.2.10"))
    assert (await sign_in(attacker, headers=from_("192.0.2.10"))).status_code == 429
    behind_proxy.cookies.set("portal_device", device)
    assert (await sign_in(behind_proxy, headers=from_("192.0.2.10"))).status_code == 303


async def test_a_successful_sign_in_clears_the_count(settings, maria):
    await fail(maria, 4)
    assert (await sign_in(maria)).status_code == 303
    assert user_row(settings)["failed_logins"] == 0
    await fail(maria, 4)
    assert (await sign_in(maria)).status_code == 303
    assert audit_rows(settings, "lockout") == []


async def test_a_password_reset_ends_the_wait(settings, maria):
    await fail(maria, 5)
    assert "Wait" in (await sign_in(maria)).text
    link = await reset_link(settings, maria)
    assert (await reset_password(maria, link, NEW_PASSWORD)).status_code == 303
    row = user_row(settings)
    assert row["failed_logins"] == 0
    assert (await sign_in(maria, password=NEW_PASSWORD)).status_code == 303


async def test_failures_from_many_usernames_on_one_network_make_it_wait_but_not_the_owner(
    settings, behind_proxy
):
    """One attacker behind the city's proxy cannot lock everyone out."""
    conn = portal_db.connect_sync(settings.database)
    conn.executemany(
        "INSERT INTO login_failures (client, user_key, at) VALUES (?, ?, ?)",
        [("198.51.100.7", f"ghost{i}", ago(minutes=1)) for i in range(95)]
        + [("198.51.100.7", f"old{i}", ago(minutes=16)) for i in range(80)],
    )
    conn.close()
    await fail(behind_proxy, 5, username="james9", **from_("198.51.100.7"))
    # 100 failures in 15 minutes from that network: a new device there waits ...
    throttled = await sign_in(behind_proxy, headers=from_("198.51.100.7"))
    assert throttled.status_code == 429
    assert re.search(r"Wait 1[45] minutes", throttled.text), throttled.text
    assert audit_rows(settings, "sign_in_throttled")
    assert user_row(settings)["failed_logins"] == 0  # the account itself is not blamed
    # ... while the owner, on a device they used before, gets in from the same network
    execute(settings.database, "DELETE FROM login_failures WHERE client = '198.51.100.7'")
    first = await sign_in(behind_proxy, headers=from_("198.51.100.7"))
    device = cookie_value(first, "portal_device")
    conn = portal_db.connect_sync(settings.database)
    conn.executemany(
        "INSERT INTO login_failures (client, user_key, at) VALUES (?, ?, ?)",
        [("198.51.100.7", f"ghost{i}", ago(minutes=1)) for i in range(120)],
    )
    conn.close()
    fresh = second_device(behind_proxy)
    fresh.cookies.clear()
    fresh.cookies.set("portal_device", device)
    assert (await sign_in(fresh, headers=from_("198.51.100.7"))).status_code == 303


async def test_one_hundred_failures_lock_until_a_password_reset(settings, maria):
    execute(settings.database, "UPDATE users SET failed_logins = 99")
    await fail(maria, 1)
    assert user_row(settings)["failed_logins"] == 100
    refused = await sign_in(maria)
    assert refused.status_code == 422
    assert "locked after too many failed logins" in refused.text
    assert "Use Forgot Password to choose a new password" in refused.text
    assert 'href="/forgot-password"' in refused.text and "Wait" not in refused.text
    assert [r["detail"] for r in audit_rows(settings, "lockout")] == ["until reset"]
    link = await reset_link(settings, maria)
    assert (await reset_password(maria, link, NEW_PASSWORD)).status_code == 303
    assert (await sign_in(maria, password=NEW_PASSWORD)).status_code == 303


async def test_a_locked_name_and_an_unknown_one_answer_alike(settings, maria):
    """Limits apply to any name typed, so the answers do not tell which names exist."""
    await fail(maria, 5)
    await fail(maria, 5, username="ghost42")
    known = await sign_in(maria, password=WRONG)
    unknown = await sign_in(maria, username="ghost42", password=WRONG)
    assert known.status_code == unknown.status_code == 429
    assert known.text.replace("maria1", "X") == unknown.text.replace("ghost42", "X")
    execute(settings.database, "UPDATE users SET failed_logins = 100")
    conn = portal_db.connect_sync(settings.database)
    conn.executemany(
        "INSERT INTO login_failures (client, user_key, at) VALUES ('elsewhere', 'ghost42', ?)",
        [(ago(minutes=30),)] * 100,
    )
    conn.close()
    execute(settings.database, "DELETE FROM login_failures WHERE client = 'testclient'")
    known = await sign_in(maria, password=WRONG)
    unknown = await sign_in(maria, username="ghost42", password=WRONG)
    assert known.status_code == unknown.status_code == 422
    assert "locked after too many failed logins" in known.text
    assert known.text.replace("maria1", "X") == unknown.text.replace("ghost42", "X")


async def test_unknown_usernames_are_audited_by_a_hash_not_as_typed(settings, maria):
    await sign_in(maria, username="rainbarrelgarden", password=WRONG)
    [row] = audit_rows(settings, "sign_in_failed")
    assert "rainbarrelgarden" not in str(dict(row))
    assert row["username"].startswith("unknown:")


async def test_parallel_wrong_passwords_are_all_counted(settings, maria):
    """12 tries at once: each is reserved before its password is checked, so the count is
    12 and no more than 5 were ever checked (the rest waited)."""
    services = maria.app.state.services
    from portal.accounts.signin import LoginForm

    forms = [LoginForm({"username": "maria1", "password": WRONG}) for _ in range(12)]
    results = await asyncio.gather(*(services.signin.sign_in(f, "198.51.100.99") for f in forms))
    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count("failed") == 5 and outcomes.count("throttled") == 7, outcomes
    assert user_row(settings)["failed_logins"] == 5
    assert len(query(settings.database, "SELECT * FROM login_failures")) == 5


async def test_wrong_current_passwords_on_my_profile_count_toward_the_limit(settings, maria):
    """A stolen session cannot guess the password in the "current password" boxes."""
    assert (await sign_in(maria)).status_code == 303
    for _ in range(5):
        response = await post_form(
            maria,
            "/profile/password",
            {
                "current_password": WRONG,
                "new_password": NEW_PASSWORD,
                "confirm_new_password": NEW_PASSWORD,
            },
        )
        assert "Your current password is not right" in response.text
    assert user_row(settings)["failed_logins"] == 5
    waited = await post_form(
        maria,
        "/profile/email",
        {
            "email_password": GOOD_PASSWORD,
            "new_email": "m@example.org",
            "confirm_new_email": "m@example.org",
        },
    )
    assert waited.status_code == 422 and "too many wrong passwords" in waited.text
    assert len(audit_rows(settings, "sign_in_failed")) == 5


# --- argon2id ---------------------------------------------------------------------


def hash_parameters(stored: str) -> dict[str, int]:
    assert stored.startswith("$argon2id$v=19$"), stored
    params = stored.split("$")[3]
    return {key: int(value) for key, value in (part.split("=") for part in params.split(","))}


async def test_passwords_are_stored_as_argon2id_with_owasp_parameters(settings, maria):
    stored = user_row(settings)["password_hash"]
    params = hash_parameters(stored)
    assert params["m"] >= 19456 and params["t"] >= 2 and params["p"] >= 1
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert GOOD_PASSWORD not in stored


async def test_old_parameters_are_upgraded_at_sign_in(settings, maria):
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    execute(settings.database, "UPDATE users SET password_hash = ?", (weak.hash(GOOD_PASSWORD),))
    assert hash_parameters(user_row(settings)["password_hash"]) == {"m": 8192, "t": 1, "p": 1}
    assert (await sign_in(maria)).status_code == 303
    stored = user_row(settings)["password_hash"]
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert argon2.PasswordHasher().verify(stored, GOOD_PASSWORD)
    maria.cookies.clear()
    assert (await sign_in(maria)).status_code == 303


# --- Forgot Username / Forgot Password ---------------------------------------------


async def test_forgot_username_answers_the_same_and_emails_the_username(settings, maria):
    found = await post_form(maria, "/forgot-username", {"email": "Maria@Example.com"})
    missing = await post_form(maria, "/forgot-username", {"email": "nobody@example.com"})
    assert found.status_code == missing.status_code == 200
    assert "Check your email" in found.text
    assert found.text.replace("Maria@Example.com", "X") == missing.text.replace(
        "nobody@example.com", "X"
    )
    [mail] = [row for row in outbox(settings.database) if "/verify?" not in row["body_text"]]
    assert mail["to_addr"] == "maria@example.com"
    assert "maria1" in mail["body_text"] and "maria1" in mail["body_html"]
    assert not [row for row in outbox(settings.database) if row["to_addr"] == "nobody@example.com"]
    blank = await post_form(maria, "/forgot-username", {"email": ""})
    assert blank.status_code == 422 and "Enter your email address" in blank.text


@pytest.mark.parametrize(
    ("known", "unknown"), [("maria1", "nobody7"), ("maria@example.com", "nobody@example.com")]
)
async def test_forgot_password_answers_the_same_whether_or_not_it_matched(
    settings, maria, known, unknown
):
    mails = len(outbox(settings.database))
    found = await post_form(maria, "/forgot-password", {"identifier": known})
    missing = await post_form(maria, "/forgot-password", {"identifier": unknown})
    assert found.status_code == missing.status_code == 200
    assert "Check your email" in found.text
    assert found.text.replace(known, "X") == missing.text.replace(unknown, "X")
    assert len(outbox(settings.database)) == mails + 1
    assert last_mail(settings)["to_addr"] == "maria@example.com"


async def test_reset_link_is_random_and_stored_hashed(settings, maria):
    link = await reset_link(settings, maria)
    token = link_params(link)["token"]
    assert len(base64.urlsafe_b64decode(token + "==")) >= 16  # >= 128 random bits
    [row] = query(settings.database, "SELECT * FROM tokens WHERE purpose = 'reset'")
    assert all(token not in str(value) for value in tuple(row))
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()


async def test_reset_link_is_spent_by_the_post_not_by_opening_it(settings, maria):
    other_device = second_device(maria)
    other_id = cookie_value(await sign_in(other_device))
    link = await reset_link(settings, maria)
    for _ in range(2):  # a mail scanner, then the resident
        page = await maria.get(link)
        assert page.status_code == 200
        assert "Choose a new password" in page.text and 'name="password"' in page.text
    weak = await reset_password(maria, link, "short")
    assert weak.status_code == 422 and "at least 15 characters" in weak.text
    mismatch = await reset_password(maria, link, NEW_PASSWORD, "something different here")
    assert mismatch.status_code == 422 and "do not match" in mismatch.text
    assert (await maria.get(link)).status_code == 200  # still not spent
    done = await reset_password(maria, link, NEW_PASSWORD)
    assert done.status_code == 303 and done.headers["location"] == "/login?notice=password-reset"
    again = await reset_password(maria, link, OTHER_PASSWORD)
    assert again.status_code == 400 and "This link does not work any more" in again.text
    assert "This link does not work any more" in (await maria.get(link)).text
    # every session of the user ended; only the new password works
    assert not await signed_in_ok(maria, other_id) and session_count(settings) == 0
    assert GENERIC in (await sign_in(maria)).text
    assert (await sign_in(maria, password=NEW_PASSWORD)).status_code == 303
    assert audit_rows(settings, "password_reset")


async def test_expired_reset_link_is_refused(settings, maria):
    link = await reset_link(settings, maria)
    execute(
        settings.database,
        "UPDATE tokens SET expires_at = ? WHERE purpose = 'reset'",
        (ago(seconds=1),),
    )
    page = await maria.get(link)
    assert page.status_code == 400 and "This link does not work any more" in page.text
    assert 'name="password"' not in page.text
    refused = await reset_password(maria, link, NEW_PASSWORD)
    assert refused.status_code == 400
    assert (await sign_in(maria)).status_code == 303  # the old password still works


async def test_wrong_reset_token_is_refused(settings, maria):
    link = await reset_link(settings, maria)
    wrong = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    assert (await maria.get(wrong)).status_code == 400
    assert (await maria.get("/reset-password")).status_code == 400


async def test_reset_emails_are_rate_limited(settings, maria):
    def reset_mails() -> int:
        return sum("/reset-password?" in row["body_text"] for row in outbox(settings.database))

    await reset_link(settings, maria)
    # a second request right away sends nothing, and says the same
    again = await post_form(maria, "/forgot-password", {"identifier": "maria1"})
    assert again.status_code == 200 and "Check your email" in again.text
    assert reset_mails() == 1
    # spaced out, at most 3 live links at once ...
    for _ in range(4):
        execute(
            settings.database,
            "UPDATE tokens SET created_at = ? WHERE purpose = 'reset'",
            (ago(minutes=10),),
        )
        response = await post_form(maria, "/forgot-password", {"identifier": "maria@example.com"})
        assert response.status_code == 200
    assert reset_mails() == 3
    # ... and, as they expire, at most 5 a day
    for _ in range(4):
        execute(
            settings.database,
            "UPDATE tokens SET created_at = ?, expires_at = ? WHERE purpose = 'reset'",
            (ago(minutes=90), ago(minutes=30)),
        )
        execute(settings.database, "UPDATE outbox SET created_at = ?", (ago(minutes=90),))
        response = await post_form(maria, "/forgot-password", {"identifier": "maria@example.com"})
        assert response.status_code == 200
    assert reset_mails() == 5
    assert audit_rows(settings, "reset_limited")


async def test_one_address_gets_at_most_five_requested_mails_an_hour(settings, maria):
    """Forgot Username, Forgot Password and resends to one inbox, however asked."""
    for _ in range(8):
        execute(settings.database, "UPDATE tokens SET created_at = ?", (ago(minutes=10),))
        execute(settings.database, "UPDATE tokens SET expires_at = ?", (ago(minutes=1),))
        await post_form(maria, "/forgot-password", {"identifier": "maria1"})
        await post_form(maria, "/forgot-username", {"email": "maria@example.com"})
    to_maria = [r for r in outbox(settings.database) if r["to_addr"] == "maria@example.com"]
    assert len(to_maria) == 5  # the verification email and four requested ones


async def test_email_change_requests_are_limited_and_say_so(settings, maria):
    assert (await sign_in(maria)).status_code == 303
    form = {
        "email_password": GOOD_PASSWORD,
        "new_email": "victim@example.org",
        "confirm_new_email": "victim@example.org",
    }
    first = await post_form(maria, "/profile/email", form, follow_redirects=False)
    assert first.status_code == 303
    again = await post_form(maria, "/profile/email", form)
    assert again.status_code == 422 and "We sent a confirmation link a short time ago" in again.text
    for _ in range(20):
        execute(settings.database, "UPDATE tokens SET created_at = ?", (ago(minutes=10),))
        await post_form(maria, "/profile/email", form)
    to_victim = [r for r in outbox(settings.database) if r["to_addr"] == "victim@example.org"]
    assert len(to_victim) == 3  # at most three live links
    assert audit_rows(settings, "email_change_limited")


# --- My Profile -------------------------------------------------------------------


async def test_change_email_needs_the_password_and_a_link_to_the_new_address(settings, maria):
    await sign_in(maria)
    change = {"new_email": "maria.new@example.com", "confirm_new_email": "maria.new@example.com"}
    mails = len(outbox(settings.database))
    missing = await post_form(maria, "/profile/email", change, follow_redirects=False)
    assert missing.status_code == 422 and "Enter your current password" in missing.text
    wrong = await post_form(maria, "/profile/email", {**change, "email_password": WRONG})
    assert wrong.status_code == 422 and "Your current password is not right" in wrong.text
    assert 'value="maria.new@example.com"' in wrong.text and WRONG not in wrong.text
    assert len(outbox(settings.database)) == mails
    sent = await post_form(
        maria, "/profile/email", {**change, "email_password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/profile?notice=email-sent"
    mail = last_mail(settings)
    assert mail["to_addr"] == "maria.new@example.com"
    link = local(link_in(mail["body_text"], "/profile/email/confirm"))
    assert user_row(settings)["email"] == "maria@example.com"  # not until the link is opened
    token = link_params(link)["token"]
    assert all(
        token not in str(v)
        for row in query(settings.database, "SELECT * FROM tokens")
        for v in tuple(row)
    )

    opened = await second_device(maria).get(link)  # opened on the phone, signed in or not
    assert opened.status_code == 200 and "Your email address is changed" in opened.text
    assert user_row(settings)["email"] == "maria.new@example.com"
    notice = last_mail(settings)
    assert notice["to_addr"] == "maria@example.com"
    assert "maria.new@example.com" in notice["body_text"]
    mails = len(outbox(settings.database))
    again = await maria.get(link)  # a mail scanner got there first
    assert again.status_code == 200 and "Your email address is changed" in again.text
    assert "does not work" not in again.text
    assert len(outbox(settings.database)) == mails
    bogus = await maria.get(link[:-4] + "AAAA")
    assert bogus.status_code == 400 and "This link does not work" in bogus.text
    assert [r["event"] for r in audit_rows(settings)][-1] == "email_changed"


async def test_change_password_rules_sessions_and_notice(settings, maria):
    other_id = cookie_value(await sign_in(second_device(maria)))
    this_id = cookie_value(await sign_in(maria))
    change = {"new_password": NEW_PASSWORD, "confirm_new_password": NEW_PASSWORD}
    wrong = await post_form(maria, "/profile/password", {**change, "current_password": WRONG})
    assert wrong.status_code == 422 and "Your current password is not right" in wrong.text
    missing = await post_form(maria, "/profile/password", change)
    assert missing.status_code == 422 and "Enter your current password" in missing.text
    weak = await post_form(
        maria,
        "/profile/password",
        {
            "current_password": GOOD_PASSWORD,
            "new_password": "maria1 maria1 maria1",
            "confirm_new_password": "maria1 maria1 maria1",
        },
    )
    assert weak.status_code == 422 and "must not contain your username" in weak.text
    assert user_row(settings)["password_hash"] and session_count(settings) == 2
    mails = len(outbox(settings.database))
    done = await post_form(
        maria,
        "/profile/password",
        {**change, "current_password": GOOD_PASSWORD},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/profile?notice=password"
    # this device stays signed in with a new session id (rotation at a privilege change)
    new_id = done.cookies.get(COOKIE) or maria.cookies.get(COOKIE)
    assert new_id and new_id != this_id
    assert await signed_in_ok(maria, new_id)
    assert not await signed_in_ok(maria, this_id)
    assert not await signed_in_ok(maria, other_id)
    assert session_count(settings) == 1
    [notice] = outbox(settings.database)[mails:]
    assert notice["to_addr"] == "maria@example.com" and "password" in notice["body_text"]
    assert NEW_PASSWORD not in notice["body_text"]
    maria.cookies.clear()
    assert GENERIC in (await sign_in(maria)).text
    assert (await sign_in(maria, password=NEW_PASSWORD)).status_code == 303


async def test_delivery_preference(settings, maria):
    await sign_in(maria)
    none = await post_form(maria, "/profile/delivery", {})
    assert none.status_code == 422
    assert "Choose Receive Paperless Bills, Receive Printed Bills, or both" in none.text
    saved = await post_form(maria, "/profile/delivery", {"printed": "on"}, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/profile?notice=delivery"
    row = user_row(settings)
    assert (row["paperless"], row["printed"]) == (0, 1)
    page = await maria.get(saved.headers["location"])
    assert "Your bill delivery choice was saved." in page.text
    assert re.search(r'name="printed"[^>]*checked', page.text)
    assert not re.search(r'name="paperless"[^>]*checked', page.text)


async def test_delivery_export_tells_the_billing_system_each_linked_accounts_choice(
    settings, maria, monkeypatch, capsys, tmp_path
):
    """`portal export delivery`: the billing system prints and mails the paper bills, so
    it gets every linked account's choice, as residents made it on the forms; a login
    whose email is not confirmed yet is left out (its account keeps printed bills)."""
    from portal.cli import main as portal_main

    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))

    def linked_at(username: str) -> str:
        return query(
            settings.database,
            "SELECT linked_at FROM user_accounts ua JOIN users u ON u.id = ua.user_id"
            " WHERE u.username = ?",
            (username,),
        )[0][0]

    def export(*args: str) -> list[str]:
        assert portal_main(["export", "delivery", *args]) == 0
        return capsys.readouterr().out.splitlines()

    header = "customer_number,account_number,paperless,printed,autopay,linked_at"

    # maria1 registered for paperless bills only (the fixture); James has not confirmed.
    await make_user(settings, maria, verified=False, **JAMES)
    maria_linked = linked_at("maria1")
    assert maria_linked.endswith("Z") and datetime.fromisoformat(maria_linked)
    assert export() == [header, f"0012345,0067890,true,false,false,{maria_linked}"]
    await sign_in(maria)
    both = {"paperless": "on", "printed": "on"}
    assert (await post_form(maria, "/profile/delivery", both)).status_code == 200
    execute(
        settings.database,
        "UPDATE users SET verified_at = ? WHERE username = 'james2'",
        (ago(seconds=1),),
    )
    out = tmp_path / "delivery.csv"
    assert portal_main(["export", "delivery", "--output", str(out)]) == 0
    assert "bill delivery of 2 account(s) written to" in capsys.readouterr().err
    james_linked = linked_at("james2")
    assert out.read_text().splitlines() == [
        header,
        f"0012345,0067890,true,true,false,{maria_linked}",
        f"0022222,0033333,true,false,false,{james_linked}",
    ]
    assert not list(tmp_path.glob("*.part"))
    # An unlinked account is no longer in the file: the billing system's default again.
    [row] = query(
        settings.database,
        "SELECT account_id FROM user_accounts ua JOIN users u ON u.id = ua.user_id WHERE u.username = 'maria1'",
    )
    assert (await post_form(maria, f"/accounts/{row[0]}/unlink", {})).status_code == 200
    assert export("--quiet") == [header, f"0022222,0033333,true,false,false,{james_linked}"]
    assert portal_main(["export", "delivery", "--date", "2026-11-20"]) == 2
    assert "--date is for payments" in capsys.readouterr().err
    # A folder that is not there: a clear line and exit status 2, not a traceback.
    missing = tmp_path / "no-such-folder" / "delivery.csv"
    assert portal_main(["export", "delivery", "--output", str(missing)]) == 2
    assert capsys.readouterr().err.startswith(f"portal: cannot write {missing}: ")
    assert portal_main(["export", "payments", "--output", str(missing)]) == 2
    assert "portal: cannot write" in capsys.readouterr().err


PROFILE_POSTS = [
    "/profile/delivery",
    "/profile/password",
    "/profile/email",
    "/profile/sign-out-everywhere",
]


@pytest.mark.parametrize("path", PROFILE_POSTS)
async def test_profile_posts_without_a_session_go_to_login(settings, maria, path):
    response = await post_form(maria, path, {"printed": "on"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?notice=session-ended&next=")
    assert parse_qs(urlparse(response.headers["location"]).query)["next"] == [path]
    assert user_row(settings)["printed"] == 0


async def test_every_post_needs_the_csrf_token(settings, maria):
    session_id = cookie_value(await sign_in(maria))
    paths = [
        "/register",
        "/register/check/username",
        "/verify/resend",
        "/login",
        "/logout",
        "/forgot-username",
        "/forgot-password",
        "/reset-password",
        *PROFILE_POSTS,
    ]
    mails = len(outbox(settings.database))
    for path in paths:
        data = {
            "username": "maria1",
            "password": GOOD_PASSWORD,
            "printed": "on",
            "identifier": "maria1",
        }
        response = await maria.post(path, data=data, follow_redirects=False)
        assert response.status_code == 403, path
        forged = await maria.post(
            path, data={**data, "_csrf_token": "forged"}, follow_redirects=False
        )
        assert forged.status_code == 403, path
    # nothing happened: still signed in, nothing changed, nothing sent
    assert await signed_in_ok(maria, session_id)
    assert user_row(settings)["printed"] == 0
    assert len(outbox(settings.database)) == mails


# --- audit ------------------------------------------------------------------------

UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_audit_log_records_events_without_secrets(settings, portal, caplog):
    caplog.set_level(logging.INFO)
    secrets = [GOOD_PASSWORD, WRONG, NEW_PASSWORD, OTHER_PASSWORD]
    assert (await post_form(portal, "/register", registration())).status_code == 200
    verify = local(link_in(last_mail(settings)["body_text"], "/verify"))
    secrets.append(link_params(verify)["verificationcode"])
    assert "Verification success" in (await portal.get(verify)).text

    await sign_in(portal, password=WRONG)
    secrets.append(cookie_value(await sign_in(portal)))
    change = {"new_email": "m2@example.com", "confirm_new_email": "m2@example.com"}
    await post_form(portal, "/profile/email", {**change, "email_password": GOOD_PASSWORD})
    confirm = local(link_in(last_mail(settings)["body_text"], "/profile/email/confirm"))
    secrets.append(link_params(confirm)["token"])
    assert (await portal.get(confirm)).status_code == 200
    change = {"new_password": NEW_PASSWORD, "confirm_new_password": NEW_PASSWORD}
    done = await post_form(
        portal, "/profile/password", {**change, "current_password": GOOD_PASSWORD}
    )
    assert done.status_code == 200 and "Your password has been changed" in done.text
    link = await reset_link(settings, portal)
    secrets.append(link_params(link)["token"])
    assert (await reset_password(portal, link, OTHER_PASSWORD)).status_code == 303
    execute(settings.database, "UPDATE users SET failed_logins = 99")
    await sign_in(portal, password=WRONG)  # the hundredth failure in a row

    rows = audit_rows(settings)
    events = {row["event"] for row in rows}
    for event in [
        "verified",
        "sign_in",
        "sign_in_failed",
        "email_changed",
        "password_changed",
        "password_reset",
        "lockout",
    ]:
        assert event in events, (event, events)
    for row in rows:
        assert UTC_TIME.match(row["at"]), row["at"]
        assert row["client"] == "testclient" and row["username"] == "maria1", tuple(row)
        for secret in secrets:
            assert all(secret not in str(value) for value in tuple(row)), (secret, tuple(row))
    # the same events went to the server's log, without the secrets either (the test
    # client's own httpx log lines, which show the URLs it requested, are not the server's)
    logged = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith("httpx")
    )
    for row in rows:
        assert f"audit event={row['event']} username=maria1 client=testclient" in logged
    for secret in secrets:
        assert secret not in logged, secret


@pytest.mark.parametrize("breaker", ["\n", "\r", "\r\n"])
async def test_line_breaks_in_a_typed_username_never_reach_the_log(
    settings, maria, caplog, breaker
):
    caplog.set_level(logging.INFO)
    forged = f"nobody{breaker}2026-01-01T00:00:00Z sign_in maria1"
    response = await sign_in(maria, username=forged, password=WRONG)
    assert response.status_code == 422 and GENERIC in response.text
    [row] = audit_rows(settings, "sign_in_failed")
    for value in (row["username"], row["detail"] or ""):
        assert "\n" not in value and "\r" not in value
    assert row["username"].startswith("unknown:")  # a hash, never the text typed
    lines = [r.getMessage() for r in caplog.records if r.name == "portal.audit"]
    assert lines and all("\n" not in line and "\r" not in line for line in lines)


async def test_csrf_refusals_are_in_the_audit_log(settings, client):
    await client.get("/")
    response = await client.post("/forgot-username", data={"email": "a@example.com"})
    assert response.status_code == 403
    rows = query(
        settings.database,
        "SELECT at, event, client, detail FROM audit_log WHERE event = 'csrf_refused'",
    )
    assert (
        len(rows) == 1
        and rows[0]["at"].endswith("Z")
        and rows[0]["client"]
        and "/forgot-username" in rows[0]["detail"]
    )


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        ((), "203.0.113.9", "testclient"),  # no trusted proxy: the header is ignored
        (("testclient",), "203.0.113.9", "203.0.113.9"),  # from our proxy: its word counts
        (
            ("testclient",),
            "198.51.100.1, 203.0.113.9",
            "203.0.113.9",
        ),  # the last hop, not a forged first
        (("testclient", "203.0.113.9"), "198.51.100.1, 203.0.113.9", "198.51.100.1"),  # two proxies
    ],
)
async def test_client_address_comes_from_trusted_proxies_only(
    settings, trusted, forwarded, expected
):
    from dataclasses import replace

    from litestar.testing import AsyncTestClient

    from portal.app import create_app

    app = create_app(replace(settings, trusted_proxies=trusted))
    async with AsyncTestClient(app=app, base_url="http://portal.test") as proxied:
        await post_form(
            proxied,
            "/login",
            {"username": "nobody", "password": "x" * 20},
            headers={"X-Forwarded-For": forwarded},
        )
    rows = query(settings.database, "SELECT client FROM login_failures")
    assert [row["client"] for row in rows] == [expected]


@pytest.mark.parametrize("ending", ["reset", "password change", "sign out everywhere"])
async def test_a_pending_email_change_dies_when_the_owner_takes_the_account_back(
    settings, maria, ending
):
    """An attacker with a session asks to move the email to theirs; the owner resets the
    password (or changes it, or signs out everywhere): the attacker's link is void."""
    assert (await sign_in(maria)).status_code == 303
    stolen = {
        "email_password": GOOD_PASSWORD,
        "new_email": "thief@example.net",
        "confirm_new_email": "thief@example.net",
    }
    assert (
        await post_form(maria, "/profile/email", stolen, follow_redirects=False)
    ).status_code == 303
    confirm = local(link_in(last_mail(settings)["body_text"], "/profile/email/confirm"))
    if ending == "reset":
        link = await reset_link(settings, maria)
        assert (await reset_password(maria, link, NEW_PASSWORD)).status_code == 303
        assert "password" in last_mail(settings)["subject"].lower()  # "password changed" mail
        assert last_mail(settings)["to_addr"] == "maria@example.com"
    elif ending == "password change":
        change = {
            "current_password": GOOD_PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_new_password": NEW_PASSWORD,
        }
        assert (await post_form(maria, "/profile/password", change)).status_code == 200
    else:
        await post_form(maria, "/profile/sign-out-everywhere", {})
    opened = await maria.get(confirm)
    assert opened.status_code in (200, 400)
    assert user_row(settings)["email"] == "maria@example.com"
    assert audit_rows(settings, "email_changed") == []


async def test_signing_in_gives_a_new_csrf_token_and_the_old_one_stops_working(settings, maria):
    """A token planted or read before sign-in is worth nothing after it (review item 14)."""
    await maria.get("/login")
    before = maria.cookies["portal_csrf"]
    done = await sign_in(maria)
    assert done.status_code == 303
    after = cookie_value(done, "portal_csrf")
    assert after and after != before
    stale = await maria.post(
        "/profile/delivery",
        data={"paperless": "on", "_csrf_token": before},
        headers={
            "Cookie": f"portal_csrf={after}; portal_session={maria.cookies['portal_session']}"
        },
    )
    assert stale.status_code == 403
    fresh = await post_form(maria, "/profile/delivery", {"paperless": "on"}, follow_redirects=False)
    assert fresh.status_code == 303
