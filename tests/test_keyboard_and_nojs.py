"""Promises of the accessibility issue, for the flows other tests have not proven.

A. Keyboard alone, JavaScript on: sign in, Forgot Password, bills and usage, paying as a
   guest, and My Profile are done with Tab, Shift+Tab, Enter, Space, typing and the
   arrow keys only; no clicks, no element.focus(), and page.goto only for the first page
   and for the emailed link a resident pastes into the address bar. After every Tab the
   focused element shows a focus indicator (outline or box-shadow) and is inside the
   viewport.
B. JavaScript off: My Profile (bill delivery, a wrong then a right password change) and
   "Sign out everywhere".
C. Text at 200% (root font size doubled) at 640 px: no sideways scrolling and nothing
   in the header pushed out of view, on the pages a resident reads most.

Registration, verification, sign-in, recovery, bills/usage and paying with JavaScript
off are proven in the accounts, billing and payments browser tests and not repeated.
axe-core checks every state visited.
"""

from __future__ import annotations

import re
import time
from datetime import date
from urllib.parse import urlsplit

import pytest
from babel.dates import format_date
from playwright.sync_api import Page, expect

from portal.accounts.passwords import HASHER
from portal.settings import Settings

from helpers import DESKTOP, PHONE, assert_accessible, wait_for_htmx
from resident_steps import link_in, query
from sample_data import (
    GOOD_PASSWORD,
    add_resident,
    bills_csv,
    load,
    load_billing,
    month,
    usage_csv,
)

pytestmark = pytest.mark.browser

NEW_PASSWORD = "copper kettle maple porch"
ADDRESS = "123 Euclid Ave"


# --- data: loaded before the live server starts ------------------------------------


def long(day: date) -> str:
    return format_date(day, format="long", locale="en_US")


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    """Service accounts, Maria's bills and two years of usage, and Maria herself. No
    SMTP host: the outbox keeps each message, as the development mailbox shows it."""
    load_billing(settings.database)
    bills = [(due, "0", "0", due) for due in ("62.00", "70.00", "84.10")]
    load(settings.database, "bills", bills_csv("0012345", "0067890", bills, newest_due_in=15))
    values = [10.0 + n % 3 for n in range(-23, 1)]
    load(settings.database, "usage", usage_csv("0012345", "0067890", values))
    add_resident(settings.database, "maria1", "0067890", "maria@example.com")
    return settings


def maria(settings: Settings):
    return query(settings.database, "SELECT * FROM users WHERE username = 'maria1'")[0]


# --- the keyboard, and what a sighted keyboard user sees -----------------------------

FOCUS_STATE = """() => {
  const e = document.activeElement;
  if (!e || e === document.body || e === document.documentElement) return null;
  const s = getComputedStyle(e), r = e.getBoundingClientRect();
  return {
    html: e.outerHTML.slice(0, 160),
    outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0
      && s.outlineColor !== 'rgba(0, 0, 0, 0)' && s.outlineColor !== 'transparent',
    shadow: s.boxShadow !== 'none',
    top: r.top, bottom: r.bottom, left: r.left, right: r.right,
    innerHeight: window.innerHeight, innerWidth: window.innerWidth,
  };
}"""


def assert_focus_shown(page: Page, where: str) -> dict:
    """Something has focus, it draws a focus indicator, and it is on the screen."""
    state = page.evaluate(FOCUS_STATE)
    assert state, f"{where}: focus is lost (nothing on the page has it)"
    assert state["outline"] or state["shadow"], (
        f"{where}: the focused element shows no focus indicator: {state['html']}"
    )
    height, width = state["innerHeight"], state["innerWidth"]
    if state["bottom"] - state["top"] <= height:  # fits: all of it is on the screen
        on_screen = state["top"] >= -1 and state["bottom"] <= height + 1
    else:  # taller than the window (a long table): some of it is on the screen
        on_screen = state["top"] < height and state["bottom"] > 0
    on_screen = on_screen and state["right"] > 0 and state["left"] < width
    assert on_screen, (
        f"{where}: the focused element is off the screen "
        f"(top {state['top']:.0f}, bottom {state['bottom']:.0f}, window {height}px): "
        f"{state['html']}"
    )
    return state


def tab_to(page: Page, target, *, limit: int = 40, backwards: bool = False) -> None:
    """Press Tab (Shift+Tab) until `target` has focus, at most `limit` times; after
    every press the focus must be visible and on the screen."""
    target.wait_for(state="attached")
    handle = target.element_handle()
    key = "Shift+Tab" if backwards else "Tab"
    for n in range(1, limit + 1):
        page.keyboard.press(key)
        if page.evaluate(FOCUS_STATE) is None:
            pytest.fail(
                f"{key} x{n} on {page.url} left the page without reaching {target}",
                pytrace=False,
            )
        assert_focus_shown(page, f"{key} x{n} on {page.url}")
        if handle.evaluate("el => el === document.activeElement"):
            return
    focused = page.evaluate("document.activeElement.outerHTML.slice(0, 160)")
    pytest.fail(
        f"{limit} x {key} on {page.url} did not reach {target}; focus is on {focused}",
        pytrace=False,
    )


def page_change(response) -> bool:
    """A response that brings a new page: a navigation, or with JavaScript on a boosted
    link or form (hx-boost on <body>), which htmx fetches and swaps in."""
    request = response.request
    return request.is_navigation_request() or request.headers.get("hx-boosted") == "true"


def press_and_load(page: Page, key: str, path: str | re.Pattern) -> int:
    """Press `key` (Enter on a link or in a form); wait for the page at `path` (a
    pattern: matched from the start of the path) to be in, htmx settled. Returns the
    status of the first response: the POST's for a form."""
    with page.expect_response(lambda r: page_change(r) and r.frame == page.main_frame) as first:
        page.keyboard.press(key)
    if isinstance(path, str):
        page.wait_for_url(lambda url: urlsplit(url).path == path)
    else:
        page.wait_for_url(lambda url: bool(path.match(urlsplit(url).path)))
    page.wait_for_load_state()
    if page.portal_js:
        wait_for_htmx(page)
    return first.value.status


def by_label(scope, label: str):
    """The input labelled `label` (the label may end with "(required)")."""
    return scope.get_by_label(re.compile(rf"^{re.escape(label)}( \(required\))?$"))


def keyboard_sign_in(page: Page, server, password: str = GOOD_PASSWORD) -> None:
    """From the landing page: Tab to Username, type, Tab to Password, type, Enter."""
    page.goto(server.url + "/")
    tab_to(page, page.get_by_label("Username", exact=True))
    page.keyboard.type("maria1")
    tab_to(page, page.get_by_label("Password", exact=True), limit=1)
    page.keyboard.type(password)
    assert press_and_load(page, "Enter", "/account") == 303
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()


# --- A. keyboard alone ------------------------------------------------------------


def test_sign_in_with_the_keyboard_only(live_server, new_page):
    page = new_page(PHONE)
    page.goto(live_server.url + "/")
    # The page's own script has set up "Show password" (the front page has no htmx).
    expect(page.get_by_role("button", name="Show password")).to_be_visible()
    keyboard = page.keyboard

    tab_to(page, page.get_by_role("link", name="Skip to main content"), limit=1)
    username = page.get_by_label("Username", exact=True)
    password = page.get_by_label("Password", exact=True)
    tab_to(page, username)
    keyboard.type("maria1")
    tab_to(page, password, limit=1)
    keyboard.type(GOOD_PASSWORD)

    # "Show password" works with Space, and Shift+Tab goes back the way it came.
    show = page.get_by_role("button", name="Show password")
    tab_to(page, show, limit=1)
    keyboard.press("Space")
    expect(password).to_have_attribute("type", "text")
    expect(show).to_have_attribute("aria-pressed", "true")
    keyboard.press("Space")
    expect(password).to_have_attribute("type", "password")
    tab_to(page, password, limit=1, backwards=True)
    tab_to(page, username, limit=1, backwards=True)
    expect(username).to_have_value("maria1")
    expect(password).to_have_value(GOOD_PASSWORD)

    remember = page.get_by_role("checkbox", name="Remember me")
    tab_to(page, remember, limit=3)
    expect(remember).not_to_be_checked()
    keyboard.press("Space")
    expect(remember).to_be_checked()
    assert_focus_shown(page, "Remember me, checked")
    assert_accessible(page, "landing page filled in by keyboard at 320px")

    assert press_and_load(page, "Enter", "/account") == 303
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()
    [session] = [c for c in page.context.cookies() if c["name"] == "portal_session"]
    assert session["expires"] > time.time() + 86_400, "Remember me did not take effect"
    # A whole new page (the front page's form is plain, not boosted): the first Tab
    # stop is the skip link.
    tab_to(page, page.get_by_role("link", name="Skip to main content"), limit=1)
    keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()
    tab_to(page, page.get_by_role("link", name="My Profile"), limit=1)
    assert_accessible(page, "My Account after a keyboard sign-in at 320px")


def test_forgot_password_with_the_keyboard_only(live_server, live_settings, new_page):
    page = new_page(DESKTOP)
    page.goto(live_server.url + "/")
    login_box = page.get_by_role("region", name="Login to My Account")
    tab_to(page, login_box.get_by_role("link", name="Forgot Password"))
    assert press_and_load(page, "Enter", "/forgot-password") == 200
    expect(page.get_by_role("heading", level=1, name="Forgot Password")).to_be_visible()
    assert_accessible(page, "Forgot Password form")

    tab_to(page, by_label(page, "Username or Email Address"))
    page.keyboard.type("maria1")
    assert press_and_load(page, "Enter", "/forgot-password") == 200
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    tab_to(page, page.get_by_role("link", name="Login to My Account"))
    assert_accessible(page, "Forgot Password sent")

    # The link from the email, pasted into the address bar.
    [body] = [
        row["body_text"]
        for row in query(live_settings.database, "SELECT * FROM outbox ORDER BY id")
        if "/reset-password" in row["body_text"]
    ]
    link = link_in(body, "/reset-password")
    assert link.startswith(live_server.url + "/reset-password?")
    page.goto(link)
    expect(page.get_by_role("heading", level=1, name="Choose a new password")).to_be_visible()
    tab_to(page, by_label(page, "Password"))
    page.keyboard.type(NEW_PASSWORD)
    tab_to(page, page.get_by_role("button", name="Show password"), limit=1)
    tab_to(page, by_label(page, "Confirm Password"), limit=1)
    page.keyboard.type(NEW_PASSWORD)
    assert_accessible(page, "choose a new password, filled in by keyboard")
    assert press_and_load(page, "Enter", "/login") == 303
    notice = page.get_by_role("status").filter(
        has=page.get_by_role("heading", name="Your password has been changed")
    )
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Log in with your new password.")
    assert_accessible(page, "login page with the password-changed notice")

    tab_to(page, page.get_by_label("Username", exact=True))
    page.keyboard.type("maria1")
    tab_to(page, page.get_by_label("Password", exact=True), limit=1)
    page.keyboard.type(NEW_PASSWORD)
    assert press_and_load(page, "Enter", "/account") == 303
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()


def test_bills_and_usage_with_the_keyboard_only(live_server, new_page):
    page = new_page(PHONE)
    keyboard_sign_in(page, live_server)

    tab_to(page, page.get_by_role("link", name=f"View bills – {ADDRESS}"))
    assert_focus_shown(page, "View bills")
    path = urlsplit(page.get_by_role("link", name=f"View bills – {ADDRESS}").get_attribute("href"))
    assert press_and_load(page, "Enter", path.path) == 200
    expect(page.get_by_role("heading", level=1, name="Bills")).to_be_visible()
    history = page.get_by_role("region", name="Bill history, newest first")
    expect(history).to_have_attribute("tabindex", "0")
    tab_to(page, history)
    newest = history.get_by_role("link", name=long(month(0)), exact=True)
    tab_to(page, newest, limit=1)  # the newest bill is the first link in the table
    assert_accessible(page, "bill history reached by keyboard at 320px")
    bill_path = urlsplit(newest.get_attribute("href")).path
    assert press_and_load(page, "Enter", bill_path) == 200
    expect(page.get_by_role("heading", level=1, name=f"Bill of {long(month(0))}")).to_be_visible()

    pdf = page.get_by_role("link", name="Download PDF", exact=True)
    tab_to(page, pdf)
    expect(pdf).to_have_accessible_name("Download PDF")
    expect(pdf).to_be_focused()
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename == f"bill-B0067890-{month(0):%Y%m}.pdf"
    assert download.value.failure() is None
    expect(pdf).to_be_focused()  # the download leaves focus where it was
    assert_focus_shown(page, "after downloading the PDF")
    assert_accessible(page, "one bill at 320px")

    # Back (Alt+Left is handled by the browser's own window, which Playwright's key
    # presses do not reach in headless Chromium: use its Back command instead).
    page.go_back()
    page.wait_for_url(lambda url: urlsplit(url).path == path.path)
    usage_link = page.get_by_role("link", name="View usage", exact=True)
    tab_to(page, usage_link)
    usage_path = urlsplit(usage_link.get_attribute("href")).path
    assert press_and_load(page, "Enter", usage_path) == 200
    expect(page.get_by_role("heading", level=1, name="Water usage")).to_be_visible()

    table = page.get_by_role("region", name="Water use by month, in HCF")
    expect(table).to_have_attribute("tabindex", "0")
    tab_to(page, table)
    state = assert_focus_shown(page, "usage table's scroll region")
    assert state["outline"], "the usage table's scroll region shows no outline"
    # Where the table is wider than the screen, the arrow keys scroll it.
    wide = table.evaluate("el => el.scrollWidth > el.clientWidth")
    if wide:
        page.keyboard.press("End")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => document.activeElement.scrollLeft > 0", timeout=2_000)
    tab_to(page, page.get_by_role("link", name="Download usage history (CSV)"), limit=1)
    assert_accessible(page, "usage page, scroll region focused, at 320px")


def test_pay_as_a_guest_with_the_keyboard_only(live_server, live_settings, new_page):
    page = new_page(PHONE)
    page.goto(live_server.url + "/")
    pay_box = page.get_by_role("region", name="Pay My Bill")
    tab_to(page, pay_box.get_by_role("link", name="Pay Now", exact=True))
    assert press_and_load(page, "Enter", "/pay") == 200
    expect(page.get_by_role("heading", level=1, name="Pay My Bill")).to_be_visible()

    tab_to(page, by_label(page, "Customer Number"))
    page.keyboard.type("0012345")
    tab_to(page, by_label(page, "Account Number"), limit=1)
    page.keyboard.type("0067890")
    assert_accessible(page, "Pay My Bill numbers typed by keyboard at 320px")
    assert press_and_load(page, "Enter", "/pay") == 200
    amount = by_label(page, "Amount to pay, in dollars")
    expect(amount).to_have_value("84.10")

    card = page.get_by_role("radio", name="Credit or debit card")
    bank = page.get_by_role("radio", name="Bank account (checking or savings)")
    tab_to(page, amount)
    tab_to(page, card, limit=1)  # Tab enters the radio group at the chosen one
    expect(card).to_be_checked()
    page.keyboard.press("ArrowDown")
    expect(bank).to_be_focused()
    expect(bank).to_be_checked()
    expect(card).not_to_be_checked()
    assert_focus_shown(page, "bank account radio chosen with an arrow key")
    assert_accessible(page, "amount form, bank account chosen by keyboard at 320px")
    # Enter in the radio group sends the form.
    checkout = re.compile(r"/sandbox-gateway/checkout/")
    assert press_and_load(page, "Enter", checkout) == 303
    expect(page.get_by_role("note")).to_contain_text("TEST MODE")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Pay \$84\.10 to "))
    expect(page.get_by_label("Card number")).to_have_count(0)

    tab_to(page, by_label(page, "Routing number"))
    page.keyboard.type("011000015")
    tab_to(page, by_label(page, "Account number"), limit=1)
    page.keyboard.type("12345678")
    assert_accessible(page, "TEST MODE bank page filled in by keyboard at 320px")
    press_and_load(page, "Enter", re.compile(r"/pay/receipt/"))
    expect(page.get_by_role("heading", level=1, name="Payment confirmation")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Your payment was received")
    paid_with = (
        page.get_by_role("term")
        .filter(has_text="Paid with")
        .locator("xpath=following-sibling::dd[1]")
    )
    expect(paid_with).to_have_text("Bank account ending in 5678")
    tab_to(page, page.get_by_role("link", name="Go to the home page"))
    assert_accessible(page, "payment confirmation at 320px")
    rows = query(live_settings.database, "SELECT status, amount_cents, method FROM payments")
    assert [tuple(row) for row in rows] == [("succeeded", 8410, "bank")]


def test_my_profile_with_the_keyboard_only(live_server, live_settings, new_page):
    page = new_page(DESKTOP)
    keyboard_sign_in(page, live_server)
    tab_to(page, page.get_by_role("link", name="My Profile"))
    assert press_and_load(page, "Enter", "/profile") == 200
    expect(page.get_by_role("heading", level=1, name="My Profile")).to_be_visible()

    delivery = page.get_by_role("region", name="Bill delivery")
    paperless = delivery.get_by_role("checkbox", name="Receive Paperless Bills")
    printed = delivery.get_by_role("checkbox", name="Receive Printed Bills")
    tab_to(page, paperless)
    expect(paperless).to_be_checked()
    page.keyboard.press("Space")
    expect(paperless).not_to_be_checked()
    tab_to(page, printed, limit=1)
    page.keyboard.press("Space")
    expect(printed).to_be_checked()
    tab_to(page, delivery.get_by_role("button", name="Save bill delivery"), limit=1)
    assert_accessible(page, "My Profile, delivery changed by keyboard")
    assert press_and_load(page, "Enter", "/profile") == 303
    expect(
        page.get_by_role("status").filter(
            has=page.get_by_role("heading", name="Your bill delivery choice was saved.")
        )
    ).to_be_visible()
    expect(printed).to_be_checked()
    expect(paperless).not_to_be_checked()
    row = maria(live_settings)
    assert (row["paperless"], row["printed"]) == (0, 1)

    change = page.get_by_role("region", name="Change password")
    current = by_label(change, "Current password")

    def type_passwords(current_password: str) -> None:
        page.keyboard.type(current_password)
        tab_to(page, by_label(change, "New password"), limit=1)
        page.keyboard.type(NEW_PASSWORD)
        tab_to(page, change.get_by_role("button", name="Show password"), limit=1)
        tab_to(page, by_label(change, "Confirm new password"), limit=1)
        page.keyboard.type(NEW_PASSWORD)

    # A wrong current password: focus lands on the error summary; its link leads to
    # the field, so the resident types it again without hunting for it.
    tab_to(page, current)
    type_passwords("not my password at all")
    # Swapped in where the form was: the address stays /profile (it reloads).
    assert press_and_load(page, "Enter", "/profile") == 422
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    assert_focus_shown(page, "error summary after a wrong current password")
    wrong = "Your current password is not right. Enter it again"
    tab_to(page, summary.get_by_role("link", name=wrong), limit=1)
    page.keyboard.press("Enter")
    expect(current).to_be_focused()
    assert_focus_shown(page, "Current password, reached from the error summary")
    assert_accessible(page, "My Profile, wrong current password, by keyboard")

    type_passwords(GOOD_PASSWORD)
    assert press_and_load(page, "Enter", "/profile") == 303
    expect(
        page.get_by_role("heading", name=re.compile("^Your password has been changed"))
    ).to_be_visible()
    # Focus starts at the new page's heading; the header's link is back from there.
    tab_to(page, page.get_by_role("link", name="My Account"), backwards=True)
    assert_accessible(page, "My Profile, password changed by keyboard")
    assert HASHER.verify(maria(live_settings)["password_hash"], NEW_PASSWORD)


# --- B. JavaScript off ------------------------------------------------------------


def sign_in(page: Page, server, password: str = GOOD_PASSWORD) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Login", exact=True).click()
    page.wait_for_url(server.url + "/account")
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()


def submit(page: Page, scope, button: str, path: str) -> int:
    """Press a button that posts to `path`; return the status of that POST."""
    with page.expect_response(
        lambda r: r.request.method == "POST" and urlsplit(r.url).path == path
    ) as posted:
        scope.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()
    return posted.value.status


def error_summary(page: Page):
    return page.get_by_role("alert").filter(
        has=page.get_by_role("heading", name="There is a problem")
    )


def expect_focus_in(page: Page, locator) -> None:
    inside = locator.evaluate(
        "el => document.activeElement !== document.body"
        " && (el === document.activeElement || el.contains(document.activeElement)"
        " || document.activeElement.contains(el))"
    )
    assert inside, "focus is not on the error summary"


def test_my_profile_without_javascript(live_server, live_settings, new_page):
    page = new_page(PHONE, js=False)
    sign_in(page, live_server)
    assert page.evaluate("() => typeof window.htmx") == "undefined"  # really off
    page.get_by_role("link", name="My Profile").click()
    expect(page.get_by_role("heading", level=1, name="My Profile")).to_be_visible()
    delivery = page.get_by_role("region", name="Bill delivery")
    paperless = delivery.get_by_role("checkbox", name="Receive Paperless Bills")
    printed = delivery.get_by_role("checkbox", name="Receive Printed Bills")
    expect(paperless).to_be_checked()

    # Neither way: the form says what to do, and nothing is saved.
    paperless.uncheck()
    assert submit(page, delivery, "Save bill delivery", "/profile/delivery") == 422
    summary = error_summary(page)
    expect(summary).to_be_visible()
    expect(summary.get_by_role("link", name=re.compile("Receive Paperless Bills"))).to_be_visible()
    expect(page).to_have_title(re.compile(r"^Error: My Profile"))
    expect_focus_in(page, page.locator("#error-summary"))
    assert (maria(live_settings)["paperless"], maria(live_settings)["printed"]) == (1, 0)
    assert_accessible(page, "My Profile, no bill delivery chosen, at 320px")

    paperless.uncheck()
    printed.check()
    assert submit(page, delivery, "Save bill delivery", "/profile/delivery") == 303
    expect(
        page.get_by_role("status").filter(
            has=page.get_by_role("heading", name="Your bill delivery choice was saved.")
        )
    ).to_be_visible()
    expect(page).not_to_have_title(re.compile("Error"))
    page.reload()
    expect(printed).to_be_checked()
    expect(paperless).not_to_be_checked()
    assert (maria(live_settings)["paperless"], maria(live_settings)["printed"]) == (0, 1)

    change = page.get_by_role("region", name="Change password")
    by_label(change, "Current password").fill("not my password at all")
    by_label(change, "New password").fill(NEW_PASSWORD)
    by_label(change, "Confirm new password").fill(NEW_PASSWORD)
    assert submit(page, change, "Change password", "/profile/password") == 422
    wrong = "Your current password is not right. Enter it again"
    summary = error_summary(page)
    expect(summary.get_by_role("link", name=wrong)).to_have_attribute("href", "#current_password")
    expect_focus_in(page, page.locator("#error-summary"))
    current = by_label(change, "Current password")
    expect(current).to_have_attribute("aria-invalid", "true")
    expect(current).to_have_accessible_description(re.compile(re.escape(f"Error: {wrong}")))
    expect(current).to_have_value("")
    expect(page).to_have_title(re.compile(r"^Error: My Profile"))
    assert HASHER.verify(maria(live_settings)["password_hash"], GOOD_PASSWORD)
    assert_accessible(page, "My Profile, wrong current password, at 320px")

    by_label(change, "Current password").fill(GOOD_PASSWORD)
    by_label(change, "New password").fill(NEW_PASSWORD)
    by_label(change, "Confirm new password").fill(NEW_PASSWORD)
    assert submit(page, change, "Change password", "/profile/password") == 303
    assert urlsplit(page.url).path == "/profile"
    expect(
        page.get_by_role("status").filter(
            has=page.get_by_role("heading", name=re.compile("^Your password has been changed"))
        )
    ).to_be_visible()
    expect(error_summary(page)).to_have_count(0)
    assert_accessible(page, "My Profile, password changed, at 320px")
    assert HASHER.verify(maria(live_settings)["password_hash"], NEW_PASSWORD)
    # Still signed in on this device after the change.
    page.get_by_role("link", name="My Account").click()
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()


def test_sign_out_everywhere_without_javascript(live_server, new_page):
    phone, computer = new_page(PHONE, js=False), new_page(DESKTOP, js=False)
    sign_in(phone, live_server)
    sign_in(computer, live_server)

    computer.get_by_role("link", name="My Profile").click()
    section = computer.get_by_role("region", name="Sign out everywhere")
    expect(section).to_contain_text("This logs you out on every device")
    assert submit(computer, section, "Sign out everywhere", "/profile/sign-out-everywhere") == 303
    assert urlsplit(computer.url).path == "/login"
    expect(
        computer.get_by_role("status").filter(
            has=computer.get_by_role("heading", name="You have signed out on every device")
        )
    ).to_be_visible()
    expect(computer.get_by_role("button", name="Sign out", exact=True)).to_have_count(0)
    assert [c for c in computer.context.cookies() if c["name"] == "portal_session"] == []
    assert_accessible(computer, "signed out everywhere")

    # The other device is signed out too: My Account sends it to the login page.
    for page in (phone, computer):
        page.goto(live_server.url + "/account")
        assert urlsplit(page.url).path == "/login"
        expect(page.get_by_role("heading", level=1, name="Login to My Account")).to_be_visible()
        expect(page.get_by_role("button", name="Sign out", exact=True)).to_have_count(0)
    # And signing in again still works.
    sign_in(phone, live_server)


# --- C. text at 200% -----------------------------------------------------------------

TEXT_200 = {"width": 640, "height": 900}
LAYOUT = """() => {
  const root = document.documentElement, header = document.querySelector('header');
  const out = [...header.querySelectorAll('*')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && (r.right > window.innerWidth + 1 || r.left < -1);
  }).map(e => e.outerHTML.slice(0, 100));
  const clipped = [header, ...header.querySelectorAll('*')].filter(
    e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1
  ).map(e => e.outerHTML.slice(0, 100));
  return {
    fontSize: getComputedStyle(root).fontSize, scrollWidth: root.scrollWidth,
    innerWidth: window.innerWidth, out, clipped,
  };
}"""


def double_text(page: Page) -> None:
    """Text at 200%: the root font size doubled (set from Playwright, which the page's
    Content-Security-Policy does not govern), as a browser's text-size setting does."""
    page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")


def assert_reflows(page: Page, state: str) -> None:
    layout = page.evaluate(LAYOUT)
    assert layout["fontSize"] == "32px", f"{state}: text is not at 200% ({layout['fontSize']})"
    assert layout["scrollWidth"] <= layout["innerWidth"] + 1, (
        f"{state}: at 200% text the page scrolls sideways "
        f"({layout['scrollWidth']}px in a {layout['innerWidth']}px window)"
    )
    assert not layout["clipped"], f"{state}: header text is clipped: {layout['clipped']}"
    assert not layout["out"], f"{state}: header content is off the screen: {layout['out']}"
    assert_accessible(page, f"{state} at 200% text, 640px")


def test_text_at_200_percent_reflows(live_server, new_page):
    page = new_page(TEXT_200)
    page.goto(live_server.url + "/")
    double_text(page)
    assert_reflows(page, "landing page")

    page.goto(live_server.url + "/register")
    wait_for_htmx(page)
    double_text(page)
    page.get_by_role("button", name="Register", exact=True).click()
    wait_for_htmx(page)
    expect(error_summary(page)).to_be_visible()
    assert_reflows(page, "registration with errors")

    page.goto(live_server.url + "/pay")
    by_label(page, "Customer Number").fill("0012345")
    by_label(page, "Account Number").fill("0067890")
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(by_label(page, "Amount to pay, in dollars")).to_have_value("84.10")
    double_text(page)
    assert_reflows(page, "pay amount form")

    sign_in(page, live_server)
    double_text(page)
    assert_reflows(page, "dashboard")

    page.get_by_role("link", name=f"View bills – {ADDRESS}").click()
    page.get_by_role("link", name=long(month(0)), exact=True).click()
    expect(page.get_by_role("heading", level=1, name=f"Bill of {long(month(0))}")).to_be_visible()
    double_text(page)
    assert_reflows(page, "bill page")

    page.get_by_role("link", name="All bills").click()
    page.get_by_role("link", name="View usage", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Water usage")).to_be_visible()
    double_text(page)
    assert_reflows(page, "usage page")
