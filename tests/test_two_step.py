"""Two-step verification for residents: turning it on and off in My Profile, the code
step of a login, recovery codes, the limits, and Customer Services turning it off.

Real parts: the app over HTTP, a real SQLite file, codes made by pyotp from the key the
page shows (as an authenticator app does), the outbox the emails are written to.
"""

from __future__ import annotations

import html
import re
import time

import pyotp
import pytest

from portal.accounts.signin import CODE_FAILURES_MAX, CODE_TRIES
from portal.security.cookies import PENDING
from staff_helpers import staff_client
from test_accounts_http import (
    COOKIE,
    GOOD_PASSWORD,
    execute,
    make_user,
    reset_link,
    reset_password,
    sign_in,
)
from test_ops_observe import sample

from resident_steps import outbox, post_form, query
from sample_data import load_billing

NEW_PASSWORD = "a brand new river password"


def key_on(page: str) -> str:
    found = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page)
    assert found, "no key on the page"
    return found.group(1).replace(" ", "")


def app_code(key: str, steps_ahead: int = 0) -> str:
    """What the authenticator app shows, `steps_ahead` 30-second steps from now (each
    step is accepted once, so a second login right after the first needs the next)."""
    return pyotp.TOTP(key).at(time.time() + 30 * steps_ahead)


def recovery_codes_on(page: str) -> list[str]:
    return re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", page)


def user(settings):
    return query(settings.database, "SELECT * FROM users WHERE username = 'maria1'")[0]


async def turn_on(client) -> tuple[str, list[str]]:
    key = key_on((await client.get("/profile/two-step")).text)
    response = await post_form(
        client, "/profile/two-step", {"code": app_code(key), "current_password": GOOD_PASSWORD}
    )
    assert response.status_code == 200, response.text
    codes = recovery_codes_on(response.text)
    assert len(codes) == 10
    return key, codes


async def log_out_and_in(client, password: str = GOOD_PASSWORD, **kwargs):
    await post_form(client, "/logout", {})
    client.cookies.clear()
    return await sign_in(client, password=password, **kwargs)


async def code_step(client, code: str):
    return await post_form(client, "/login/code", {"code": code}, follow_redirects=False)


@pytest.fixture
async def maria(settings, client):
    load_billing(settings.database)
    await make_user(settings, client)
    response = await sign_in(client)
    assert response.status_code == 303
    return client


async def test_turning_on_asks_for_a_code_from_the_app_and_the_password(settings, maria):
    profile = (await maria.get("/profile")).text
    assert "Two-step verification" in profile and "Turn on two-step verification" in profile
    page = (await maria.get("/profile/two-step")).text
    assert 'role="img"' in page and "<title>QR code for your authenticator app</title>" in page
    key = key_on(page)
    assert key_on((await maria.get("/profile/two-step")).text) == key  # a reload keeps it
    assert user(settings)["two_step_at"] is None

    wrong_code = await post_form(
        maria, "/profile/two-step", {"code": "000000", "current_password": GOOD_PASSWORD}
    )
    assert wrong_code.status_code == 422
    assert "That code is not right" in wrong_code.text
    # Someone with a stolen session, but not the password, cannot put their app on it.
    no_password = await post_form(
        maria, "/profile/two-step", {"code": app_code(key), "current_password": "not it at all"}
    )
    assert no_password.status_code == 422
    assert "Your current password is not right" in no_password.text
    assert user(settings)["two_step_at"] is None

    mails = len(outbox(settings.database))
    response = await post_form(
        maria, "/profile/two-step", {"code": app_code(key), "current_password": GOOD_PASSWORD}
    )
    assert response.status_code == 200
    assert "Two-step verification is on" in response.text
    codes = recovery_codes_on(response.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    row = user(settings)
    assert row["two_step_at"] is not None and row["totp_secret"] == key
    stored = [r[0] for r in query(settings.database, "SELECT code_hash FROM recovery_codes")]
    assert len(stored) == 10 and not set(codes) & set(stored)  # only hashes are kept
    [mail] = outbox(settings.database)[mails:]
    assert mail["subject"].startswith("Two-step verification is on")
    assert "two_step_on" in [
        r["event"] for r in query(settings.database, "SELECT event FROM audit_log")
    ]
    page = (await maria.get("/profile/two-step")).text
    assert "You have 10 recovery codes left." in page and key[:8] not in page.replace(" ", "")


async def test_login_asks_for_the_code_after_the_password_and_never_takes_one_twice(
    settings, maria
):
    key, _ = await turn_on(maria)
    response = await log_out_and_in(maria, next_="/profile")
    assert response.status_code == 303 and response.headers["location"] == "/login/code"
    assert COOKIE not in maria.cookies  # no session until the code
    assert PENDING in maria.cookies
    assert (await maria.get("/account", follow_redirects=False)).status_code == 303
    page = await maria.get("/login/code")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text

    failures = sample("portal_sign_ins_total", outcome="code_failure") or 0
    wrong = await code_step(maria, "123456")
    assert wrong.status_code == 422 and "That code is not right" in wrong.text
    assert sample("portal_sign_ins_total", outcome="code_failure") == failures + 1
    empty = await code_step(maria, "")
    assert empty.status_code == 422 and "Enter the code from your authenticator app" in empty.text
    # The code used to turn it on a moment ago is spent: the app's next one works.
    spent = await code_step(maria, app_code(key))
    assert spent.status_code == 422
    response = await code_step(maria, app_code(key, 1))
    assert response.status_code == 303 and response.headers["location"] == "/profile"
    assert (await maria.get("/account")).status_code == 200
    assert PENDING not in maria.cookies
    assert user(settings)["code_failures"] == 0  # the wrong ones were forgiven

    # The same code again, on a new login: refused (a code seen over a shoulder).
    await log_out_and_in(maria)
    assert (await code_step(maria, app_code(key, 1))).status_code == 422


async def test_a_recovery_code_works_once(settings, maria):
    key, codes = await turn_on(maria)
    await log_out_and_in(maria)
    response = await code_step(maria, codes[3].upper().replace("-", " "))
    assert response.status_code == 303
    assert "recovery_code_used" in [
        r["event"] for r in query(settings.database, "SELECT event FROM audit_log")
    ]
    assert "You have 9 recovery codes left." in (await maria.get("/profile/two-step")).text
    await log_out_and_in(maria)
    assert (await code_step(maria, codes[3])).status_code == 422
    assert (await code_step(maria, codes[4])).status_code == 303


async def test_new_recovery_codes_replace_the_old_ones(settings, maria):
    key, old_codes = await turn_on(maria)
    refused = await post_form(maria, "/profile/two-step/codes", {"codes_password": "wrong one"})
    assert refused.status_code == 422 and "Your current password is not right" in refused.text
    mails = len(outbox(settings.database))
    response = await post_form(maria, "/profile/two-step/codes", {"codes_password": GOOD_PASSWORD})
    assert response.status_code == 200 and "New recovery codes are ready" in response.text
    new_codes = recovery_codes_on(response.text)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    [mail] = outbox(settings.database)[mails:]
    assert mail["subject"].startswith("New recovery codes")
    await log_out_and_in(maria)
    assert (await code_step(maria, old_codes[0])).status_code == 422
    assert (await code_step(maria, new_codes[0])).status_code == 303


async def test_wrong_codes_start_over_then_lock_until_a_password_reset(settings, maria):
    key, _ = await turn_on(maria)
    await log_out_and_in(maria)
    for _ in range(CODE_TRIES - 1):
        assert (await code_step(maria, "000000")).status_code == 422
    last = await code_step(maria, "000000")
    assert "Your login took too long or had too many wrong codes" in last.text
    assert 'action="/login/code"' not in last.text
    # That login is over: even the right code does not finish it.
    assert (await code_step(maria, app_code(key, 1))).status_code == 422
    assert COOKIE not in maria.cookies

    await log_out_and_in(maria)
    for _ in range(CODE_FAILURES_MAX - CODE_TRIES - 1):
        await code_step(maria, "000000")
    locked = await code_step(maria, "000000")
    assert "too many wrong codes for this account" in locked.text
    assert user(settings)["code_failures"] == CODE_FAILURES_MAX
    # Even the right password now stops at the login page, with the way out.
    again = await log_out_and_in(maria)
    assert again.status_code == 422 and "Forgot Password" in again.text

    link = await reset_link(settings, maria)
    assert (await reset_password(maria, link, NEW_PASSWORD)).status_code == 303
    assert user(settings)["code_failures"] == 0
    response = await log_out_and_in(maria, password=NEW_PASSWORD)
    assert response.headers["location"] == "/login/code"  # a reset does not remove it
    assert (await code_step(maria, app_code(key, 1))).status_code == 303


async def test_the_code_step_lasts_five_minutes(settings, maria):
    key, _ = await turn_on(maria)
    await log_out_and_in(maria)
    execute(settings.database, "UPDATE pending_sign_ins SET expires_at = '2000-01-01T00:00:00Z'")
    page = await maria.get("/login/code")
    assert page.status_code == 422 and "Your login took too long" in html.unescape(page.text)
    assert (await code_step(maria, app_code(key, 1))).status_code == 422
    # A made-up pending cookie is no way in either.
    maria.cookies.set(PENDING, "made-up")
    assert (await code_step(maria, app_code(key, 1))).status_code == 422


async def test_turning_off_asks_for_the_password_and_emails(settings, maria):
    await turn_on(maria)
    refused = await post_form(maria, "/profile/two-step/off", {"current_password": "nope nope"})
    assert refused.status_code == 422 and user(settings)["two_step_at"] is not None
    mails = len(outbox(settings.database))
    response = await post_form(
        maria, "/profile/two-step/off", {"current_password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303
    assert "Two-step verification is off" in (await maria.get(response.headers["location"])).text
    row = user(settings)
    assert row["two_step_at"] is None and row["totp_secret"] is None
    assert query(settings.database, "SELECT count(*) FROM recovery_codes")[0][0] == 0
    [mail] = outbox(settings.database)[mails:]
    assert mail["subject"].startswith("Two-step verification is off")
    response = await log_out_and_in(maria)
    assert response.headers["location"] == "/account"


async def test_a_supervisor_turns_it_off_for_a_resident_who_lost_the_phone(settings, maria, client):
    await turn_on(maria)
    user_id = user(settings)["id"]
    await post_form(maria, "/logout", {})
    client.cookies.clear()

    await staff_client(client, settings, "carla", "csr")
    page = (await client.get(f"/staff/logins/{user_id}")).text
    assert "a supervisor can turn off two-step verification" in page
    assert "two-step-off" not in page
    refused = await post_form(
        client, f"/staff/logins/{user_id}/two-step-off", {"twostep_reason": "lost phone"}
    )
    assert refused.status_code == 422 and "Only a supervisor" in refused.text
    assert user(settings)["two_step_at"] is not None

    client.cookies.clear()
    await staff_client(client, settings, "sam", "supervisor")
    page = (await client.get(f"/staff/logins/{user_id}")).text
    assert "On since" in page and f"/staff/logins/{user_id}/two-step-off" in page
    no_reason = await post_form(client, f"/staff/logins/{user_id}/two-step-off", {})
    assert no_reason.status_code == 422 and user(settings)["two_step_at"] is not None
    mails = len(outbox(settings.database))
    done = await post_form(
        client,
        f"/staff/logins/{user_id}/two-step-off",
        {"twostep_reason": "Lost phone and codes; identity checked by callback"},
    )
    assert done.status_code == 200
    assert "Two-step verification is off for this login" in done.text
    assert user(settings)["two_step_at"] is None
    [mail] = outbox(settings.database)[mails:]
    assert "Customer Services turned off two-step verification" in mail["body_text"]
    action = query(settings.database, "SELECT * FROM staff_actions WHERE action = 'two_step_off'")
    assert len(action) == 1 and action[0]["staff_username"] == "sam"
    events = [r["event"] for r in query(settings.database, "SELECT event FROM audit_log")]
    assert "two_step_off_by_staff" in events and "staff_two_step_off" in events


async def test_spanish_pages(settings, maria):
    await maria.get("/language?lang=es")
    page = (await maria.get("/profile/two-step")).text
    assert "Verificación en dos pasos" in page
    key, _ = await turn_on(maria)
    await log_out_and_in(maria)  # a new device: her language follows her to the code step
    page = (await maria.get("/login/code")).text
    assert "Verificación en dos pasos" in page and "código" in page
