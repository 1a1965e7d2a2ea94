"""The Customer Services console over HTTP: enrolment with TOTP, sign-in, sessions,
guards (404 + audit), search, the read-only view, every action and the supervisors'
pages, against a real SQLite file and the real app."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from portal.app import create_app

from accounts_helpers import GOOD_PASSWORD, load_billing, outbox, post_form, query, registration
from staff_helpers import STAFF_PASSWORD, code, enrol, sign_in, staff_client


def execute(path, sql: str, params=()) -> None:
    from portal import db as portal_db

    conn = portal_db.connect_sync(path)
    conn.execute(sql, params)
    conn.close()


def ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_events(settings, event: str) -> list:
    return query(settings.database, "SELECT * FROM audit_log WHERE event = ? ORDER BY id", (event,))


@pytest.fixture
async def staff(settings):
    load_billing(settings.database)
    async with AsyncTestClient(app=create_app(settings), base_url="http://portal.test") as c:
        yield c


async def second_client(settings):
    return AsyncTestClient(app=create_app(settings), base_url="http://portal.test")


# --- enrolment and sign-in -------------------------------------------------------------


async def test_enrolment_shows_qr_as_inline_svg_and_gives_ten_single_use_codes(staff, settings):
    from staff_helpers import add

    token = add(settings)
    page = await staff.get(f"/staff/enrol?token={token}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert '<svg role="img"' in page.text and "style=" not in page.text.split("<svg", 1)[1].split("</svg>")[0]
    assert "otpauth://totp/" in page.text
    # A wrong code keeps the link usable and says what to do.
    bad = await post_form(
        staff, "/staff/enrol",
        {"token": token, "password": STAFF_PASSWORD, "confirm_password": STAFF_PASSWORD, "code": "000000"},
    )
    assert bad.status_code == 422 and "That code is not right" in bad.text
    weak = await post_form(
        staff, "/staff/enrol",
        {"token": token, "password": "short", "confirm_password": "short", "code": code(settings, "carla")},
    )
    assert weak.status_code == 422 and "at least 15 characters" in weak.text
    done = await post_form(
        staff, "/staff/enrol",
        {"token": token, "password": STAFF_PASSWORD, "confirm_password": STAFF_PASSWORD,
         "code": code(settings, "carla")},
    )
    assert done.status_code == 200
    codes = [row for row in query(settings.database, "SELECT * FROM staff_recovery_codes")]
    assert len(codes) == 10
    shown = done.text
    for row in codes:  # hashes only: no stored value appears on the page
        assert row["code_hash"] not in shown
    # The link is spent.
    again = await staff.get(f"/staff/enrol?token={token}")
    assert again.status_code == 400
    assert audit_events(settings, "staff_enrolled")


async def test_sign_in_needs_password_and_current_code_and_a_code_works_once(staff, settings):
    await enrol(staff, settings)
    wrong_password = await post_form(
        staff, "/staff", {"username": "carla", "password": GOOD_PASSWORD, "code": code(settings, "carla", 1)}
    )
    assert wrong_password.status_code == 422
    wrong_code = await sign_in(staff, settings, the_code="123456")
    assert wrong_code.status_code == 422
    the_code = code(settings, "carla", 1)
    ok = await sign_in(staff, settings, the_code=the_code)
    assert ok.status_code == 303 and ok.headers["location"] == "/staff/search"
    cookie = ok.headers["set-cookie"]
    assert "portal_staff=" in cookie and "Path=/staff" in cookie and "HttpOnly" in cookie
    [row] = query(settings.database, "SELECT id_hash FROM staff_sessions")
    assert ok.cookies["portal_staff"] not in row["id_hash"]  # stored hashed
    # The same code again (a replay) is refused.
    async with await second_client(settings) as other:
        replay = await sign_in(other, settings, the_code=the_code)
        assert replay.status_code == 422
    details = [r["detail"] for r in audit_events(settings, "staff_sign_in_failed")]
    assert details == ["password", "code", "code"]


async def test_recovery_code_signs_in_once(staff, settings):
    codes = await enrol(staff, settings)
    assert len(codes) == 10
    first = await sign_in(staff, settings, the_code=codes[0].upper())
    assert first.status_code == 303
    async with await second_client(settings) as other:
        again = await sign_in(other, settings, the_code=codes[0])
        assert again.status_code == 422
        assert (await sign_in(other, settings, the_code=codes[1])).status_code == 303
    [used] = audit_events(settings, "staff_recovery_code_used")[:1]
    assert used["detail"] == "left=9"


async def test_sign_in_failures_are_throttled_per_username(staff, settings):
    await enrol(staff, settings)
    for _ in range(5):
        assert (await sign_in(staff, settings, the_code="111111")).status_code == 422
    throttled = await sign_in(staff, settings)  # even the right code waits now
    assert throttled.status_code == 429
    assert audit_events(settings, "staff_sign_in_throttled")


async def test_staff_session_ends_after_15_idle_minutes_and_8_hours(staff, settings):
    await staff_client(staff, settings)
    assert (await staff.get("/staff/search")).status_code == 200
    execute(settings.database, "UPDATE staff_sessions SET last_seen_at = ?", (ago(minutes=14),))
    assert (await staff.get("/staff/search")).status_code == 200
    execute(settings.database, "UPDATE staff_sessions SET last_seen_at = ?", (ago(minutes=16),))
    ended = await staff.get("/staff/search", follow_redirects=False)
    # The browser still sends the (stolen or stale) cookie: back to the staff sign-in.
    assert ended.status_code == 303 and ended.headers["location"] == "/staff?notice=session-ended"
    assert not query(settings.database, "SELECT * FROM staff_sessions")


async def test_stolen_staff_cookie_is_useless_after_idle_timeout(staff, settings):
    await staff_client(staff, settings)
    stolen = staff.cookies["portal_staff"]
    execute(settings.database, "UPDATE staff_sessions SET last_seen_at = ?", (ago(minutes=16),))
    async with await second_client(settings) as thief:
        thief.cookies.set("portal_staff", stolen, path="/staff")
        response = await thief.get("/staff/accounts/1", follow_redirects=False)
        assert response.status_code == 303
        assert "Maria" not in response.text


async def test_absolute_lifetime_is_8_hours(staff, settings):
    await staff_client(staff, settings)
    [row] = query(settings.database, "SELECT created_at, expires_at FROM staff_sessions")
    span = datetime.fromisoformat(row["expires_at"]) - datetime.fromisoformat(row["created_at"])
    assert span == timedelta(hours=8)
    execute(settings.database, "UPDATE staff_sessions SET expires_at = ?", (ago(seconds=1),))
    assert (await staff.get("/staff/search", follow_redirects=False)).status_code == 303


async def test_sign_in_rotates_the_session_and_sign_out_ends_it(staff, settings):
    codes = await enrol(staff, settings)
    assert (await sign_in(staff, settings)).status_code == 303
    before = staff.cookies["portal_staff"]
    # Signing in again in the same browser (a recovery code: this step's TOTP is spent).
    assert (await sign_in(staff, settings, the_code=codes[0])).status_code == 303
    after = staff.cookies["portal_staff"]
    assert after != before
    assert len(query(settings.database, "SELECT * FROM staff_sessions")) == 1
    async with await second_client(settings) as old:
        old.cookies.set("portal_staff", before, path="/staff")
        assert (await old.get("/staff/search", follow_redirects=False)).status_code == 303
    response = await post_form(staff, "/staff/sign-out", {}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/staff?notice=signed-out"
    assert not query(settings.database, "SELECT * FROM staff_sessions")
    assert audit_events(settings, "staff_sign_out")


async def test_disabled_staff_member_cannot_sign_in_and_loses_sessions(staff, settings):
    from portal import db as portal_db
    from portal.staff.accounts import disable_staff

    await staff_client(staff, settings)
    conn = portal_db.connect_sync(settings.database)
    disable_staff(conn, "carla")
    conn.close()
    assert (await staff.get("/staff/search", follow_redirects=False)).status_code == 303
    refused = await sign_in(staff, settings, the_code=code(settings, "carla", -1))
    assert refused.status_code == 422


# --- guards -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/staff/search", "/staff/accounts/1", "/staff/team", "/staff/audit", "/staff/audit.csv"]
)
async def test_visitor_on_staff_pages_gets_404_audited(staff, settings, path):
    response = await staff.get(path, follow_redirects=False)
    assert response.status_code == 404
    [row] = audit_events(settings, "staff_page_refused")
    assert row["detail"] == f"path={path}" and row["username"] is None


async def test_resident_on_staff_pages_gets_404_audited_with_their_name(staff, settings):
    from accounts_helpers import link_in, local

    await post_form(staff, "/register", registration())
    verify = local(link_in(outbox(settings.database)[-1]["body_text"], "/verify"))
    assert (await staff.get(verify)).status_code == 200
    login = await post_form(
        staff, "/login", {"username": "maria1", "password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert login.status_code == 303
    assert (await staff.get("/account")).status_code == 200
    for path in ("/staff/search", "/staff/team"):
        response = await staff.get(path, follow_redirects=False)
        assert response.status_code == 404
    rows = audit_events(settings, "staff_page_refused")
    assert [r["username"] for r in rows] == ["maria1", "maria1"]
    # The resident is not the staff member there, and stays signed in on her own pages.
    assert (await staff.get("/account")).status_code == 200


async def test_representative_on_supervisor_pages_gets_404_audited(staff, settings):
    await staff_client(staff, settings)
    for path in ("/staff/team", "/staff/audit", "/staff/audit.csv"):
        response = await staff.get(path, follow_redirects=False)
        assert response.status_code == 404, path
    rows = audit_events(settings, "staff_page_refused")
    assert [r["username"] for r in rows] == ["staff:carla"] * 3


async def test_staff_pages_are_no_store(staff, settings):
    await staff_client(staff, settings, role="supervisor")
    for path in ("/staff", "/staff/search?q=maria", "/staff/accounts/1", "/staff/team", "/staff/audit"):
        response = await staff.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path
