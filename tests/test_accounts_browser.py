"""A resident's whole path through online accounts in a real headless Chromium.

Register (first with mistakes), get the verification email from a real SMTP server,
open its link, log in, sign out, recover a password and a username, change the
profile, and register with the keyboard alone. With JavaScript on and off, at 320 px
and at desktop width. Elements are found the way a resident and a screen reader find
them: by label, role and accessible name. axe-core checks every page state.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from helpers import DESKTOP, PHONE, assert_accessible, wait_for_htmx
from resident_steps import link_in
from sample_data import GOOD_PASSWORD, load_billing

pytestmark = pytest.mark.browser

NEW_PASSWORD = "copper kettle maple porch"
SUCCESS = (
    "You have successfully registered for Ontario Municipal Utilities Company online "
    "services. An email with an account verification link has been sent to {email}. "
    "Please click on the link to complete your account verification."
)
MISTAKES = {
    "Username": "a b",
    "Password": "short",
    "Confirm Password": "shorter",
    "Customer Number": "12345",
    "Account Number": "99999",
    "Email Address": "maria@example",
    "Confirm Email Address": "maria@example",
}
# field label -> the inline message the resident reads beside it
MISTAKE_MESSAGES = {
    "Username": "Your username can include only letters and numbers, with no spaces or symbols",
    "Password": "Your password must be at least 15 characters long. You entered 5.",
    "Confirm Password": "The passwords do not match. Enter the same password in both boxes",
    "Account Number": "We could not find an account with this customer number and account "
    "number. Check both numbers on your bill",
    "Email Address": "Enter an email address in the correct format, like name@example.com",
}
DELIVERY = "How do you want to receive your bills?"
DELIVERY_MESSAGE = "Choose Receive Paperless Bills, Receive Printed Bills, or both"
MARIA = {
    "Username": "maria1",
    "Password": GOOD_PASSWORD,
    "Confirm Password": GOOD_PASSWORD,
    "Customer Number": "0012345",
    "Account Number": "0067890",
    "Email Address": "maria@example.com",
    "Confirm Email Address": "maria@example.com",
}

VARIANTS = pytest.mark.parametrize(
    ("js", "viewport"),
    [(True, PHONE), (False, DESKTOP), (True, DESKTOP)],
    ids=["js-320px", "nojs-desktop", "js-desktop"],
)


@pytest.fixture
def live_settings(mail_settings):
    """The live server sends its mail to the real SMTP server, with billing data loaded."""
    load_billing(mail_settings.database)
    return mail_settings


# --- finding things as a resident does ---------------------------------------------


def field(scope, label: str):
    """The input labelled `label` (the label may end with "(required)")."""
    return scope.get_by_label(re.compile(rf"^{re.escape(label)}( \(required\))?$"))


def fill(page, answers: dict[str, str]) -> None:
    for label, value in answers.items():
        field(page, label).fill(value)


def error_summary(page):
    return page.get_by_role("alert").filter(
        has=page.get_by_role("heading", name="There is a problem")
    )


def settle(page) -> None:
    if page.portal_js:
        wait_for_htmx(page)


def expect_focus_in_error_summary(page) -> None:
    try:
        page.wait_for_function(
            "() => { const s = document.getElementById('error-summary');"
            " return !!s && (s === document.activeElement || s.contains(document.activeElement)); }",
            timeout=5_000,
        )
    except PlaywrightTimeout:
        focused = page.evaluate("document.activeElement && document.activeElement.outerHTML")
        pytest.fail(f"focus is not on the error summary but on {str(focused)[:200]}")


def path_of(page) -> str:
    return urlsplit(page.url).path


def text_of(message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    raise AssertionError("the email has no text part")


def submit(page, button: str, path: str, scope=None) -> int:
    """Press a button that posts to `path`; return the status of that POST."""
    scope = scope or page
    with page.expect_response(
        lambda r: r.request.method == "POST" and urlsplit(r.url).path == path
    ) as posted:
        scope.get_by_role("button", name=button, exact=True).click()
    settle(page)
    return posted.value.status


def login(page, username: str, password: str) -> int:
    fill(page, {"Username": username, "Password": password})
    status = submit(page, "Login", "/login")
    page.wait_for_load_state()
    return status


def register_verified(page, server, mailbox) -> None:
    """Register Maria through the form and open the link from her email."""
    before = len(mailbox.messages)
    page.goto(server.url + "/register")
    fill(page, MARIA)
    page.get_by_role("checkbox", name="Receive Paperless Bills").check()
    assert submit(page, "Register", "/register") == 200
    expect(page.get_by_text(SUCCESS.format(email="maria@example.com"))).to_be_visible()
    link = link_in(text_of(mailbox.wait_for(before + 1)[before]), "/verify")
    page.goto(link)
    expect(page.get_by_role("dialog", name="Verification success")).to_be_visible()


# --- the whole path ----------------------------------------------------------------


@VARIANTS
def test_register_verify_login_and_sign_out(live_server, smtp_server, new_page, js, viewport):
    page = new_page(viewport, js=js)
    where = f"{'JS on' if js else 'JS off'} at {viewport['width']}px"
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Register Now").click()
    expect(page.get_by_role("heading", name="New User Registration", level=1)).to_be_visible()
    assert path_of(page) == "/register"
    assert_accessible(page, f"empty registration form, {where}")

    # 1. Mistakes everywhere: summary with focus, a message at each field, answers kept.
    fill(page, MISTAKES)
    settle(page)
    if js:
        page.evaluate("window.portalMarker = 'still here'")
    assert submit(page, "Register", "/register") == 422
    summary = error_summary(page)
    expect(summary).to_be_visible()
    expect_focus_in_error_summary(page)
    for message in [*MISTAKE_MESSAGES.values(), DELIVERY_MESSAGE]:
        expect(summary.get_by_role("link", name=message)).to_be_visible()
    for label, message in MISTAKE_MESSAGES.items():
        expect(field(page, label)).to_have_accessible_description(
            re.compile(re.escape(f"Error: {message}"))
        )
        expect(field(page, label)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("group", name=DELIVERY)).to_have_accessible_description(
        re.compile(re.escape(f"Error: {DELIVERY_MESSAGE}"))
    )
    for label in ("Customer Number", "Confirm Email Address"):
        expect(field(page, label)).not_to_have_accessible_description(re.compile("Error:"))
        expect(field(page, label)).not_to_have_attribute("aria-invalid", "true")
    for label in ("Username", "Customer Number", "Account Number", "Email Address"):
        expect(field(page, label)).to_have_value(MISTAKES[label])
    expect(field(page, "Password")).to_have_value("")
    expect(field(page, "Confirm Password")).to_have_value("")
    expect(page).to_have_title(re.compile(r"^Error: New User Registration"))
    if js:  # the form was swapped in place by htmx, not loaded as a new page
        assert page.evaluate("window.portalMarker") == "still here"
    assert_accessible(page, f"registration with errors, {where}")

    # 3. Everything fixed: the guide's success message.
    fill(page, MARIA)
    page.get_by_role("checkbox", name="Receive Paperless Bills").check()
    settle(page)
    assert submit(page, "Register", "/register") == 200
    expect(page.get_by_text(SUCCESS.format(email="maria@example.com"))).to_be_visible()
    expect(page).not_to_have_title(re.compile("Error"))
    expect(error_summary(page)).to_have_count(0)
    assert_accessible(page, f"registration success, {where}")

    # 4. Logging in before verifying is refused, with a way to get a new link.
    page.get_by_role("link", name="Login to My Account").click()
    expect(page.get_by_role("heading", name="Login to My Account", level=1)).to_be_visible()
    assert login(page, "maria1", GOOD_PASSWORD) == 422
    expect(
        page.get_by_text("You need to verify your registration before you can log in.")
    ).to_be_visible()
    expect(page.get_by_role("link", name="Send the verification email again")).to_be_visible()
    assert path_of(page) == "/login"
    assert_accessible(page, f"login refused before verifying, {where}")

    # 5. The email, through the outbox and the background sender to real SMTP.
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "maria@example.com"
    text = text_of(message)
    # The utility, then the service address the email is about, then the greeting.
    assert text.startswith("Ontario Municipal Utilities Company")
    assert "About your water service at 123 Euclid Ave\r\n\r\nHello," in text
    assert "Your username is: maria1" in text
    assert live_server.url in text
    link = link_in(text, "/verify")
    assert link.startswith(live_server.url + "/verify?username=maria1&verificationcode=")

    response = page.goto(link)
    assert response.status == 200
    dialog = page.get_by_role("dialog", name="Verification success")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_accessible_description("Your account has been successfully verified.")
    expect(page.get_by_role("heading", name="Login to My Account", level=1)).to_be_attached()
    if js:
        expect(dialog).to_be_focused()
    assert_accessible(page, f"verification success dialog, {where}")
    if js:
        page.keyboard.press("Tab")  # a modal dialog keeps focus inside itself
        expect(dialog.get_by_role("link", name="Close")).to_be_focused()
        page.keyboard.press("Tab")
        expect(dialog.get_by_role("link", name="Close")).to_be_focused()
    dialog.get_by_role("link", name="Close").click()
    expect(dialog).to_have_count(0)
    if js:  # closed in place, without a page load; focus back on the page, and the
        # one-time code gone from the address bar (replaced by the login page's address)
        assert path_of(page) == "/login" and "verificationcode" not in page.url
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        expect(page.get_by_role("main")).to_be_focused()
    else:  # the link leads to the login page
        page.wait_for_url("**/login")
    expect(page.get_by_role("heading", name="Login to My Account", level=1)).to_be_visible()

    # A mail scanner (or the resident) opening the link again still ends in success.
    response = page.goto(link)
    assert response.status == 200
    expect(page.get_by_role("heading", name="Your account is verified")).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_text("There is a problem")).to_have_count(0)
    expect(page.get_by_text("does not work")).to_have_count(0)
    assert_accessible(page, f"verification link opened twice, {where}")

    # 6. Log in without "Remember me": a browser-session cookie, HttpOnly.
    page.goto(live_server.url + "/login")
    expect(page.get_by_role("checkbox", name="Remember me")).not_to_be_checked()
    assert login(page, "maria1", GOOD_PASSWORD) == 303
    expect(page.get_by_role("heading", name="My Account", exact=True, level=1)).to_be_visible()
    assert path_of(page) == "/account"
    expect(page.get_by_role("heading", name="123 Euclid Ave")).to_be_visible()
    [cookie] = [c for c in page.context.cookies() if c["name"] == "portal_session"]
    assert cookie["expires"] == -1, "without Remember me the cookie ends with the browser"
    assert cookie["httpOnly"] is True
    sign_out = page.get_by_role("button", name="Sign out", exact=True)
    expect(sign_out).to_be_visible()
    assert_accessible(page, f"My Account, {where}")

    sign_out.click()
    page.wait_for_url("**/login?notice=signed-out")
    expect(page.get_by_role("heading", name="You have signed out")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_have_count(0)
    assert [c for c in page.context.cookies() if c["name"] == "portal_session"] == []
    assert_accessible(page, f"signed out, {where}")
    page.goto(live_server.url + "/account")
    assert path_of(page) == "/login"
    expect(page.get_by_role("heading", name="Login to My Account", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="My Account", exact=True, level=1)).to_have_count(0)


# --- inline alerts while typing (JavaScript on) --------------------------------------


def leave(page) -> None:
    """Move on to the next field, and wait as a person would for the check to answer."""
    page.keyboard.press("Tab")
    wait_for_htmx(page)


def test_inline_alerts_while_typing(live_server, new_page):
    page = new_page(PHONE)
    page.goto(live_server.url + "/register")
    wait_for_htmx(page)
    page.evaluate("window.portalMarker = 'no page load'")
    username = field(page, "Username")
    customer = field(page, "Customer Number")
    expect(username).to_have_accessible_description(re.compile("letters, numbers or both"))

    username.fill("a b")
    leave(page)
    expect(username).to_have_accessible_description(
        re.compile(re.escape("Error: " + MISTAKE_MESSAGES["Username"]))
    )
    expect(username).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text(MISTAKE_MESSAGES["Username"])).to_be_visible()
    assert page.evaluate("window.portalMarker") == "no page load"
    # Only the field the resident changed has a message; no summary while typing.
    for label in ("Password", "Confirm Password", "Customer Number", "Email Address"):
        expect(field(page, label)).not_to_have_accessible_description(re.compile("Error:"))
        expect(field(page, label)).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("There is a problem")).to_have_count(0)
    expect(page.get_by_role("group", name=DELIVERY)).not_to_have_accessible_description(
        re.compile("Error:")
    )
    assert_accessible(page, "inline alert on the username")

    username.fill("maria1")
    leave(page)
    expect(username).not_to_have_accessible_description(re.compile("Error:"))
    expect(username).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text(MISTAKE_MESSAGES["Username"])).to_have_count(0)

    # Account numbers are checked against the billing data as the resident leaves the box.
    customer.fill("12345")
    leave(page)
    field(page, "Account Number").fill("99999")
    leave(page)
    expect(field(page, "Account Number")).to_have_accessible_description(
        re.compile(re.escape(MISTAKE_MESSAGES["Account Number"]))
    )
    expect(customer).not_to_have_attribute("aria-invalid", "true")

    # A mismatching confirmation, then fixing the password, updates the confirmation.
    password, confirm = field(page, "Password"), field(page, "Confirm Password")
    password.fill("rain barrel garden hoes")
    leave(page)
    confirm.fill(GOOD_PASSWORD)
    leave(page)
    mismatch = re.compile(re.escape("Error: " + MISTAKE_MESSAGES["Confirm Password"]))
    expect(confirm).to_have_accessible_description(mismatch)
    expect(confirm).to_have_attribute("aria-invalid", "true")
    expect(password).not_to_have_attribute("aria-invalid", "true")
    assert_accessible(page, "inline alert on the confirmation")
    password.fill(GOOD_PASSWORD)
    leave(page)
    expect(confirm).not_to_have_accessible_description(re.compile("Error:"))
    expect(confirm).not_to_have_attribute("aria-invalid", "true")
    expect(password).not_to_have_attribute("aria-invalid", "true")
    # And the other way: a password changed away from the confirmation flags it again.
    password.fill("rain barrel garden hoes")
    leave(page)
    expect(confirm).to_have_accessible_description(mismatch)
    expect(confirm).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("window.portalMarker") == "no page load"
    assert path_of(page) == "/register"


# --- recovery without JavaScript -----------------------------------------------------


def test_forgot_password_and_username_without_javascript(live_server, smtp_server, new_page):
    page = new_page(PHONE, js=False)
    register_verified(page, live_server, smtp_server)
    assert len(smtp_server.messages) == 1

    def ask(path: str, label: str, value: str, button: str) -> str:
        page.goto(live_server.url + path)
        field(page, label).fill(value)
        assert submit(page, button, path) == 200
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
        assert_accessible(page, f"{path} sent")
        return page.get_by_role("main").inner_text().replace(value, "<what I typed>")

    # Forgot Password: the same answer for a stranger and for Maria.
    page.goto(live_server.url + "/login")
    page.get_by_role("link", name="Forgot Password").click()
    expect(page.get_by_role("heading", name="Forgot Password", level=1)).to_be_visible()
    assert_accessible(page, "Forgot Password form")
    stranger = ask("/forgot-password", "Username or Email Address", "nobody9", "Email me a link")
    maria = ask("/forgot-password", "Username or Email Address", "maria1", "Email me a link")
    assert stranger == maria
    message = smtp_server.wait_for(2)[1]
    assert message["To"] == "maria@example.com"
    link = link_in(text_of(message), "/reset-password")
    assert len(smtp_server.messages) == 2

    # Opening the link shows a form and spends nothing: a mail scanner may open it first.
    for _ in range(2):
        assert page.goto(link).status == 200
        expect(page.get_by_role("heading", name="Choose a new password", level=1)).to_be_visible()
        expect(page.get_by_text("Choose a new password for maria1.")).to_be_visible()
    assert_accessible(page, "choose a new password")
    fill(page, {"Password": NEW_PASSWORD, "Confirm Password": NEW_PASSWORD})
    assert submit(page, "Save new password", "/reset-password") == 303
    assert path_of(page) == "/login"
    expect(page.get_by_role("heading", name="Your password has been changed")).to_be_visible()
    assert_accessible(page, "password changed, login page")
    # The owner is told by email that the password changed (in case it was not them).
    changed = smtp_server.wait_for(3)[2]
    assert changed["To"] == "maria@example.com" and "password was changed" in changed["Subject"]
    # The link is spent now.
    assert page.goto(link).status == 400
    expect(page.get_by_role("heading", name="This link does not work any more")).to_be_visible()

    page.goto(live_server.url + "/login")
    assert login(page, "maria1", GOOD_PASSWORD) == 422
    expect(page.get_by_text("Username or password is incorrect")).to_be_visible()
    assert login(page, "maria1", NEW_PASSWORD) == 303
    expect(page.get_by_role("heading", name="My Account", exact=True, level=1)).to_be_visible()

    # Forgot Username: the same answer for an unknown address; Maria's email names her.
    stranger = ask("/forgot-username", "Email Address", "nobody@example.com", "Email my username")
    maria = ask("/forgot-username", "Email Address", "maria@example.com", "Email my username")
    assert stranger == maria
    message = smtp_server.wait_for(4)[3]
    assert message["To"] == "maria@example.com"
    assert re.search(r"^\s*maria1\s*$", text_of(message), re.MULTILINE)
    assert len(smtp_server.messages) == 4


# --- My Profile ----------------------------------------------------------------------


@pytest.mark.parametrize(("js", "viewport"), [(True, DESKTOP)], ids=["js-desktop"])
def test_profile_delivery_and_password(live_server, smtp_server, new_page, js, viewport):
    page = new_page(viewport, js=js)
    register_verified(page, live_server, smtp_server)
    page.goto(live_server.url + "/login")
    login(page, "maria1", GOOD_PASSWORD)
    page.get_by_role("link", name="My Profile").click()
    expect(page.get_by_role("heading", name="My Profile", level=1)).to_be_visible()
    assert_accessible(page, "My Profile")

    delivery = page.get_by_role("region", name="Bill delivery")
    paperless = delivery.get_by_role("checkbox", name="Receive Paperless Bills")
    printed = delivery.get_by_role("checkbox", name="Receive Printed Bills")
    expect(paperless).to_be_checked()
    expect(printed).not_to_be_checked()
    paperless.uncheck()
    printed.check()
    assert submit(page, "Save bill delivery", "/profile/delivery", delivery) == 303
    expect(page.get_by_role("heading", name="Your bill delivery choice was saved.")).to_be_visible()
    page.reload()
    expect(printed).to_be_checked()
    expect(paperless).not_to_be_checked()

    change = page.get_by_role("region", name="Change password")
    fill(change, {"Current password": "not my password at all"})
    fill(change, {"New password": NEW_PASSWORD, "Confirm new password": NEW_PASSWORD})
    assert submit(page, "Change password", "/profile/password", change) == 422
    expect(error_summary(page)).to_be_visible()
    expect_focus_in_error_summary(page)
    wrong = "Your current password is not right. Enter it again"
    expect(error_summary(page).get_by_role("link", name=wrong)).to_be_visible()
    current = field(change, "Current password")
    expect(current).to_have_accessible_description(re.compile(re.escape(f"Error: {wrong}")))
    expect(current).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_title(re.compile(r"^Error: My Profile"))
    assert_accessible(page, "My Profile with a wrong current password")

    fill(change, {"Current password": GOOD_PASSWORD})
    fill(change, {"New password": NEW_PASSWORD, "Confirm new password": NEW_PASSWORD})
    assert submit(page, "Change password", "/profile/password", change) == 303
    expect(
        page.get_by_role("heading", name=re.compile("Your password has been changed"))
    ).to_be_visible()
    expect(page).not_to_have_title(re.compile("Error"))
    assert_accessible(page, "My Profile, password changed")

    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url("**/login?notice=signed-out")
    assert login(page, "maria1", GOOD_PASSWORD) == 422
    assert login(page, "maria1", NEW_PASSWORD) == 303
    expect(page.get_by_role("heading", name="My Account", exact=True, level=1)).to_be_visible()


# --- keyboard only -------------------------------------------------------------------


def test_register_with_the_keyboard_only(live_server, new_page):
    page = new_page(DESKTOP)
    page.goto(live_server.url + "/register")
    wait_for_htmx(page)
    keyboard = page.keyboard

    keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()

    def tab_to(target) -> None:
        keyboard.press("Tab")
        expect(target).to_be_focused()

    for label in ("Username", "Password"):
        tab_to(field(page, label))
        keyboard.type(MARIA[label])
    tab_to(page.get_by_role("button", name="Show password"))
    for label in ("Confirm Password", "Customer Number", "Account Number"):
        tab_to(field(page, label))
        keyboard.type(MARIA[label])
    tab_to(page.get_by_role("checkbox", name="Receive Paperless Bills"))
    keyboard.press("Space")
    expect(page.get_by_role("checkbox", name="Receive Paperless Bills")).to_be_checked()
    tab_to(page.get_by_role("checkbox", name="Receive Printed Bills"))
    for label in ("Email Address", "Confirm Email Address"):
        tab_to(field(page, label))
        keyboard.type(MARIA[label])
    tab_to(page.get_by_role("button", name="Register", exact=True))
    wait_for_htmx(page)
    expect(page.get_by_text("There is a problem")).to_have_count(0)
    expect(page.get_by_text("Error:")).to_have_count(0)
    with page.expect_response(lambda r: urlsplit(r.url).path == "/register") as posted:
        keyboard.press("Enter")
    assert posted.value.status == 200
    wait_for_htmx(page)
    expect(page.get_by_text(SUCCESS.format(email="maria@example.com"))).to_be_visible()
    assert_accessible(page, "registered with the keyboard")
