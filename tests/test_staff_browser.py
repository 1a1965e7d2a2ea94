"""One walk through the Customer Services console in real Chromium, keyboard only:
enrolment (a wrong code, then the code pyotp computes) -> recovery codes -> sign-in ->
search -> the resident's account -> an action with a missing reason, then a note ->
the phone payment form -> the supervisors' staff list and audit log -> sign out.

page.goto only for the first page (the enrolment link the staff member pastes). axe-core
(WCAG 2.2 AA) on every page state; no sideways scrolling. Desktop with JavaScript on
(search answers through htmx), 768 px with JavaScript off (plain GET and POST)."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import expect

from portal import db as portal_db
from portal.billing.importer import import_text
from portal.settings import Settings
from staff_helpers import STAFF_PASSWORD, add
from test_keyboard_and_nojs import by_label, press_and_load, tab_to

from helpers import DESKTOP, assert_accessible, wait_for_htmx
from resident_steps import query
from sample_data import add_resident, bills_csv, load_billing

pytestmark = pytest.mark.browser
TABLET = {"width": 768, "height": 1024}


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "bills",
        bills_csv("0012345", "0067890", ("62.00", "70.00", "84.10"), newest_due_in=15),
    )
    conn.close()
    add_resident(settings.database, "maria1", "0067890", "maria@example.com")
    conn = portal_db.connect_sync(settings.database)
    conn.execute(  # a login whose account was released: it has a page of its own
        "INSERT INTO users (username, username_key, email, email_key, password_hash,"
        " created_at) VALUES ('lonely1', 'lonely1', 'lonely@example.com',"
        " 'lonely@example.com', 'x', '2026-01-01T00:00:00.000000Z')"
    )
    conn.close()
    return settings


def check(page, viewport: dict, where: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"] + 1, f"{where}: scrolls sideways ({width}px wide)"
    assert_accessible(page, where)


def type_into(page, target, text: str, limit: int = 60) -> None:
    tab_to(page, target, limit=limit)
    page.keyboard.type(text)


@pytest.mark.parametrize(
    ("viewport", "js"), [(DESKTOP, True), (TABLET, False)], ids=["desktop-js", "768px-no-js"]
)
def test_staff_walk_enrol_sign_in_search_view_act(live_server, new_page, viewport, js):
    settings = live_server.settings
    token = add(settings, "sam", "supervisor")
    [row] = query(settings.database, "SELECT totp_secret FROM staff WHERE username = 'sam'")
    totp = pyotp.TOTP(row["totp_secret"])
    page = new_page(viewport, js=js)
    base = live_server.url

    # Enrolment: the QR code is drawn on the page; a wrong code first.
    page.goto(f"{base}/staff/enrol?token={token}")
    expect(page.locator(".qr svg[role=img] title")).to_have_count(1)
    check(page, viewport, "enrolment form")
    form = page.locator("form[action='/staff/enrol']")
    type_into(page, by_label(form, "Password"), STAFF_PASSWORD)
    type_into(page, by_label(form, "Confirm Password"), STAFF_PASSWORD)
    type_into(page, by_label(form, "Code"), "000000")
    assert press_and_load(page, "Enter", "/staff/enrol") == 422
    expect(page.locator("#error-summary")).to_be_visible()
    check(page, viewport, "enrolment, wrong code")
    form = page.locator("form[action='/staff/enrol']")
    type_into(page, by_label(form, "Password"), STAFF_PASSWORD)
    type_into(page, by_label(form, "Confirm Password"), STAFF_PASSWORD)
    code_box = by_label(form, "Code")
    tab_to(page, code_box)
    page.keyboard.press("Control+A")
    page.keyboard.type(totp.now())
    assert press_and_load(page, "Enter", "/staff/enrol") == 200
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    check(page, viewport, "recovery codes")

    # Sign in with the next time step's code (this one was just used).
    tab_to(page, page.get_by_role("link", name="Continue to sign in"))
    press_and_load(page, "Enter", "/staff")
    check(page, viewport, "staff sign-in, enrolled notice")
    form = page.locator("#staff-sign-in")
    type_into(page, by_label(form, "Username"), "sam")
    type_into(page, by_label(form, "Password"), STAFF_PASSWORD)
    type_into(page, by_label(form, "Code"), totp.at(time.time() + 30))
    press_and_load(page, "Enter", "/staff/search")
    check(page, viewport, "search, empty")

    # Search by part of the name, without regard to case.
    type_into(page, page.get_by_label(re.compile("^Customer number, account number")), "GARC")
    if js:
        page.keyboard.press("Enter")
        wait_for_htmx(page)
        page.wait_for_url(re.compile(r"/staff/search\?q=GARC"))
    else:
        press_and_load(page, "Enter", "/staff/search")
        page.wait_for_url(re.compile(r"[?&]q="))  # the same path as before: wait for the new page
        page.wait_for_load_state()
    result = page.get_by_role("link", name="Maria Garcia")
    expect(result).to_be_visible()
    check(page, viewport, "search results")
    tab_to(page, result)
    press_and_load(page, "Enter", re.compile(r"^/staff/accounts/\d+$"))
    account_path = page.url.split(base, 1)[1]
    expect(page.get_by_role("heading", name="Login: maria1")).to_be_visible()
    check(page, viewport, "the resident's account")

    # An action without its reason: refused, with the error summary.
    release = page.locator("form[action$='/release']")
    tab_to(page, release.get_by_role("button"), limit=120)
    # (a failed boosted form keeps the page's own address; without JavaScript the
    # browser shows the form's)
    refused_at = r"^/staff/accounts/\d+$" if js else r"^/staff/accounts/\d+/release$"
    assert press_and_load(page, "Enter", re.compile(refused_at)) == 422
    expect(page.locator("#error-summary")).to_be_visible()
    check(page, viewport, "release without a reason")
    assert query(settings.database, "SELECT count(*) AS n FROM user_accounts")[0]["n"] == 1

    # A note: saved, shown, audited under the staff member's name.
    notes = page.locator("form[action$='/notes']")
    type_into(page, by_label(notes, "Add a note"), "Called about a high bill", limit=120)
    press_and_load(page, "Enter", account_path)
    expect(page.locator("#notes")).to_contain_text("Called about a high bill")
    expect(page.locator(".alert--success")).to_be_visible()
    check(page, viewport, "note added")
    [action] = query(settings.database, "SELECT * FROM staff_actions")
    assert (action["staff_username"], action["action"]) == ("sam", "note")

    # The phone payment form (after a boosted page change focus starts at the heading,
    # above the link; after a full load, at the top, where Shift+Tab wraps to the end).
    tab_to(
        page, page.get_by_role("link", name="Take a payment by phone"), limit=120, backwards=not js
    )
    press_and_load(page, "Enter", re.compile(r"^/staff/accounts/\d+/pay$"))
    expect(page.locator("input[name=idempotency_key]")).to_have_count(1)
    check(page, viewport, "take a payment by phone")

    # A login with no account left, found by part of its email address.
    tab_to(page, page.get_by_role("link", name="Find a customer"), backwards=True)
    press_and_load(page, "Enter", "/staff/search")
    type_into(page, page.get_by_label(re.compile("^Customer number, account number")), "lonely@")
    if js:
        page.keyboard.press("Enter")
        wait_for_htmx(page)
    else:
        press_and_load(page, "Enter", "/staff/search")
        page.wait_for_url(re.compile(r"[?&]q="))  # the same path as before: wait for the new page
        page.wait_for_load_state()
    tab_to(page, page.get_by_role("link", name="lonely1"))
    press_and_load(page, "Enter", re.compile(r"^/staff/logins/\d+$"))
    expect(page.get_by_role("heading", name="Login: lonely1")).to_be_visible()
    check(page, viewport, "a login with no account")

    # Supervisors: the staff list and the audit log, filtered.
    tab_to(page, page.get_by_role("link", name="Staff", exact=True), backwards=True)
    press_and_load(page, "Enter", "/staff/team")
    check(page, viewport, "staff list")
    tab_to(
        page, page.get_by_role("link", name="Staff actions"), backwards=js
    )  # header: above the h1
    press_and_load(page, "Enter", "/staff/audit")
    expect(page.locator("tbody tr")).to_have_count(1)
    check(page, viewport, "staff actions")
    type_into(page, by_label(page.locator("#main form"), "From (date)"), "not a date")
    assert press_and_load(page, "Enter", "/staff/audit") == 422
    page.wait_for_url(re.compile(r"date_from=not"))
    page.wait_for_load_state()
    check(page, viewport, "staff actions, bad filter")

    # Sign out: the staff pages are gone again.
    tab_to(page, page.get_by_role("button", name=re.compile("^Sign out")), backwards=True, limit=80)
    press_and_load(page, "Enter", "/staff")
    check(page, viewport, "signed out")
    assert not query(settings.database, "SELECT * FROM staff_sessions")
