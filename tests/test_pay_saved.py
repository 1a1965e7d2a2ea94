"""Paying now from a saved method, in one step from My Account (amount, method, confirm),
over HTTP without JavaScript and with htmx's headers: one charge per form however often
it is sent, the amount rule of every payment form, and nobody else's method."""

# ruff: noqa: F811 (the fixtures maria and db_path come from test_autopay)

from __future__ import annotations

import asyncio
import re

from test_autopay import add_method, db_path, export_payments, maria, one  # noqa: F401 (fixtures)
from test_billing_http import sign_up_and_in

from resident_steps import outbox, post_form, query

DECLINES = "4000 0000 0000 0341"  # saved, then declined when charged


def hidden(html: str, name: str) -> str:
    return re.search(rf'name="{name}"[^>]*? value="([^"]*)"', html).group(1)


async def start(resident) -> dict:
    """The form as My Account shows it: amount due and the default method chosen."""
    page = (await resident.get(f"/accounts/{resident.account_id}/pay-saved")).text
    return {
        "amount": hidden(page, "amount"),
        "method_id": re.search(r'name="method_id" value="(\d+)" checked', page).group(1),
        "idempotency_key": hidden(page, "idempotency_key"),
    }


async def review(resident, form: dict):
    return await resident.post(f"/accounts/{resident.account_id}/pay-saved", form)


async def confirm(resident, form: dict):
    return await resident.post(f"/accounts/{resident.account_id}/pay-saved/confirm", form)


async def test_dashboard_form_confirm_receipt_one_charge_and_export(maria, settings, db_path):
    await add_method(maria, nickname="")
    default = await add_method(maria, nickname="Kitchen card")
    await maria.post(f"/profile/payment-methods/{default}/default", {})
    dashboard = (await maria.get("/account")).text
    assert f'href="/accounts/{maria.account_id}/pay-saved"' in dashboard
    assert "Pay with a saved payment method" in dashboard
    form = await start(maria)
    assert form["amount"] == "84.10"  # the amount due to start with
    page = (await maria.get(f"/accounts/{maria.account_id}/pay-saved")).text
    assert f'value="{default}" checked' in page  # the default method chosen
    # The confirm step says what will be charged, and charges nothing yet.
    step = await review(maria, {**form, "amount": "$50.00"})
    assert step.status_code == 200 and "Check your payment" in step.text
    assert "$50.00" in step.text and "Kitchen card (Visa ending 4242)" in step.text
    assert one(db_path, "SELECT count(*) FROM payments") == 0
    # "Change" goes back to the form with the answers kept.
    back = await review(maria, {**form, "amount": "50.00", "change": "yes"})
    assert 'name="amount"' in back.text and 'value="50.00"' in back.text
    assert "Check your payment" not in back.text
    done = await confirm(maria, {**form, "amount": hidden(step.text, "amount")})
    assert done.status_code == 303
    receipt = await maria.get(done.headers["location"])
    assert "Payment confirmation" in receipt.text and "$50.00" in receipt.text
    payment = query(db_path, "SELECT * FROM payments")[0]
    assert (payment["status"], payment["amount_cents"], payment["origin"]) == (
        "succeeded",
        5000,
        "saved_method",
    )
    assert payment["saved_method_id"] == default
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    assert any(m["subject"].startswith("Payment receipt") for m in outbox(db_path))
    events = [r["event"] for r in query(db_path, "SELECT event FROM audit_log")]
    assert "saved_method_payment_started" in events
    assert "saved_method_payment_succeeded" in events
    # The dashboard counts it; the export shows it with its origin.
    assert "$34.10" in (await maria.get("/account")).text
    assert export_payments(settings).splitlines()[1].endswith(",saved_method,TEST")


async def test_the_same_form_sent_twice_or_at_once_charges_once(maria, client, db_path):
    await add_method(maria)
    form = await start(maria)
    first = await confirm(maria, form)
    again = await confirm(maria, form)  # a second press, a reload, a replay
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    # Two presses at the same moment, with a new form (nothing is due now: an amount).
    form = {**(await start(maria)), "amount": "20.00"}
    maria._use()
    both = await asyncio.gather(
        *(
            post_form(
                client,
                f"/accounts/{maria.account_id}/pay-saved/confirm",
                form,
                follow_redirects=False,
            )
            for _ in "ab"
        )
    )
    assert [r.status_code for r in both] == [303, 303]
    assert both[0].headers["location"] == both[1].headers["location"]
    assert one(db_path, "SELECT count(*) FROM payments") == 2
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 2
    # The same key with another amount pays nothing and says why.
    changed = await confirm(maria, {**form, "amount": "10.00"})
    assert changed.status_code == 422 and "already used for a different payment" in changed.text
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 2


async def test_a_bad_amount_is_a_clear_message_and_nothing_is_written(maria, db_path):
    await add_method(maria)
    form = await start(maria)
    for amount, message in [
        ("", "Enter the amount you want to pay"),
        ("ten", "Enter the amount in dollars and cents, like 84.10"),
        ("0.50", "Enter an amount of at least $1.00"),
        ("99999", "Enter an amount of $10,000.00 or less"),
    ]:
        for send in (review, confirm):
            response = await send(maria, {**form, "amount": amount})
            assert response.status_code == 422, (amount, send)
            assert message in response.text and "Error: " in response.text
    assert one(db_path, "SELECT count(*) FROM payments") == 0


async def test_someone_elses_method_or_account_is_refused(maria, client, db_path):
    await add_method(maria)
    form = await start(maria)
    james = await sign_up_and_in(
        client,
        db_path,
        "james2",
        customer_number="22222",
        account_number="33333",
        email="j@example.com",
        confirm_email="j@example.com",
    )
    james.db, james.account_id = (
        db_path,
        one(db_path, "SELECT id FROM service_accounts WHERE account_number = '0033333'"),
    )
    # James names Maria's saved method on his own account: not one of his.
    response = await confirm(james, {**form, "amount": "20.00"})
    assert response.status_code == 422
    assert "Choose the saved payment method to charge" in response.text
    # Maria's account is not his to see or pay.
    assert (await james.get(f"/accounts/{maria.account_id}/pay-saved")).status_code == 404
    response = await james.post(f"/accounts/{maria.account_id}/pay-saved/confirm", form)
    assert response.status_code == 404
    assert one(db_path, "SELECT count(*) FROM payments") == 0
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 0


async def test_a_declined_method_shows_the_declined_page(maria, db_path):
    await add_method(maria, card=DECLINES)
    done = await confirm(maria, await start(maria))
    assert done.status_code == 303
    page = await maria.get(done.headers["location"])
    assert "Your payment did not go through" in page.text
    assert one(db_path, "SELECT status FROM payments") == "failed"


async def test_with_htmx_the_steps_answer_with_whole_pages(maria, db_path):
    await add_method(maria)
    form = await start(maria)
    maria._use()
    boosted = {"HX-Request": "true", "HX-Boosted": "true"}
    step = await post_form(
        maria.client, f"/accounts/{maria.account_id}/pay-saved", form, headers=boosted
    )
    assert step.status_code == 200 and "Check your payment" in step.text
    assert step.headers["hx-push-url"] == "false"
    bad = await post_form(
        maria.client,
        f"/accounts/{maria.account_id}/pay-saved",
        {**form, "amount": "x"},
        headers=boosted,
    )
    assert bad.status_code == 422 and 'id="error-summary"' in bad.text
    done = await post_form(
        maria.client,
        f"/accounts/{maria.account_id}/pay-saved/confirm",
        form,
        headers=boosted,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/pay/receipt/")
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1


async def test_a_payment_left_pending_is_settled_by_the_runner_with_one_charge(
    maria, settings, db_path
):
    """The portal stopped after writing the payment row and before asking the processor
    (or the processor did not answer and the resident went away): after ten minutes the
    runner asks again with the same key and settles it; still one charge."""
    from datetime import UTC, datetime, timedelta

    from portal.accounts.sessions import SignedIn
    from portal.autopay.jobs import run_once
    from portal.services import Services
    from portal.templating import make_environment

    method_id = await add_method(maria)
    form = await start(maria)
    services = Services.build(settings, make_environment(settings))
    await services.db.open()
    try:
        [user] = query(db_path, "SELECT * FROM users WHERE username = 'maria1'")
        resident = SignedIn(user["id"], user["username"], user["email"], "en", "-")
        [account] = query(
            db_path, "SELECT * FROM service_accounts WHERE id = ?", (maria.account_id,)
        )
        [method] = query(db_path, "SELECT * FROM saved_methods WHERE id = ?", (method_id,))
        await services.saved_pay._payment_row(
            resident, account, method, 8410, form["idempotency_key"], "203.0.113.5"
        )
        assert one(db_path, "SELECT status FROM payments") == "pending"
        now = datetime.now(UTC)
        assert (await run_once(services, now))["settled"] == 0  # the resident's turn first
        assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 0
        later = await run_once(services, now + timedelta(minutes=11))
        assert later["settled"] == 1
        assert (await run_once(services, now + timedelta(minutes=20)))["settled"] == 0
    finally:
        await services.db.close()
    assert one(db_path, "SELECT status FROM payments") == "succeeded"
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
    assert any(m["subject"].startswith("Payment receipt") for m in outbox(db_path))
    [audit] = query(
        db_path, "SELECT * FROM audit_log WHERE event = 'saved_method_payment_succeeded'"
    )
    assert audit["client"] == "runner" and audit["username"] == "maria1"
    # The resident pressing Pay now again on that form: the same receipt, no new charge.
    again = await confirm(maria, form)
    assert again.status_code == 303 and "/pay/receipt/" in again.headers["location"]
    assert one(db_path, "SELECT count(*) FROM sandbox_charges") == 1
