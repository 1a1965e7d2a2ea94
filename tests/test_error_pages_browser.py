"""The friendly error pages a resident can meet, in a real Chromium, found by heading as
a screen reader finds them, and checked with axe-core: after sending a form, the portal
busy (503), too many tries (429), an expired form (403) and a form too large (413); and
a crash (500), on a test-only route that raises. With JavaScript on (a boosted form:
portal.js shows the error page like any page) and off."""

from __future__ import annotations

from dataclasses import replace

import pytest
from playwright.sync_api import expect

from portal import db as portal_db

from conftest import LiveServer
from helpers import PHONE, assert_accessible, boom

pytestmark = pytest.mark.browser

JS = pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])


@pytest.fixture
def live_settings(settings, monkeypatch):
    """The database's busy timeout shortened from 30 s to 0.2 s (as in
    test_import_batches.py), and one look-up of a bill's numbers per network, so that
    each error page can be met in a second."""
    short = ["PRAGMA busy_timeout=200" if "busy_timeout" in p else p for p in portal_db.PRAGMAS]
    monkeypatch.setattr(portal_db, "PRAGMAS", tuple(short))
    return replace(settings, lookups_per_address=1)


def heading(page, name: str):
    return page.get_by_role("heading", level=1, name=name)


def sign_in_attempt(page) -> None:
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password", exact=True).fill("not the right password")
    page.get_by_role("button", name="Login", exact=True).click()


@JS
def test_error_pages_after_a_form_read_well_and_pass_axe(live_server, new_page, js):
    page = new_page(PHONE, js=js)
    mode = "JavaScript on" if js else "JavaScript off"

    # 503: another program holds the database past the busy timeout while the sign-in
    # attempt (which writes) is sent.
    page.goto(live_server.url + "/login")
    holder = portal_db.connect_sync(live_server.settings.database)
    holder.execute("BEGIN IMMEDIATE")
    try:
        sign_in_attempt(page)
        expect(heading(page, "The portal is busy right now")).to_be_visible()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    expect(page.get_by_text("What you sent was not saved")).to_be_visible()
    assert_accessible(page, f"503, the portal busy ({mode})")

    # 403: the form's security token is gone (it expired with the cookie).
    page.goto(live_server.url + "/login")
    page.context.clear_cookies()
    sign_in_attempt(page)
    expect(heading(page, "This form could not be sent")).to_be_visible()
    assert_accessible(page, f"403, an expired form ({mode})")

    # 429: a second look-up of a bill's numbers from this network in ten minutes.
    for _ in range(2):
        page.goto(live_server.url + "/pay")
        page.get_by_label("Customer Number").fill("0000001")
        page.get_by_label("Account Number").fill("0000002")
        page.get_by_role("button", name="Continue", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(heading(page, "Too many tries")).to_be_visible()
    expect(page.get_by_text("Wait 10 minutes, then try again.", exact=False)).to_be_visible()
    assert_accessible(page, f"429, too many tries ({mode})")

    # 413: a form far larger than any real one (over 64 KB), refused before it is read.
    page.goto(live_server.url + "/login")
    page.get_by_label("Username").fill("a" * 70_000)
    page.get_by_label("Password", exact=True).fill("not the right password")
    page.get_by_role("button", name="Login", exact=True).click()
    expect(heading(page, "What you sent is too large")).to_be_visible()
    expect(page.get_by_text("Go back and send less text or a smaller file.")).to_be_visible()
    assert_accessible(page, f"413, a form too large ({mode})")


@JS
def test_the_crash_page_reads_well_and_passes_axe(settings, new_page, js):
    server = LiveServer(settings, extra_routes=(boom,)).start()
    try:
        page = new_page(PHONE, js=js)
        response = page.goto(server.url + "/_test/boom")
        assert response.status == 500
        expect(heading(page, "Sorry, something went wrong on our side")).to_be_visible()
        expect(page.get_by_text("Nothing you did caused this.")).to_be_visible()
        expect(page.get_by_text("secret-detail")).to_have_count(0)
        assert_accessible(page, f"500 ({'JavaScript on' if js else 'JavaScript off'})")
    finally:
        server.stop()
