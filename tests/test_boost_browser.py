"""Boosted navigation (hx-boost on <body>) in a real Chromium with JavaScript on: a
link or form swaps the page in place (the same document stays loaded), the title is
the new page's, focus lands on the new page's h1 or on the error summary after a failed
form, the back button returns, error pages are shown, downloads and per-field checks
still work. axe-core checks each state. The same flows with JavaScript off are proven
in the accounts, billing and payments browser tests."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from helpers import DESKTOP, PHONE, assert_accessible, wait_for_htmx
from sample_data import (
    GOOD_PASSWORD,
    add_resident,
    bills_csv,
    load,
    load_billing,
    usage_csv,
)

pytestmark = pytest.mark.browser

SITE = " – Ontario Municipal Utilities Company"


@pytest.fixture
def live_settings(settings):
    """Maria, verified, with bills and two years of usage, before the server starts."""
    path = settings.database
    load_billing(path)
    load(path, "bills", bills_csv("0012345", "0067890", newest_due_in=15))
    load(path, "usage", usage_csv("0012345", "0067890", [10.0] * 24))
    add_resident(path, "maria1", "0067890", "maria@example.com")
    return settings


def mark_document(page: Page) -> None:
    """A flag on the window: it survives a swap and is gone after a full page load."""
    page.evaluate("() => { window.portalSameDocument = true; }")


def same_document(page: Page) -> bool:
    return page.evaluate("() => window.portalSameDocument === true")


def expect_page(page: Page, title: str, h1: str | None = None) -> None:
    """The new page is in: its title, and focus on its h1."""
    expect(page).to_have_title(title + SITE)
    heading = page.get_by_role("heading", level=1, name=h1 or title)
    expect(heading).to_be_focused()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["320px", "desktop"])
def test_boosted_links_and_forms_swap_in_place_with_title_focus_and_history(
    live_server, new_page, viewport
):
    page = new_page(viewport, js=True)
    # The front page is plain links and a plain form (a first visit does not download
    # htmx, see test_the_front_page_does_not_load_htmx); the login page is boosted.
    page.goto(live_server.url + "/login")
    mark_document(page)

    # A link: the page changes without a reload; title, focus and address follow.
    page.get_by_role("contentinfo").get_by_role("link", name="Contact Us").click()
    expect_page(page, "Contact Us")
    expect(page).to_have_url(live_server.url + "/contact")
    assert same_document(page)
    assert_accessible(page, "Contact Us after a boosted link")

    # Back returns to the login page.
    page.go_back()
    expect(page).to_have_url(live_server.url + "/login")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Login to My Account")

    # A failed form: swapped in with "Error:" in the title and focus on the summary.
    mark_document(page)
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill("not the password at all")
    page.get_by_role("button", name="Login", exact=True).click()
    expect(page).to_have_title("Error: Login to My Account" + SITE)
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Username or password is incorrect")
    # The address stays where the form was (the POST's address would not reload).
    expect(page).to_have_url(live_server.url + "/login")
    assert same_document(page)
    assert_accessible(page, "failed login, swapped in")

    # Signing in: the redirect's page is swapped in, header included, at its own address.
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Login", exact=True).click()
    expect_page(page, "My Account")
    expect(page).to_have_url(live_server.url + "/account")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert same_document(page)
    assert_accessible(page, "My Account after a boosted sign-in")

    # Usage: the chart takes its look from site.css, the table shows gallons a day.
    page.get_by_role("link", name=re.compile("^View usage")).first.click()
    expect_page(page, "Water usage – 123 Euclid Ave", "Water usage")
    bar = page.locator(".usage-chart-svg .bar").first
    expect(bar).to_have_css("fill", "rgb(0, 94, 162)")
    table = page.get_by_role("table", name="Water use by month, in HCF")
    expect(table.get_by_role("columnheader", name="Gallons per day")).to_be_visible()
    assert same_document(page)
    assert_accessible(page, "usage after a boosted link")

    # The CSV link is not boosted: it still downloads.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download usage history (CSV)").click()
    assert download.value.suggested_filename == "usage-0067890.csv"

    page.go_back()
    expect(page).to_have_url(live_server.url + "/account")
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()


def test_a_boosted_link_to_a_missing_page_shows_the_error_page(live_server, new_page):
    page = new_page(DESKTOP, js=True)
    page.goto(live_server.url + "/contact")
    mark_document(page)
    # A link as an out-of-date bookmark or email would give, processed by htmx like
    # every link in the page.
    page.evaluate(
        """() => {
          const a = document.createElement('a');
          a.href = '/no-such-page'; a.textContent = 'Old link';
          document.querySelector('#main h1').after(a);
          htmx.process(a);
        }"""
    )
    page.get_by_role("link", name="Old link").click()
    expect_page(page, "Page not found")
    expect(page).to_have_url(live_server.url + "/no-such-page")
    assert same_document(page)
    assert_accessible(page, "404 after a boosted link")


def test_registration_reached_by_a_boosted_link_keeps_its_per_field_checks(live_server, new_page):
    page = new_page(PHONE, js=True)
    page.goto(live_server.url + "/login")
    mark_document(page)
    page.get_by_role("main").get_by_role("link", name="New User Registration").click()
    expect_page(page, "New User Registration")
    assert same_document(page)

    username = page.get_by_label(re.compile("^Username"))
    username.fill("a")
    username.press("Tab")
    wait_for_htmx(page)
    expect(page.locator("#username-error .field__error")).to_be_visible()
    expect(username).to_have_attribute("aria-invalid", "true")
    # Only the field's message came back: the page is still whole, no reload.
    expect(page.get_by_role("heading", level=1, name="New User Registration")).to_have_count(1)
    assert same_document(page)
    assert_accessible(page, "registration with a per-field message, after a boosted link")


def test_the_front_page_does_not_load_htmx(live_server, new_page):
    """A first visit pays only for what it uses: the front page's links and sign-in
    form are plain, so htmx is not downloaded there, and they still work."""
    page = new_page(PHONE, js=True)
    scripts = []
    page.on("request", lambda request: scripts.append(request.url))
    page.goto(live_server.url + "/")
    page.wait_for_load_state("load")
    assert not any("htmx" in url for url in scripts)
    assert page.evaluate("() => typeof window.htmx") == "undefined"
    page.get_by_role("region", name="Quick Links").get_by_role("link", name="Contact Us").click()
    expect(page).to_have_url(live_server.url + "/contact")
    expect(page.get_by_role("heading", level=1, name="Contact Us")).to_be_visible()
    page.wait_for_function("() => window.htmx !== undefined")  # later pages have it
