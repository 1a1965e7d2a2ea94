"""Email notices: opt in from My Profile, the runner sends each once (payment due, past
due, possible leak; no "payment due" for an AutoPay account), delivered over real SMTP
with List-Unsubscribe headers, and the signed link stops that kind without signing in."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from portal.db import Database
from portal.mail import OutboxSender
from test_autopay import add_method, at, bill_csv, enrol, jobs, local, one
from test_billing_http import load, sign_up_and_in, usage_csv

from resident_steps import outbox, query
from sample_data import load_billing


@pytest.fixture
async def maria(settings, client):
    load_billing(settings.database)
    load(settings.database, "bills", bill_csv())  # due 2027-03-21, $84.10
    resident = await sign_up_and_in(client, settings.database, "maria1")
    resident.db = settings.database
    resident.account_id = one(
        settings.database, "SELECT id FROM service_accounts WHERE account_number = '0067890'"
    )
    return resident


async def opt_in(resident, *kinds: str) -> None:
    response = await resident.post("/profile/notices", {kind: "yes" for kind in kinds})
    assert response.status_code == 303
    page = (await resident.get("/profile/notices")).text
    for kind in kinds:
        assert f'id="{kind}" name="{kind}" type="checkbox" value="yes" checked' in page


def notices(path, subject_start: str) -> list[sqlite3.Row]:
    return [m for m in outbox(path) if m["subject"].startswith(subject_start)]


async def test_nothing_is_sent_without_opting_in(maria, settings, db_path):
    await asyncio.to_thread(jobs, settings, at("2027-03-18"))
    await asyncio.to_thread(jobs, settings, at("2027-03-25"))
    assert notices(db_path, "Your payment of") == [] and notices(db_path, "Your bill is past") == []


async def test_payment_due_then_past_due_each_once(maria, settings, db_path):
    await opt_in(maria, "due_soon", "past_due")
    await asyncio.to_thread(jobs, settings, at("2027-03-10"))  # 11 days before: too early
    assert notices(db_path, "Your payment of") == []
    for _ in range(2):
        result = await asyncio.to_thread(jobs, settings, at("2027-03-17"))
    assert "notices 0" in result.stdout  # the second run sent nothing more
    [due] = notices(db_path, "Your payment of $84.10 is due on March 21, 2027")
    assert due["unsubscribe_url"].startswith("http://portal.test/notices/unsubscribe?u=")
    for _ in range(2):
        await asyncio.to_thread(jobs, settings, at("2027-03-22"))
    [past] = notices(db_path, "Your bill is past due")
    assert "$84.10 is still due" in past["body_text"]
    assert past["unsubscribe_url"] != due["unsubscribe_url"]


async def test_no_payment_due_notice_for_an_autopay_account(maria, settings, db_path):
    await opt_in(maria, "due_soon")
    await enrol(maria, await add_method(maria))
    await asyncio.to_thread(jobs, settings, at("2027-03-18"))
    assert notices(db_path, "Your payment of") == []
    assert len(notices(db_path, "AutoPay will charge")) == 1  # AutoPay's own reminder


async def test_possible_leak_notice_once_per_reading(maria, settings, db_path):
    await opt_in(maria, "leak")
    load(db_path, "usage", usage_csv("0012345", "0067890", [10.0] * 23 + [31.0]))
    for _ in range(2):
        await asyncio.to_thread(jobs, settings, at("2027-03-01"))
    [leak] = notices(db_path, "Possible leak at 123 Euclid Ave")
    assert "3.1 times your usual use" in leak["body_text"]


async def test_the_email_has_list_unsubscribe_headers_over_smtp(
    maria, settings, mail_settings, smtp_server, db_path
):
    await opt_in(maria, "due_soon")
    await asyncio.to_thread(jobs, settings, at("2027-03-17"))
    db = Database(db_path)
    await db.open()
    try:
        assert await OutboxSender(mail_settings, db).send_due() >= 1
    finally:
        await db.close()
    [message] = [m for m in smtp_server.messages if m["Subject"].startswith("Your payment of")]
    url = one(db_path, "SELECT unsubscribe_url FROM outbox WHERE unsubscribe_url IS NOT NULL")
    assert message["List-Unsubscribe"] == f"<{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_the_signed_link_stops_that_kind_without_signing_in(maria, client, settings, db_path):
    await opt_in(maria, "due_soon", "past_due")
    await asyncio.to_thread(jobs, settings, at("2027-03-17"))
    url = local(
        one(db_path, "SELECT unsubscribe_url FROM outbox WHERE unsubscribe_url IS NOT NULL")
    )
    client.cookies.clear()
    # A mail scanner's GET changes nothing; it shows one button.
    page = await client.get(url)
    assert page.status_code == 200 and "Stop these emails" in page.text
    assert one(db_path, "SELECT count(*) FROM notice_prefs") == 2
    # A mail program's one-click POST (no cookie, no CSRF token) stops that kind only.
    done = await client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "Email notices stopped" in done.text
    assert [r["kind"] for r in query(db_path, "SELECT kind FROM notice_prefs")] == ["past_due"]
    # A changed link does nothing.
    forged = url.replace("k=due_soon", "k=past_due")
    assert (await client.post(forged, data={})).status_code == 400
    assert one(db_path, "SELECT count(*) FROM notice_prefs") == 1
    events = [r["event"] for r in query(db_path, "SELECT event FROM audit_log")]
    assert "notices_unsubscribed" in events and "notices_changed" in events


@pytest.fixture
def db_path(settings):
    return settings.database
