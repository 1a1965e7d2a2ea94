"""My Account in a real Chromium, found the way a resident and a screen reader find
things (role, accessible name, label, visible text): the dashboard, bill history, one
bill and its PDF, usage with the chart, table, leak notice and CSV, linking and
unlinking a second account, and another resident's account answering "Page not found".
At 320 px and at desktop width, with JavaScript on and off; axe-core on every state.

The billing data and the residents go into the database before the live server starts;
residents are written straight into the tables (one test registers through the real
form instead) and every test signs in through the real login page.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date, format_datetime
from playwright.sync_api import expect

from portal.db import utcnow
from portal.settings import Settings

from helpers import DESKTOP, PHONE, assert_accessible, wait_for_htmx
from resident_steps import query
from sample_data import (
    GOOD_PASSWORD,
    TODAY,
    add_resident,
    bills_csv,
    load,
    load_billing,
    month,
    usage_csv,
)

pytestmark = pytest.mark.browser

SUPPORT_PHONE = "(909) 395-2050"
MARIA_ADDRESS, JAMES_ADDRESS, ANA_ADDRESS = "123 Euclid Ave", "456 Holt Blvd", "12 Vineyard Ave"

VARIANTS = pytest.mark.parametrize(
    ("js", "viewport"),
    [(True, PHONE), (False, PHONE), (True, DESKTOP), (False, DESKTOP)],
    ids=["js-320px", "nojs-320px", "js-desktop", "nojs-desktop"],
)
JS_ON_AND_OFF = pytest.mark.parametrize(
    ("js", "viewport"),
    [(True, PHONE), (False, DESKTOP)],
    ids=["js-320px", "nojs-desktop"],
)


# --- data ------------------------------------------------------------------------


# Maria's three bills, oldest first: (amount due, previous balance, payments, charges).
MARIA_BILLS = [("62.00", "55.00", "55.00", "62.00"), ("70.00", "62.00", "62.00", "70.00")]
MARIA_BILLS.append(("84.10", "70.00", "60.00", "74.10"))  # 70.00 - 60.00 + 74.10


def execute(path, sql: str, params=()) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    """Before the live server starts: the four service accounts, bills for Maria and
    James, 24 months of Maria's usage ending in a month three times her usual, and two
    verified residents (Maria: 0012345/0067890, James: 0022222/0033333). Ana's account
    (0066666/0077777) has no online account yet."""
    path = settings.database
    load_billing(path)
    load(path, "bills", bills_csv("0012345", "0067890", MARIA_BILLS, newest_due_in=15))
    load(
        path,
        "bills",
        bills_csv("0022222", "0033333", [("55.00", "0", "0", "55.00")], newest_due_in=15),
    )
    load(path, "usage", usage_csv("0012345", "0067890", [10.0] * 23 + [31.0]))
    add_resident(path, "maria1", "0067890", "maria@example.com")
    add_resident(path, "james2", "0033333", "james@example.com")
    return settings


def account_id(settings: Settings, account_number: str) -> int:
    return query(
        settings.database,
        "SELECT id FROM service_accounts WHERE account_number = ?",
        (account_number,),
    )[0]["id"]


# --- finding things as a resident does ---------------------------------------------


def path_of(page) -> str:
    return urlsplit(page.url).path


def field(scope, label: str):
    """The input labelled `label` (the label may end with "(required)")."""
    return scope.get_by_label(re.compile(rf"^{re.escape(label)}( \(required\))?$"))


def sign_in(page, server, username: str = "maria1") -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Login", exact=True).click()
    page.wait_for_url(server.url + "/account")
    expect(page.get_by_role("heading", level=1, name="My Account")).to_be_visible()


def account_card(page, address: str):
    """One account on the dashboard: a region named by its service-address heading."""
    return page.get_by_role("region", name=address, exact=True)


def facts(scope) -> dict[str, str]:
    """A description list as a screen reader reads it: term -> definition."""
    terms = scope.get_by_role("term").all_inner_texts()
    definitions = scope.get_by_role("definition").all_inner_texts()
    assert len(terms) == len(definitions), (terms, definitions)
    return {t.strip(): " ".join(d.split()) for t, d in zip(terms, definitions, strict=True)}


def row_texts(table) -> list[list[str]]:
    """Each row of a table below its column headers, as its cells' texts (the row
    header first)."""
    rows = []
    for row in table.get_by_role("row").all():
        if row.get_by_role("columnheader").count():
            continue
        rows.append([" ".join(t.split()) for t in row.get_by_role("rowheader").all_inner_texts()])
        rows[-1] += [" ".join(t.split()) for t in row.get_by_role("cell").all_inner_texts()]
    return rows


def assert_no_horizontal_scroll(page) -> None:
    width = page.portal_viewport["width"]
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url} scrolls sideways at {width}px ({scroll}px wide)"


def long(day: date | str) -> str:
    return format_date(date.fromisoformat(str(day)), format="long", locale="en_US")


# --- the dashboard -----------------------------------------------------------------


@VARIANTS
def test_dashboard_says_what_is_due_by_when_and_past_due_in_words(
    live_server, live_settings, new_page, js, viewport
):
    execute(
        live_settings.database,
        "UPDATE bills SET due_date = ? WHERE bill_number = ?",
        ((TODAY - timedelta(days=3)).isoformat(), f"B0067890-{month(0):%Y%m}"),
    )
    page = new_page(viewport, js=js)
    sign_in(page, live_server)

    expect(page).to_have_title(re.compile(r"^My Account – "))
    card = account_card(page, MARIA_ADDRESS)
    expect(card.get_by_role("heading", level=2, name=MARIA_ADDRESS)).to_be_visible()
    expect(card.get_by_text("Customer Number 0012345 · Account Number 0067890")).to_be_visible()
    shown = facts(card)
    assert shown["Amount due"] == "$84.10"
    assert shown["Due date"] == f"{long(TODAY - timedelta(days=3))} ⚠ Past due"
    expect(card.get_by_text(re.compile(r"^\W*Past due$"))).to_be_visible()
    assert shown["Bill delivery"] == "Paperless (change)"

    imported_at = query(
        live_settings.database,
        "SELECT imported_at FROM bills WHERE bill_number = ?",
        (f"B0067890-{month(0):%Y%m}",),
    )[0]["imported_at"]
    as_of = format_datetime(
        datetime.fromisoformat(imported_at.replace("Z", "+00:00")),
        format="medium",
        tzinfo=ZoneInfo(live_settings.timezone),
        locale="en_US",
    )
    expect(card.get_by_text(f"Amount due as of {as_of}.", exact=True)).to_be_visible()

    for name, href in [
        ("View bills", f"/accounts/{account_id(live_settings, '0067890')}/bills"),
        ("View usage", f"/accounts/{account_id(live_settings, '0067890')}/usage"),
        ("Pay Now", f"/pay?account={account_id(live_settings, '0067890')}"),
    ]:
        # The visible words, then the address for a screen reader listing links.
        link = page.get_by_role("link", name=f"{name} – {MARIA_ADDRESS}", exact=True)
        expect(link).to_be_visible()
        expect(link).to_have_attribute("href", href)
    expect(page.get_by_role("link", name="Add another account")).to_be_visible()
    # Another resident's account is not on Maria's dashboard.
    expect(page.get_by_text(JAMES_ADDRESS)).to_have_count(0)
    expect(page.get_by_text("$55.00")).to_have_count(0)
    # One account only: nothing to remove it from.
    expect(page.get_by_role("button", name=re.compile("Remove from my login"))).to_have_count(0)

    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"dashboard at {viewport['width']}px")

    page.get_by_role("link", name=f"View bills – {MARIA_ADDRESS}").click()
    expect(page.get_by_role("heading", level=1, name="Bills")).to_be_visible()


def test_new_resident_registers_then_sees_an_account_without_bills(
    live_server, live_settings, new_page
):
    """Ana registers through the real form, confirms (straight in the database here:
    the accounts tests follow the email link), signs in, and sees her account."""
    page = new_page(PHONE, js=True)
    page.goto(live_server.url + "/register")
    for label, value in {
        "Username": "ana3",
        "Password": GOOD_PASSWORD,
        "Confirm Password": GOOD_PASSWORD,
        "Customer Number": "66666",
        "Account Number": "77777",
        "Email Address": "ana@example.com",
        "Confirm Email Address": "ana@example.com",
    }.items():
        field(page, label).fill(value)
    page.get_by_role("checkbox", name="Receive Printed Bills").check()
    page.get_by_role("button", name="Register", exact=True).click()
    wait_for_htmx(page)
    expect(page.get_by_role("heading", name="Registration received")).to_be_visible()
    execute(
        live_settings.database,
        "UPDATE users SET verified_at = ? WHERE username = 'ana3'",
        (utcnow(),),
    )

    sign_in(page, live_server, "ana3")
    card = account_card(page, ANA_ADDRESS)
    expect(card.get_by_role("heading", level=2, name=ANA_ADDRESS)).to_be_visible()
    expect(card.get_by_text("No bill has been issued for this account yet.")).to_be_visible()
    expect(page.get_by_text("Amount due as of")).to_have_count(0)
    expect(page.get_by_text(MARIA_ADDRESS)).to_have_count(0)
    expect(card.get_by_role("link", name="View usage")).to_be_visible()
    assert_no_horizontal_scroll(page)
    assert_accessible(page, "dashboard of an account without bills at 320px")


# --- bills -------------------------------------------------------------------------


@JS_ON_AND_OFF
def test_bill_history_newest_first_and_one_bill(live_server, live_settings, new_page, js, viewport):
    page = new_page(viewport, js=js)
    sign_in(page, live_server)
    page.get_by_role("link", name=f"View bills – {MARIA_ADDRESS}").click()

    expect(page).to_have_title(re.compile(rf"^Bills – {MARIA_ADDRESS} – "))
    expect(page.get_by_role("heading", level=1, name="Bills")).to_be_visible()
    table = page.get_by_role("table", name="Bill history, newest first")
    headers = [" ".join(t.split()) for t in table.get_by_role("columnheader").all_inner_texts()]
    assert headers == ["Bill date", "Period", "Amount", "Due date"]
    rows = row_texts(table)
    bill_dates = [month(0), month(-1), month(-2)]
    assert [row[0] for row in rows] == [long(day) for day in bill_dates]
    parsed = [datetime.strptime(row[0], "%B %d, %Y").date() for row in rows]
    assert parsed == sorted(parsed, reverse=True)
    assert [row[2] for row in rows] == ["$84.10", "$70.00", "$62.00"]
    assert rows[0][1] == f"{long(month(-1))} – {long(month(0))}"
    assert rows[0][3] == long(TODAY + timedelta(days=15))
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"bill history at {viewport['width']}px")

    table.get_by_role("link", name=long(month(0)), exact=True).click()
    title = f"Bill of {long(month(0))}"
    expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()
    expect(page).to_have_title(re.compile(rf"^{title} – "))
    details = dict(
        (row[0], row[1]) for row in row_texts(page.get_by_role("table", name="Bill details"))
    )
    assert details["Previous balance"] == "$70.00"
    assert details["Payments"] == "$60.00"
    assert details["Current charges"] == "$74.10"
    assert details["Amount due"] == "$84.10"
    assert details["Due date"] == long(TODAY + timedelta(days=15))
    assert details["Bill number"] == f"B0067890-{month(0):%Y%m}"
    expect(page.get_by_role("link", name="Download PDF")).to_be_visible()
    expect(page.get_by_role("link", name="Pay Now")).to_be_visible()
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"one bill at {viewport['width']}px")

    page.get_by_role("link", name="All bills").click()
    expect(page.get_by_role("table", name="Bill history, newest first")).to_be_visible()


def test_bill_pdf_download_has_the_amount_and_account_number(live_server, live_settings, new_page):
    from pypdf import PdfReader

    page = new_page(DESKTOP, js=True)
    sign_in(page, live_server)
    page.get_by_role("link", name=f"View bills – {MARIA_ADDRESS}").click()
    page.get_by_role("link", name=long(month(0)), exact=True).click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download PDF").click()
    download = download_info.value
    assert download.failure() is None
    assert download.suggested_filename == f"bill-B0067890-{month(0):%Y%m}.pdf"
    content = Path(download.path()).read_bytes()
    assert content.startswith(b"%PDF")
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages)
    assert "$84.10" in text and "0067890" in text and "0012345" in text
    assert MARIA_ADDRESS in text and long(TODAY + timedelta(days=15)) in text
    # The page itself is still there after the download.
    expect(page.get_by_role("heading", level=1, name=f"Bill of {long(month(0))}")).to_be_visible()


# --- usage -------------------------------------------------------------------------


@JS_ON_AND_OFF
def test_usage_chart_table_leak_notice_and_csv(live_server, live_settings, new_page, js, viewport):
    page = new_page(viewport, js=js)
    sign_in(page, live_server)
    page.get_by_role("link", name=f"View usage – {MARIA_ADDRESS}").click()
    expect(page.get_by_role("heading", level=1, name="Water usage")).to_be_visible()

    chart = page.get_by_role("img", name=re.compile("^Water use by month"))
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]

    table = page.get_by_role("table", name="Water use by month, in HCF")
    expect(table).to_be_visible()
    headers = [" ".join(t.split()) for t in table.get_by_role("columnheader").all_inner_texts()]
    assert headers == ["Month", "Used", "Same month last year", "Change", "Gallons per day"]
    expect(table.get_by_role("row")).to_have_count(25)
    rows = row_texts(table)
    latest = format_date(month(0), format="MMM yyyy", locale="en_US")
    per_day = round(31 * 748 / (month(0) - month(-1)).days)  # 1 HCF = 748 gallons
    assert rows[0] == [latest, "31", "10", "+210%", str(per_day)]
    assert rows[-1][2] == "–"  # nothing from two years back
    assert rows[-1][4] == "–"  # no read before the first one

    notice = page.get_by_role("status").filter(
        has=page.get_by_role("heading", name="Your latest water use is much higher than usual")
    )
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(f"In {latest} you used 31 HCF")
    expect(notice).to_contain_text(SUPPORT_PHONE)

    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"usage with a leak notice at {viewport['width']}px")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download usage history (CSV)").click()
    download = download_info.value
    assert download.suggested_filename == "usage-0067890.csv"
    lines = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert lines[0] == [
        "account_number",
        "read_date",
        "consumption",
        "unit",
        "same_month_last_year",
    ]
    assert len(lines) == 25
    assert lines[-1] == ["0067890", month(0).isoformat(), "31.0", "HCF", "10.0"]
    assert [line[1] for line in lines[1:]] == [month(n).isoformat() for n in range(-23, 1)]

    # A usual month: the notice is gone, the table stays.
    load(live_settings.database, "usage", usage_csv("0012345", "0067890", [10.0] * 24))
    page.reload()
    expect(table.get_by_role("row")).to_have_count(25)
    expect(page.get_by_role("heading", name=re.compile("much higher than usual"))).to_have_count(0)


# --- linking and unlinking ---------------------------------------------------------


@JS_ON_AND_OFF
def test_link_a_second_account_then_remove_it(live_server, live_settings, new_page, js, viewport):
    page = new_page(viewport, js=js)
    sign_in(page, live_server)
    page.get_by_role("link", name="Add another account").click()
    expect(page.get_by_role("heading", level=1, name="Add another account")).to_be_visible()
    customer, account = field(page, "Customer Number"), field(page, "Account Number")
    expect(customer).to_be_visible()
    expect(account).to_be_visible()
    assert_accessible(page, f"link form at {viewport['width']}px")

    # A wrong account number: the summary, the message at the field, the answers kept.
    customer.fill("66666")
    account.fill("1")
    page.get_by_role("button", name="Add account").click()
    summary = page.get_by_role("alert").filter(
        has=page.get_by_role("heading", name="There is a problem")
    )
    expect(summary).to_be_visible()
    # Focus moved to the summary, so it is read first (autofocus: with JavaScript or not).
    page.wait_for_function(
        "() => (document.activeElement.innerText || '').startsWith('There is a problem')"
    )
    message = "We could not find an account with this customer number and account number."
    expect(summary.get_by_role("link", name=re.compile(re.escape(message)))).to_have_attribute(
        "href", "#account_number"
    )
    expect(page).to_have_title(re.compile("^Error: Add another account"))
    expect(account).to_have_attribute("aria-invalid", "true")
    expect(account).to_have_accessible_description(re.compile(re.escape(f"Error: {message}")))
    expect(customer).to_have_value("66666")
    expect(customer).not_to_have_attribute("aria-invalid", "true")
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"link form with an error at {viewport['width']}px")

    # The right numbers, typed the way the bill prints them.
    customer.fill("0066666")
    account.fill("77-777")
    page.get_by_role("button", name="Add account").click()
    page.wait_for_url(re.compile(r"/account\?notice=linked$"))
    expect(
        page.get_by_role("status").filter(has_text="The account was added to your login.")
    ).to_be_visible()
    expect(account_card(page, MARIA_ADDRESS)).to_be_visible()
    expect(account_card(page, ANA_ADDRESS)).to_be_visible()
    expect(page.get_by_role("heading", level=2, name=ANA_ADDRESS)).to_be_visible()
    # Ana's account has no bill; neither account is past due.
    expect(account_card(page, ANA_ADDRESS)).to_contain_text("No bill has been issued")
    expect(page.get_by_text("Past due")).to_have_count(0)
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"dashboard with two accounts at {viewport['width']}px")

    # The new account's pages open for Maria now.
    page.get_by_role("link", name=f"View usage – {ANA_ADDRESS}").click()
    expect(page.get_by_role("heading", level=1, name="Water usage")).to_be_visible()
    expect(page.get_by_text("No usage data yet.")).to_be_visible()
    page.get_by_role("link", name="My Account").first.click()

    # Each account says which one its button removes.
    remove_ana = page.get_by_role("button", name=f"Remove from my login – {ANA_ADDRESS}")
    expect(remove_ana).to_be_visible()
    expect(
        page.get_by_role("button", name=f"Remove from my login – {MARIA_ADDRESS}")
    ).to_be_visible()
    remove_ana.click()
    page.wait_for_url(re.compile(r"/account\?notice=unlinked$"))
    expect(
        page.get_by_role("status").filter(has_text="The account was removed from your login.")
    ).to_be_visible()
    expect(page.get_by_role("heading", name=ANA_ADDRESS)).to_have_count(0)
    expect(account_card(page, MARIA_ADDRESS)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Remove from my login"))).to_have_count(0)
    assert_accessible(page, f"dashboard after removing an account at {viewport['width']}px")

    # And its pages are closed to Maria again.
    response = page.goto(f"{live_server.url}/accounts/{account_id(live_settings, '0077777')}/bills")
    assert response.status == 404


# --- somebody else's account -------------------------------------------------------


@JS_ON_AND_OFF
def test_another_residents_bills_are_page_not_found(
    live_server, live_settings, new_page, js, viewport
):
    page = new_page(viewport, js=js)
    sign_in(page, live_server)
    james = account_id(live_settings, "0033333")
    response = page.goto(f"{live_server.url}/accounts/{james}/bills")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1, name="Page not found")).to_be_visible()
    expect(page).to_have_title(re.compile("^Page not found – "))
    expect(page.get_by_role("link", name="Go to the home page")).to_be_visible()
    expect(page.get_by_text(JAMES_ADDRESS)).to_have_count(0)
    expect(page.get_by_text("$55.00")).to_have_count(0)
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"404 for another resident's bills at {viewport['width']}px")
    # Maria is still signed in and her own bills still open.
    response = page.goto(f"{live_server.url}/accounts/{account_id(live_settings, '0067890')}/bills")
    assert response.status == 200
    denied = query(
        live_settings.database, "SELECT username FROM audit_log WHERE event = 'account_denied'"
    )
    assert [row["username"] for row in denied] == ["maria1"]
