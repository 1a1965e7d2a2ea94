"""Payments over HTTP: guest and signed-in flows through the sandbox gateway, never
twice (concurrent posts, reloads, replayed notifications), declines, and no card data
kept anywhere."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time

import pytest

from portal import db as portal_db
from portal.billing.importer import import_text
from portal.payments.gateway import SIGNATURE_HEADER, sign

from resident_steps import outbox, post_form, query
from sample_data import load_billing

CARD_OK = "4242 4242 4242 4242"
CARD_DECLINED = "4000 0000 0000 0002"
CVC = "737"


@pytest.fixture
async def pay_client(settings, client):
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "bills",
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        "0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n",
    )
    conn.close()
    return client


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name}"
    return match.group(1)


async def amount_form(client, customer="12345", account="67890"):
    response = await post_form(
        client, "/pay", {"customer_number": customer, "account_number": account}
    )
    assert response.status_code == 200, response.text
    return response


def confirm_data(form_html: str, **overrides) -> dict:
    data = {
        "account_token": hidden(form_html, "account_token"),
        "idempotency_key": hidden(form_html, "idempotency_key"),
        "amount": "84.10",
        "method": "card",
        "receipt_email": "payer@example.com",
    }
    data.update(overrides)
    return data


async def pay_card(client, data: dict, card: str = CARD_OK):
    start = await post_form(client, "/pay/confirm", data, follow_redirects=False)
    assert start.status_code == 303, start.text
    checkout = start.headers["location"]
    assert checkout.startswith("/sandbox-gateway/checkout/")
    page = await client.get(checkout)
    assert "TEST MODE" in page.text
    done = await post_form(
        client,
        checkout,
        {
            "card_number": card,
            "expiry": "12/39",
            "security_code": CVC,
            "name_on_card": "Maria Garcia",
            "action": "pay",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    back = await client.get(done.headers["location"], follow_redirects=False)
    assert back.status_code == 303
    return await client.get(back.headers["location"])


async def test_guest_sees_masked_account_and_amount_due(pay_client):
    page = (await amount_form(pay_client)).text
    assert "$84.10" in page and 'value="84.10"' in page
    assert "1** E***** Ave" in page and "M. G." in page
    assert "123 Euclid Ave" not in page and "Maria Garcia" not in page


async def test_guest_lookup_messages(pay_client):
    response = await post_form(
        pay_client, "/pay", {"customer_number": "12345", "account_number": "1"}
    )
    assert response.status_code == 422 and "could not find an account" in response.text
    response = await post_form(
        pay_client, "/pay", {"customer_number": "44444", "account_number": "55555"}
    )
    assert response.status_code == 422  # closed accounts cannot be paid online
    response = await post_form(pay_client, "/pay", {})
    assert response.status_code == 422 and "Enter your customer number" in response.text


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ("", "Enter the amount"),
        ("0.99", "at least $1.00"),
        ("abc", "dollars and cents"),
        ("10000.01", "or less"),
        ("12.345", "dollars and cents"),
    ],
)
async def test_amount_rules(pay_client, settings, amount, words):
    form = (await amount_form(pay_client)).text
    response = await post_form(pay_client, "/pay/confirm", confirm_data(form, amount=amount))
    assert response.status_code == 422 and words in response.text
    assert query(settings.database, "SELECT count(*) FROM payments")[0][0] == 0


async def test_guest_card_payment_approved_with_receipt(pay_client, settings):
    form = (await amount_form(pay_client)).text
    receipt = await pay_card(pay_client, confirm_data(form))
    assert receipt.status_code == 200
    text = receipt.text
    assert "Payment confirmation" in text and "$84.10" in text and "0067890" in text
    assert re.search(r"PAY-[A-Z2-9]{4}-[A-Z2-9]{4}", text)
    assert "(909) 395-2050" in text and "What happens next" in text
    [payment] = query(settings.database, "SELECT * FROM payments")
    assert (
        payment["status"] == "succeeded"
        and payment["brand"] == "Visa"
        and payment["last4"] == "4242"
    )
    assert payment["user_id"] is None
    events = [
        row["status"]
        for row in query(settings.database, "SELECT status FROM payment_events ORDER BY id")
    ]
    assert events == ["pending", "succeeded"]
    [mail] = [m for m in outbox(settings.database) if m["to_addr"] == "payer@example.com"]
    assert payment["confirmation_number"] in mail["subject"] and "$84.10" in mail["body_text"]


async def test_declined_card_says_so_and_try_again_uses_a_new_key(pay_client, settings):
    form = (await amount_form(pay_client)).text
    data = confirm_data(form)
    receipt = await pay_card(pay_client, data, card=CARD_DECLINED)
    assert "declined" in receipt.text and "No money was taken" in receipt.text
    again_link = re.search(r'href="(/pay/again/[^"]+)"', receipt.text).group(1)
    again = await pay_client.get(again_link)
    assert again.status_code == 200
    new_key = hidden(again.text, "idempotency_key")
    assert new_key != data["idempotency_key"]
    second = await pay_card(pay_client, confirm_data(again.text))
    assert "Payment confirmation" in second.text
    statuses = sorted(row[0] for row in query(settings.database, "SELECT status FROM payments"))
    assert statuses == ["failed", "succeeded"]


async def test_twenty_identical_submissions_make_one_payment(pay_client, settings):
    """Repeated sends of one form (the truly concurrent case is in test_concurrency.py)."""
    form = (await amount_form(pay_client)).text
    data = confirm_data(form)
    responses = await asyncio.gather(
        *(post_form(pay_client, "/pay/confirm", data, follow_redirects=False) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {303}
    assert len({r.headers["location"] for r in responses}) == 1
    assert query(settings.database, "SELECT count(*) FROM payments")[0][0] == 1
    assert query(settings.database, "SELECT count(*) FROM sandbox_sessions")[0][0] == 1


async def test_resubmitting_after_payment_lands_on_the_same_confirmation(pay_client, settings):
    form = (await amount_form(pay_client)).text
    data = confirm_data(form)
    receipt = await pay_card(pay_client, data)
    again = await post_form(pay_client, "/pay/confirm", data, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == str(receipt.url).replace(
        "http://portal.test", ""
    )
    assert query(settings.database, "SELECT count(*) FROM payments")[0][0] == 1


async def test_replayed_and_forged_notifications_change_nothing(pay_client, settings):
    form = (await amount_form(pay_client)).text
    await pay_card(pay_client, confirm_data(form))
    [payment] = query(settings.database, "SELECT * FROM payments")
    body = json.dumps(
        {
            "type": "checkout.completed",
            "ref": payment["gateway_ref"],
            "status": "failed",
            "amount_cents": payment["amount_cents"],
        }
    ).encode()
    signed = sign(settings.gateway_signing_secret, body)
    for _ in range(3):
        replay = await pay_client.post(
            "/payments/webhook", content=body, headers={SIGNATURE_HEADER: signed}
        )
        assert replay.status_code == 200
    forged = await pay_client.post(
        "/payments/webhook", content=body, headers={SIGNATURE_HEADER: sign("wrong secret", body)}
    )
    assert forged.status_code == 400
    old = await pay_client.post(
        "/payments/webhook",
        content=body,
        headers={
            SIGNATURE_HEADER: sign(settings.gateway_signing_secret, body, timestamp=1_000_000)
        },
    )
    assert old.status_code == 400
    after = query(settings.database, "SELECT status, confirmation_number FROM payments")[0]
    assert (
        after["status"] == "succeeded"
        and after["confirmation_number"] == payment["confirmation_number"]
    )
    assert query(settings.database, "SELECT count(*) FROM payment_events")[0][0] == 2


async def test_notification_settles_a_pending_payment_once(pay_client, settings):
    form = (await amount_form(pay_client)).text
    start = await post_form(pay_client, "/pay/confirm", confirm_data(form), follow_redirects=False)
    ref = start.headers["location"].rsplit("/", 1)[1]
    body = json.dumps(
        {
            "type": "checkout.completed",
            "ref": ref,
            "status": "succeeded",
            "amount_cents": 8410,
            "method": "card",
            "brand": "Visa",
            "last4": "4242",
        }
    ).encode()
    results = await asyncio.gather(
        *(
            pay_client.post(
                "/payments/webhook",
                content=body,
                headers={SIGNATURE_HEADER: sign(settings.gateway_signing_secret, body)},
            )
            for _ in range(5)
        )
    )
    assert all(r.status_code == 200 for r in results)
    rows = query(settings.database, "SELECT status FROM payment_events")
    assert [r[0] for r in rows] == ["pending", "succeeded"]
    wrong_amount = json.dumps({"ref": ref, "status": "succeeded", "amount_cents": 1}).encode()
    await pay_client.post(
        "/payments/webhook",
        content=wrong_amount,
        headers={SIGNATURE_HEADER: sign(settings.gateway_signing_secret, wrong_amount)},
    )
    assert query(settings.database, "SELECT amount_cents FROM payments")[0][0] == 8410


async def test_card_number_and_security_code_are_never_stored(pay_client, settings, caplog):
    form = (await amount_form(pay_client)).text
    receipt = await pay_card(pay_client, confirm_data(form))
    assert "4242424242424242" not in receipt.text
    # a failed form never sends the card number or code back either
    second = (await amount_form(pay_client)).text
    start = await post_form(
        pay_client, "/pay/confirm", confirm_data(second), follow_redirects=False
    )
    bad = await post_form(
        pay_client,
        start.headers["location"],
        {"card_number": CARD_OK, "expiry": "13/99", "security_code": CVC, "name_on_card": "M"},
    )
    assert (
        bad.status_code == 422
        and 'value="4242' not in bad.text
        and f'value="{CVC}"' not in bad.text
    )
    conn = sqlite3.connect(settings.database)
    conn.execute("PRAGMA wal_checkpoint(FULL)")
    conn.close()
    raw = b"".join(path.read_bytes() for path in settings.database.parent.glob("portal.sqlite3*"))
    for secret in (b"4242424242424242", b"4242 4242 4242 4242", b"12/39"):
        assert secret not in raw
    # The security code on its own, in any stored value of any table (three digits can
    # occur by chance inside random tokens and hashes, so match it standing alone).
    conn = sqlite3.connect(settings.database)
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 (names from sqlite_master)
            for value in row:
                assert not re.search(rf"(?<![0-9A-Za-z]){CVC}(?![0-9A-Za-z])", str(value)), (
                    table,
                    value,
                )
    conn.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "4242424242424242" not in logged and "4242 4242" not in logged


async def test_bank_account_payment_checks_routing_number(pay_client, settings):
    form = (await amount_form(pay_client)).text
    start = await post_form(
        pay_client, "/pay/confirm", confirm_data(form, method="bank"), follow_redirects=False
    )
    checkout = start.headers["location"]
    page = await pay_client.get(checkout)
    assert "Routing number" in page.text and "Card number" not in page.text
    bad = await post_form(
        pay_client, checkout, {"routing_number": "123456789", "bank_account_number": "12345678"}
    )
    assert bad.status_code == 422 and "9 digit routing number" in bad.text
    done = await post_form(
        pay_client,
        checkout,
        {"routing_number": "011000015", "bank_account_number": "12345678"},
        follow_redirects=False,
    )
    receipt = await pay_client.get(
        (await pay_client.get(done.headers["location"], follow_redirects=False)).headers["location"]
    )
    assert "Payment confirmation" in receipt.text and "5678" in receipt.text


async def test_a_guest_form_left_open_19_hours_still_pays(pay_client, settings):
    """A guest's amount form stays good for 20 hours, so a resident called away from it
    is never timed out without warning (WCAG 2.2.1's 20-hour exception)."""
    form = (await amount_form(pay_client)).text
    account_id = int(hidden(form, "account_token").split(".")[0])
    payments = pay_client.app.state.services.payments
    old = payments.account_token(account_id, now=time.time() - 19 * 3600)
    await pay_card(pay_client, confirm_data(form, account_token=old))
    assert query(settings.database, "SELECT count(*) FROM payments")[0][0] == 1
    stale = payments.account_token(account_id, now=time.time() - 21 * 3600)
    refused = await post_form(pay_client, "/pay/confirm", confirm_data(form, account_token=stale))
    assert refused.status_code == 422 and "This payment form has expired" in refused.text


async def test_expired_or_forged_account_token_is_refused(pay_client, settings):
    form = (await amount_form(pay_client)).text
    data = confirm_data(form, account_token="1.1.0123456789abcdef0123456789abcdef")
    response = await post_form(pay_client, "/pay/confirm", data)
    assert response.status_code == 422 and "expired" in response.text
    assert query(settings.database, "SELECT count(*) FROM payments")[0][0] == 0


async def test_export_puts_each_payment_in_exactly_one_batch(
    pay_client, settings, monkeypatch, capsys, tmp_path
):
    from portal.cli import main as portal_main

    form = (await amount_form(pay_client)).text
    await pay_card(pay_client, confirm_data(form))
    conn = sqlite3.connect(settings.database)
    conn.execute(
        "UPDATE payments SET settled_at = '2026-11-20T18:00:00.000000Z'"
    )  # 10 a.m. in Ontario
    conn.commit()
    conn.close()
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    assert portal_main(["export", "payments", "--date", "2026-11-19"]) == 0
    empty = capsys.readouterr().out
    assert empty.count("\n") == 1  # header only: the payment settled on the 20th
    assert portal_main(["export", "payments", "--date", "2026-11-20"]) == 0
    first = capsys.readouterr().out
    lines = first.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("batch_date,confirmation_number")
    assert ",0067890,84.10," in lines[1] and "4242" in lines[1]
    # a second payment settles later that same day, after the batch was cut
    form = (await amount_form(pay_client)).text
    await pay_card(pay_client, confirm_data(form, amount="5.00"))
    conn = sqlite3.connect(settings.database)
    conn.execute(
        "UPDATE payments SET settled_at = '2026-11-20T23:00:00.000000Z' WHERE amount_cents = 500"
    )
    conn.commit()
    conn.close()
    assert portal_main(["export", "payments", "--date", "2026-11-20"]) == 0
    assert capsys.readouterr().out == first  # the same batch again: the same file
    out = tmp_path / "TEST-next.csv"  # sandbox batches are named TEST-…
    assert portal_main(["export", "payments", "--date", "2026-11-21", "--output", str(out)]) == 0
    next_lines = out.read_text().strip().splitlines()
    assert len(next_lines) == 2 and ",5.00," in next_lines[1]
    assert portal_main(["export", "payments", "--date", "nonsense"]) == 2


async def test_signed_in_payment_shows_in_history_and_lowers_amount_due(settings, client):
    from resident_steps import registration
    from sample_data import GOOD_PASSWORD

    await _load_bill(settings)
    assert (await post_form(client, "/register", registration())).status_code == 200
    conn = sqlite3.connect(settings.database)
    conn.execute("UPDATE users SET verified_at = '2026-01-01T00:00:00.000000Z'")
    conn.commit()
    conn.close()
    login = await post_form(
        client, "/login", {"username": "maria1", "password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert login.status_code == 303
    account_id = query(
        settings.database, "SELECT id FROM service_accounts WHERE account_number = '0067890'"
    )[0][0]
    form = await client.get(f"/pay?account={account_id}")
    assert (
        "123 Euclid Ave" in form.text and "Maria Garcia" in form.text
    )  # the owner sees it unmasked
    receipt = await pay_card(client, confirm_data(form.text, amount="30.00"))
    assert "Payment confirmation" in receipt.text and "Back to My Account" in receipt.text
    assert query(settings.database, "SELECT user_id FROM payments")[0][0] is not None
    dashboard = (await client.get("/account")).text
    assert "$54.10" in dashboard and "$30.00" in dashboard
    history_response = await client.get(f"/accounts/{account_id}/bills")
    history = history_response.text
    assert history_response.status_code == 200, re.findall(r"<h1[^>]*>(.*?)</h1>", history)
    assert "Payments made online" in history, history[
        history.find("<main") : history.find("</main>")
    ]
    assert "$30.00" in history and "Paid" in history, history[history.find("payments-heading") :][
        :1500
    ]
    # another account's id in /pay?account= falls back to the numbers form
    other = query(
        settings.database, "SELECT id FROM service_accounts WHERE account_number = '0033333'"
    )[0][0]
    fallback = await client.get(f"/pay?account={other}")
    assert "456 Holt Blvd" not in fallback.text and "Customer Number" in fallback.text


async def _load_bill(settings):
    """Billing data for the signed-in test (also a check that loading twice is harmless)."""
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "bills",
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n",
    )
    conn.close()
