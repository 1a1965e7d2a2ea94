"""The Customer Services console over HTTP: enrolment with TOTP, sign-in, sessions,
guards (404 + audit), search, the read-only view, every action and the supervisors'
pages, against a real SQLite file and the real app."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from portal.accounts.signin import network
from portal.app import create_app
from staff_helpers import STAFF_PASSWORD, code, enrol, sign_in, staff_client

from resident_steps import GOOD_PASSWORD, outbox, post_form, query, registration
from sample_data import load_billing


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
    assert (
        '<svg role="img"' in page.text
        and "style=" not in page.text.split("<svg", 1)[1].split("</svg>")[0]
    )
    assert "otpauth://totp/" in page.text
    # A wrong code keeps the link usable and says what to do.
    bad = await post_form(
        staff,
        "/staff/enrol",
        {
            "token": token,
            "password": STAFF_PASSWORD,
            "confirm_password": STAFF_PASSWORD,
            "code": "000000",
        },
    )
    assert bad.status_code == 422 and "That code is not right" in bad.text
    weak = await post_form(
        staff,
        "/staff/enrol",
        {
            "token": token,
            "password": "short",
            "confirm_password": "short",
            "code": code(settings, "carla"),
        },
    )
    assert weak.status_code == 422 and "at least 15 characters" in weak.text
    done = await post_form(
        staff,
        "/staff/enrol",
        {
            "token": token,
            "password": STAFF_PASSWORD,
            "confirm_password": STAFF_PASSWORD,
            "code": code(settings, "carla"),
        },
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
        staff,
        "/staff",
        {"username": "carla", "password": GOOD_PASSWORD, "code": code(settings, "carla", 1)},
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


async def test_staff_idle_warning_asks_without_a_visit_and_stay_signed_in_extends(staff, settings):
    """The console warns before its 15-minute idle sign-out as residents' pages do:
    GET /staff/session says how long is left without counting as activity; POST (the
    warning's "Stay signed in") restarts the limit."""
    json = {"Accept": "application/json"}

    async def left(method: str = "GET") -> int:
        if method == "POST":
            response = await post_form(staff, "/staff/session", {}, headers=json)
        else:
            response = await staff.get("/staff/session", headers=json)
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
        return response.json()["left"]

    assert await left() == 0  # no staff session
    await staff_client(staff, settings)
    page = await staff.get("/staff/search")
    assert 'data-url="/staff/session"' in page.text and "Stay signed in" in page.text
    assert 'data-sign-out-url="/staff/sign-out"' in page.text
    execute(settings.database, "UPDATE staff_sessions SET last_seen_at = ?", (ago(minutes=14),))
    [before] = query(settings.database, "SELECT last_seen_at FROM staff_sessions")
    assert 50 <= await left() <= 60
    assert query(settings.database, "SELECT last_seen_at FROM staff_sessions") == [before]
    assert 15 * 60 - 5 <= await left("POST") <= 15 * 60
    execute(settings.database, "UPDATE staff_sessions SET last_seen_at = ?", (ago(minutes=14),))
    assert (await staff.get("/staff/search")).status_code == 200  # 14 + 14 minutes
    plain = await post_form(staff, "/staff/session", {}, follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"] == "/staff/search"
    # A disabled member's session has no time left, and "Stay signed in" cannot revive it.
    from portal import db as portal_db
    from portal.staff.accounts import disable_staff

    conn = portal_db.connect_sync(settings.database)
    disable_staff(conn, "carla")
    conn.close()
    assert await left() == 0 and await left("POST") == 0


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
    assert (
        response.status_code == 303 and response.headers["location"] == "/staff?notice=signed-out"
    )
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
    "path",
    ["/staff/search", "/staff/accounts/1", "/staff/team", "/staff/audit", "/staff/audit.csv"],
)
async def test_visitor_on_staff_pages_gets_404_audited(staff, settings, path):
    response = await staff.get(path, follow_redirects=False)
    assert response.status_code == 404
    [row] = audit_events(settings, "staff_page_refused")
    assert row["detail"] == f"path={path}" and row["username"] is None


async def test_resident_on_staff_pages_gets_404_audited_with_their_name(staff, settings):
    from resident_steps import link_in, local

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
    for path in (
        "/staff",
        "/staff/search?q=maria",
        "/staff/accounts/1",
        "/staff/team",
        "/staff/audit",
    ):
        response = await staff.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path


# --- search, view, actions ------------------------------------------------------------------


async def resident_with_account(client, settings, verified: bool = True) -> int:
    """Maria registers for 0012345/0067890 (and verifies, if asked); her user id."""
    from resident_steps import link_in, local

    async with await second_client(settings) as resident:
        assert (await post_form(resident, "/register", registration())).status_code == 200
        if verified:
            verify = local(link_in(outbox(settings.database)[-1]["body_text"], "/verify"))
            assert (await resident.get(verify)).status_code == 200
    [row] = query(settings.database, "SELECT id FROM users WHERE username = 'maria1'")
    return row["id"]


def maria_account(settings) -> int:
    [row] = query(
        settings.database, "SELECT id FROM service_accounts WHERE account_number = '0067890'"
    )
    return row["id"]


def actions(settings) -> list:
    return query(settings.database, "SELECT * FROM staff_actions ORDER BY id")


@pytest.mark.parametrize(
    "q",
    ["0012345", "12-345", "67890", "garc", "GARCIA", "euclid", "maria1", "MARIA@EXAMPLE", "aria1"],
)
async def test_search_finds_by_every_field_partially_and_without_case(staff, settings, q):
    await resident_with_account(staff, settings)
    await staff_client(staff, settings)
    response = await staff.get("/staff/search", params={"q": q})
    assert response.status_code == 200
    assert f'href="/staff/accounts/{maria_account(settings)}"' in response.text
    assert "James Smith" not in response.text


async def test_search_fragment_for_htmx_and_no_500_on_odd_input(staff, settings):
    await staff_client(staff, settings)
    fragment = await staff.get("/staff/search?q=holt", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<section id="search-results"')
    assert "James Smith" in fragment.text
    for odd in ['"', "a\\" * 60, "NEAR(", "*", "' OR 1=1 --", "\\x00"]:
        assert (await staff.get("/staff/search", params={"q": odd})).status_code == 200


async def test_account_view_shows_what_the_resident_sees_read_only(staff, settings):
    await resident_with_account(staff, settings)
    await staff_client(staff, settings)
    page = await staff.get(f"/staff/accounts/{maria_account(settings)}")
    assert page.status_code == 200
    text = page.text
    assert "Maria Garcia" in text and "123 Euclid Ave" in text
    assert "maria1" in text and "maria@example.com" in text
    assert "<td>register</td>" in text and "<td>verified</td>" in text  # her audit trail
    assert "$argon2" not in text and "password_hash" not in text


async def test_resend_verification_sends_a_new_link_with_reason_and_audit(staff, settings):
    user_id = await resident_with_account(staff, settings, verified=False)
    await staff_client(staff, settings)
    before = len(outbox(settings.database))
    missing = await post_form(
        staff, f"/staff/logins/{user_id}/resend-verification", {"resend_reason": ""}
    )
    assert missing.status_code == 422 and "Enter the reason" in missing.text
    assert len(outbox(settings.database)) == before
    done = await post_form(
        staff,
        f"/staff/logins/{user_id}/resend-verification",
        {"resend_reason": "Resident called: no email"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    mails = outbox(settings.database)
    assert len(mails) == before + 1 and mails[-1]["to_addr"] == "maria@example.com"
    # The new link verifies the resident.
    from resident_steps import link_in, local

    async with await second_client(settings) as resident:
        assert (
            await resident.get(local(link_in(mails[-1]["body_text"], "/verify")))
        ).status_code == 200
    [action] = actions(settings)
    assert (action["action"], action["staff_username"], action["user_id"]) == (
        "resend_verification",
        "carla",
        user_id,
    )
    assert action["reason"] == "Resident called: no email"
    assert audit_events(settings, "staff_resend_verification")[0]["username"] == "staff:carla"


async def test_unlock_lets_a_locked_resident_log_in_again(staff, settings):
    user_id = await resident_with_account(staff, settings)
    execute(settings.database, "UPDATE users SET failed_logins = 100")
    for _ in range(6):  # and waits from this network, as after real failures
        execute(
            settings.database,
            "INSERT INTO login_failures (client, user_key, at) VALUES (?, 'maria1', ?)",
            (network("testclient"), ago(seconds=5)),
        )
    await staff_client(staff, settings)
    page = await staff.get(f"/staff/accounts/{maria_account(settings)}")
    assert "Locked until a password reset" in page.text
    done = await post_form(
        staff,
        f"/staff/logins/{user_id}/unlock",
        {"unlock_reason": "Identity checked by phone"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    async with await second_client(settings) as resident:
        login = await post_form(
            resident,
            "/login",
            {"username": "maria1", "password": GOOD_PASSWORD},
            follow_redirects=False,
        )
        assert login.status_code == 303
    assert actions(settings)[0]["action"] == "unlock"
    assert audit_events(settings, "unlocked_by_staff")[0]["username"] == "maria1"


async def test_change_email_waits_for_the_new_address_to_confirm(staff, settings):
    from resident_steps import link_in, local

    user_id = await resident_with_account(staff, settings)
    await staff_client(staff, settings)
    bad = await post_form(
        staff,
        f"/staff/logins/{user_id}/email",
        {
            "email_new_email": "new@example.com",
            "email_confirm_new_email": "other@example.com",
            "email_reason": "asked",
        },
    )
    assert bad.status_code == 422
    done = await post_form(
        staff,
        f"/staff/logins/{user_id}/email",
        {
            "email_new_email": "maria.new@example.com",
            "email_confirm_new_email": "maria.new@example.com",
            "email_reason": "Old address closed",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    [user] = query(settings.database, "SELECT email FROM users WHERE id = ?", (user_id,))
    assert user["email"] == "maria@example.com"  # not yet
    mail = outbox(settings.database)[-1]
    assert mail["to_addr"] == "maria.new@example.com"
    async with await second_client(settings) as resident:
        link = local(link_in(mail["body_text"], "/profile/email/confirm"))
        assert (await resident.get(link)).status_code == 200
    [user] = query(settings.database, "SELECT email FROM users WHERE id = ?", (user_id,))
    assert user["email"] == "maria.new@example.com"
    assert actions(settings)[0]["detail"] == "to=maria.new@example.com"


async def test_release_takes_the_account_from_the_login(staff, settings):
    user_id = await resident_with_account(staff, settings)
    account_id = maria_account(settings)
    await staff_client(staff, settings)
    refused = await post_form(
        staff, f"/staff/accounts/{account_id}/release", {"release_reason": ""}
    )
    assert refused.status_code == 422
    assert query(settings.database, "SELECT * FROM user_accounts")
    done = await post_form(
        staff,
        f"/staff/accounts/{account_id}/release",
        {"release_reason": "Squatter: not the holder"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert not query(settings.database, "SELECT * FROM user_accounts")
    [action] = actions(settings)
    assert (action["action"], action["account_id"], action["user_id"]) == (
        "release_account",
        account_id,
        user_id,
    )
    # The login still exists, found by search as a login with no account.
    found = await staff.get("/staff/search?q=maria1")
    assert f'href="/staff/logins/{user_id}"' in found.text
    assert (await staff.get(f"/staff/logins/{user_id}")).status_code == 200


async def test_note_is_added_and_shown(staff, settings):
    await staff_client(staff, settings)
    account_id = maria_account(settings)
    empty = await post_form(staff, f"/staff/accounts/{account_id}/notes", {"note_text": "  "})
    assert empty.status_code == 422 and "Enter the note" in empty.text
    done = await post_form(
        staff,
        f"/staff/accounts/{account_id}/notes",
        {"note_text": "Called about <b>leak</b>"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    page = await staff.get(f"/staff/accounts/{account_id}")
    assert "Called about &lt;b&gt;leak&lt;/b&gt;" in page.text
    assert actions(settings)[0]["action"] == "note"


async def test_phone_payment_goes_through_the_gateway_and_is_marked_taken_by_staff(staff, settings):
    await staff_client(staff, settings)
    account_id = maria_account(settings)
    form = await staff.get(f"/staff/accounts/{account_id}/pay")
    assert form.status_code == 200
    import re

    key = re.search(r'name="idempotency_key" value="([^"]+)"', form.text).group(1)
    no_reason = await post_form(
        staff,
        f"/staff/accounts/{account_id}/pay",
        {"idempotency_key": key, "amount": "25.00", "method": "card", "reason": ""},
    )
    assert no_reason.status_code == 422 and not query(settings.database, "SELECT * FROM payments")
    data = {"idempotency_key": key, "amount": "25.00", "method": "card", "reason": "Called to pay"}
    start = await post_form(
        staff, f"/staff/accounts/{account_id}/pay", data, follow_redirects=False
    )
    assert start.status_code == 303
    checkout = start.headers["location"]
    assert "/sandbox-gateway/checkout/" in checkout
    again = await post_form(
        staff, f"/staff/accounts/{account_id}/pay", data, follow_redirects=False
    )
    assert again.headers["location"] == checkout  # a resent form is the same payment
    path = checkout.split("portal.test", 1)[-1]
    paid = await post_form(
        staff,
        path,
        {
            "card_number": "4242 4242 4242 4242",
            "expiry": "12/39",
            "security_code": "737",
            "name_on_card": "Maria Garcia",
            "action": "pay",
        },
        follow_redirects=False,
    )
    assert paid.status_code == 303
    back = await staff.get(
        paid.headers["location"].split("portal.test", 1)[-1], follow_redirects=False
    )
    assert back.status_code == 303
    [payment] = query(settings.database, "SELECT * FROM payments")
    [carla] = query(settings.database, "SELECT id FROM staff WHERE username = 'carla'")
    assert payment["status"] == "succeeded" and payment["taken_by_staff_id"] == carla["id"]
    assert payment["user_id"] is None
    [action] = actions(settings)
    assert action["action"] == "phone_payment" and action["detail"] == f"payment={payment['id']}"
    view = await staff.get(f"/staff/accounts/{account_id}")
    assert "Taken by staff: carla" in view.text and "4242" in view.text
    assert "4242 4242 4242 4242" not in view.text


# --- AutoPay and scheduled payments ---------------------------------------------------------


@pytest.fixture
async def maria_pays(staff, settings, client):
    """Maria, signed in on her own client, with a saved card, AutoPay on (at most $150)
    and $40.00 scheduled five days ahead, each set up the way she does it."""
    from test_autopay import _day, add_method, bill_csv, enrol, schedule
    from test_billing_http import load, sign_up_and_in

    load(settings.database, "bills", bill_csv())
    maria = await sign_up_and_in(client, settings.database, "maria1")
    maria.db, maria.account_id = settings.database, maria_account(settings)
    method_id = await add_method(maria)
    await enrol(maria, method_id, "150")
    response, _form = await schedule(maria, method_id, "40.00", _day(5))
    assert response.status_code == 303
    [row] = query(settings.database, "SELECT id FROM schedules WHERE kind = 'scheduled'")
    maria.schedule_id = row["id"]
    return maria


def schedule_status(settings, schedule_id: int) -> str:
    [row] = query(settings.database, "SELECT status FROM schedules WHERE id = ?", (schedule_id,))
    return row["status"]


async def test_account_view_shows_saved_methods_autopay_and_scheduled_payments(
    staff, settings, maria_pays
):
    await staff_client(staff, settings)
    text = (await staff.get(f"/staff/accounts/{maria_pays.account_id}")).text
    assert "Kitchen card (Visa ending 4242)" in text and "04/2030" in text
    assert "$150.00" in text and "Turn off AutoPay" in text  # AutoPay, its maximum
    assert "$40.00" in text and "Cancel this payment" in text  # the scheduled payment
    [method] = query(settings.database, "SELECT token, customer FROM saved_methods")
    assert method["token"] not in text and method["customer"] not in text


async def test_cancel_a_scheduled_payment_with_a_reason_and_the_resident_is_told(
    staff, settings, maria_pays
):
    await staff_client(staff, settings)
    schedule_id = maria_pays.schedule_id
    url = f"/staff/accounts/{maria_pays.account_id}/scheduled/{schedule_id}/cancel"
    reason = f"scheduled_{schedule_id}_reason"
    mails = len(outbox(settings.database))
    missing = await post_form(staff, url, {reason: " "})
    assert missing.status_code == 422 and "Enter the reason" in missing.text
    assert schedule_status(settings, schedule_id) == "scheduled" and not actions(settings)
    done = await post_form(staff, url, {reason: "Asked by phone"}, follow_redirects=False)
    assert done.status_code == 303
    assert schedule_status(settings, schedule_id) == "canceled"
    [action] = actions(settings)
    assert (action["action"], action["staff_username"], action["reason"]) == (
        "cancel_scheduled_payment",
        "carla",
        "Asked by phone",
    )
    assert action["account_id"] == maria_pays.account_id
    assert action["detail"] == f"schedule={schedule_id}"
    assert audit_events(settings, "scheduled_payment_canceled_by_staff")[0]["username"] == "maria1"
    assert audit_events(settings, "staff_cancel_scheduled_payment")[0]["username"] == "staff:carla"
    [mail] = outbox(settings.database)[mails:]
    assert mail["to_addr"] == "maria@example.com"
    assert mail["subject"].startswith("Customer Services canceled your scheduled payment")
    assert "$40.00" in mail["body_text"]
    # Maria sees it canceled; a second cancel is too late and changes nothing.
    page = (await maria_pays.get(f"/accounts/{maria_pays.account_id}/scheduled")).text
    assert "Canceled" in page and "Cancel this payment" not in page
    again = await post_form(staff, url, {reason: "again"})
    assert again.status_code == 409 and "already started or ended" in again.text
    assert len(actions(settings)) == 1 and len(outbox(settings.database)) == mails + 1


async def test_turn_off_autopay_with_a_reason_and_the_resident_is_told(staff, settings, maria_pays):
    assert "AutoPay is on." in (await maria_pays.get("/account")).text
    await staff_client(staff, settings)
    url = f"/staff/accounts/{maria_pays.account_id}/autopay/cancel"
    missing = await post_form(staff, url, {"autopay_reason": ""})
    assert missing.status_code == 422 and "Enter the reason" in missing.text
    assert query(settings.database, "SELECT * FROM autopay")
    done = await post_form(staff, url, {"autopay_reason": "Card lost"}, follow_redirects=False)
    assert done.status_code == 303
    assert not query(settings.database, "SELECT * FROM autopay")
    [action] = actions(settings)
    assert (action["action"], action["staff_username"], action["reason"]) == (
        "cancel_autopay",
        "carla",
        "Card lost",
    )
    assert audit_events(settings, "autopay_canceled_by_staff")[0]["username"] == "maria1"
    mail = outbox(settings.database)[-1]
    assert mail["to_addr"] == "maria@example.com"
    assert mail["subject"].startswith("Customer Services turned off your AutoPay")
    assert "AutoPay is off." in (await maria_pays.get("/account")).text
    # The scheduled one-time payment is not AutoPay: it stays.
    assert schedule_status(settings, maria_pays.schedule_id) == "scheduled"
    again = await post_form(staff, url, {"autopay_reason": "again"})
    assert again.status_code == 409 and "already off" in again.text
    assert len(actions(settings)) == 1


async def test_another_accounts_schedule_is_404_and_residents_cannot_use_the_console(
    staff, settings, maria_pays
):
    [other] = query(
        settings.database,
        "SELECT id FROM service_accounts WHERE id != ? LIMIT 1",
        (maria_pays.account_id,),
    )
    # Maria herself, signed in, trying the console's URLs: 404, audited.
    own = f"/staff/accounts/{maria_pays.account_id}"
    for path, data in (
        (f"{own}/scheduled/{maria_pays.schedule_id}/cancel", {"reason": "x"}),
        (f"{own}/autopay/cancel", {"autopay_reason": "x"}),
    ):
        assert (await maria_pays.post(path, data)).status_code == 404
    assert len(audit_events(settings, "staff_page_refused")) == 2
    await staff_client(staff, settings)
    wrong = f"/staff/accounts/{other['id']}/scheduled/{maria_pays.schedule_id}/cancel"
    reason = f"scheduled_{maria_pays.schedule_id}_reason"
    assert (await post_form(staff, wrong, {reason: "x"})).status_code == 404
    assert schedule_status(settings, maria_pays.schedule_id) == "scheduled"
    assert query(settings.database, "SELECT * FROM autopay") and not actions(settings)


async def test_console_cancels_are_rate_limited(staff, settings):
    await staff_client(staff, settings)
    # 30 posts per network per 10 minutes; the 31st is refused with the 429 page.
    statuses = [
        (await post_form(staff, "/staff/accounts/999999/autopay/cancel", {})).status_code
        for _ in range(31)
    ]
    assert statuses[:30] == [404] * 30 and statuses[30] == 429


# --- supervisors ------------------------------------------------------------------------------


async def test_supervisor_sees_team_and_filters_and_exports_staff_actions(staff, settings):
    await staff_client(staff, settings, username="sam", role="supervisor")
    account_id = maria_account(settings)
    for note in ("first", "=HYPERLINK(1)"):
        await post_form(staff, f"/staff/accounts/{account_id}/notes", {"note_text": note})
    team = await staff.get("/staff/team")
    assert team.status_code == 200 and "sam" in team.text
    page = await staff.get(
        "/staff/audit", params={"staff": "SAM", "action": "note", "account": "67-890"}
    )
    assert page.status_code == 200 and page.text.count("<td>note</td>") == 2
    none = await staff.get("/staff/audit", params={"staff": "nobody"})
    assert "<td>note</td>" not in none.text
    bad = await staff.get("/staff/audit", params={"date_from": "yesterday"})
    assert bad.status_code == 422 and "Enter a date like" in bad.text
    bad_csv = await staff.get("/staff/audit.csv", params={"date_from": "yesterday"})
    assert bad_csv.status_code == 400 and "Enter a date like" in bad_csv.text
    assert bad_csv.headers["content-type"] == "text/plain; charset=utf-8"
    exported = await staff.get("/staff/audit.csv", params={"action": "note"})
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["cache-control"] == "no-store"
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][:3] == ["at_utc", "staff", "action"] and len(rows) == 3
    assert rows[1][6] == "'=HYPERLINK(1)"  # a spreadsheet will not run it


async def test_search_follows_later_imports_renames_included(staff, settings):
    from portal import db as portal_db
    from portal.billing.importer import import_text

    await staff_client(staff, settings)
    assert "Ana Lopez" in (await staff.get("/staff/search?q=lopez")).text
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "accounts",
        "customer_number,account_number,name,service_address,status\n"
        "0066666,0077777,Ana Torres,12 Vineyard Ave,active\n"
        "0088888,0099999,Zoe Newcomer,1 New St,active\n",
    )
    conn.close()
    assert "Zoe Newcomer" in (await staff.get("/staff/search?q=newcom")).text
    assert "Ana Torres" in (await staff.get("/staff/search?q=torres")).text
    assert "Ana" not in (await staff.get("/staff/search?q=lopez")).text


def test_portal_staff_commands(settings, monkeypatch, capsys):
    from portal import cli

    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    monkeypatch.setenv("PORTAL_BASE_URL", "https://portal.example")
    assert (
        cli.main(
            ["staff", "add", "dora", "--role", "supervisor", "--email", "dora@utility.example"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "https://portal.example/staff/enrol?token=" in out
    assert cli.main(["staff", "add", "DORA", "--role", "csr", "--email", "d@utility.example"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["staff", "add", "eve", "--role", "csr", "--email", "not an address"]) == 2
    assert cli.main(["staff", "list"]) == 0
    assert capsys.readouterr().out == "dora\tsupervisor\tdora@utility.example\tnot enrolled\n"
    assert cli.main(["staff", "disable", "dora"]) == 0
    assert cli.main(["staff", "disable", "nobody"]) == 2
    capsys.readouterr()
    assert cli.main(["staff", "list"]) == 0
    assert capsys.readouterr().out.endswith("\tdisabled\n")
    [row] = query(settings.database, "SELECT enrol_hash FROM staff")
    assert row["enrol_hash"] is None  # the unused link died with the account
    assert [r["event"] for r in query(settings.database, "SELECT event FROM audit_log")] == [
        "staff_added",
        "staff_disabled",
    ]


def test_portal_import_accounts_updates_the_search_index(settings, monkeypatch, tmp_path):
    from portal import cli

    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_text(
        "customer_number,account_number,name,service_address,status\n1,2,Quentin Blake,3 Oak St,active\n"
    )
    assert cli.main(["import", "accounts", str(csv_file)]) == 0
    rows = query(
        settings.database,
        "SELECT rowid FROM account_search WHERE account_search MATCH '\"uentin\"'",
    )
    assert len(rows) == 1


@pytest.mark.parametrize("number", ["0", "99999999999999999999", "9223372036854775807"])
async def test_unknown_or_huge_ids_are_404_never_500(staff, settings, number):
    await staff_client(staff, settings, role="supervisor")
    for path in (
        f"/staff/accounts/{number}",
        f"/staff/accounts/{number}/pay",
        f"/staff/logins/{number}",
    ):
        assert (await staff.get(path)).status_code == 404, path
    posts = {
        f"/staff/accounts/{number}/notes": {"note_text": "x"},
        f"/staff/accounts/{number}/release": {"release_reason": "x"},
        f"/staff/accounts/{number}/pay": {"amount": "5", "method": "card", "reason": "x"},
        f"/staff/logins/{number}/unlock": {"unlock_reason": "x"},
        f"/staff/logins/{number}/resend-verification": {"resend_reason": "x"},
        f"/staff/logins/{number}/email": {"email_reason": "x"},
    }
    for path, data in posts.items():
        assert (await post_form(staff, path, data)).status_code == 404, path
    assert not query(settings.database, "SELECT * FROM staff_actions")


async def test_supervisor_posts_and_takes_down_the_service_notice(staff, settings):
    """/staff/notice: a supervisor shows a notice on every page (both languages, a
    reason, plain text) and takes it down; each is a staff action; representatives and
    residents get 404."""
    await staff_client(staff, settings, role="supervisor")
    page = await staff.get("/staff/notice")
    assert page.status_code == 200 and "No notice is shown." in page.text
    refused = await post_form(staff, "/staff/notice", {"text_en": "Boil water", "text_es": ""})
    assert refused.status_code == 422
    assert "Enter the notice in Spanish" in refused.text
    assert "Enter the reason for this action" in refused.text
    assert 'value="Boil water"' in refused.text  # nothing typed is lost
    assert query(settings.database, "SELECT * FROM site_notice") == []
    english = "Boil water north of 4th Street until further notice."
    spanish = "Hierva el agua al norte de la calle 4 hasta nuevo aviso."
    posted = await post_form(
        staff,
        "/staff/notice",
        {"text_en": english, "text_es": spanish, "reason": "Water Operations, main break"},
        follow_redirects=False,
    )
    assert posted.status_code == 303 and posted.headers["location"] == "/staff/notice?notice=set"
    shown = await staff.get(posted.headers["location"])
    assert "The notice is now shown on every page." in shown.text and spanish in shown.text
    landing = await staff.get("/")  # this process shows it at once, signed-out pages too
    assert english in landing.text
    [action] = query(settings.database, "SELECT * FROM staff_actions WHERE action = 'site_notice'")
    assert action["reason"] == "Water Operations, main break" and english in action["detail"]
    assert audit_events(settings, "staff_site_notice")
    no_reason = await post_form(staff, "/staff/notice/clear", {"clear_reason": ""})
    assert no_reason.status_code == 422 and "Enter the reason" in no_reason.text
    down = await post_form(
        staff,
        "/staff/notice/clear",
        {"clear_reason": "Water is safe again"},
        follow_redirects=False,
    )
    assert down.headers["location"] == "/staff/notice?notice=removed"
    assert english not in (await staff.get("/")).text
    assert query(settings.database, "SELECT * FROM site_notice") == []
    assert audit_events(settings, "staff_site_notice_removed")
    again = await post_form(
        staff, "/staff/notice/clear", {"clear_reason": "Twice"}, follow_redirects=False
    )
    assert again.headers["location"] == "/staff/notice"  # nothing to take down: no "taken down"
    assert len(audit_events(settings, "staff_site_notice_removed")) == 1
    # A representative does not even learn the page exists.
    async with await second_client(settings) as rep:
        await staff_client(rep, settings, username="rita", role="csr")
        assert (await rep.get("/staff/notice")).status_code == 404
        assert (await post_form(rep, "/staff/notice", {"text_en": "x"})).status_code == 404
