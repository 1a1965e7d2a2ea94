"""Saved payment methods, AutoPay and the runner, over HTTP and through `portal jobs run`.

Real parts: the app over HTTP, the sandbox gateway's own pages in save mode, a real
SQLite file, and the runner as the `portal` command in a subprocess, with --now moving
the clock across due dates. The never-twice tests kill a runner with SIGKILL while the
sandbox is answering a charge, run two runners at once, and time a charge out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from portal.autopay.charges import Charger
from portal.autopay.jobs import run_once
from portal.services import Services
from portal.templating import make_environment
from test_billing_http import load, sign_up_and_in
from test_payments_stripe import (  # noqa: F401 (its fixtures, used below)
    fake_stripe,
    stripe_client,
    stripe_settings,
)

from resident_steps import outbox, query
from sample_data import load_billing

BILL_DATE, DUE_DATE = "2027-03-01", "2027-03-21"
GOOD_CARD, DECLINES_LATER = "4242 4242 4242 4242", "4000 0000 0000 0341"


def at(day: str, hour: int = 17, minute: int = 0) -> str:
    """A moment (UTC) on a day, morning in the utility's zone (Los Angeles): --now."""
    return f"{day}T{hour:02d}:{minute:02d}:00+00:00"


def import_bill(path, amount: str, number: str, bill_date: str, due: str) -> None:
    """A new bill, imported on its bill date (the runner's clock is ahead of the real one)."""
    load(path, "bills", bill_csv(amount, number, bill_date, due))
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE bills SET imported_at = ? WHERE bill_number = ?",
        (f"{bill_date}T12:00:00.000000Z", number),
    )
    conn.commit()
    conn.close()


def bill_csv(amount: str = "84.10", number: str = "B1", bill_date=BILL_DATE, due=DUE_DATE) -> str:
    return (
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        f"0012345,0067890,{number},{bill_date},{due},{amount}\n"
    )


@pytest.fixture
async def maria(settings, client):
    load_billing(settings.database)
    load(settings.database, "bills", bill_csv())
    resident = await sign_up_and_in(client, settings.database, "maria1")
    resident.db = settings.database
    resident.account_id = query(
        settings.database, "SELECT id FROM service_accounts WHERE account_number = '0067890'"
    )[0]["id"]
    return resident


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def add_method(
    resident,
    card: str = GOOD_CARD,
    nickname: str = "Kitchen card",
    method="card",
    expiry: str = "04/30",
):
    """Add a saved method the way a resident does: the portal's form, then the sandbox's
    hosted page in save mode, then back. Returns the saved_methods id."""
    page = await resident.get("/profile/payment-methods")
    key = page.text.split('name="idempotency_key" value="')[1].split('"')[0]
    response = await resident.post(
        "/profile/payment-methods", {"method": method, "nickname": nickname, "idempotency_key": key}
    )
    assert response.status_code == 303, response.text
    checkout = response.headers["location"]
    assert checkout.startswith("/sandbox-gateway/checkout/seti_test_")
    hosted = await resident.get(checkout)
    assert "TEST MODE" in hosted.text and "Nothing is charged now" in hosted.text
    details = (
        {"routing_number": "011000015", "bank_account_number": "000123456789"}
        if method == "bank"
        else {
            "card_number": card,
            "expiry": expiry,
            "security_code": "123",
            "name_on_card": "Maria Garcia",
        }
    )
    response = await resident.post(checkout, {"action": "pay", **details})
    assert response.status_code == 303, response.text
    back = await resident.get(local(response.headers["location"]), follow_redirects=False)
    assert back.status_code == 303
    assert back.headers["location"] == "/profile/payment-methods?notice=saved"
    return int(query(resident.db, "SELECT max(id) FROM saved_methods")[0][0])


async def enrol(resident, method_id: int, max_amount: str = "") -> None:
    response = await resident.post(
        f"/accounts/{resident.account_id}/autopay",
        {"method_id": str(method_id), "max_amount": max_amount, "terms": "yes"},
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def db_path(settings):
    return settings.database


def jobs(settings, now: str, **env: str) -> subprocess.CompletedProcess:
    """`portal jobs run --now NOW` against the test's database, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", "jobs", "run", "--now", now],
        env=_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _env(settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        PORTAL_DATABASE=str(settings.database),
        PORTAL_BASE_URL=settings.base_url,
        **extra,
    )
    return env


def one(path, sql: str, params=()):
    return query(path, sql, params)[0][0]


# --- saved payment methods ---------------------------------------------------------------


async def test_add_a_card_keeps_only_token_brand_last_four_expiry_and_nickname(maria, db_path):
    method_id = await add_method(maria)
    row = query(db_path, "SELECT * FROM saved_methods WHERE id = ?", (method_id,))[0]
    assert row["token"].startswith("pm_test_") and row["brand"] == "Visa"
    assert (row["last4"], row["exp_month"], row["exp_year"]) == ("4242", 4, 2030)
    assert row["nickname"] == "Kitchen card" and row["is_default"] == 1
    # No card number anywhere in the database file.
    assert b"4242424242424242" not in db_path.read_bytes()
    page = (await maria.get("/profile/payment-methods")).text
    assert "Kitchen card (Visa ending 4242)" in page
    assert maria.client.cookies  # still signed in
    audit = [r["event"] for r in query(db_path, "SELECT event FROM audit_log")]
    assert "method_saved" in audit and "method_setup_started" in audit


async def test_returning_twice_from_the_save_page_saves_one_method(maria, db_path):
    await add_method(maria)
    ref = one(db_path, "SELECT ref FROM method_setups")
    again = await maria.get(f"/profile/payment-methods/return?ref={ref}", follow_redirects=False)
    assert again.status_code == 303
    assert one(db_path, "SELECT count(*) FROM saved_methods") == 1


async def test_canceled_save_page_saves_nothing_and_says_so(maria, db_path):
    page = await maria.get("/profile/payment-methods")
    key = page.text.split('name="idempotency_key" value="')[1].split('"')[0]
    response = await maria.post(
        "/profile/payment-methods", {"method": "card", "nickname": "", "idempotency_key": key}
    )
    checkout = response.headers["location"]
    response = await maria.post(checkout, {"action": "cancel"})
    back = await maria.get(local(response.headers["location"]), follow_redirects=False)
    assert back.headers["location"].endswith("notice=not_saved")
    assert one(db_path, "SELECT count(*) FROM saved_methods") == 0


async def test_add_form_errors_are_shown_not_500(maria):
    response = await maria.post(
        "/profile/payment-methods",
        {"method": "cheque", "nickname": "x" * 41, "idempotency_key": "k" * 30},
    )
    assert response.status_code == 422
    assert "Choose what to save" in response.text and "40 characters or fewer" in response.text


async def test_another_residents_method_or_return_ref_is_404(maria, client, db_path):
    method_id = await add_method(maria)
    ref = one(db_path, "SELECT ref FROM method_setups")
    james = await sign_up_and_in(
        client,
        db_path,
        "james2",
        customer_number="22222",
        account_number="33333",
        email="j@example.com",
        confirm_email="j@example.com",
    )
    assert (await james.post(f"/profile/payment-methods/{method_id}/remove", {})).status_code == 404
    assert (await james.get(f"/profile/payment-methods/return?ref={ref}")).status_code == 404
    assert (await james.get(f"/accounts/{maria.account_id}/autopay")).status_code == 404
    assert one(db_path, "SELECT count(*) FROM saved_methods WHERE removed_at IS NULL") == 1


async def test_rename_default_and_remove(maria, db_path):
    first = await add_method(maria)
    second = await add_method(maria, nickname="", method="bank")
    response = await maria.post(
        f"/profile/payment-methods/{second}/rename", {"nickname": "Credit union"}
    )
    assert response.status_code == 303
    response = await maria.post(f"/profile/payment-methods/{second}/default", {})
    assert response.status_code == 303
    rows = {r["id"]: r for r in query(db_path, "SELECT * FROM saved_methods")}
    assert rows[second]["nickname"] == "Credit union" and rows[second]["is_default"] == 1
    assert rows[first]["is_default"] == 0
    assert (await maria.post(f"/profile/payment-methods/{second}/remove", {})).status_code == 303
    page = (await maria.get("/profile/payment-methods")).text
    assert "Credit union" not in page
    # The remaining method becomes the default.
    assert one(db_path, "SELECT is_default FROM saved_methods WHERE id = ?", (first,)) == 1


async def test_remove_is_refused_with_the_reason_while_autopay_uses_the_method(maria, db_path):
    method_id = await add_method(maria)
    await enrol(maria, method_id)
    response = await maria.post(f"/profile/payment-methods/{method_id}/remove", {})
    assert response.status_code == 409
    assert "AutoPay or a scheduled payment uses it" in response.text
    assert one(db_path, "SELECT removed_at FROM saved_methods") is None
    await maria.post(f"/accounts/{maria.account_id}/autopay/cancel", {})
    assert (await maria.post(f"/profile/payment-methods/{method_id}/remove", {})).status_code == 303


async def test_money_actions_are_rate_limited(maria, client):
    # 30 posts per network per 10 minutes; the 31st is refused with the 429 page.
    statuses = [
        (await maria.post("/profile/payment-methods/999/default", {})).status_code
        for _ in range(31)
    ]
    assert statuses[:30] == [404] * 30 and statuses[30] == 429


# --- AutoPay enrolment -------------------------------------------------------------------


async def test_enrol_needs_a_method_and_the_terms(maria, db_path):
    method_id = await add_method(maria)
    response = await maria.post(
        f"/accounts/{maria.account_id}/autopay",
        {"method_id": str(method_id), "max_amount": "abc"},
    )
    assert response.status_code == 422
    assert "Read the terms and tick the box" in response.text
    assert "largest amount to charge" in response.text
    assert one(db_path, "SELECT count(*) FROM autopay") == 0
    await enrol(maria, method_id, max_amount="150")
    row = query(db_path, "SELECT * FROM autopay")[0]
    assert (row["method_id"], row["max_cents"]) == (method_id, 15000)
    mails = [m["subject"] for m in outbox(db_path)]
    assert any(s.startswith("AutoPay is on") for s in mails)
    page = (await maria.get(f"/accounts/{maria.account_id}/autopay")).text
    assert "Turn off AutoPay" in page and "Save AutoPay changes" in page


async def test_autopay_page_without_a_saved_method_links_to_add_one(maria):
    page = (await maria.get(f"/accounts/{maria.account_id}/autopay")).text
    assert 'href="/profile/payment-methods"' in page and "AutoPay is off" in page
    assert (
        "no-store"
        in (await maria.get(f"/accounts/{maria.account_id}/autopay")).headers["cache-control"]
    )


# --- the runner --------------------------------------------------------------------------


async def test_runner_charges_on_the_due_date_once_with_reminder_and_receipt(
    maria, settings, db_path
):
    method_id = await add_method(maria)
    await enrol(maria, method_id)
    # Five days before: scheduled, no charge, no reminder yet (3 days before by default).
    result = await asyncio.to_thread(jobs, settings, at("2027-03-16"))
    assert result.returncode == 0, result.stderr
    assert "scheduled 1" in result.stdout and "charged 0" in result.stdout
    assert one(db_path, "SELECT run_on FROM schedules") == DUE_DATE
    page = (await maria.get("/account")).text
    assert "Next AutoPay charge: $84.10 on March 21, 2027" in page
    # Three days before: one reminder, however often the runner runs.
    for _ in range(2):
        result = await asyncio.to_thread(jobs, settings, at("2027-03-18"))
    reminders = [m for m in outbox(db_path) if m["subject"].startswith("AutoPay will charge")]
    assert len(reminders) == 1 and "$84.10" in reminders[0]["body_text"]
    assert "Kitchen card" not in reminders[0]["body_text"]  # brand and last four only
    assert "Visa ending 4242" in reminders[0]["body_text"]
    # The due date: charged once, receipt emailed, dashboard says it is paid.
    for _ in range(2):
        result = await asyncio.to_thread(jobs, settings, at(DUE_DATE))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    payment = query(db_path, "SELECT * FROM payments")[0]
    assert (payment["status"], payment["amount_cents"], payment["origin"]) == (
        "succeeded",
        8410,
        "autopay",
    )
    assert payment["idempotency_key"] == f"autopay-{maria.account_id}-1-1"
    receipts = [m for m in outbox(db_path) if m["subject"].startswith("Payment receipt")]
    assert len(receipts) == 1 and "$84.10" in receipts[0]["body_text"]
    page = (await maria.get("/account")).text
    assert "AutoPay paid your latest bill" in page


async def test_runner_charges_amount_due_less_portal_payments_and_nothing_when_paid(
    maria, settings, db_path
):
    method_id = await add_method(maria)
    await enrol(maria, method_id)
    await asyncio.to_thread(jobs, settings, at("2027-03-10"))
    # The resident pays part of the bill online after the import.
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO payments (idempotency_key, account_id, amount_cents, status, gateway,"
        " receipt_token, created_at) VALUES ('paid-by-hand-000000000000', ?, 2000, 'succeeded',"
        " 'sandbox', 'tok-1', '2027-03-11T00:00:00.000000Z')",
        (maria.account_id,),
    )
    conn.commit()
    conn.close()
    await asyncio.to_thread(jobs, settings, at(DUE_DATE))
    assert one(db_path, "SELECT amount_cents FROM sandbox_charges") == 6410
    # A new bill, already paid in full online: nothing is charged.
    import_bill(db_path, "30.00", "B2", "2027-04-01", "2027-04-21")
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO payments (idempotency_key, account_id, amount_cents, status, gateway,"
        " receipt_token, created_at) VALUES ('paid-by-hand-111111111111', ?, 3000, 'succeeded',"
        " 'sandbox', 'tok-2', '2027-04-05T00:00:00.000000Z')",
        (maria.account_id,),
    )
    conn.commit()
    conn.close()
    result = await asyncio.to_thread(jobs, settings, at("2027-04-21"))
    assert "not_charged 1" in result.stdout
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    assert one(db_path, "SELECT status FROM schedules ORDER BY id DESC") == "nothing_due"


async def test_above_the_maximum_nothing_is_charged_email_and_dashboard_say_so(
    maria, settings, db_path
):
    method_id = await add_method(maria)
    await enrol(maria, method_id, max_amount="50.00")
    await asyncio.to_thread(jobs, settings, at(DUE_DATE))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 0
    assert one(db_path, "SELECT status FROM schedules") == "over_max"
    assert any("above your maximum" in m["subject"] for m in outbox(db_path))
    page = (await maria.get("/account")).text
    assert "AutoPay did not charge $84.10: it is above your maximum" in page


async def test_a_declined_charge_is_retried_once_the_next_day_then_stops(maria, settings, db_path):
    method_id = await add_method(maria, card=DECLINES_LATER)
    await enrol(maria, method_id)
    result = await asyncio.to_thread(jobs, settings, at(DUE_DATE))
    assert "declined 1" in result.stdout
    schedule = query(db_path, "SELECT * FROM schedules")[0]
    assert (schedule["status"], schedule["attempt"], schedule["run_on"]) == (
        "scheduled",
        2,
        "2027-03-22",
    )
    # Later the same day: no second try yet.
    await asyncio.to_thread(jobs, settings, at(DUE_DATE, 23))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    page = (await maria.get("/account")).text
    assert "This is the second try" in page
    await asyncio.to_thread(jobs, settings, at("2027-03-22"))
    await asyncio.to_thread(jobs, settings, at("2027-03-23"))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 2
    assert one(db_path, "SELECT status FROM schedules") == "failed"
    failed = [m for m in outbox(db_path) if "did not go through" in m["subject"]]
    assert len(failed) == 2 and "We will not try again" in failed[1]["body_text"]
    assert [r["status"] for r in query(db_path, "SELECT status FROM payments")] == [
        "failed",
        "failed",
    ]
    page = (await maria.get("/account")).text
    assert "could not charge your payment method, twice" in page


async def test_skip_and_cancel_stop_a_charge_not_yet_started(maria, settings, db_path):
    method_id = await add_method(maria)
    await enrol(maria, method_id)
    await asyncio.to_thread(jobs, settings, at("2027-03-10"))
    schedule_id = one(db_path, "SELECT id FROM schedules")
    response = await maria.post(f"/accounts/{maria.account_id}/autopay/skip/{schedule_id}", {})
    assert response.headers["location"].endswith("notice=skipped")
    await asyncio.to_thread(jobs, settings, at(DUE_DATE))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 0
    # A second skip of the same charge is too late (it is no longer scheduled).
    response = await maria.post(f"/accounts/{maria.account_id}/autopay/skip/{schedule_id}", {})
    assert response.headers["location"].endswith("notice=too_late")
    # Next bill; turn AutoPay off before its date: nothing charged.
    import_bill(db_path, "30.00", "B2", "2027-04-01", "2027-04-21")
    await asyncio.to_thread(jobs, settings, at("2027-04-10"))
    assert one(db_path, "SELECT count(*) FROM schedules WHERE status = 'scheduled'") == 1
    await maria.post(f"/accounts/{maria.account_id}/autopay/cancel", {})
    await asyncio.to_thread(jobs, settings, at("2027-04-21"))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 0
    events = [r["event"] for r in query(db_path, "SELECT event FROM audit_log")]
    assert "autopay_skipped" in events and "autopay_canceled" in events


async def test_changing_the_method_takes_effect_for_the_charge_not_yet_started(
    maria, settings, db_path
):
    first = await add_method(maria)
    second = await add_method(maria, method="bank", nickname="Checking")
    await enrol(maria, first)
    await asyncio.to_thread(jobs, settings, at("2027-03-10"))
    await enrol(maria, second)
    await asyncio.to_thread(jobs, settings, at(DUE_DATE))
    token = one(db_path, "SELECT token FROM saved_methods WHERE id = ?", (second,))
    assert one(db_path, "SELECT token FROM sandbox_charges") == token
    assert one(db_path, "SELECT method FROM payments") == "bank"


async def test_days_before_setting_moves_the_charge_date(maria, settings, db_path):
    method_id = await add_method(maria)
    await enrol(maria, method_id)
    result = await asyncio.to_thread(
        jobs, settings, at("2027-03-10"), PORTAL_AUTOPAY_DAYS_BEFORE="5"
    )
    assert result.returncode == 0
    assert one(db_path, "SELECT run_on FROM schedules") == "2027-03-16"


async def test_runner_releases_stale_registrations_by_its_clock(settings, client, db_path):
    load_billing(db_path)
    from resident_steps import post_form, registration

    await post_form(client, "/register", registration(username="never1"))
    assert one(db_path, "SELECT count(*) FROM users") == 1
    now = datetime.now(UTC)
    result = await asyncio.to_thread(jobs, settings, (now + timedelta(hours=23)).isoformat())
    assert "released 0" in result.stdout
    result = await asyncio.to_thread(jobs, settings, (now + timedelta(hours=25)).isoformat())
    assert "released 1" in result.stdout
    assert one(db_path, "SELECT count(*) FROM users") == 0


def test_jobs_run_refuses_a_bad_now(settings, tmp_path):
    result = jobs(settings, "next tuesday")
    assert result.returncode == 2 and "--now must be like" in result.stderr


# --- never twice -------------------------------------------------------------------------


async def _enrolled(maria, settings):
    method_id = await add_method(maria)
    await enrol(maria, method_id)
    await asyncio.to_thread(jobs, settings, at("2027-03-10"))


def _wait_for_charge(db_path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if one(db_path, "SELECT count(*) FROM sandbox_charges"):
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError("the runner never reached the gateway")


async def test_a_runner_killed_mid_charge_and_restarted_charges_exactly_once(
    maria, settings, db_path
):
    await _enrolled(maria, settings)
    runner = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "jobs", "run", "--now", at(DUE_DATE)],
        env=_env(settings, PORTAL_SANDBOX_CHARGE_DELAY="60"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.to_thread(_wait_for_charge, db_path)
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
    assert runner.returncode == -signal.SIGKILL
    # The gateway charged; the portal never heard the answer.
    payment = query(db_path, "SELECT * FROM payments")[0]
    assert payment["status"] == "pending" and payment["gateway_ref"] is None
    assert one(db_path, "SELECT status FROM schedules") == "charging"
    # Restarted at once: the killed runner's lease still holds, nobody charges.
    result = await asyncio.to_thread(jobs, settings, at(DUE_DATE, 17, 5))
    assert "charged 0" in result.stdout
    # After the lease: asked again with the same key, settled from the gateway's answer.
    result = await asyncio.to_thread(jobs, settings, at(DUE_DATE, 19))
    assert "charged 1" in result.stdout, result.stdout
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    assert one(db_path, "SELECT count(*) FROM payments") == 1
    payment = query(db_path, "SELECT * FROM payments")[0]
    assert payment["status"] == "succeeded"
    assert payment["gateway_ref"] == one(db_path, "SELECT id FROM sandbox_charges")
    assert one(db_path, "SELECT status FROM schedules") == "succeeded"


async def test_two_runners_at_once_charge_exactly_once(maria, settings, db_path):
    await _enrolled(maria, settings)
    env = _env(settings, PORTAL_SANDBOX_CHARGE_DELAY="2")
    command = [sys.executable, "-m", "portal.cli", "jobs", "run", "--now", at(DUE_DATE)]
    runners = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [await asyncio.to_thread(r.communicate, timeout=60) for r in runners]
    assert all(r.returncode == 0 for r in runners), outputs
    assert sorted("charged 1" in out for out, _err in outputs) == [False, True]
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    assert one(db_path, "SELECT count(*) FROM payments WHERE status = 'succeeded'") == 1


async def test_a_gateway_timeout_then_a_retry_charges_exactly_once(maria, settings, db_path):
    await _enrolled(maria, settings)
    slow = Services.build(replace(settings, sandbox_charge_delay=3), make_environment(settings))
    await slow.db.open()
    try:
        charger = Charger(slow.db, slow.settings, slow.mailer, slow.payments, timeout=0.5)
        now = datetime.fromisoformat(at(DUE_DATE))
        counts = await charger.charge_due(now)
        assert counts["unavailable"] == 1
        assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
        assert one(db_path, "SELECT status FROM payments") == "pending"
        # The next round, after the lease, with a prompt gateway: the same key again.
        fast = Services.build(settings, make_environment(settings))
        await fast.db.open()
        try:
            counts = await run_once(fast, now + timedelta(minutes=15))
        finally:
            await fast.db.close()
        assert counts["charged"] == 1
    finally:
        await slow.db.close()
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    assert one(db_path, "SELECT count(*) FROM payments") == 1
    assert one(db_path, "SELECT status FROM payments") == "succeeded"
    details = [r["detail"] for r in query(db_path, "SELECT detail FROM payment_events")]
    assert "no answer from the gateway; will ask again" in details
    assert "asking the gateway again (same key)" in details


def export_payments(settings) -> str:
    """`portal export payments` of every payment so far, as an operator runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", "export", "payments", "--date", "2099-01-01"],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_the_export_shows_an_autopay_charge_with_its_origin(maria, settings, db_path):
    method_id = await add_method(maria)
    await enrol(maria, method_id)
    await asyncio.to_thread(jobs, settings, at(DUE_DATE))
    header, row = export_payments(settings).splitlines()
    assert header.endswith(",origin,mode")
    assert row.endswith(",autopay,TEST") and ",84.10," in row and ",4242," in row


async def test_the_delivery_export_tells_the_billing_system_autopay_pays(maria, settings):
    """`portal export delivery` says which accounts AutoPay pays, so a printed bill need
    not ask for a payment that AutoPay will make as well."""

    def delivery() -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "portal.cli", "export", "delivery", "--quiet"],
            env=_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return [line.split(",")[:5] for line in result.stdout.splitlines()]

    header = ["customer_number", "account_number", "paperless", "printed", "autopay"]
    assert delivery() == [header, ["0012345", "0067890", "true", "false", "false"]]
    await enrol(maria, await add_method(maria))
    assert delivery() == [header, ["0012345", "0067890", "true", "false", "true"]]
    await maria.post(f"/accounts/{maria.account_id}/autopay/cancel", {})
    assert delivery()[1][4] == "false"


# --- scheduled one-time payments ---------------------------------------------------------


def _day(days: int) -> str:
    from portal.autopay.service import local_today
    from portal.settings import Settings

    return (local_today(Settings()) + timedelta(days=days)).isoformat()


async def schedule(resident, method_id: int, amount: str, run_on: str, **extra: str):
    page = (await resident.get(f"/accounts/{resident.account_id}/scheduled")).text
    key = page.split('name="idempotency_key" value="')[1].split('"')[0]
    form = {"amount": amount, "run_on": run_on, "method_id": str(method_id), "idempotency_key": key}
    return await resident.post(
        f"/accounts/{resident.account_id}/scheduled", {**form, **extra}
    ), form


async def test_a_scheduled_payment_is_charged_once_on_its_date(maria, settings, db_path):
    method_id = await add_method(maria)
    response, form = await schedule(maria, method_id, "40.00", _day(5))
    assert response.status_code == 303
    # The same form sent again (a double click) schedules nothing more.
    again = await maria.post(f"/accounts/{maria.account_id}/scheduled", form)
    assert again.status_code == 303
    assert one(db_path, "SELECT count(*) FROM schedules") == 1
    page = (await maria.get(f"/accounts/{maria.account_id}/scheduled")).text
    assert "$40.00" in page and "Cancel this payment" in page
    # The day before: nothing; reminder sent. On the day: one charge, origin scheduled.
    await asyncio.to_thread(jobs, settings, at(_day(4)))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 0
    assert any(m["subject"].startswith("Your scheduled payment of $40.00") for m in outbox(db_path))
    for _ in range(2):
        await asyncio.to_thread(jobs, settings, at(_day(5)))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    payment = query(db_path, "SELECT * FROM payments")[0]
    assert (payment["status"], payment["amount_cents"], payment["origin"]) == (
        "succeeded",
        4000,
        "scheduled",
    )
    # Too late to cancel now.
    schedule_id = one(db_path, "SELECT id FROM schedules")
    response = await maria.post(f"/accounts/{maria.account_id}/scheduled/{schedule_id}/cancel", {})
    assert response.headers["location"].endswith("notice=too_late_scheduled")


async def test_a_canceled_scheduled_payment_is_not_charged(maria, settings, db_path):
    method_id = await add_method(maria)
    await schedule(maria, method_id, "40.00", _day(3))
    # The method cannot be removed while the payment is scheduled.
    response = await maria.post(f"/profile/payment-methods/{method_id}/remove", {})
    assert response.status_code == 409
    schedule_id = one(db_path, "SELECT id FROM schedules")
    response = await maria.post(f"/accounts/{maria.account_id}/scheduled/{schedule_id}/cancel", {})
    assert response.headers["location"].endswith("notice=scheduled_canceled")
    await asyncio.to_thread(jobs, settings, at(_day(3)))
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 0
    assert one(db_path, "SELECT status FROM schedules") == "canceled"
    assert "scheduled_payment_canceled" in [
        r["event"] for r in query(db_path, "SELECT event FROM audit_log")
    ]


async def test_scheduling_checks_amount_date_and_warns_past_the_due_date(maria, db_path):
    method_id = await add_method(maria)
    response, _form = await schedule(maria, method_id, "", _day(61))
    assert response.status_code == 422
    assert "Enter the amount you want to pay" in response.text
    assert "Choose a date from tomorrow to" in response.text
    response, _form = await schedule(maria, method_id, "20.00", _day(0))
    assert response.status_code == 422 and "Choose a date from tomorrow" in response.text
    # The bill is due in 10 days; paying in 20 days is after it: warned, then allowed.
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE bills SET bill_date = ?, due_date = ?", (_day(-1), _day(10)))
    conn.commit()
    conn.close()
    response, _form = await schedule(maria, method_id, "55.00", _day(20))
    assert response.status_code == 422
    assert "after your due date" in response.text
    assert one(db_path, "SELECT count(*) FROM schedules") == 0
    response, _form = await schedule(maria, method_id, "55.00", _day(20), late_ok="yes")
    assert response.status_code == 303
    assert one(db_path, "SELECT count(*) FROM schedules") == 1


# --- the same, with the Stripe adapter (against tests/fake_stripe.py) --------------------


async def test_with_stripe_a_method_saved_on_stripes_page_pays_autopay_once(
    stripe_settings,  # noqa: F811
    stripe_client,  # noqa: F811
    fake_stripe,  # noqa: F811 (the imported fixtures)
):
    db_path = stripe_settings.database
    load(db_path, "bills", bill_csv())
    resident = await sign_up_and_in(stripe_client, db_path, "maria1")
    account_id = one(db_path, "SELECT id FROM service_accounts WHERE account_number = '0067890'")
    page = await resident.get("/profile/payment-methods")
    assert "checkout.stripe.com" in page.headers["content-security-policy"]
    key = page.text.split('name="idempotency_key" value="')[1].split('"')[0]
    response = await resident.post(
        "/profile/payment-methods", {"method": "card", "nickname": "", "idempotency_key": key}
    )
    assert response.status_code == 303
    ref = one(db_path, "SELECT ref FROM method_setups")
    assert response.headers["location"] == fake_stripe.objects[ref]["url"]
    fake_stripe.save_method(ref)
    back = await resident.get(f"/profile/payment-methods/return?ref={ref}", follow_redirects=False)
    assert back.headers["location"].endswith("notice=saved")
    method = query(db_path, "SELECT * FROM saved_methods")[0]
    assert method["customer"].startswith("cus_test_") and method["token"].startswith("pm_test_")
    resident.account_id = account_id
    await enrol(resident, method["id"])
    services = stripe_client.app.state.services
    now = datetime.fromisoformat(at(DUE_DATE))
    for _ in range(2):
        await run_once(services, now)
    intents = [o for o in fake_stripe.objects.values() if o["object"] == "payment_intent"]
    assert len(intents) == 1 and intents[0]["amount"] == 8410
    payment = query(db_path, "SELECT * FROM payments")[0]
    assert (payment["status"], payment["origin"], payment["gateway_ref"]) == (
        "succeeded",
        "autopay",
        intents[0]["id"],
    )


async def test_portal_serve_runs_the_jobs_in_the_background(settings, db_path):
    """The app's own loop (started with the app) does the runner's work on its own."""
    from litestar.testing import AsyncTestClient

    from portal.app import create_app

    load_billing(db_path)
    load(db_path, "bills", bill_csv())
    async with AsyncTestClient(app=create_app(replace(settings, jobs_every_seconds=1))) as c:
        resident = await sign_up_and_in(c, db_path, "maria1")
        resident.db = db_path
        resident.account_id = one(
            db_path, "SELECT id FROM service_accounts WHERE account_number = '0067890'"
        )
        await enrol(resident, await add_method(resident))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if one(db_path, "SELECT count(*) FROM schedules"):
                break
            await asyncio.sleep(0.2)
    assert query(db_path, "SELECT run_on, status FROM schedules")[0][:] == (DUE_DATE, "scheduled")
