"""What the dashboard flags about saved methods and scheduled payments, driven by the
runner (`portal jobs run --now …`): a failed scheduled payment on its account's card
until the resident acts, and a card that expires within 30 days (also by email, once)."""

# ruff: noqa: F811 (the fixtures maria and db_path come from test_autopay)

from __future__ import annotations

import asyncio
import calendar
import re
import sqlite3
from datetime import date, timedelta

from test_autopay import _day, add_method, at, db_path, jobs, maria, one, schedule  # noqa: F401
from test_pay_saved import confirm, start

from resident_steps import outbox, query

DECLINES = "4000 0000 0000 0341"  # saved, then declined when charged


async def fail_a_scheduled_payment(resident, settings, method_id: int, day: int) -> None:
    """A scheduled payment on a declining card: tried on its day and the next, then failed."""
    response, _form = await schedule(resident, method_id, "40.00", _day(day), late_ok="yes")
    assert response.status_code == 303, response.text
    await asyncio.to_thread(jobs, settings, at(_day(day)))
    page = (await resident.get("/account")).text
    assert "did not go through. We will try once more on" in page
    await asyncio.to_thread(jobs, settings, at(_day(day + 1)))


def flag(page: str) -> str:
    found = re.search(r'<div class="scheduled-failed">(.*?)</div>', page, re.S)
    return re.sub(r"\s+", " ", found.group(1)) if found else ""


async def test_a_failed_scheduled_payment_stays_on_the_card_until_the_resident_acts(
    maria, settings, db_path
):
    declines = await add_method(maria, card=DECLINES, nickname="")
    good = await add_method(maria, nickname="Kitchen card")
    # 1. Failed, then paid from a saved method: the flag goes.
    await fail_a_scheduled_payment(maria, settings, declines, 3)
    shown = flag((await maria.get("/account")).text)
    assert "Your scheduled payment of $40.00 from Visa ending 0341 did not go through on" in shown
    assert "We will not try again" in shown and "Dismiss this notice" in shown
    form = await start(maria)
    assert (await confirm(maria, {**form, "method_id": str(good)})).status_code == 303
    assert flag((await maria.get("/account")).text) == ""
    # 2. Failed again, then another payment scheduled: the flag goes.
    await fail_a_scheduled_payment(maria, settings, declines, 10)
    assert "did not go through on" in flag((await maria.get("/account")).text)
    response, _form = await schedule(maria, good, "40.00", _day(20), late_ok="yes")
    assert response.status_code == 303
    assert flag((await maria.get("/account")).text) == ""
    # 3. Failed once more, then dismissed: the flag goes, audited.
    await fail_a_scheduled_payment(maria, settings, declines, 30)
    schedule_id = one(db_path, "SELECT max(id) FROM schedules")
    assert "did not go through on" in flag((await maria.get("/account")).text)
    response = await maria.post(f"/accounts/{maria.account_id}/scheduled/{schedule_id}/dismiss", {})
    assert (
        response.status_code == 303 and response.headers["location"] == "/account?notice=dismissed"
    )
    page = (await maria.get("/account?notice=dismissed")).text
    assert flag(page) == "" and "The notice was removed." in page
    assert "scheduled_failure_dismissed" in [
        r["event"] for r in query(db_path, "SELECT event FROM audit_log")
    ]
    # Dismissing it again (or another account's) is not found.
    again = await maria.post(f"/accounts/{maria.account_id}/scheduled/{schedule_id}/dismiss", {})
    assert again.status_code == 404
    # A move that does not belong to the page it is posted to is not found either.
    for path in (f"scheduled/{schedule_id}/skip", f"autopay/cancel/{schedule_id}"):
        assert (await maria.post(f"/accounts/{maria.account_id}/{path}", {})).status_code == 404


# --- a saved card that expires soon --------------------------------------------------------


async def test_a_card_expiring_within_30_days_is_flagged_and_emailed_once(maria, settings, db_path):
    today = date.today()
    last_day = date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    expiry = f"{today.month:02d}/{today.year}"
    card = await add_method(maria, card="5555 5555 5555 4444", expiry=f"{expiry[:3]}{expiry[-2:]}")
    await add_method(maria, nickname="Later card")  # expires 04/30: not flagged
    page = (await maria.get("/account")).text
    assert f"Mastercard ending 4444 expires {expiry}" in page
    assert 'href="/profile/payment-methods"' in page and "Visa ending 4242 expires" not in page
    assert "AutoPay uses this card" not in page
    # AutoPay with it, and a scheduled payment: the flag says so.
    response = await maria.post(
        f"/accounts/{maria.account_id}/autopay",
        {"method_id": str(card), "terms": "yes"},
    )
    assert response.status_code == 303
    await schedule(maria, card, "25.00", _day(1), late_ok="yes")
    page = (await maria.get("/account")).text
    assert "AutoPay uses this card for 123 Euclid Ave" in page
    assert "A scheduled payment on " in page
    # The runner: nothing 31 days before the end of the month; then once, in Spanish.
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE users SET locale = 'es'")
    conn.commit()
    conn.close()
    early = await asyncio.to_thread(jobs, settings, at((last_day - timedelta(days=31)).isoformat()))
    assert "cards_expiring 0" in early.stdout, early.stdout
    for day in (last_day - timedelta(days=29), last_day, last_day + timedelta(days=40)):
        result = await asyncio.to_thread(jobs, settings, at(day.isoformat()))
        assert result.returncode == 0, result.stderr
    mails = [m for m in outbox(db_path) if "4444" in m["subject"]]
    assert len(mails) == 1, [m["subject"] for m in mails]
    [mail] = mails
    assert mail["subject"].startswith(f"Su Mastercard terminada en 4444 vence en {expiry}")
    assert "El pago automático usa esta tarjeta" in mail["body_text"]
    assert "/profile/payment-methods" in mail["body_text"]
    assert (
        one(db_path, "SELECT expiry_notice_for FROM saved_methods WHERE id = ?", (card,)) == expiry
    )
