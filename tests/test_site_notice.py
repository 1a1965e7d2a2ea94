"""The service notice (a boil-water notice, an office closure): set and cleared by the
operator with `portal notice`, shown under the header of every page in the page's
language within PORTAL_NOTICE_REFRESH_SECONDS, signed-out pages kept by shared_pages.py
included; plain text, audited. Through the real CLI and the real app on a real SQLite
file; the last test reads it in Chromium with axe-core."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient
from playwright.sync_api import expect

from portal import db as portal_db
from portal.app import create_app
from portal.cli import main as portal_main
from portal.pages.notice import set_notice

from helpers import DESKTOP, PHONE, assert_accessible
from resident_steps import post_form, query
from sample_data import GOOD_PASSWORD, add_resident, load_billing

ENGLISH = "Boil water notice north of 4th Street: boil tap water for one minute before use."
SPANISH = (
    "Aviso de hervir el agua al norte de la calle 4: hierva el agua un minuto antes de usarla."
)


@pytest.fixture
def quick(settings, monkeypatch):
    """Settings that read the notice every second, and the CLI pointed at the same file."""
    load_billing(settings.database)
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    monkeypatch.setenv("PORTAL_NOTICE_REFRESH_SECONDS", "1")
    return replace(settings, notice_refresh_seconds=1)


async def shows(client, path: str, text: str, present: bool = True, **kwargs) -> str:
    """The page once it shows (or no longer shows) `text`: within two refreshes."""
    deadline = time.monotonic() + 5
    while True:
        page = (await client.get(path, **kwargs)).text
        if (text in page) == present or time.monotonic() > deadline:
            assert (text in page) == present, page[:2000]
            return page
        await asyncio.sleep(0.2)


async def test_operator_sets_and_clears_the_notice_on_every_page(quick, capsys):
    async with AsyncTestClient(app=create_app(quick), base_url="http://portal.test") as visitor:
        landing = (await visitor.get("/")).text  # a signed-out page, now kept for everyone
        assert "Service notice" not in landing

        assert portal_main(["notice", "set", "--en", ENGLISH, "--es", SPANISH]) == 0
        assert "Notice set; pages show it within 1 s." in capsys.readouterr().out
        page = await shows(visitor, "/", ENGLISH)
        assert 'role="region" aria-labelledby="site-notice-title"' in page
        assert '<strong id="site-notice-title">Service notice</strong>' in page
        assert SPANISH not in page
        spanish = await shows(visitor, "/pay", SPANISH, headers={"Cookie": "portal_lang=es"})
        assert "Aviso de servicio" in spanish and ENGLISH not in spanish

        # Signed in, on My Account, too.
        add_resident(quick.database, "maria1", "0067890", "maria@example.com")
        resident = AsyncTestClient(app=visitor.app, base_url="http://portal.test")
        resident.blocking_portal = visitor.blocking_portal
        signed = await post_form(
            resident, "/login", {"username": "maria1", "password": GOOD_PASSWORD}
        )
        assert "My Account" in signed.text and ENGLISH in signed.text

        # Plain text: markup is shown as typed, never run.
        assert portal_main(["notice", "set", "--en", "<b>Call</b> 555", "--es", "x"]) == 0
        page = await shows(visitor, "/", "&lt;b&gt;Call&lt;/b&gt; 555")
        assert "<b>Call</b>" not in page

        assert portal_main(["notice", "show"]) == 0
        assert "en: <b>Call</b> 555\nes: x" in capsys.readouterr().out
        assert portal_main(["notice", "clear"]) == 0
        await shows(visitor, "/", "Service notice", present=False)
        await shows(
            visitor,
            "/pay",
            "Aviso de servicio",
            present=False,
            headers={"Cookie": "portal_lang=es"},
        )
        assert portal_main(["notice", "clear"]) == 0
        assert "There was no notice." in capsys.readouterr().out

    events = [row["event"] for row in query(quick.database, "SELECT event FROM audit_log")]
    assert events.count("site_notice_set") == 2 and events.count("site_notice_cleared") == 1


@pytest.mark.parametrize(
    ("english", "spanish", "problem"),
    [
        ("", SPANISH, "the English text is empty"),
        (ENGLISH, "   ", "the Spanish text is empty"),
        ("x" * 301, SPANISH, "the English text has 301 characters; at most 300"),
        ("Boil water\nnow", SPANISH, "the English text has a line break"),
    ],
)
def test_a_notice_that_cannot_be_shown_is_refused_and_nothing_changes(
    quick, capsys, english, spanish, problem
):
    assert portal_main(["notice", "set", "--en", english, "--es", spanish]) == 2
    assert f"portal: notice not set: {problem}" in capsys.readouterr().err
    portal_db.upgrade(quick.database)
    assert query(quick.database, "SELECT * FROM site_notice") == []


def test_the_notice_and_its_audit_row_are_written_together(quick, capsys):
    """If the audit row cannot be written, no notice is shown: never one without the
    other (the CLI's connection commits each statement unless told otherwise)."""
    portal_db.upgrade(quick.database)
    conn = portal_db.connect_sync(quick.database)
    conn.execute(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'full'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        set_notice(conn, ENGLISH, SPANISH)
    assert query(quick.database, "SELECT * FROM site_notice") == []
    conn.execute("DROP TRIGGER no_audit")
    set_notice(conn, ENGLISH, SPANISH)
    conn.close()
    [row] = query(quick.database, "SELECT * FROM audit_log WHERE event = 'site_notice_set'")
    assert row["client"] == "command line" and ENGLISH in row["detail"]


@pytest.fixture
def live_settings(settings):
    load_billing(settings.database)
    portal_db.upgrade(settings.database)
    conn = portal_db.connect_sync(settings.database)
    set_notice(conn, ENGLISH, SPANISH)
    conn.close()
    return settings


@pytest.mark.browser
@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
def test_the_notice_reads_as_a_labelled_region_under_the_header(live_server, new_page, js):
    page = new_page(PHONE, js=js)
    page.goto(live_server.url + "/")
    notice = page.get_by_role("region", name="Service notice")
    expect(notice).to_contain_text(ENGLISH)
    assert_accessible(page, "landing page with a service notice")
    page.get_by_role("link", name="Español").click()
    expect(page.get_by_role("region", name="Aviso de servicio")).to_contain_text(SPANISH)
    assert_accessible(page, "Spanish landing page with a service notice")


@pytest.mark.browser
def test_a_supervisor_takes_the_notice_down_from_the_console(live_server, new_page):
    """/staff/notice with axe: what is shown, the forms by their labels, a refused form
    and the notice taken down."""
    from test_staff_browser import sign_in_as_staff

    page = new_page(DESKTOP, js=True)
    sign_in_as_staff(page, live_server.url, live_server.settings, "sam", role="supervisor")
    expect(page.get_by_role("region", name="Service notice")).to_contain_text(ENGLISH)
    page.get_by_role("link", name="Service notice").click()
    expect(page.get_by_role("heading", level=1, name="Service notice")).to_be_visible()
    expect(page.get_by_text(SPANISH)).to_be_visible()
    assert_accessible(page, "staff service notice page")
    page.get_by_role("button", name="Take the notice down").click()
    expect(page.get_by_text("Enter the reason for this action")).to_be_visible()
    assert_accessible(page, "staff service notice page, refused")
    page.get_by_label("Reason for taking it down").fill("Water is safe again")
    page.get_by_role("button", name="Take the notice down").click()
    expect(page.get_by_text("The notice was taken down.")).to_be_visible()
    expect(page.get_by_text("No notice is shown.")).to_be_visible()
    expect(page.get_by_role("region", name="Service notice")).to_have_count(0)
