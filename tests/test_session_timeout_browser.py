"""The warning before an idle sign-out (WCAG 2.2.1, Timing Adjustable) in a real
Chromium with JavaScript on. The browser's clock is Playwright's, moved forward by the
test; the server's clock is real, so the test moves the session's last visit back in
the SQLite file by as much. Found as a resident and a screen reader find it: an alert
dialog by its name, buttons by theirs. axe-core checks the open warning."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from portal import db as portal_db

from helpers import DESKTOP, PHONE, assert_accessible
from resident_steps import query
from sample_data import GOOD_PASSWORD, add_resident, bills_csv, load, load_billing

pytestmark = pytest.mark.browser

WARNING = "You will be signed out soon"


@pytest.fixture
def live_settings(settings):
    path = settings.database
    load_billing(path)
    load(path, "bills", bills_csv("0012345", "0067890", newest_due_in=15))
    add_resident(path, "maria1", "0067890", "maria@example.com")
    return settings


def last_visit(settings, minutes_ago: float | None = None) -> datetime:
    """The session's last noted visit; with minutes_ago, first set it that far back."""
    if minutes_ago is not None:
        when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        conn = portal_db.connect_sync(settings.database)
        conn.execute("UPDATE sessions SET last_seen_at = ?", (portal_db.utc_text(when),))
        conn.close()
    [row] = query(settings.database, "SELECT last_seen_at FROM sessions")
    return datetime.fromisoformat(row["last_seen_at"])


def counting(page: Page) -> None:
    """Wait until the page's warning script runs (it is loaded after the page), so the
    clock moves after its first question is set."""
    page.wait_for_selector("[data-session-timeout][data-ready]", state="attached")


def sign_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Login", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="My Account", exact=True)).to_be_visible()


def test_warning_before_idle_sign_out_stays_signed_in_or_signs_out(live_server, new_page):
    settings = live_server.settings
    page = new_page(PHONE, js=True)
    page.clock.install()
    sign_in(page, live_server.url)  # a boosted sign-in: the warning's script comes later
    counting(page)
    warning = page.get_by_role("alertdialog", name=WARNING)
    expect(warning).to_be_hidden()

    # 28 idle minutes: the page's first question (after 27) hears 2 minutes are left.
    last_visit(settings, minutes_ago=28)
    page.clock.fast_forward("27:01")
    expect(warning).to_be_visible()
    expect(warning).to_be_focused()
    expect(warning).to_contain_text("we sign you out after 30 minutes without activity")
    expect(warning.get_by_role("timer")).to_have_text(re.compile(r"^(2:00|1:5\d)$"))
    assert_accessible(page, "idle warning open")
    # Tab stays inside the dialog: Stay signed in, Sign out, and round again.
    page.keyboard.press("Tab")
    expect(warning.get_by_role("button", name="Stay signed in")).to_be_focused()
    page.keyboard.press("Tab")
    expect(warning.get_by_role("button", name="Sign out")).to_be_focused()
    page.keyboard.press("Tab")
    expect(warning.get_by_role("button", name="Stay signed in")).to_be_focused()

    # Stay signed in: the server notes a visit, the warning closes, the page stays.
    warning.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_be_hidden()
    assert datetime.now(UTC) - last_visit(settings) < timedelta(seconds=10)
    expect(page.get_by_role("heading", level=1, name="My Account", exact=True)).to_be_visible()

    # The next warning comes 28 minutes later; Escape also stays signed in.
    last_visit(settings, minutes_ago=28)
    page.clock.fast_forward("28:01")
    expect(warning).to_be_visible()
    page.keyboard.press("Escape")
    expect(warning).to_be_hidden()
    assert datetime.now(UTC) - last_visit(settings) < timedelta(seconds=10)

    # Nobody answers: at the end the page goes to the login page, which says why and
    # comes back to My Account after logging in.
    last_visit(settings, minutes_ago=28)
    page.clock.fast_forward("28:01")
    expect(warning).to_be_visible()
    last_visit(settings, minutes_ago=31)
    page.clock.fast_forward("02:01")
    expect(
        page.get_by_role("heading", level=1, name="Login to My Account", exact=True)
    ).to_be_visible()
    expect(page.get_by_text("You were signed out")).to_be_visible()
    query_string = parse_qs(urlsplit(page.url).query)
    assert query_string == {"notice": ["timed-out"], "next": ["/account"]}
    assert_accessible(page, "login page after an idle sign-out")
    page.get_by_label("Username", exact=True).fill("maria1")
    page.get_by_label("Password", exact=True).fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Login", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="My Account", exact=True)).to_be_visible()


def test_activity_elsewhere_puts_the_warning_off(live_server, new_page):
    """The page asks the server before it warns: a visit noted meanwhile (another tab,
    another request) moves the warning later instead of showing it. Its Sign out signs
    out."""
    settings = live_server.settings
    page = new_page(PHONE, js=True)
    page.clock.install()
    sign_in(page, live_server.url)
    page.goto(live_server.url + "/account")  # a whole page load, the script from the start
    counting(page)
    warning = page.get_by_role("alertdialog", name=WARNING)
    last_visit(settings, minutes_ago=10)  # another tab was used 10 minutes ago
    with page.expect_response(lambda r: r.url.endswith("/session")) as asked:
        page.clock.fast_forward("27:01")
    assert asked.value.json()["left"] > 19 * 60
    page.wait_for_timeout(300)  # the answer's handler sets the next question
    expect(warning).to_be_hidden()
    last_visit(settings, minutes_ago=28)
    page.clock.fast_forward("18:01")  # asked again 2 minutes before the end it heard of
    expect(warning).to_be_visible()
    # Sign out, from the warning: the session ends on the server.
    warning.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out")).to_be_visible()
    assert not query(settings.database, "SELECT * FROM sessions")


def test_staff_console_warns_before_its_15_minute_idle_sign_out(live_server, new_page):
    """The console's representatives, on the phone with a resident, get the same
    warning before their 15 idle minutes run out, and can stay signed in."""
    from test_staff_browser import sign_in_as_staff

    settings = live_server.settings
    page = new_page(DESKTOP, js=True)
    page.clock.install()
    sign_in_as_staff(page, live_server.url, settings)
    counting(page)
    warning = page.get_by_role("alertdialog", name=WARNING)
    conn = portal_db.connect_sync(settings.database)
    when = portal_db.utc_text(datetime.now(UTC) - timedelta(minutes=13))
    conn.execute("UPDATE staff_sessions SET last_seen_at = ?", (when,))
    conn.close()
    page.clock.fast_forward("12:31")  # 15 minutes less the 30-second touch and 2 minutes
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("we sign you out after 15 minutes without activity")
    assert_accessible(page, "staff idle warning open")
    warning.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_be_hidden()
    [row] = query(settings.database, "SELECT last_seen_at FROM staff_sessions")
    assert datetime.now(UTC) - datetime.fromisoformat(row["last_seen_at"]) < timedelta(seconds=10)
    expect(page.get_by_role("heading", level=1, name="Find a customer")).to_be_visible()
