"""Paying in a real headless Chromium, with JavaScript on and off: as a guest with the
two numbers from the bill, after a decline, with double clicks, reloads and the back
button, and signed in from My Account by bank account. Elements are found the way a
resident and a screen reader find them (role, accessible name, label, text); axe-core
checks every page and state on the way, and at 320 px nothing scrolls sideways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from portal import db as portal_db
from portal.accounts.passwords import HASHER
from portal.billing.importer import import_text

from helpers import DESKTOP, PHONE, assert_accessible
from resident_steps import query
from sample_data import GOOD_PASSWORD, load_billing

pytestmark = pytest.mark.browser

# One JavaScript state at 320 px and the other at desktop width; the two groups swap
# them, so each JavaScript state is seen at both widths somewhere in this file.
JS_PHONE = pytest.mark.parametrize(
    ("js", "viewport"), [(True, PHONE), (False, DESKTOP)], ids=["js-320px", "nojs-desktop"]
)
NOJS_PHONE = pytest.mark.parametrize(
    ("js", "viewport"), [(False, PHONE), (True, DESKTOP)], ids=["nojs-320px", "js-desktop"]
)

BILLS_CSV = (
    "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
    "0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n"
)
CARD_OK = "4242 4242 4242 4242"
CARD_DECLINED = "4000 0000 0000 0002"
CVC = "737"
CONFIRMATION = re.compile(r"^PAY-[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}$")
SUPPORT_PHONE = "(909) 395-2050"


@pytest.fixture
def live_settings(settings):
    """Billing data in the test's database before the live server starts."""
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(conn, "bills", BILLS_CSV)
    conn.close()
    return settings


# --- steps -----------------------------------------------------------------------


def check(page: Page, state: str) -> None:
    """axe-core on what the page shows now; at 320 px, no sideways scrolling."""
    width = page.portal_viewport["width"]
    label = f"{state} at {width}px, JavaScript {'on' if page.portal_js else 'off'}"
    assert_accessible(page, label)
    if width == PHONE["width"]:
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{label}: the page scrolls {overflow}px sideways"


def fact(page: Page, term: str):
    """The value next to a term in a description list (dt/dd), as a screen reader pairs them."""
    return (
        page.get_by_role("term")
        .filter(has_text=re.compile(rf"^{re.escape(term)}$"))
        .locator("xpath=following-sibling::dd[1]")
    )


def expect_error_summary(page: Page, *messages: str | re.Pattern) -> None:
    """The "There is a problem" box, with focus in it, listing each message as a link."""
    expect(page).to_have_title(re.compile(r"^Error: "))
    summary = page.get_by_role("alert").filter(
        has=page.get_by_role("heading", name="There is a problem")
    )
    expect(summary).to_be_visible()
    for message in messages:
        expect(summary.get_by_role("link", name=message)).to_be_visible()
    expect(summary.get_by_role("link")).to_have_count(len(messages))
    focused = summary.evaluate(
        "el => document.activeElement !== document.body"
        " && (document.activeElement.contains(el) || el.contains(document.activeElement))"
    )
    assert focused, "focus is not on the error summary"


def expect_inline_error(page: Page, label: str, message: str):
    field = page.get_by_label(label)
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile(rf"Error: {re.escape(message)}"))
    return field


def open_pay_my_bill(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.get_by_role("region", name="Pay My Bill").get_by_role(
        "link", name="Pay Now", exact=True
    ).click()
    expect(page.get_by_role("heading", level=1, name="Pay My Bill")).to_be_visible()


def look_up(page: Page, customer: str = "0012345", account: str = "0067890") -> None:
    page.get_by_label("Customer Number").fill(customer)
    page.get_by_label("Account Number").fill(account)
    page.get_by_role("button", name="Continue", exact=True).click()


def continue_to_payment(page: Page, amount: str | None = None, method: str = "card") -> None:
    if amount is not None:
        page.get_by_label("Amount to pay, in dollars").fill(amount)
    name = "Credit or debit card" if method == "card" else "Bank account (checking or savings)"
    page.get_by_role("radio", name=name).check()
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("note")).to_contain_text("TEST MODE")


def fill_card(page: Page, number: str, expiry: str = "12/39", code: str = CVC) -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry date").fill(expiry)
    page.get_by_label("Security code").fill(code)
    page.get_by_label("Name on card").fill("Maria Garcia")


def pay_button(page: Page, amount: str):
    return page.get_by_role("button", name=f"Pay {amount}", exact=True)


def expect_confirmation(page: Page, amount: str, account: str = "0067890") -> str:
    expect(page.get_by_role("heading", level=1, name="Payment confirmation")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Your payment was received")
    number = fact(page, "Confirmation number")
    expect(number).to_have_text(CONFIRMATION)
    expect(fact(page, "Amount")).to_have_text(amount)
    expect(fact(page, "Account Number")).to_have_text(account)
    expect(page.get_by_role("heading", name="What happens next")).to_be_visible()
    expect(
        page.get_by_role("main").get_by_text(
            f"Questions? Call the Utilities Customer Services Center at {SUPPORT_PHONE}."
        )
    ).to_be_visible()
    return number.inner_text()


def payments(database: Path) -> list[tuple]:
    return [
        tuple(row)
        for row in query(
            database,
            "SELECT status, amount_cents, confirmation_number, method FROM payments ORDER BY id",
        )
    ]


CVC_ALONE = re.compile(rb"(?<![0-9A-Za-z])" + CVC.encode() + rb"(?![0-9A-Za-z])")


def assert_no_card_data(database: Path) -> None:
    """Neither the card numbers nor the security code is anywhere in the database:
    not in the bytes of the file and its write-ahead log, not in any stored value."""
    files = [database, database.with_name(database.name + "-wal")]
    raw = b"".join(path.read_bytes() for path in files if path.exists())
    assert len(raw) > 10_000, "the database was not read"
    for number in (CARD_OK, CARD_DECLINED):
        for form in (number, number.replace(" ", "")):
            if form.encode() in raw:
                pytest.fail(f"card number {form} is in the database file", pytrace=False)
    if CVC_ALONE.search(raw):
        pytest.fail("the security code is in the database file", pytrace=False)
    conn = portal_db.connect_sync(database)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, str | bytes):
                        data = value.encode() if isinstance(value, str) else value
                        assert b"4242424242424242" not in data.replace(b" ", b"")
                        assert not CVC_ALONE.search(data), f"security code kept in {table}"
    finally:
        conn.close()


# --- 1. a guest pays by card -------------------------------------------------------


@JS_PHONE
def test_guest_pays_the_amount_due_by_card(live_server, new_page, live_settings, js, viewport):
    page = new_page(viewport, js=js)
    open_pay_my_bill(page, live_server.url)
    check(page, "Pay My Bill lookup form")

    page.get_by_role("button", name="Continue", exact=True).click()
    expect_error_summary(
        page,
        "Enter your customer number. It is on your utility bill",
        "Enter your account number as it appears on your bill, right after your customer number",
    )
    expect_inline_error(
        page, "Customer Number", "Enter your customer number. It is on your utility bill"
    )
    check(page, "lookup form with both fields empty")

    look_up(page, "12345", "11111")
    message = "We could not find an account with this customer number and account number"
    expect_error_summary(page, re.compile(message))
    expect_inline_error(page, "Account Number", message)
    expect(page.get_by_label("Customer Number")).to_have_value("12345")  # answers kept
    check(page, "lookup form with unknown numbers")

    look_up(page)
    expect(page.get_by_role("heading", level=1, name="Pay My Bill")).to_be_visible()
    expect(fact(page, "Amount due")).to_have_text("$84.10")
    expect(fact(page, "Service address")).to_have_text("1** E***** Ave")
    expect(fact(page, "Name")).to_have_text("M. G.")
    expect(fact(page, "Account Number")).to_have_text("0067890")
    main = page.get_by_role("main")
    expect(main).not_to_contain_text("123 Euclid Ave")
    expect(main).not_to_contain_text("Maria Garcia")
    expect(page.get_by_label("Amount to pay, in dollars")).to_have_value("84.10")
    expect(page.get_by_role("radio", name="Credit or debit card")).to_be_checked()
    check(page, "amount form")

    page.get_by_label("Amount to pay, in dollars").fill("0.50")
    page.get_by_label("Email Address for your receipt (optional)").fill("payer@example")
    page.get_by_role("button", name="Continue to payment").click()
    expect_error_summary(
        page,
        "Enter an amount of at least $1.00",
        "Enter an email address in the correct format, like name@example.com, or leave it empty",
    )
    expect_inline_error(page, "Amount to pay, in dollars", "Enter an amount of at least $1.00")
    expect(page.get_by_label("Amount to pay, in dollars")).to_have_value("0.50")
    check(page, "amount form with errors")
    assert payments(live_settings.database) == []

    page.get_by_label("Amount to pay, in dollars").fill("84.10")
    page.get_by_label("Email Address for your receipt (optional)").fill("payer@example.com")
    continue_to_payment(page)
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Pay \$84\.10 to "))
    check(page, "TEST MODE payment page")

    fill_card(page, CARD_OK)
    pay_button(page, "$84.10").click()
    number = expect_confirmation(page, "$84.10")
    expect(fact(page, "Paid with")).to_have_text("Visa ending in 4242")
    expect(page.get_by_text("We emailed a receipt to payer@example.com.")).to_be_visible()
    check(page, "payment confirmation")
    assert "4242424242424242" not in page.content().replace(" ", "")

    assert payments(live_settings.database) == [("succeeded", 8410, number, "card")]
    assert_no_card_data(live_settings.database)


# --- 2. a declined card, then a new try ----------------------------------------------


@NOJS_PHONE
def test_declined_card_says_so_and_try_again_pays(
    live_server, new_page, live_settings, js, viewport
):
    page = new_page(viewport, js=js)
    open_pay_my_bill(page, live_server.url)
    look_up(page)
    page.get_by_label("Email Address for your receipt (optional)").fill("payer@example.com")
    continue_to_payment(page)
    first_checkout = page.url
    fill_card(page, CARD_DECLINED)
    pay_button(page, "$84.10").click()

    expect(
        page.get_by_role("heading", level=1, name="Your payment did not go through")
    ).to_be_visible()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Your card or bank declined the payment")
    expect(status).to_contain_text("No money was taken.")
    expect(page.get_by_role("main")).not_to_contain_text("Payment confirmation")
    check(page, "declined page")
    assert payments(live_settings.database) == [("failed", 8410, None, "card")]

    page.get_by_role("link", name="Try again").click()
    expect(page.get_by_role("heading", level=1, name="Pay My Bill")).to_be_visible()
    expect(page.get_by_label("Amount to pay, in dollars")).to_have_value("84.10")
    expect(page.get_by_label("Email Address for your receipt (optional)")).to_have_value(
        "payer@example.com"
    )
    check(page, "amount form after a decline")
    continue_to_payment(page)
    assert page.url != first_checkout, "Try again reused the declined payment's page"
    fill_card(page, CARD_OK)
    pay_button(page, "$84.10").click()
    number = expect_confirmation(page, "$84.10")

    assert payments(live_settings.database) == [
        ("failed", 8410, None, "card"),
        ("succeeded", 8410, number, "card"),
    ]
    assert_no_card_data(live_settings.database)


# --- 3. never twice ------------------------------------------------------------------


def wait_until(condition, page: Page, seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 50)):
        if condition():
            return
        page.wait_for_timeout(20)  # lets Playwright run the route handlers meanwhile
    pytest.fail("waited in vain for the payment form to be sent", pytrace=False)


@JS_PHONE
def test_double_clicks_reloads_and_back_button_never_pay_twice(
    live_server, new_page, live_settings, js, viewport
):
    page = new_page(viewport, js=js)
    open_pay_my_bill(page, live_server.url)
    look_up(page)
    expect(page.get_by_label("Amount to pay, in dollars")).to_have_value("84.10")

    # A slow connection: the answer to the first click is held back, so the resident
    # clicks "Continue to payment" again while the form is still on the screen.
    held: list = []
    page.route("**/pay/confirm", lambda route: held.append((route, route.fetch(max_redirects=0))))
    button = page.get_by_role("button", name="Continue to payment")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)  # the mouse itself: a locator would wait for the navigation
    wait_until(lambda: len(held) == 1, page)
    page.mouse.click(x, y)
    wait_until(lambda: len(held) == 2, page)
    for route, response in held:
        route.fulfill(response=response)
    page.unroute("**/pay/confirm")
    expect(page.get_by_role("note")).to_contain_text("TEST MODE")
    checkout = page.url
    answers = {(response.status, response.headers["location"]) for _, response in held}
    assert answers == {(303, checkout.removeprefix(live_server.url))}, answers
    assert payments(live_settings.database) == [("pending", 8410, None, "card")]

    page.go_back()
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("note")).to_contain_text("TEST MODE")
    assert page.url == checkout, "the same form opened a second payment page"
    assert query(live_settings.database, "SELECT count(*) FROM sandbox_sessions")[0][0] == 1

    fill_card(page, CARD_OK)
    pay_button(page, "$84.10").click()
    number = expect_confirmation(page, "$84.10")

    page.reload()
    assert expect_confirmation(page, "$84.10") == number
    # Back through the browser's history to the payment form, and send it again.
    for _ in range(5):
        page.go_back()
        if page.get_by_role("button", name="Continue to payment").count():
            break
    page.get_by_role("button", name="Continue to payment").click()
    assert expect_confirmation(page, "$84.10") == number
    assert payments(live_settings.database) == [("succeeded", 8410, number, "card")]
    assert_no_card_data(live_settings.database)


# --- 4. signed in, from My Account, by bank account -----------------------------------


def add_verified_resident(database: Path) -> None:
    """maria1, verified, with 0012345/0067890 linked to her login."""
    now = portal_db.utcnow()
    conn = portal_db.connect_sync(database)
    with conn:
        user_id = conn.execute(
            "INSERT INTO users (username, username_key, email, email_key, password_hash,"
            " paperless, created_at, verified_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
            (
                "maria1",
                "maria1",
                "maria@example.com",
                "maria@example.com",
                HASHER.hash(GOOD_PASSWORD),
                now,
                now,
            ),
        ).lastrowid
        conn.execute(
            "INSERT INTO user_accounts (account_id, user_id, linked_at)"
            " SELECT id, ?, ? FROM service_accounts WHERE account_number = '0067890'",
            (user_id, now),
        )
    conn.close()


@NOJS_PHONE
def test_signed_in_resident_pays_part_by_bank_account_from_my_account(
    live_server, new_page, live_settings, js, viewport
):
    add_verified_resident(live_settings.database)
    page = new_page(viewport, js=js)
    page.goto(live_server.url + "/login")
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Login", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()
    home = page.get_by_role("region", name="123 Euclid Ave")
    expect(fact(home, "Amount due")).to_have_text("$84.10")
    home.get_by_role("link", name="Pay Now").click()

    expect(page.get_by_role("heading", level=1, name="Pay My Bill")).to_be_visible()
    expect(fact(page, "Service address")).to_have_text("123 Euclid Ave")  # her own, unmasked
    expect(fact(page, "Name")).to_have_text("Maria Garcia")
    expect(fact(page, "Amount due")).to_have_text("$84.10")
    check(page, "amount form, signed in")
    continue_to_payment(page, amount="30.00", method="bank")
    expect(page.get_by_label("Card number")).to_have_count(0)
    check(page, "TEST MODE page for a bank account")

    page.get_by_label("Routing number").fill("011000015")
    page.get_by_label("Account number").fill("12345678")
    pay_button(page, "$30.00").click()
    number = expect_confirmation(page, "$30.00")
    expect(fact(page, "Paid with")).to_have_text("Bank account ending in 5678")
    check(page, "payment confirmation, signed in")
    [(status, cents, user_id)] = query(
        live_settings.database, "SELECT status, amount_cents, user_id FROM payments"
    )
    assert (status, cents) == ("succeeded", 3000) and user_id is not None

    page.get_by_role("link", name="Back to My Account").click()
    home = page.get_by_role("region", name="123 Euclid Ave")
    expect(fact(home, "Amount due")).to_have_text("$54.10")
    expect(fact(home, "Last payment")).to_contain_text("$30.00")
    check(page, "My Account after a payment")
    home.get_by_role("link", name="Pay Now").click()
    expect(fact(page, "Amount due")).to_have_text("$54.10")
    expect(page.get_by_label("Amount to pay, in dollars")).to_have_value("54.10")
    page.go_back()

    home.get_by_role("link", name="View bills").click()
    expect(page.get_by_role("heading", level=1, name="Bills")).to_be_visible()
    made_online = page.get_by_role("region", name="Payments made online")
    row = made_online.get_by_role("row").filter(has_text=number)
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell").nth(0)).to_have_text("$30.00")
    expect(row).to_contain_text("Paid")
    expect(row).to_contain_text("5678")
    check(page, "bills page with a payment made online")


# --- 5. card errors on the TEST MODE page ----------------------------------------------


@NOJS_PHONE
def test_card_errors_are_explained_and_the_card_number_is_never_sent_back(
    live_server, new_page, live_settings, js, viewport
):
    page = new_page(viewport, js=js)
    open_pay_my_bill(page, live_server.url)
    look_up(page)
    continue_to_payment(page)
    fill_card(page, "4242 4242 4242 4241", expiry="01/20")
    pay_button(page, "$84.10").click()

    card_message = "Enter the card number as it is on your card, 13 to 19 digits"
    expiry_message = "This card has expired. Use another card"
    expect_error_summary(page, card_message, expiry_message)
    expect(expect_inline_error(page, "Card number", card_message)).to_have_value("")
    expect(expect_inline_error(page, "Expiry date", expiry_message)).to_have_value("01/20")
    expect(page.get_by_label("Security code")).to_have_value("")
    expect(page.get_by_label("Security code")).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name on card")).to_have_value("Maria Garcia")
    html = page.content()
    for typed in ("4242 4242 4242 4241", "4242424242424241", f'"{CVC}"', f">{CVC}<"):
        assert typed not in html, f"{typed} was sent back in the page"
    check(page, "TEST MODE page with card errors")
    assert payments(live_settings.database) == [("pending", 8410, None, "card")]

    fill_card(page, CARD_OK)
    pay_button(page, "$84.10").click()
    expect_confirmation(page, "$84.10")
    assert_no_card_data(live_settings.database)
