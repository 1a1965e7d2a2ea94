"""PORTAL_GATEWAY=stripe: the real `stripe` library against a local fake of Stripe's API
(tests/fake_stripe.py, served by uvicorn on 127.0.0.1), with webhooks signed the way
Stripe signs them."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from dataclasses import replace

import pytest
import uvicorn
from litestar.testing import AsyncTestClient

from fake_stripe import API_KEY, WEBHOOK_SECRET, FakeStripe
from portal import db as portal_db
from portal.app import create_app
from portal.billing.importer import import_text
from portal.payments.stripe_gateway import StripeGateway
from portal.settings import Settings, SettingsError

from conftest import free_port
from resident_steps import outbox, post_form, query
from sample_data import load_billing


@pytest.fixture
def fake_stripe():
    fake = FakeStripe()
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(fake, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "fake Stripe did not start"
        time.sleep(0.02)
    yield fake
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def stripe_settings(settings, fake_stripe) -> Settings:
    return replace(
        settings,
        gateway="stripe",
        stripe_secret_key=API_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake_stripe.url,
        stripe_timeout=1,
    )


@pytest.fixture
async def stripe_client(stripe_settings):
    load_billing(stripe_settings.database)
    conn = portal_db.connect_sync(stripe_settings.database)
    import_text(
        conn,
        "bills",
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        "0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n",
    )
    conn.close()
    async with AsyncTestClient(app=create_app(stripe_settings), base_url="http://portal.test") as c:
        yield c


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name}"
    return match.group(1)


async def form_data(client, amount="84.10", method="card", email="payer@example.com") -> dict:
    page = await post_form(client, "/pay", {"customer_number": "12345", "account_number": "67890"})
    assert page.status_code == 200, page.text
    assert "checkout.stripe.com" in page.headers["content-security-policy"]
    return {
        "account_token": hidden(page.text, "account_token"),
        "idempotency_key": hidden(page.text, "idempotency_key"),
        "amount": amount,
        "method": method,
        "receipt_email": email,
    }


async def start(client, fake, **kwargs) -> tuple[str, dict]:
    """Pay My Bill up to Stripe's page; returns the Checkout Session id and the form."""
    data = await form_data(client, **kwargs)
    response = await post_form(client, "/pay/confirm", data, follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{fake.url}/c/pay/cs_test_")
    return location.rsplit("/", 1)[1], data


async def deliver(client, events, secret=WEBHOOK_SECRET) -> list[int]:
    codes = []
    for event in events:
        body, signature = FakeStripe.signed(event, secret)
        response = await client.post(
            "/payments/stripe/webhook",
            content=body,
            headers={"stripe-signature": signature, "content-type": "application/json"},
        )
        codes.append(response.status_code)
    return codes


def payment(settings) -> sqlite3.Row:
    rows = query(settings.database, "SELECT * FROM payments")
    assert len(rows) == 1
    return rows[0]


def gateway_events(settings) -> list:
    return query(settings.database, "SELECT id, type, outcome FROM gateway_events ORDER BY rowid")


def session_creates(fake) -> list:
    return [r for r in fake.requests if r[:2] == ("POST", "/v1/checkout/sessions")]


async def test_card_approved_return_page_asks_stripe_then_webhook_changes_nothing(
    stripe_client, stripe_settings, fake_stripe
):
    ref, data = await start(stripe_client, fake_stripe)
    _method, _path, params, key = session_creates(fake_stripe)[0]
    assert key == data["idempotency_key"]  # the portal's key is Stripe's Idempotency-Key
    assert params["mode"] == "payment" and params["allowed_payment_method_types"] == ["card"]
    assert params["metadata"]["account_number"] == "0067890"
    assert params["metadata"]["portal_payment"] == f"payment-{payment(stripe_settings)['id']}"
    assert params["line_items"][0]["price_data"]["unit_amount"] == "8410"
    assert params["success_url"] == "http://portal.test/pay/return?ref={CHECKOUT_SESSION_ID}"
    # Back before paying (cancel, or a forged success link): Stripe says open, so not paid
    early = await stripe_client.get(f"/pay/return?ref={ref}")
    assert "Your payment is not finished" in early.text
    assert payment(stripe_settings)["status"] == "pending"
    events = fake_stripe.pay(ref, "card")
    receipt = await stripe_client.get(f"/pay/return?ref={ref}")
    assert "Payment confirmation" in receipt.text and "Visa" in receipt.text, receipt.text
    row = payment(stripe_settings)
    assert row["status"] == "succeeded" and row["last4"] == "4242" and row["confirmation_number"]
    assert row["gateway_intent"].startswith("pi_test_")
    assert await deliver(stripe_client, events) == [200]
    assert [e["outcome"] for e in gateway_events(stripe_settings)] == ["no change"]
    logged = query(stripe_settings.database, "SELECT gateway_event_id FROM payment_events")
    assert [r[0] for r in logged].count(events[0]["id"]) == 1
    assert len([m for m in outbox(stripe_settings.database) if "receipt" in m["subject"]]) == 1
    assert (await stripe_client.get("/pay/return?ref=cs_test_nobody")).status_code == 404


async def test_card_declined_stays_unpaid_and_says_so(stripe_client, stripe_settings, fake_stripe):
    ref, _ = await start(stripe_client, fake_stripe)
    assert await deliver(stripe_client, fake_stripe.pay(ref, "declined")) == [200]
    assert payment(stripe_settings)["status"] == "pending"  # Stripe's page lets them retry
    detail = query(
        stripe_settings.database,
        "SELECT detail FROM payment_events WHERE gateway_event_id IS NOT NULL",
    )
    assert "generic_decline" in detail[0][0]
    page = await stripe_client.get(f"/pay/return?ref={ref}")
    assert "No money has been taken yet" in page.text
    assert await deliver(stripe_client, fake_stripe.expire(ref)) == [200]
    row = payment(stripe_settings)
    assert row["status"] == "failed" and row["confirmation_number"] is None
    receipt = await stripe_client.get(f"/pay/receipt/{row['receipt_token']}")
    assert "declined" in receipt.text


async def test_bank_payment_processing_then_succeeded(stripe_client, stripe_settings, fake_stripe):
    ref, _ = await start(stripe_client, fake_stripe, method="bank", amount="30.00")
    events = fake_stripe.pay(ref, "bank")
    assert await deliver(stripe_client, events) == [200]
    row = payment(stripe_settings)
    assert row["status"] == "succeeded" and row["processing"] == 1 and row["confirmation_number"]
    assert row["brand"] == "STRIPE TEST BANK" and row["last4"] == "6789"
    receipt = await stripe_client.get(f"/pay/receipt/{row['receipt_token']}")
    assert "We received your bank payment" in receipt.text
    assert "up to 4 business days" in receipt.text
    assert await deliver(stripe_client, fake_stripe.bank_settles(ref)) == [200, 200]
    assert payment(stripe_settings)["processing"] == 0
    assert query(stripe_settings.database, "SELECT count(*) FROM payment_reversals")[0][0] == 0


async def test_bank_payment_fails_after_processing_reversal_in_the_next_batch(
    stripe_client, stripe_settings, fake_stripe, monkeypatch, capsys
):
    from portal.cli import main as portal_main

    stripe_client.cookies.set("portal_lang", "es")
    ref, _ = await start(stripe_client, fake_stripe, method="bank", amount="30.00")
    await deliver(stripe_client, fake_stripe.pay(ref, "bank"))
    conn = sqlite3.connect(stripe_settings.database)
    conn.execute("UPDATE payments SET settled_at = '2026-11-20T18:00:00.000000Z'")
    conn.commit()
    conn.close()
    monkeypatch.setenv("PORTAL_DATABASE", str(stripe_settings.database))
    assert portal_main(["export", "payments", "--date", "2026-11-20"]) == 0
    first = capsys.readouterr().out
    assert ",30.00," in first and ",payment,," in first
    assert await deliver(stripe_client, fake_stripe.bank_fails(ref)) == [200, 200]
    row = payment(stripe_settings)
    reversals = query(stripe_settings.database, "SELECT * FROM payment_reversals")
    assert len(reversals) == 1 and reversals[0]["kind"] == "bank_failed"
    assert reversals[0]["amount_cents"] == 3000
    assert reversals[0]["reason_code"] == "insufficient_funds"
    mail = [m for m in outbox(stripe_settings.database) if "banco" in m["subject"]]
    assert len(mail) == 1 and mail[0]["to_addr"] == "payer@example.com", [
        m["subject"] for m in outbox(stripe_settings.database)
    ]
    conn = sqlite3.connect(stripe_settings.database)
    conn.execute("UPDATE payment_reversals SET at = '2026-11-23T18:00:00.000000Z'")
    conn.commit()
    conn.close()
    assert portal_main(["export", "payments", "--date", "2026-11-20"]) == 0
    assert capsys.readouterr().out == first  # an exported batch is never rewritten
    assert portal_main(["export", "payments", "--date", "2026-11-23"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(",type,reason_code,original_confirmation_number,origin,mode")
    assert ",0067890,-30.00," in lines[1]
    # exported while PORTAL_GATEWAY is the sandbox: a test batch (security/export marking)
    assert lines[1].endswith(
        f",reversal,insufficient_funds,{row['confirmation_number']},one_time,TEST"
    )


async def test_refunds_and_dispute_become_reversals_once(
    stripe_client, stripe_settings, fake_stripe
):
    ref, _ = await start(stripe_client, fake_stripe)
    await deliver(stripe_client, fake_stripe.pay(ref, "card"))
    first_refund = fake_stripe.refund(ref, 1000)
    assert await deliver(stripe_client, first_refund) == [200]
    assert await deliver(stripe_client, fake_stripe.refund(ref, 2000)) == [200]
    assert await deliver(stripe_client, first_refund) == [200]  # Stripe redelivers
    assert await deliver(stripe_client, fake_stripe.dispute(ref)) == [200]
    amounts = query(
        stripe_settings.database, "SELECT kind, amount_cents FROM payment_reversals ORDER BY id"
    )
    # the dispute takes back only what the refunds left
    assert [tuple(r) for r in amounts] == [("refund", 1000), ("refund", 2000), ("dispute", 5410)]
    subjects = [m["subject"] for m in outbox(stripe_settings.database)]
    assert sum("Refund of your payment" in s for s in subjects) == 2
    assert sum("is disputed" in s for s in subjects) == 1
    assert [e["outcome"] for e in gateway_events(stripe_settings)][-1] == "applied"
    assert len(gateway_events(stripe_settings)) == 4  # the redelivery is not recorded twice


async def test_out_of_order_and_duplicate_webhooks(stripe_client, stripe_settings, fake_stripe):
    ref, _ = await start(stripe_client, fake_stripe, method="bank", amount="30.00")
    completed = fake_stripe.pay(ref, "bank")
    settled = fake_stripe.bank_settles(ref)
    refund = fake_stripe.refund(ref, 500)
    # the refund first, then "settled", then "completed", each twice
    assert await deliver(stripe_client, refund + settled + completed) == [200] * 4
    assert await deliver(stripe_client, refund + settled + completed) == [200] * 4
    row = payment(stripe_settings)
    assert row["status"] == "succeeded" and row["processing"] == 0
    amounts = query(stripe_settings.database, "SELECT amount_cents FROM payment_reversals")
    assert [r[0] for r in amounts] == [500]
    assert len(gateway_events(stripe_settings)) == 4
    ids = query(
        stripe_settings.database,
        "SELECT gateway_event_id FROM payment_events WHERE gateway_event_id IS NOT NULL",
    )
    assert len(ids) == 4


async def test_bad_signature_is_refused_and_nothing_recorded(
    stripe_client, stripe_settings, fake_stripe
):
    ref, _ = await start(stripe_client, fake_stripe)
    event = fake_stripe.pay(ref, "card")[0]
    assert await deliver(stripe_client, [event], secret="whsec_someone_else") == [400]
    body, signature = FakeStripe.signed(event)
    tampered = body.replace(b'"paid"', b'"unpaid"')
    old_body, old_signature = FakeStripe.signed(event, at=int(time.time()) - 3600)
    for content, header in [(tampered, signature), (old_body, old_signature), (body, None)]:
        headers = {"stripe-signature": header} if header else {}
        response = await stripe_client.post(
            "/payments/stripe/webhook", content=content, headers=headers
        )
        assert response.status_code == 400
    assert gateway_events(stripe_settings) == []
    assert payment(stripe_settings)["status"] == "pending"
    assert query(stripe_settings.database, "SELECT count(*) FROM payment_events")[0][0] == 1


async def test_event_for_an_unknown_payment_is_recorded_and_ignored(
    stripe_client, stripe_settings, fake_stripe
):
    ref, _ = await start(stripe_client, fake_stripe)
    event = fake_stripe.pay(ref, "card")[0]
    event["data"]["object"]["id"] = "cs_test_elsewhere"
    event["data"]["object"]["metadata"] = {"portal_payment": "payment-999"}
    event["data"]["object"]["payment_intent"] = "pi_test_elsewhere"
    assert await deliver(stripe_client, [event]) == [200]
    assert [tuple(e) for e in gateway_events(stripe_settings)] == [
        (event["id"], "checkout.session.completed", "ignored: unknown payment")
    ]
    assert payment(stripe_settings)["status"] == "pending"


async def test_lost_webhook_is_healed_by_reconcile(
    stripe_client, stripe_settings, fake_stripe, monkeypatch, capsys
):
    from portal.cli import main as portal_main

    ref, _ = await start(stripe_client, fake_stripe)
    fake_stripe.pay(ref, "card")  # the event never arrives and the resident never returns
    for name, value in {
        "PORTAL_DATABASE": str(stripe_settings.database),
        "PORTAL_GATEWAY": "stripe",
        "PORTAL_STRIPE_SECRET_KEY": API_KEY,
        "PORTAL_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PORTAL_STRIPE_API_BASE": fake_stripe.url,
    }.items():
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(portal_main, ["payments", "reconcile"]) == 0
    assert "0 payment(s) pending over 15 min" in capsys.readouterr().out  # too recent
    assert payment(stripe_settings)["status"] == "pending"
    code = await asyncio.to_thread(portal_main, ["payments", "reconcile", "--minutes", "0"])
    assert code == 0 and "1 settled" in capsys.readouterr().out
    assert payment(stripe_settings)["status"] == "succeeded"
    monkeypatch.setenv("PORTAL_GATEWAY", "sandbox")
    assert await asyncio.to_thread(portal_main, ["payments", "reconcile"]) == 2


async def test_serve_runs_reconcile_in_the_background(stripe_settings, fake_stripe):
    from portal.payments.reconciler import Reconciler

    app = create_app(stripe_settings)
    async with AsyncTestClient(app=app, base_url="http://portal.test"):
        assert app.state.reconciler._task is not None  # started with the app
    from portal.db import Database
    from portal.mail import Mailer
    from portal.payments.service import PaymentForm, PaymentsService
    from portal.templating import make_environment

    mailer = Mailer(stripe_settings, make_environment(stripe_settings))
    service = PaymentsService(
        Database(stripe_settings.database), stripe_settings, mailer, StripeGateway(stripe_settings)
    )
    await service.db.open()
    try:
        load_billing(stripe_settings.database)
        account = query(stripe_settings.database, "SELECT id FROM service_accounts LIMIT 1")[0][0]
        key = "k" * 24
        form = PaymentForm({"amount": "5.00", "method": "card", "idempotency_key": key})
        result = await service.start(account, None, form)
        assert result.outcome == "checkout"
        fake_stripe.pay(result.value.rsplit("/", 1)[1], "card")
        loop = Reconciler(service, minutes=0, interval=0.05)
        await loop.start()
        deadline = time.monotonic() + 10
        while payment(stripe_settings)["status"] == "pending" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await loop.stop()
        assert payment(stripe_settings)["status"] == "succeeded"
        assert loop._task is None  # stopped
    finally:
        await service.db.close()


@pytest.mark.parametrize("failure", ["500", "timeout"])
async def test_stripe_down_at_checkout_says_try_again_and_retry_reuses_the_key(
    stripe_client, stripe_settings, fake_stripe, failure
):
    data = await form_data(stripe_client)
    fake_stripe.fail_next = [failure, failure]  # the library's own retry fails too
    response = await post_form(stripe_client, "/pay/confirm", data, follow_redirects=False)
    assert response.status_code == 503
    assert "The payment service is not answering" in response.text
    assert "Nothing was paid" in response.text
    assert hidden(response.text, "idempotency_key") == data["idempotency_key"]
    assert "checkout.stripe.com" in response.headers["content-security-policy"]
    assert payment(stripe_settings)["gateway_ref"] is None
    retry = {k: hidden(response.text, k) for k in data}
    again = await post_form(stripe_client, "/pay/confirm", retry, follow_redirects=False)
    assert again.status_code == 303, again.text
    keys = {r[3] for r in session_creates(fake_stripe)}
    assert keys == {data["idempotency_key"]}
    sessions = [o for o in fake_stripe.objects.values() if o["object"] == "checkout.session"]
    assert len(sessions) == 1  # a timed-out first try and the retry: one session
    assert again.headers["location"] == sessions[0]["url"]
    assert payment(stripe_settings)["gateway_ref"] == sessions[0]["id"]


async def test_saved_method_and_off_session_charge(stripe_settings, fake_stripe):
    gateway = StripeGateway(stripe_settings)
    try:
        setup = await gateway.create_setup_checkout(
            idempotency_key="setup-key-0123456789abc",
            email="maria@example.com",
            reference="autopay-1",
            method="card",
            return_url="http://portal.test/autopay/return",
        )
        assert setup.customer.startswith("cus_test_")
        assert await gateway.retrieve_saved_method(setup.ref) is None  # not finished yet
        fake_stripe.save_method(setup.ref)
        saved = await gateway.retrieve_saved_method(setup.ref)
        assert (saved.customer, saved.method, saved.brand, saved.last4) == (
            setup.customer,
            "card",
            "Visa",
            "4242",
        )
        assert saved.token.startswith("pm_test_") and saved.exp_year == 2039
        charge = dict(customer=saved.customer, token=saved.token, method="card", amount_cents=2500)
        first = await gateway.charge_saved(idempotency_key="ap-1-b1-1", reference="p-1", **charge)
        again = await gateway.charge_saved(idempotency_key="ap-1-b1-1", reference="p-1", **charge)
        assert first.status == "succeeded" and first.ref == again.ref  # one charge
        fake_stripe.declining_methods.add(saved.token)
        declined = await gateway.charge_saved(
            idempotency_key="ap-1-b2-1", reference="p-2", **charge
        )
        assert declined.status == "failed" and declined.failure_code == "insufficient_funds"
        assert (await gateway.retrieve_intent(first.ref)).status == "succeeded"
    finally:
        await gateway.close()


async def test_fake_refuses_parameters_stripe_does_not_define(stripe_settings, fake_stripe):
    import stripe

    gateway = StripeGateway(stripe_settings)
    try:
        with pytest.raises(stripe.InvalidRequestError, match="unknown parameter: bogus"):
            await gateway.client.v1.checkout.sessions.create_async(
                {"mode": "payment", "success_url": "x", "bogus": "1"}
            )
    finally:
        await gateway.close()


def test_stripe_settings_need_both_keys_and_hide_them():
    env = {"PORTAL_GATEWAY": "stripe", "PORTAL_STRIPE_SECRET_KEY": "sk_test_x"}
    with pytest.raises(SettingsError, match="PORTAL_STRIPE_WEBHOOK_SECRET"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "PORTAL_STRIPE_WEBHOOK_SECRET": "whsec_y"})
    assert settings.gateway == "stripe" and settings.stripe_api_base == "https://api.stripe.com"
    assert "sk_test_x" not in repr(settings) and "whsec_y" not in repr(settings)


# --- in the browser: the new page states pass axe, with and without JavaScript ----------


@pytest.fixture
def live_settings(stripe_settings):
    load_billing(stripe_settings.database)
    return stripe_settings


@pytest.mark.browser
@pytest.mark.parametrize("js", [True, False])
def test_try_again_and_bank_processing_pages_are_accessible(live_server, new_page, fake_stripe, js):
    from helpers import PHONE, assert_accessible

    page = new_page(viewport=PHONE, js=js)
    page.goto(f"{live_server.url}/pay")
    page.fill("#customer_number", "12345")
    page.fill("#account_number", "67890")
    page.locator("#main button[type=submit]").click()
    page.fill("#amount", "30.00")
    page.check("#method-bank")
    fake_stripe.fail_next = ["500", "500"]
    page.locator("#main button[type=submit]").click()
    assert page.locator("h1").inner_text() == "The payment service is not answering"
    assert_accessible(page, "Stripe not answering")
    db = live_server.settings.database
    token = query(db, "SELECT receipt_token FROM payments")[0][0]
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE payments SET status = 'succeeded', processing = 1, brand = 'STRIPE TEST BANK',"
        " last4 = '6789', confirmation_number = 'PAY-TEST-0001',"
        " settled_at = '2026-11-20T18:00:00.000000Z'"
    )
    conn.commit()
    conn.close()
    page.goto(f"{live_server.url}/pay/receipt/{token}")
    assert page.locator("h1").inner_text() == "We received your bank payment"
    assert_accessible(page, "bank payment processing")
