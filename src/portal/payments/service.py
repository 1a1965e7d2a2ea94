"""Payments: start one (idempotently), settle it from the gateway, show the result.

Never twice: every payment form carries an idempotency key made when the form was
shown, and payments.idempotency_key is UNIQUE. However often a form is sent (double
clicks, reloads, back button, concurrent posts) there is one payment row and one
gateway session; later sends land on the same checkout or confirmation. Settling only
moves a payment out of 'pending' once, so a replayed notification changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from typing import Any

from portal.accounts.validation import account_not_found, normalize_email, number_pair_problems
from portal.billing.money import parse_cents
from portal.billing.numbers import number_key
from portal.billing.service import amount_due
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _, current_locale
from portal.observe import metrics
from portal.payments.gateway import (
    Gateway,
    GatewayResult,
    GatewayUnavailable,
    Reversal,
    verify_signature,
)
from portal.settings import Settings
from portal.templating import money

log = logging.getLogger("portal.payments")
# How long a guest's amount form stays good. 20 hours: WCAG 2.2.1 (Timing Adjustable)
# asks no warning of a limit that long, and the token names only an account that its
# holder has already looked up (it shows nothing the form did not).
ACCOUNT_TOKEN_SECONDS = 20 * 3600
CONFIRMATION_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
METHODS = ("card", "bank")


def new_key() -> str:
    return secrets.token_urlsafe(24)


def confirmation_number() -> str:
    chars = "".join(secrets.choice(CONFIRMATION_ALPHABET) for _ in range(8))
    return f"PAY-{chars[:4]}-{chars[4:]}"


def mask_address(address: str) -> str:
    """'1234 Euclid Ave, Ontario' -> '1*** E***** Ave, Ontario': enough to recognise."""
    first, _, rest = address.partition(",")
    words = first.split()
    masked = [w[0] + "*" * (len(w) - 1) if i < len(words) - 1 else w for i, w in enumerate(words)]
    return " ".join(masked) + ("," + rest if rest else "")


def initials(name: str) -> str:
    return " ".join(f"{part[0].upper()}." for part in name.split() if part[:1].isalpha())


def _text(value: Any, optional: bool = False) -> Any:
    """A notification's text field as it can be stored: a string (or None if optional)
    that is valid UTF-8. JSON can carry lone surrogates ("\\ud800"), which SQLite refuses."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError("not text")
    value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    return value


def payment_amount(text: str, settings: Settings) -> tuple[int | None, str | None]:
    """A payment amount as typed ("$1,084.10"): (cents, None), or (None, what to fix).
    Every form that moves money (Pay My Bill, a scheduled payment, a phone payment) uses
    this one rule."""
    raw = text.replace("$", "").replace(",", "")
    cents = parse_cents(raw) if raw and len(raw) <= 12 else None
    if not raw:
        return None, _("Enter the amount you want to pay")
    if cents is None:
        return None, _("Enter the amount in dollars and cents, like 84.10")
    if cents < 100:
        return None, _("Enter an amount of at least $1.00")
    if cents > settings.payment_max_cents:
        return None, _(
            "Enter an amount of %(max)s or less. For a larger payment, call %(phone)s",
            max=money(settings.payment_max_cents),
            phone=settings.support_phone,
        )
    return cents, None


class PaymentForm(Form):
    fields = ("account_token", "amount", "method", "receipt_email", "idempotency_key")


class PaymentsService:
    def __init__(self, db: Database, settings: Settings, mailer: Any, gateway: Gateway) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer
        self.gateway = gateway

    # --- which account -------------------------------------------------------------

    def account_token(self, account_id: int, now: float | None = None) -> str:
        """A signed, expiring reference to an account for the guest's payment form."""
        issued = int(now if now is not None else time.time())
        message = f"{account_id}.{issued}"
        mac = hmac.new(
            self.settings.secret_key.encode(), f"pay-account:{message}".encode(), hashlib.sha256
        ).hexdigest()[:32]
        return f"{message}.{mac}"

    def account_from_token(self, token: str) -> int | None:
        # [0-9], not \d: other scripts' digits would reach compare_digest, which refuses
        # non-ASCII text with a TypeError.
        match = re.fullmatch(r"([0-9]{1,12})\.([0-9]{1,12})\.([0-9a-f]{32})", token or "")
        if not match:
            return None
        account_id, issued = int(match.group(1)), int(match.group(2))
        if not hmac.compare_digest(self.account_token(account_id, issued), token):
            return None
        if time.time() - issued > ACCOUNT_TOKEN_SECONDS:
            return None
        return account_id

    async def look_up(self, form: Any) -> Result:
        """Pay My Bill: the active account the two numbers from a bill name (value), or
        the same messages as registration and Add another account."""
        errors = number_pair_problems(form.customer_number, form.account_number)
        if not errors:
            account = await self.find_account(form.customer_number, form.account_number)
            if account is not None:
                return Result(value=account)
            errors["account_number"] = account_not_found()
        return Result.invalid(errors)

    async def find_account(self, customer_number: str, account_number: str) -> Any:
        return await self.db.fetchone(
            "SELECT * FROM service_accounts WHERE customer_key = ? AND account_key = ? AND status = 'active'",
            (number_key(customer_number), number_key(account_number)),
        )

    async def account(self, account_id: int) -> Any:
        return await self.db.fetchone(
            "SELECT * FROM service_accounts WHERE id = ? AND status = 'active'", (account_id,)
        )

    async def amount_due(self, account_id: int) -> int | None:
        return await amount_due(self.db, account_id)

    # --- the payment form ------------------------------------------------------------

    def check_form(self, form: PaymentForm) -> int | None:
        """Fill form.errors; the amount in cents when it is one."""
        errors = form.errors
        cents, problem = payment_amount(form.amount, self.settings)
        if problem:
            errors["amount"] = problem
        if form.method not in METHODS:
            errors["method"] = _("Choose how you want to pay: card or bank account")
        if form.receipt_email and normalize_email(form.receipt_email) is None:
            errors["receipt_email"] = _(
                "Enter an email address in the correct format, like name@example.com, or leave it empty"
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", form.idempotency_key):
            errors["form"] = _(
                "This payment form had expired, so nothing was paid. Check the details below and continue again"
            )
        return cents

    async def start(
        self,
        account_id: int,
        user_id: int | None,
        form: PaymentForm,
        taken_by_staff_id: int | None = None,
    ) -> Result:
        """Outcome 'checkout' (go to the gateway), 'receipt' or 'declined' (this form was
        sent before), or 'invalid'; value is the URL to go to. `taken_by_staff_id` marks
        a payment a representative took by phone."""
        cents = self.check_form(form)
        if form.errors:
            return Result.invalid(form.errors)
        key = form.idempotency_key
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO payments (idempotency_key, account_id, user_id, amount_cents, status,"
                " gateway, method, receipt_email, receipt_token, created_at, locale,"
                " taken_by_staff_id)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    key,
                    account_id,
                    user_id,
                    cents,
                    self.gateway.name,
                    form.method,
                    form.receipt_email or None,
                    secrets.token_urlsafe(24),
                    utcnow(),
                    current_locale.get(),
                    taken_by_staff_id,
                ),
            )
            created = cursor.rowcount == 1
            cursor = await conn.execute("SELECT * FROM payments WHERE idempotency_key = ?", (key,))
            payment = await cursor.fetchone()
            if created:
                await self._event(conn, payment["id"], "pending", "form sent")
                metrics.record_payment("pending", self.gateway.name)
        if (payment["account_id"], payment["amount_cents"]) != (account_id, cents):
            # The key is bound to the account and amount it was first sent with: reused
            # with others, it must not answer with (or reveal) the first checkout.
            return Result.invalid(
                {
                    "form": _(
                        "This payment form was already used for a different payment, so nothing was paid. Check the details below and continue again"
                    )
                }
            )
        if payment["status"] == "succeeded":
            return Result("receipt", value=f"/pay/receipt/{payment['receipt_token']}")
        if payment["status"] in ("failed", "canceled"):
            return Result("declined", value=f"/pay/receipt/{payment['receipt_token']}")
        if payment["gateway_ref"] is not None:  # the session exists: back to it
            return Result("checkout", value=self.gateway.checkout_url(payment["gateway_ref"]))
        account = await self.db.fetchone(
            "SELECT account_number FROM service_accounts WHERE id = ?", (account_id,)
        )
        try:
            checkout = await self.gateway.create_checkout(
                idempotency_key=key,
                amount_cents=payment["amount_cents"],
                reference=f"payment-{payment['id']}",
                method=payment["method"],
                return_url=f"{self.settings.base_url}/pay/return",
                account_number=account["account_number"],
            )
        except GatewayUnavailable:
            # Nothing was charged (a session is not a charge). The payment stays pending
            # with its key; trying again asks the processor with the same key.
            return Result("unavailable")
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE payments SET gateway_ref = ? WHERE id = ? AND gateway_ref IS NULL",
                (checkout.ref, payment["id"]),
            )
        return Result("checkout", value=checkout.url)

    async def _event(
        self, conn, payment_id: int, status: str, detail: str, event_id: str | None = None
    ) -> None:
        await conn.execute(
            "INSERT INTO payment_events (payment_id, status, at, detail, gateway_event_id)"
            " VALUES (?, ?, ?, ?, ?)",
            (payment_id, status, utcnow(), detail, event_id),
        )

    # --- settling ----------------------------------------------------------------------

    async def settle(self, result: GatewayResult, source: str) -> Any:
        """Record how the gateway says a payment ended. Idempotent."""
        async with self.db.write() as conn:
            payment, _changed = await self.settle_in(conn, result, source)
        if payment is not None:
            log.info("payment %s is %s after %s", payment["id"], payment["status"], source)
        return payment

    async def settle_in(
        self, conn, result: GatewayResult, source: str, event_id: str | None = None
    ) -> tuple[Any, bool]:
        """settle() inside the caller's write transaction: (payment, whether it changed).

        A pending payment becomes succeeded (a processing bank payment too: it is
        accepted, counts as paid and is exported), failed or canceled, once. A processing
        bank payment later settles, or fails, which is a reversal of the accepted money."""
        cursor = await conn.execute("SELECT * FROM payments WHERE gateway_ref = ?", (result.ref,))
        payment = await cursor.fetchone()
        if payment is None or result.status == "open":
            return payment, False
        if payment["status"] == "succeeded" and payment["processing"]:
            return await self._settle_processing(conn, payment, result, source, event_id)
        if payment["status"] != "pending":
            return payment, False
        if result.amount_cents != payment["amount_cents"]:
            await self._event(conn, payment["id"], "pending", f"amount mismatch from {source}")
            log.error("payment %s: gateway amount differs; not settled", payment["id"])
            return payment, False
        accepted = result.status in ("succeeded", "processing")
        await conn.execute(
            "UPDATE payments SET status = ?, processing = ?, method = coalesce(?, method),"
            " brand = ?, last4 = ?, settled_at = ?, confirmation_number = ?, gateway_intent = ?"
            " WHERE id = ? AND status = 'pending'",
            (
                "succeeded" if accepted else result.status,
                1 if result.status == "processing" else 0,
                result.method,
                result.brand,
                result.last4,
                utcnow(),
                confirmation_number() if accepted else None,
                result.intent,
                payment["id"],
            ),
        )
        detail = f"from {source}" + (f" ({result.failure_code})" if result.failure_code else "")
        await self._event(conn, payment["id"], result.status, detail, event_id)
        cursor = await conn.execute("SELECT * FROM payments WHERE id = ?", (payment["id"],))
        payment = await cursor.fetchone()
        if accepted and payment["receipt_email"]:
            account = await (
                await conn.execute(
                    "SELECT * FROM service_accounts WHERE id = ?", (payment["account_id"],)
                )
            ).fetchone()
            await self.mailer.enqueue(
                conn,
                to=payment["receipt_email"],
                template="payment_receipt",
                context={
                    "payment": dict(payment),
                    "service_addresses": [mask_address(account["service_address"])],
                    "account_ending": account["account_number"][-4:],
                    "link": f"{self.settings.base_url}/pay/receipt/{payment['receipt_token']}",
                },
                locale=payment["locale"] or current_locale.get(),
            )
        metrics.record_payment(payment["status"], payment["gateway"])
        return payment, True

    async def _settle_processing(
        self, conn, payment: Any, result: GatewayResult, source: str, event_id: str | None
    ) -> tuple[Any, bool]:
        from portal.payments.trail import record_reversal

        if result.status == "succeeded":
            await conn.execute("UPDATE payments SET processing = 0 WHERE id = ?", (payment["id"],))
            await self._event(
                conn, payment["id"], "succeeded", f"money arrived, from {source}", event_id
            )
        elif result.status in ("failed", "canceled"):
            await conn.execute("UPDATE payments SET processing = 0 WHERE id = ?", (payment["id"],))
            reversal = Reversal(
                "bank_failed",
                payment["amount_cents"],
                result.failure_code or "bank_failed",
                f"{result.intent or result.ref}:failed",
            )
            await record_reversal(self, conn, payment, reversal, event_id)
        else:
            return payment, False
        cursor = await conn.execute("SELECT * FROM payments WHERE id = ?", (payment["id"],))
        return await cursor.fetchone(), True

    async def handle_notification(self, body: bytes, signature: str | None) -> bool:
        """A gateway notification: verified, then settled. False if it is not genuine."""
        if not verify_signature(self.settings.gateway_signing_secret, body, signature):
            log.warning("gateway notification with a bad signature refused")
            return False
        try:
            event = json.loads(body)
            result = GatewayResult(
                ref=_text(event["ref"]),
                status=_text(event["status"]),
                amount_cents=int(event["amount_cents"]),
                # A method we do not know keeps the one the resident chose (exports expect these).
                method=event.get("method") if event.get("method") in METHODS else None,
                brand=_text(event.get("brand"), optional=True),
                last4=_text(event.get("last4"), optional=True),
            )
        except (ValueError, KeyError, TypeError, OverflowError):  # 1e999 -> OverflowError
            return False
        if result.status not in ("open", "succeeded", "failed", "canceled"):
            return False
        await self.settle(result, "notification")
        return True

    async def settle_from_gateway(self, ref: str) -> Any:
        """The resident is back from the gateway: ask it how the payment ended."""
        result = await self.gateway.retrieve(ref)  # GatewayUnavailable: the caller says so
        if result is None:
            return None
        payment = await self.settle(result, "return")
        return payment

    async def by_gateway_ref(self, ref: str) -> Any:
        return await self.db.fetchone("SELECT * FROM payments WHERE gateway_ref = ?", (ref,))

    async def by_receipt_token(self, token: str) -> Any:
        if not token or len(token) > 64:
            return None
        return await self.db.fetchone(
            "SELECT p.*, sa.service_address, sa.account_number, sa.customer_number"
            " FROM payments p JOIN service_accounts sa ON sa.id = p.account_id WHERE p.receipt_token = ?",
            (token,),
        )
