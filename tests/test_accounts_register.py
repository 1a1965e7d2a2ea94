"""Registration over HTTP: rules, alerts, success, races, verification link."""

from __future__ import annotations

import asyncio

import pytest

from resident_steps import link_in, link_params, local, outbox, post_form, query, registration
from sample_data import GOOD_PASSWORD, load_billing


@pytest.fixture
async def reg_client(settings, client):
    load_billing(settings.database)
    return client


async def test_register_page_uses_the_guide_words(reg_client):
    page = (await reg_client.get("/register")).text
    for words in [
        "New User Registration",
        "Username",
        "Password",
        "Confirm Password",
        "Customer Number",
        "Account Number",
        "Receive Paperless Bills",
        "Receive Printed Bills",
        "Email Address",
        "Confirm Email Address",
        "(required)",
        ">Register<",
        "Your user name can include letters, numbers or both.",
        "Passwords can include a combination of letters, numbers and special characters.",
        "located on your utility bill",
        "on your bill right after your customer number",
    ]:
        assert words in page, words
    assert 'autocomplete="new-password"' in page and 'autocomplete="email"' in page


async def test_successful_registration_shows_guide_message_and_queues_email(settings, reg_client):
    response = await post_form(reg_client, "/register", registration())
    assert response.status_code == 200
    assert (
        "You have successfully registered for Ontario Municipal Utilities Company online services."
        in response.text
    )
    assert (
        "An email with an account verification link has been sent to maria@example.com."
        in response.text
    )
    assert "Please click on the link to complete your account verification." in response.text
    [mail] = outbox(settings.database)
    assert mail["to_addr"] == "maria@example.com"
    assert "maria1" in mail["body_text"] and settings.base_url in mail["body_text"]
    link = link_in(mail["body_text"], "/verify")
    params = link_params(link)
    assert params["username"] == "maria1" and len(params["verificationcode"]) >= 22  # >=128 bits
    # only a hash of the code is stored
    stored = [
        row["token_hash"] for row in query(settings.database, "SELECT token_hash FROM tokens")
    ]
    assert params["verificationcode"] not in stored and len(stored) == 1
    [user] = query(settings.database, "SELECT * FROM users")
    assert user["paperless"] == 1 and user["printed"] == 0 and user["verified_at"] is None
    assert GOOD_PASSWORD not in user["password_hash"] and user["password_hash"].startswith(
        "$argon2id$"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"username": ""}, "username", "Enter a username"),
        ({"username": "ab"}, "username", "3 to 32"),
        ({"username": "maria garcia"}, "username", "only letters and numbers"),
        ({"username": "x" * 33}, "username", "3 to 32"),
        ({"password": "short", "confirm_password": "short"}, "password", "at least 15 characters"),
        (
            {"password": "maria1 is my name ok", "confirm_password": "maria1 is my name ok"},
            "password",
            "must not contain your username",
        ),
        (
            {"password": "maria@example.com x", "confirm_password": "maria@example.com x"},
            "password",
            "must not contain your email",
        ),
        (
            {"password": "ontario water bills", "confirm_password": "ontario water bills"},
            "password",
            "name of the utility",
        ),
        (
            {"password": "123456789987654321", "confirm_password": "123456789987654321"},
            "password",
            "common passwords",
        ),
        (
            {"password": "aaaaaaaaaaaaaaaaaaaa", "confirm_password": "aaaaaaaaaaaaaaaaaaaa"},
            "password",
            "repeats",
        ),
        ({"confirm_password": "something else entirely"}, "confirm_password", "do not match"),
        ({"customer_number": ""}, "customer_number", "Enter your customer number"),
        ({"account_number": ""}, "account_number", "right after your customer number"),
        ({"account_number": "99999"}, "account_number", "could not find an account"),
        ({"customer_number": "44444", "account_number": "55555"}, "account_number", "closed"),
        (
            {"paperless": None},
            "delivery",
            "Choose Receive Paperless Bills, Receive Printed Bills, or both",
        ),
        ({"email": "maria@", "confirm_email": "maria@"}, "email", "correct format"),
        ({"confirm_email": "other@example.com"}, "confirm_email", "do not match"),
    ],
)
async def test_each_rule_gives_its_alert_and_keeps_answers(
    settings, reg_client, overrides, field, words
):
    response = await post_form(reg_client, "/register", registration(**overrides))
    assert response.status_code == 422
    text = response.text
    assert words in text
    assert "There is a problem" in text and f'href="#{field}"' in text
    assert "<title>Error:" in text
    assert 'aria-invalid="true"' in text or field == "delivery"
    # answers kept, passwords never echoed
    assert 'value="maria@example.com"' in text or field in ("email",)
    assert GOOD_PASSWORD not in text
    assert query(settings.database, "SELECT count(*) FROM users")[0][0] == 0
    assert outbox(settings.database) == []


async def test_numbers_match_after_normalizing(reg_client):
    response = await post_form(
        reg_client, "/register", registration(customer_number="0012-345", account_number=" 67 890 ")
    )
    assert response.status_code == 200, response.text


async def test_username_unique_without_regard_to_case_and_account_registered_once(reg_client):
    assert (await post_form(reg_client, "/register", registration())).status_code == 200
    again = await post_form(
        reg_client,
        "/register",
        registration(
            username="MARIA1",
            customer_number="22222",
            account_number="33333",
            email="j@example.com",
            confirm_email="j@example.com",
        ),
    )
    assert again.status_code == 422 and "That username is taken" in again.text
    other = await post_form(reg_client, "/register", registration(username="someoneelse"))
    assert (
        other.status_code == 422
        and "already registered" in other.text
        and "Forgot Username" in other.text
    )


async def test_inline_check_answers_only_that_field(reg_client):
    response = await post_form(
        reg_client,
        "/register/check/username",
        registration(username="a b"),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "only letters and numbers" in response.text
    assert "<form" not in response.text and "There is a problem" not in response.text
    fine = await post_form(
        reg_client, "/register/check/username", registration(), headers={"HX-Request": "true"}
    )
    assert fine.text.strip() == ""
    # password change re-checks an already typed confirmation, out of band
    both = await post_form(
        reg_client,
        "/register/check/password",
        registration(confirm_password="different thing here"),
        headers={"HX-Request": "true"},
    )
    assert (
        'id="confirm_password-error"' in both.text
        and "do not match" in both.text
        and "hx-swap-oob" in both.text
    )
    unknown = await post_form(reg_client, "/register/check/nonsense", registration())
    assert unknown.status_code == 404


async def test_htmx_submit_gets_the_form_fragment_with_summary(reg_client):
    response = await post_form(
        reg_client, "/register", registration(username=""), headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "<html" not in response.text and 'id="registration"' in response.text
    assert 'id="error-summary"' in response.text and "autofocus" in response.text
    assert "HX-Request" in response.headers["vary"]


async def test_repeated_registrations_for_one_username_or_account(settings, reg_client):
    """Interleaved sends (the truly concurrent race runs in test_concurrency.py)."""
    first = registration()
    second = registration(
        username="james2",
        customer_number="22222",
        account_number="33333",
        email="j@example.com",
        confirm_email="j@example.com",
    )
    same_account = registration(username="another1")
    results = await asyncio.gather(
        *(post_form(reg_client, "/register", form) for form in [first, second, same_account] * 3)
    )
    codes = [r.status_code for r in results]
    assert 500 not in codes
    users = query(settings.database, "SELECT username FROM users")
    links = query(settings.database, "SELECT account_id, user_id FROM user_accounts")
    assert len(users) == 2, users  # one per distinct account
    assert len(links) == 2
    assert codes.count(200) == 2
    mails = outbox(settings.database)
    verify = [m for m in mails if "/verify?" in m["body_text"]]
    assert len(verify) == 2
    # the rest tell the owners that someone else tried to register their account
    assert all("Someone tried to register" in m["body_text"] for m in mails if m not in verify)


async def test_blank_and_odd_input_never_500(reg_client):
    for form in [
        {},
        {"username": "\x00"},
        {"email": "a" * 5000},
        {"customer_number": "'; DROP TABLE users; --"},
    ]:
        response = await post_form(reg_client, "/register", form)
        assert response.status_code == 422


# --- verification -----------------------------------------------------------------


async def registered_link(settings, client) -> str:
    assert (await post_form(client, "/register", registration())).status_code == 200
    return local(link_in(outbox(settings.database)[-1]["body_text"], "/verify"))


async def test_verify_link_twice_ends_in_success(settings, reg_client):
    link = await registered_link(settings, reg_client)
    first = await reg_client.get(link)
    assert first.status_code == 200
    assert (
        "Verification success" in first.text
        and "Your account has been successfully verified." in first.text
    )
    assert 'role="dialog"' in first.text and "Login to My Account" in first.text
    second = await reg_client.get(link)
    assert (
        second.status_code == 200
        and "already used" in second.text
        and "Verification success" not in second.text
    )
    assert query(settings.database, "SELECT verified_at FROM users")[0][0] is not None


async def test_wrong_or_expired_code_explains_and_offers_new_link(settings, reg_client):
    link = await registered_link(settings, reg_client)
    wrong = await reg_client.get(link[:-4] + "AAAA")
    assert (
        wrong.status_code == 400
        and "does not work" in wrong.text
        and "Send a new verification link" in wrong.text
    )
    conn_rows = query(settings.database, "SELECT id FROM tokens")
    import sqlite3

    conn = sqlite3.connect(settings.database)
    conn.execute(
        "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
        (conn_rows[0][0],),
    )
    conn.commit()
    conn.close()
    expired = await reg_client.get(link)
    assert expired.status_code == 400 and "expired" in expired.text
    assert query(settings.database, "SELECT verified_at FROM users")[0][0] is None


async def test_resend_verification_is_rate_limited_and_answers_the_same(settings, reg_client):
    await registered_link(settings, reg_client)
    first = await post_form(reg_client, "/verify/resend", {"username": "maria1"})
    nobody = await post_form(reg_client, "/verify/resend", {"username": "nobody"})
    assert first.status_code == nobody.status_code == 200
    assert "Check your email" in first.text and "Check your email" in nobody.text
    # the registration mail was sent just now, so the resend waits: still one mail
    assert len(outbox(settings.database)) == 1
    import sqlite3

    conn = sqlite3.connect(settings.database)
    conn.execute("UPDATE tokens SET created_at = '2000-01-01T00:00:00.000000Z'")
    conn.commit()
    conn.close()
    await post_form(reg_client, "/verify/resend", {"username": "maria1"})
    assert len(outbox(settings.database)) == 2
