"""AutoPay in a real headless Chromium, JavaScript on and off, at 320 px and desktop:
add a card through the sandbox's save page, turn AutoPay on (after the terms error),
let the runner schedule the bill's charge, skip it, and turn AutoPay off; and pay from a
saved card in one step from My Account (which flags the card expiring this month).
axe-core checks every page and state on the way."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta

import pytest
from playwright.sync_api import Page, expect

from portal import db as portal_db
from portal.billing.importer import import_text
from test_payments_browser import add_verified_resident, check, fact

from helpers import DESKTOP, PHONE
from resident_steps import GOOD_PASSWORD, query
from sample_data import load_billing

pytestmark = pytest.mark.browser
DUE = date.today() + timedelta(days=20)


@pytest.fixture
def live_settings(settings):
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "bills",
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        f"0012345,0067890,B1,{date.today()},{DUE},84.10\n",
    )
    conn.close()
    add_verified_resident(settings.database)
    return settings


def run_jobs(settings) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_DATABASE"] = str(settings.database)
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", "jobs", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def sign_in(page: Page, base: str) -> None:
    """Maria signs in from the login page, as the guide shows."""
    page.goto(base + "/login")
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Login", exact=True).click()


@pytest.mark.parametrize(
    ("js", "viewport"),
    [(True, PHONE), (False, DESKTOP), (False, PHONE), (True, DESKTOP)],
    ids=["js-320px", "nojs-desktop", "nojs-320px", "js-desktop"],
)
def test_add_a_card_enrol_skip_and_turn_off_autopay(
    live_server, new_page, live_settings, js, viewport
):
    page: Page = new_page(viewport, js=js)
    sign_in(page, live_server.url)
    home = page.get_by_role("region", name="123 Euclid Ave")
    expect(fact(home, "AutoPay")).to_contain_text("AutoPay is off.")
    check(page, "My Account, AutoPay off")

    # My Profile → Payment methods → the processor's save page → back.
    page.get_by_role("link", name="My Profile").first.click()
    page.get_by_role("link", name="Payment methods").click()
    expect(page.get_by_role("heading", level=1, name="Payment methods")).to_be_visible()
    check(page, "Payment methods, none saved")
    page.get_by_label("Credit or debit card").check()
    page.get_by_label("Nickname (optional)").fill("Kitchen card")
    page.get_by_role("button", name="Continue to add a payment method").click()
    expect(
        page.get_by_role("heading", level=1, name=re.compile("^Save a card for"))
    ).to_be_visible()
    check(page, "the sandbox's save page")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry date").fill("04/30")
    page.get_by_label("Security code").fill("737")
    page.get_by_label("Name on card").fill("Maria Garcia")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Your payment method was saved.")
    expect(
        page.get_by_role("heading", level=2, name=re.compile(r"^Kitchen card \(Visa ending 4242\)"))
    ).to_be_visible()
    check(page, "Payment methods, one saved")

    # My Account → set up AutoPay: the terms must be accepted.
    page.get_by_role("link", name="My Account").first.click()
    page.get_by_role("link", name=re.compile("^set up AutoPay")).click()
    expect(page.get_by_role("heading", level=1, name="AutoPay")).to_be_visible()
    check(page, "AutoPay page, off")
    page.get_by_label(re.compile(r"^Kitchen card \(Visa ending 4242\)")).check()
    page.get_by_label("Largest amount to charge, in dollars (optional)").fill("150")
    page.get_by_role("button", name="Turn on AutoPay").click()
    expect(page).to_have_title(re.compile(r"^Error: "))
    summary = page.locator("#error-summary")
    expect(
        summary.get_by_role("link", name="Read the terms and tick the box to accept them")
    ).to_be_visible()
    check(page, "AutoPay page, terms not accepted")
    page.get_by_label("I have read the AutoPay terms and accept them").check()
    page.get_by_role("button", name="Turn on AutoPay").click()
    expect(page.get_by_role("status")).to_contain_text("AutoPay is on.")
    check(page, "AutoPay on, no charge scheduled yet")

    # The runner schedules the bill's charge; the page shows it with a skip button.
    assert "scheduled 1" in run_jobs(live_settings)
    page.reload()
    expect(page.locator(".autopay-next")).to_contain_text(
        re.compile(r"Next AutoPay charge: \$84\.10 on .+, to Kitchen card \(Visa ending 4242\)")
    )
    check(page, "AutoPay on, next charge scheduled")
    page.get_by_role("button", name="Skip this payment").click()
    expect(page.get_by_role("status")).to_contain_text("This payment was skipped.")
    expect(page.get_by_role("button", name="Skip this payment")).to_have_count(0)
    check(page, "AutoPay on, charge skipped")

    page.get_by_role("button", name="Turn off AutoPay").click()
    expect(page.get_by_role("status")).to_contain_text(
        "AutoPay is off. Nothing more will be charged."
    )
    check(page, "AutoPay turned off")
    db = live_settings.database
    assert query(db, "SELECT count(*) FROM autopay")[0][0] == 0
    assert [r["status"] for r in query(db, "SELECT status FROM schedules")] == ["skipped"]
    assert query(db, "SELECT count(*) FROM sandbox_charges")[0][0] == 0


@pytest.mark.parametrize(
    ("js", "viewport"), [(True, PHONE), (False, DESKTOP)], ids=["js-320px", "nojs-desktop"]
)
def test_pay_from_a_saved_method_in_one_step_from_my_account(
    live_server, new_page, live_settings, js, viewport
):
    page: Page = new_page(viewport, js=js)
    sign_in(page, live_server.url)
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()

    # A card that expires at the end of this month, saved on the processor's page.
    page.get_by_role("link", name="My Profile").first.click()
    page.get_by_role("link", name="Payment methods").click()
    page.get_by_label("Credit or debit card").check()
    page.get_by_role("button", name="Continue to add a payment method").click()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry date").fill(date.today().strftime("%m/%y"))
    page.get_by_label("Security code").fill("737")
    page.get_by_label("Name on card").fill("Maria Garcia")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Your payment method was saved.")

    # My Account flags it, and pays from it.
    page.get_by_role("link", name="My Account").first.click()
    expiry = date.today().strftime("%m/%Y")
    expect(page.locator(".alert--warning")).to_contain_text(f"Visa ending 4242 expires {expiry}")
    check(page, "My Account, a card that expires this month")
    home = page.get_by_role("region", name="123 Euclid Ave")
    home.get_by_role("link", name=re.compile("^Pay with a saved payment method")).click()
    expect(
        page.get_by_role("heading", level=1, name="Pay with a saved payment method")
    ).to_be_visible()
    expect(page.get_by_label("Amount to pay, in dollars")).to_have_value("84.10")
    expect(page.get_by_label("Visa ending 4242")).to_be_checked()
    check(page, "Pay with a saved payment method")
    page.get_by_label("Amount to pay, in dollars").fill("0.10")
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(page).to_have_title(re.compile(r"^Error: "))
    expect(page.locator("#error-summary")).to_contain_text("Enter an amount of at least $1.00")
    check(page, "Pay with a saved payment method, amount too small")
    page.get_by_label("Amount to pay, in dollars").fill("50")
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Check your payment")).to_be_visible()
    expect(fact(page, "Amount")).to_have_text("$50.00")
    expect(fact(page, "Pay from")).to_have_text("Visa ending 4242")
    check(page, "Check your payment")
    page.get_by_role("button", name="Pay now").click()
    expect(page.get_by_role("heading", level=1, name="Payment confirmation")).to_be_visible()
    expect(fact(page, "Amount")).to_have_text("$50.00")
    check(page, "receipt of a payment from a saved method")
    db = live_settings.database
    assert query(db, "SELECT count(*) FROM sandbox_charges")[0][0] == 1
    [payment] = query(db, "SELECT status, amount_cents, origin FROM payments")
    assert tuple(payment) == ("succeeded", 5000, "saved_method")
