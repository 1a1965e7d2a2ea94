"""Paying from a saved method in one step from My Account: amount, method, confirm.

Never twice, as with every payment form: the form carries an idempotency key made when
it was first shown. The confirm step commits the payment row (origin 'saved_method', the
key UNIQUE) before the gateway is called, and the gateway gets the same key. The same
form sent again, or twice at once, finds that row: a settled one answers with its
receipt, a pending one asks the gateway again with the same key, which charges once.
A pending one the resident left behind (the processor did not answer, or the portal
stopped between writing the row and asking) is asked again by the runner after
STALE_AFTER, with the same key, and settled from the answer: still one charge.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from portal.accounts import audit
from portal.autopay.charges import ask_gateway, runner_audit, settle_charge
from portal.autopay.methods import chosen_method
from portal.db import Database, utc_text, utcnow
from portal.forms import Form, Result
from portal.i18n import _, current_locale
from portal.payments.service import PaymentsService, payment_amount
from portal.settings import Settings

ORIGIN = "saved_method"
STALE_AFTER = timedelta(minutes=10)  # the resident's own "Pay now" again comes first


class SavedPayForm(Form):
    fields = ("amount", "method_id", "idempotency_key")
    checkboxes = ("change",)  # the confirm step's "Change" button: back to the form


class SavedPayService:
    def __init__(self, db: Database, settings: Settings, payments: PaymentsService) -> None:
        self.db = db
        self.settings = settings
        self.payments = payments

    def check(self, form: SavedPayForm, methods: list[Any]) -> tuple[int | None, Any]:
        """Fill form.errors; the amount in cents and the chosen method when they are."""
        cents, problem = payment_amount(form.amount, self.settings)
        if problem:
            form.errors["amount"] = problem
        method = chosen_method(form, methods)
        if not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", form.idempotency_key):
            form.errors["form"] = _(
                "This payment form had expired, so nothing was paid. Check the details below and continue again"
            )
        return cents, method

    async def pay(
        self, user: Any, account: Any, form: SavedPayForm, methods: list[Any], client: str
    ) -> Result:
        """Outcome 'receipt', 'declined' or 'pending' (value: the receipt page),
        'unavailable' (no answer: the same form may be sent again) or 'invalid'."""
        cents, method = self.check(form, methods)
        if form.errors:
            return Result.invalid(form.errors)
        payment = await self._payment_row(
            user, account, method, cents, form.idempotency_key, client
        )
        if (payment["origin"], payment["account_id"], payment["amount_cents"]) != (
            ORIGIN,
            account["id"],
            cents,
        ) or payment["saved_method_id"] != method["id"]:
            # The key is bound to what it was first sent with: reused with another
            # account, amount or method it must not charge (or reveal) anything.
            return Result.invalid(
                {
                    "form": _(
                        "This payment form was already used for a different payment, so nothing was paid. Check the details below and continue again"
                    )
                }
            )
        if payment["status"] == "pending":
            result = await ask_gateway(self.payments, payment, method)
            if result is None:
                return Result("unavailable")
            async with self.db.write() as conn:
                payment = await settle_charge(self.payments, conn, payment, result, ORIGIN)
                await audit.record(
                    conn,
                    f"saved_method_payment_{payment['status']}",
                    username=user.username,
                    client=client,
                    detail=f"payment={payment['id']} amount={cents}",
                )
        outcome = {"succeeded": "receipt", "pending": "pending"}.get(payment["status"], "declined")
        return Result(outcome, value=f"/pay/receipt/{payment['receipt_token']}")

    async def settle_stale(self, now: datetime) -> int:
        """The runner's part: ask the gateway again, with the same key, about each one-step
        payment still pending after STALE_AFTER, and settle it from the answer. Returns
        how many were settled (a gateway that still does not answer: next round)."""
        stale = await self.db.fetchall(
            "SELECT p.*, u.username FROM payments p JOIN users u ON u.id = p.user_id"
            " WHERE p.status = 'pending' AND p.origin = ? AND p.created_at < ?",
            (ORIGIN, utc_text(now - STALE_AFTER)),
        )
        settled = 0
        for payment in stale:
            method = await self.db.fetchone(
                "SELECT * FROM saved_methods WHERE id = ?", (payment["saved_method_id"],)
            )
            result = await ask_gateway(self.payments, payment, method) if method else None
            if result is None:
                continue
            async with self.db.write() as conn:
                cursor = await conn.execute(
                    "SELECT status FROM payments WHERE id = ?", (payment["id"],)
                )
                if (await cursor.fetchone())["status"] != "pending":
                    continue  # settled meanwhile (the resident's Pay now, another runner)
                now_row = await settle_charge(self.payments, conn, payment, result, ORIGIN)
                await runner_audit(
                    conn,
                    f"saved_method_payment_{now_row['status']}",
                    payment,
                    f"payment={payment['id']} amount={payment['amount_cents']} asked again",
                )
            settled += 1
        return settled

    async def _payment_row(
        self, user: Any, account: Any, method: Any, cents: int, key: str, client: str
    ) -> Any:
        """The form's payment row: written now (pending) or found from an earlier send."""
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO payments (idempotency_key, account_id, user_id, amount_cents,"
                " status, gateway, method, brand, last4, receipt_email, receipt_token,"
                " created_at, locale, origin, saved_method_id)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    key,
                    account["id"],
                    user.user_id,
                    cents,
                    self.payments.gateway.name,
                    method["method"],
                    method["brand"],
                    method["last4"],
                    user.email,
                    secrets.token_urlsafe(24),
                    utcnow(),
                    current_locale.get(),
                    ORIGIN,
                    method["id"],
                ),
            )
            created = cursor.rowcount == 1
            cursor = await conn.execute("SELECT * FROM payments WHERE idempotency_key = ?", (key,))
            payment = await cursor.fetchone()
            if created:
                await self.payments._event(conn, payment["id"], "pending", "saved method form sent")
                await audit.record(
                    conn,
                    "saved_method_payment_started",
                    username=user.username,
                    client=client,
                    detail=f"payment={payment['id']} account={account['account_number']}"
                    f" amount={cents} method={method['last4']}",
                )
        return payment
