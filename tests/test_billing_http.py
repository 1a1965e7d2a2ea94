"""My Account over HTTP: dashboard figures, bills, PDF, usage, CSV, linking, and the
rule that a resident sees only accounts linked to their login."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import timedelta

import pytest
from litestar.testing import AsyncTestClient

from portal.app import create_app
from portal.cli import main as portal_main

from resident_steps import outbox, post_form, query, registration
from sample_data import GOOD_PASSWORD, bills_csv, load, load_billing, month, usage_csv


def verify_all(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("UPDATE users SET verified_at = '2026-01-01T00:00:00.000000Z'")
    conn.commit()
    conn.close()


class Resident:
    """One resident's browser: the shared test client with this resident's cookies."""

    def __init__(self, client: AsyncTestClient, cookies: dict) -> None:
        self.client, self.cookies = client, cookies

    def _use(self) -> AsyncTestClient:
        self.client.cookies.clear()
        self.client.cookies.update(self.cookies)
        return self.client

    async def get(self, path: str, **kwargs):
        return await self._use().get(path, **kwargs)

    async def head(self, path: str):
        return await self._use().head(path, follow_redirects=False)

    async def post(self, path: str, data: dict):
        return await post_form(self._use(), path, data, follow_redirects=False)


async def sign_up_and_in(client: AsyncTestClient, db_path, username: str, **overrides) -> Resident:
    client.cookies.clear()
    response = await post_form(client, "/register", registration(username=username, **overrides))
    assert response.status_code == 200, response.text
    verify_all(db_path)
    response = await post_form(
        client, "/login", {"username": username, "password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303
    return Resident(client, dict(client.cookies))


@pytest.fixture
async def two_residents(settings, client):
    """Maria owns 12345/67890 (bills, 24 months of usage with a leak); James owns 22222/33333."""
    load_billing(settings.database)
    load(settings.database, "bills", bills_csv("0012345", "0067890"))
    load(settings.database, "bills", bills_csv("0022222", "0033333", ["55.00"] * 3))
    load(settings.database, "usage", usage_csv("0012345", "0067890", [10.0] * 23 + [31.0]))
    maria = await sign_up_and_in(client, settings.database, "maria1")
    james = await sign_up_and_in(
        client,
        settings.database,
        "james2",
        customer_number="22222",
        account_number="33333",
        email="j@example.com",
        confirm_email="j@example.com",
    )
    ids = {
        row["account_number"]: row["id"]
        for row in query(settings.database, "SELECT id, account_number FROM service_accounts")
    }
    return maria, james, ids


async def test_dashboard_shows_amount_due_date_and_as_of(two_residents, settings):
    maria, _, _ = two_residents
    page = (await maria.get("/account")).text
    assert "123 Euclid Ave" in page and "$84.10" in page
    assert "Amount due as of" in page and "Paperless" in page
    assert "456 Holt Blvd" not in page  # James's account is not shown to Maria
    for words in ["View bills", "View usage", "Pay Now", "Sign out"]:
        assert words in page


async def test_amount_due_subtracts_portal_payments_since_import(two_residents, settings):
    maria, _, ids = two_residents
    conn = sqlite3.connect(settings.database)
    conn.execute(
        "INSERT INTO payments (idempotency_key, account_id, amount_cents, status, gateway, receipt_token, created_at)"
        " VALUES ('k1', ?, 2000, 'succeeded', 'sandbox', 'r1', '2999-01-01T00:00:00.000000Z')",
        (ids["0067890"],),
    )
    conn.execute(
        "INSERT INTO payments (idempotency_key, account_id, amount_cents, status, gateway, receipt_token, created_at)"
        " VALUES ('k2', ?, 5000, 'failed', 'sandbox', 'r2', '2999-01-01T00:00:00.000000Z')",
        (ids["0067890"],),
    )
    conn.commit()
    conn.close()
    page = (await maria.get("/account")).text
    assert "$64.10" in page and "$84.10" not in page
    assert "$20.00" in page  # last payment


async def test_past_due_is_said_in_words(two_residents, settings):
    maria, _, _ = two_residents
    conn = sqlite3.connect(settings.database)
    conn.execute("UPDATE bills SET due_date = '2001-01-01'")
    conn.commit()
    conn.close()
    assert "Past due" in (await maria.get("/account")).text


async def test_bill_history_bill_page_and_pdf(two_residents, settings):
    maria, _, ids = two_residents
    account_id = ids["0067890"]
    history = await maria.get(f"/accounts/{account_id}/bills")
    assert history.status_code == 200
    rows = query(
        settings.database,
        "SELECT id, bill_date FROM bills WHERE account_id = ? ORDER BY bill_date DESC",
        (account_id,),
    )
    positions = [history.text.index(f'/bills/{row["id"]}"') for row in rows]
    assert positions == sorted(positions)  # newest first
    bill_page = await maria.get(f"/accounts/{account_id}/bills/{rows[0]['id']}")
    for words in [
        "Previous balance",
        "$70.00",
        "Current charges",
        "Amount due",
        "$84.10",
        "Download PDF",
    ]:
        assert words in bill_page.text
    pdf = await maria.get(f"/accounts/{account_id}/bills/{rows[0]['id']}/pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "$84.10" in text and "0067890" in text


async def test_usage_chart_table_comparison_leak_notice_and_csv(two_residents, settings):
    maria, _, ids = two_residents
    account_id = ids["0067890"]
    page = (await maria.get(f"/accounts/{account_id}/usage")).text
    assert "<svg" in page and 'role="img"' in page
    assert "Same month last year" in page and "<table" in page
    assert "much higher than usual" in page and "(909) 395-2050" in page
    assert "+210%" in page  # 31 against 10 the same month a year before
    response = await maria.get(f"/accounts/{account_id}/usage.csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert (
        len(rows) == 24
        and rows[-1]["consumption"] == "31.0"
        and rows[-1]["same_month_last_year"] == "10.0"
    )


HCF_ABBR = '<abbr title="hundred cubic feet: 1 HCF = 100 cubic feet = 748 gallons">HCF</abbr>'


async def test_water_amounts_carry_their_unit_and_gallons_per_day(two_residents, settings):
    maria, _, ids = two_residents
    account = ids["0067890"]
    page = (await maria.get(f"/accounts/{account}/usage")).text
    assert "Gallons per day" in page and HCF_ABBR in page
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")
    newest, oldest = rows[0], rows[23]
    days = (month(0) - month(-1)).days
    assert f'<td class="num">{round(31.0 * 748 / days)}</td>' in newest
    assert newest.rstrip().endswith("</td>") and oldest.rstrip().endswith('<td class="num">–</td>')

    bill_id = query(
        settings.database,
        "SELECT id FROM bills WHERE account_id = ? ORDER BY bill_date DESC LIMIT 1",
        (account,),
    )[0]["id"]
    bill = (await maria.get(f"/accounts/{account}/bills/{bill_id}")).text
    assert f"14.5&nbsp;{HCF_ABBR}" in bill


async def test_usual_use_gives_no_leak_notice(settings, two_residents):
    maria, _, ids = two_residents
    load(settings.database, "usage", usage_csv("0012345", "0067890", [10.0] * 24))
    assert (
        "much higher than usual" not in (await maria.get(f"/accounts/{ids['0067890']}/usage")).text
    )


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/{id}/bills",
        "/accounts/{id}/bills/{bill}",
        "/accounts/{id}/bills/{bill}/pdf",
        "/accounts/{id}/usage",
        "/accounts/{id}/usage.csv",
    ],
)
async def test_another_residents_account_is_404_and_recorded(two_residents, settings, path):
    maria, _, ids = two_residents
    james_account = ids["0033333"]
    bill = query(settings.database, "SELECT id FROM bills WHERE account_id = ?", (james_account,))[
        0
    ]["id"]
    response = await maria.get(path.format(id=james_account, bill=bill))
    assert response.status_code == 404
    assert "456 Holt Blvd" not in response.text and "$55.00" not in response.text
    denied = query(
        settings.database, "SELECT username, detail FROM audit_log WHERE event = 'account_denied'"
    )
    assert [row["username"] for row in denied] == ["maria1"]


async def test_head_on_signed_in_pages_is_get_without_the_body(two_residents, settings):
    """A HEAD runs the same checks as a GET: the resident's own pages answer with their
    headers only; another resident's account is the same 404, recorded the same way."""
    maria, _, ids = two_residents
    own, james = ids["0067890"], ids["0033333"]
    for path in ("/account", f"/accounts/{own}/usage", f"/accounts/{own}/usage.csv"):
        got, head = await maria.get(path), await maria.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and got.content, path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert "no-store" in head.headers["cache-control"], path
    assert (await maria.head(f"/accounts/{james}/usage.csv")).status_code == 404
    denied = query(
        settings.database, "SELECT count(*) AS n FROM audit_log WHERE event = 'account_denied'"
    )
    assert denied[0]["n"] == 1
    maria.cookies.clear()
    assert (await maria.head("/account")).status_code == 303  # sign in first, as GET


async def test_own_account_with_another_accounts_bill_is_404(two_residents, settings):
    maria, _, ids = two_residents
    james_bill = query(
        settings.database, "SELECT id FROM bills WHERE account_id = ?", (ids["0033333"],)
    )[0]["id"]
    assert (await maria.get(f"/accounts/{ids['0067890']}/bills/{james_bill}")).status_code == 404
    assert (
        await maria.get(f"/accounts/{ids['0067890']}/bills/{james_bill}/pdf")
    ).status_code == 404


async def test_unlinking_another_residents_account_is_404(two_residents, settings):
    maria, _, ids = two_residents
    response = await maria.post(f"/accounts/{ids['0033333']}/unlink", {})
    assert response.status_code == 404
    assert len(query(settings.database, "SELECT * FROM user_accounts")) == 2


async def test_signed_out_visitor_is_sent_to_login(settings):
    load_billing(settings.database)
    async with AsyncTestClient(app=create_app(settings), base_url="http://portal.test") as client:
        for path in ["/account", "/account/link", "/accounts/1/bills", "/accounts/1/usage.csv"]:
            response = await client.get(path, follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"].startswith("/login")


async def test_link_another_account_same_messages_then_unlink(two_residents, settings):
    maria, _, ids = two_residents
    wrong = await maria.post("/account/link", {"customer_number": "66666", "account_number": "1"})
    assert (
        wrong.status_code == 422
        and "could not find an account" in wrong.text
        and 'value="66666"' in wrong.text
    )
    blank = await maria.post("/account/link", {})
    assert blank.status_code == 422 and "Enter your customer number" in blank.text
    taken = await maria.post(
        "/account/link", {"customer_number": "22222", "account_number": "33333"}
    )
    assert taken.status_code == 422 and "already registered" in taken.text
    closed = await maria.post(
        "/account/link", {"customer_number": "44444", "account_number": "55555"}
    )
    assert closed.status_code == 422 and "closed" in closed.text
    ok = await maria.post(
        "/account/link", {"customer_number": "0066666", "account_number": "77-777"}
    )
    assert ok.status_code == 303
    page = (await maria.get("/account")).text
    assert "12 Vineyard Ave" in page and "123 Euclid Ave" in page
    new_id = ids["0077777"]
    assert (await maria.get(f"/accounts/{new_id}/bills")).status_code == 200
    response = await maria.post(f"/accounts/{new_id}/unlink", {})
    assert response.status_code == 303
    assert "12 Vineyard Ave" not in (await maria.get("/account")).text
    assert (await maria.get(f"/accounts/{new_id}/bills")).status_code == 404


async def test_new_bill_import_emails_paperless_residents_once(
    two_residents, settings, tmp_path, monkeypatch, capsys
):
    # Maria chose paperless; James registered with paperless too, then switches to printed.
    conn = sqlite3.connect(settings.database)
    conn.execute("UPDATE users SET paperless = 0, printed = 1 WHERE username = 'james2'")
    conn.commit()
    conn.close()
    before = len(outbox(settings.database))
    next_month = month(1)
    file = tmp_path / "bills.csv"
    file.write_text(
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        f"0012345,0067890,NEW1,{next_month},{next_month + timedelta(days=20)},91.25\n"
        f"0022222,0033333,NEW2,{next_month},{next_month + timedelta(days=20)},60.00\n"
    )
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    assert portal_main(["import", "bills", str(file)]) == 0
    assert portal_main(["import", "bills", str(file)]) == 0  # same file again: no new email
    mails = outbox(settings.database)[before:]
    assert len(mails) == 1
    assert (
        mails[0]["to_addr"] == "maria@example.com" and "Your bill is ready" in mails[0]["subject"]
    )
    assert "$91.25" in mails[0]["body_text"] and "/accounts/" in mails[0]["body_text"]
