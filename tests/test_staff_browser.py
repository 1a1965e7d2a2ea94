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
from test_keyboard_and_nojs import by_label, keyboard_sign_in, press_and_load, tab_to

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


def sign_in_as_staff(page, base: str, settings, username: str = "carla", role: str = "csr") -> None:
    """Enrol and sign in through the console's own pages (walked key by key above)."""
    token = add(settings, username, role)
    [row] = query(
        settings.database, "SELECT totp_secret FROM staff WHERE username = ?", (username,)
    )
    totp = pyotp.TOTP(row["totp_secret"])
    page.goto(f"{base}/staff/enrol?token={token}")
    form = page.locator("form[action='/staff/enrol']")
    by_label(form, "Password").fill(STAFF_PASSWORD)
    by_label(form, "Confirm Password").fill(STAFF_PASSWORD)
    by_label(form, "Code").fill(totp.now())
    form.locator("button[type=submit]").click()
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    page.goto(f"{base}/staff")
    form = page.locator("#staff-sign-in")
    by_label(form, "Username").fill(username)
    by_label(form, "Password").fill(STAFF_PASSWORD)
    by_label(form, "Code").fill(totp.at(time.time() + 30))
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/staff/search$"))


def maria_pays_by_herself(settings) -> tuple[int, int]:
    """Maria's saved card, AutoPay on and a payment scheduled ten days ahead, as her own
    forms leave them (tests/test_staff_http.py makes them through those forms): her
    account id and the schedule's id."""
    conn = portal_db.connect_sync(settings.database)
    with conn:
        [user_id, account_id] = conn.execute(
            "SELECT user_id, account_id FROM user_accounts"
        ).fetchone()
        method_id = conn.execute(
            "INSERT INTO saved_methods (user_id, gateway, customer, token, method, brand, last4,"
            " exp_month, exp_year, nickname, is_default, setup_ref, created_at)"
            " VALUES (?, 'sandbox', 'cus_test_1', 'pm_test_secret', 'card', 'Visa', '4242', 4,"
            " 2030, 'Kitchen card', 1, 'seti_test_1', '2026-01-01T00:00:00.000000Z')",
            (user_id,),
        ).lastrowid
        conn.execute(
            "INSERT INTO autopay (account_id, user_id, method_id, max_cents, enrolled_at)"
            " VALUES (?, ?, ?, 15000, '2026-01-01T00:00:00.000000Z')",
            (account_id, user_id, method_id),
        )
        schedule_id = conn.execute(
            "INSERT INTO schedules (kind, account_id, user_id, method_id, amount_cents, run_on,"
            " status, form_key, created_at, updated_at) VALUES ('scheduled', ?, ?, ?, 4000,"
            " date('now', '+10 days'), 'scheduled', 'form-key-1', '2026-01-01T00:00:00.000000Z',"
            " '2026-01-01T00:00:00.000000Z')",
            (account_id, user_id, method_id),
        ).lastrowid
    conn.close()
    return account_id, schedule_id


def test_representative_cancels_a_scheduled_payment_and_autopay_keyboard_only(
    live_server, new_page
):
    settings = live_server.settings
    account_id, schedule_id = maria_pays_by_herself(settings)
    page = new_page(DESKTOP)
    base = live_server.url
    sign_in_as_staff(page, base, settings)
    account_path = f"/staff/accounts/{account_id}"
    page.goto(base + account_path)
    money = page.locator("#money")
    expect(money).to_contain_text("Kitchen card (Visa ending 4242)")
    expect(money).to_contain_text("04/2030")
    expect(money).not_to_contain_text("pm_test_secret")
    check(page, DESKTOP, "account with saved methods, AutoPay and a scheduled payment")

    # Cancel the scheduled payment: without a reason first.
    scheduled = page.locator(f"form[action$='/scheduled/{schedule_id}/cancel']")
    tab_to(page, scheduled.locator("button[type=submit]"), limit=150)
    assert press_and_load(page, "Enter", account_path) == 422
    expect(page.locator("#error-summary")).to_be_visible()
    check(page, DESKTOP, "cancel a scheduled payment without a reason")
    scheduled = page.locator(f"form[action$='/scheduled/{schedule_id}/cancel']")
    type_into(page, by_label(scheduled, "Reason"), "Resident asked by phone", limit=150)
    press_and_load(page, "Enter", account_path)
    expect(page.locator(".alert--success")).to_contain_text("The scheduled payment was canceled.")
    expect(page.locator("#money")).to_contain_text("Canceled")
    check(page, DESKTOP, "scheduled payment canceled")

    # Turn off AutoPay (after a boosted page change focus starts at the heading).
    autopay = page.locator("form[action$='/autopay/cancel']")
    type_into(page, by_label(autopay, "Reason"), "Card reported lost", limit=150)
    press_and_load(page, "Enter", account_path)
    expect(page.locator(".alert--success")).to_contain_text("AutoPay is off for this account.")
    expect(page.locator("#money")).to_contain_text("AutoPay is off.")
    check(page, DESKTOP, "AutoPay turned off")

    # The audit rows, under the representative's name; an email to Maria for each.
    rows = query(settings.database, "SELECT staff_username, action, reason FROM staff_actions")
    assert [tuple(r) for r in rows] == [
        ("carla", "cancel_scheduled_payment", "Resident asked by phone"),
        ("carla", "cancel_autopay", "Card reported lost"),
    ]
    mails = query(settings.database, "SELECT to_addr, subject FROM outbox ORDER BY id")
    assert [(m["to_addr"], m["subject"].split(" – ")[0]) for m in mails] == [
        ("maria@example.com", "Customer Services canceled your scheduled payment"),
        ("maria@example.com", "Customer Services turned off your AutoPay"),
    ]

    # Maria's side: AutoPay is off on her dashboard, the payment canceled.
    resident = new_page(DESKTOP)
    keyboard_sign_in(resident, live_server)
    card = resident.get_by_role("region", name="123 Euclid Ave")
    expect(card).to_contain_text("AutoPay is off.")
    resident.goto(f"{base}/accounts/{account_id}/scheduled")
    expect(resident.locator(".method-list")).to_contain_text("Canceled")
    expect(resident.get_by_role("button", name=re.compile("^Cancel this payment"))).to_have_count(0)
