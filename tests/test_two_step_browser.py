"""Two-step verification in a real Chromium, found as a resident and a screen reader find
it (labels, headings, button names), with axe-core on each page: turning it on with the
key the page shows (JavaScript on, a phone), then logging in with a code and with a
recovery code (JavaScript off), and turning it off."""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import Page, expect

from helpers import DESKTOP, PHONE, assert_accessible
from sample_data import GOOD_PASSWORD, add_resident, load_billing

pytestmark = pytest.mark.browser


@pytest.fixture
def live_settings(settings):
    load_billing(settings.database)
    add_resident(settings.database, "maria1", "0067890", "maria@example.com")
    return settings


def heading(page: Page, name: str):
    return page.get_by_role("heading", level=1, name=name, exact=True)


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Login", exact=True).click()


def test_turn_on_log_in_with_a_code_and_a_recovery_code_then_turn_off(live_server, new_page):
    url = live_server.url
    page = new_page(PHONE, js=True)
    log_in(page, url)
    expect(heading(page, "My Account")).to_be_visible()
    page.goto(url + "/profile")
    page.get_by_role("link", name="Turn on two-step verification").click()
    expect(heading(page, "Two-step verification")).to_be_visible()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    assert_accessible(page, "two-step setup")
    key = page.locator("code.secret").first.inner_text().replace(" ", "")
    page.get_by_label("Code", exact=False).first.fill("000000")
    page.get_by_label("Current password").fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Turn on two-step verification").click()
    expect(page.get_by_text("That code is not right").first).to_be_visible()
    assert_accessible(page, "two-step setup with a wrong code")
    page.get_by_label("Code", exact=False).first.fill(pyotp.TOTP(key).now())
    page.get_by_label("Current password").fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Turn on two-step verification").click()
    expect(page.get_by_role("heading", name="Two-step verification is on")).to_be_visible()
    codes = page.get_by_role("list").filter(has=page.locator("code")).locator("code")
    expect(codes).to_have_count(10)
    recovery = codes.nth(0).inner_text()
    assert_accessible(page, "recovery codes")

    # A new browser without JavaScript: the password, then the app's next code.
    other = new_page(DESKTOP, js=False)
    log_in(other, url)
    expect(heading(other, "Two-step verification")).to_be_visible()
    code_box = other.get_by_role("textbox", name="Code")
    expect(code_box).to_be_visible()
    assert_accessible(other, "login code step")
    code_box.fill("123456")
    other.get_by_role("button", name="Login", exact=True).click()
    expect(other.get_by_text("That code is not right").first).to_be_visible()
    assert_accessible(other, "login code step, wrong code")
    other.get_by_role("textbox", name="Code").fill(pyotp.TOTP(key).at(time.time() + 30))
    other.get_by_role("button", name="Login", exact=True).click()
    expect(heading(other, "My Account")).to_be_visible()

    # A third device, the phone lost: a recovery code.
    third = new_page(PHONE, js=False)
    log_in(third, url)
    third.get_by_role("textbox", name="Code").fill(recovery)
    third.get_by_role("button", name="Login", exact=True).click()
    expect(heading(third, "My Account")).to_be_visible()

    # Turning it off, from the first browser.
    page.goto(url + "/profile")
    page.get_by_role("link", name="Manage two-step verification").click()
    expect(page.get_by_text("You have 9 recovery codes left.")).to_be_visible()
    assert_accessible(page, "two-step on")
    page.get_by_role("button", name="Get new recovery codes").click()
    expect(page.get_by_text("Enter your current password").first).to_be_visible()
    assert_accessible(page, "new recovery codes without the password")
    page.get_by_label("Current password").first.fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Get new recovery codes").click()
    expect(page.get_by_role("heading", name="New recovery codes are ready")).to_be_visible()
    assert recovery not in page.content()
    page.get_by_role("link", name="Back to My Profile").click()
    page.get_by_role("link", name="Manage two-step verification").click()
    expect(page.get_by_text("You have 10 recovery codes left.")).to_be_visible()
    page.get_by_label("Current password").last.fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Turn off two-step verification").click()
    expect(heading(page, "My Profile")).to_be_visible()
    expect(page.get_by_text("Two-step verification is off.").first).to_be_visible()
