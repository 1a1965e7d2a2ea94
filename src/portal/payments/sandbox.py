"""The embedded sandbox gateway: a processor's hosted payment page, in TEST MODE.

It lives under /sandbox-gateway/ in the same server, keeps its own table
(sandbox_sessions) and, like a real processor, tells the portal how a payment ended with
a notification signed by HMAC. Test numbers: card 4242 4242 4242 4242 approves,
4000 0000 0000 0002 is declined; any bank account with a valid routing number approves.
Card numbers and security codes are checked in memory and never stored or logged: the
session keeps the brand and last four digits, as a processor shows a merchant.

Save mode (like Stripe's setup mode): the same hosted page saves a card or bank account
and gives the portal a token (sandbox_methods); charge_saved() charges a token once per
idempotency key (sandbox_charges), so a retry with the same key gets the first answer.
Card 4000 0000 0000 0341 saves, but every charge on it is declined.
PORTAL_SANDBOX_CHARGE_DELAY makes a charge hold its answer that many seconds after the
charge is made, so tests can kill or time out a runner while the "gateway" works.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Unpack

from portal.db import Database, utcnow
from portal.forms import Form
from portal.i18n import _
from portal.payments.gateway import (
    Checkout,
    CheckoutOrder,
    GatewayResult,
    SavedCharge,
    SavedMethod,
    SetupCheckout,
    SetupOrder,
    sign,
)
from portal.settings import Settings

log = logging.getLogger("portal.sandbox")
DECLINED_CARD = "4000000000000002"
# Saved without trouble, but every later charge is declined (as Stripe's test card).
DECLINES_LATER_CARD = "4000000000000341"
Notify = Callable[[bytes, str], Awaitable[Any]]


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return total % 10 == 0


def routing_ok(digits: str) -> bool:
    """ABA routing number checksum: 3-7-1 weights over the nine digits."""
    if not re.fullmatch(r"\d{9}", digits):
        return False
    d = [int(c) for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def card_brand(digits: str) -> str:
    if digits.startswith("4"):
        return "Visa"
    if digits[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(digits[:4] or 0) <= 2720:
        return "Mastercard"
    if digits[:2] in {"34", "37"}:
        return "American Express"
    if digits.startswith("6011") or digits.startswith("65"):
        return "Discover"
    return "Card"


def check_card(form: dict[str, str], today: datetime | None = None) -> tuple[dict[str, str], str]:
    """Field errors for a card form, and the digits (kept in memory only)."""
    errors: dict[str, str] = {}
    digits = re.sub(r"[\s-]", "", form.get("card_number", ""))
    if not digits:
        errors["card_number"] = _("Enter the card number")
    elif not re.fullmatch(r"\d{13,19}", digits) or not luhn_ok(digits):
        errors["card_number"] = _("Enter the card number as it is on your card, 13 to 19 digits")
    expiry = form.get("expiry", "").replace(" ", "")
    match = re.fullmatch(r"(\d{1,2})/(\d{2}|\d{4})", expiry)
    if not expiry:
        errors["expiry"] = _("Enter the expiry date, like 04/29")
    elif not match or not 1 <= int(match.group(1)) <= 12:
        errors["expiry"] = _("Enter the expiry date as month and year, like 04/29")
    else:
        year = int(match.group(2))
        year += 2000 if year < 100 else 0
        now = today or datetime.now(UTC)
        if (year, int(match.group(1))) < (now.year, now.month):
            errors["expiry"] = _("This card has expired. Use another card")
    code = form.get("security_code", "").strip()
    if not re.fullmatch(r"\d{3,4}", code):
        errors["security_code"] = _("Enter the 3 or 4 digit security code from your card")
    if not form.get("name_on_card", "").strip():
        errors["name_on_card"] = _("Enter the name as it is on the card")
    return errors, digits


def check_bank(form: dict[str, str]) -> tuple[dict[str, str], str]:
    errors: dict[str, str] = {}
    routing = re.sub(r"[\s-]", "", form.get("routing_number", ""))
    if not routing:
        errors["routing_number"] = _("Enter the routing number")
    elif not routing_ok(routing):
        errors["routing_number"] = _(
            "Enter the 9 digit routing number from the bottom left of a check"
        )
    account = re.sub(r"[\s-]", "", form.get("bank_account_number", ""))
    if not re.fullmatch(r"\d{4,17}", account):
        errors["bank_account_number"] = _("Enter the account number, 4 to 17 digits")
    return errors, account


class SandboxCardForm(Form):
    """The sandbox's hosted page: the card or bank details a processor's page would take."""

    fields = (
        "action",
        "card_number",
        "expiry",
        "security_code",
        "name_on_card",
        "routing_number",
        "bank_account_number",
    )


class _AlreadyDone(Exception):
    pass


SESSION_ID_PREFIX = {"payment": "cs_test_", "setup": "seti_test_"}  # as Stripe's ids


class SandboxGateway:
    name = "sandbox"

    def __init__(self, db: Database, settings: Settings, notify: Notify | None = None) -> None:
        self.db = db
        self.settings = settings
        self.notify = notify  # how notifications reach the portal (its webhook handler)

    async def _open_session(
        self, mode: str, order: CheckoutOrder | SetupOrder, reference: str, amount_cents: int
    ) -> Any:
        """The hosted page's session: one per idempotency key, however often it is asked
        for (a later ask gets the first one back)."""
        key = order["idempotency_key"]
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO sandbox_sessions (id, idempotency_key, reference, amount_cents, method,"
                " return_url, status, created_at, mode) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    SESSION_ID_PREFIX[mode] + secrets.token_urlsafe(18),
                    key,
                    reference,
                    amount_cents,
                    order["method"],
                    order["return_url"],
                    utcnow(),
                    mode,
                ),
            )
            cursor = await conn.execute(
                "SELECT id, reference FROM sandbox_sessions WHERE idempotency_key = ?", (key,)
            )
            return await cursor.fetchone()

    async def create_checkout(self, **order: Unpack[CheckoutOrder]) -> Checkout:
        session = await self._open_session(
            "payment", order, order["reference"], order["amount_cents"]
        )
        return Checkout(ref=session["id"], url=self.checkout_url(session["id"]))

    def checkout_url(self, ref: str) -> str:
        return f"/sandbox-gateway/checkout/{ref}"

    # --- save mode and charges on saved methods ----------------------------------------

    async def create_setup_checkout(self, **order: Unpack[SetupOrder]) -> SetupCheckout:
        customer = order.get("customer") or "cus_test_" + secrets.token_urlsafe(12)
        # The session's reference keeps the customer: an ask again gets the first one.
        session = await self._open_session("setup", order, f"{order['reference']}|{customer}", 0)
        return SetupCheckout(
            ref=session["id"],
            url=self.checkout_url(session["id"]),
            customer=session["reference"].split("|")[-1],
        )

    async def retrieve_saved_method(self, ref: str) -> SavedMethod | None:
        session = await self.session(ref)
        if session is None or session["mode"] != "setup" or not session["saved_token"]:
            return None
        row = await self.db.fetchone(
            "SELECT * FROM sandbox_methods WHERE token = ?", (session["saved_token"],)
        )
        return SavedMethod(
            customer=row["customer"],
            token=row["token"],
            method=row["method"],
            brand=row["brand"],
            last4=row["last4"],
            exp_month=row["exp_month"],
            exp_year=row["exp_year"],
        )

    async def charge_saved(self, **order: Unpack[SavedCharge]) -> GatewayResult:
        idempotency_key, token = order["idempotency_key"], order["token"]
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT declines FROM sandbox_methods WHERE token = ? AND customer = ?",
                (token, order["customer"]),
            )
            saved = await cursor.fetchone()
            status = "failed" if saved is None or saved["declines"] else "succeeded"
            await conn.execute(
                "INSERT INTO sandbox_charges (id, idempotency_key, token, amount_cents, status,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    "ch_test_" + secrets.token_urlsafe(18),
                    idempotency_key,
                    token,
                    order["amount_cents"],
                    status,
                    utcnow(),
                ),
            )
            cursor = await conn.execute(
                "SELECT * FROM sandbox_charges WHERE idempotency_key = ?", (idempotency_key,)
            )
            charge = await cursor.fetchone()
        log.info("sandbox charge=%s status=%s", charge["id"], charge["status"])
        if self.settings.sandbox_charge_delay:  # the answer is slow; the charge is made
            await asyncio.sleep(self.settings.sandbox_charge_delay)
        brand = await self.db.fetchval(
            "SELECT brand FROM sandbox_methods WHERE token = ?", (token,)
        )
        last4 = await self.db.fetchval(
            "SELECT last4 FROM sandbox_methods WHERE token = ?", (token,)
        )
        return GatewayResult(
            ref=charge["id"],
            status=charge["status"],
            amount_cents=charge["amount_cents"],
            method=order["method"],
            brand=brand,
            last4=last4,
            intent=charge["id"],
            failure_code="card_declined" if charge["status"] == "failed" else None,
        )

    async def charges(self, token: str | None = None) -> int:
        """How many charges the sandbox made (on one saved method): what tests count."""
        if token is None:
            return await self.db.fetchval("SELECT count(*) FROM sandbox_charges")
        return await self.db.fetchval(
            "SELECT count(*) FROM sandbox_charges WHERE token = ?", (token,)
        )

    async def retrieve(self, ref: str) -> GatewayResult | None:
        row = await self.session(ref)
        if row is None:
            return None
        return GatewayResult(
            row["id"], row["status"], row["amount_cents"], row["method"], row["brand"], row["last4"]
        )

    async def session(self, ref: str) -> Any:
        if not ref or len(ref) > 100:
            return None
        return await self.db.fetchone("SELECT * FROM sandbox_sessions WHERE id = ?", (ref,))

    async def complete(self, ref: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
        try:
            return await self._complete(ref, form)
        except _AlreadyDone:  # another post of the same page finished it first
            return "done", {}

    async def _complete(self, ref: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Process the hosted page's form: ('succeeded'|'failed'|'canceled'|'done', errors)."""
        session = await self.session(ref)
        if session is None:
            return "missing", {}
        if session["status"] != "open":
            return "done", {}
        expiry: tuple[int | None, int | None] = (None, None)
        declines_later = False
        if form.get("action") == "cancel":
            status, brand, last4 = "canceled", None, None
        elif session["method"] == "bank":
            errors, account = check_bank(form)
            if errors:
                return "invalid", errors
            status, brand, last4 = "succeeded", "Bank account", account[-4:]
        else:
            errors, digits = check_card(form)
            if errors:
                return "invalid", errors
            status = "failed" if digits == DECLINED_CARD else "succeeded"
            brand, last4 = card_brand(digits), digits[-4:]
            month, _slash, year = form.get("expiry", "").replace(" ", "").partition("/")
            expiry = (int(month), int(year) + (2000 if len(year) == 2 else 0))
            declines_later = digits == DECLINES_LATER_CARD
        token = None
        async with self.db.write() as conn:
            if session["mode"] == "setup" and status == "succeeded":
                token = "pm_test_" + secrets.token_urlsafe(18)
                await conn.execute(
                    "INSERT INTO sandbox_methods (token, customer, method, brand, last4, exp_month,"
                    " exp_year, declines, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        token,
                        session["reference"].split("|")[-1],
                        session["method"],
                        brand,
                        last4,
                        *expiry,
                        int(declines_later),
                        utcnow(),
                    ),
                )
            cursor = await conn.execute(
                "UPDATE sandbox_sessions SET status = ?, brand = ?, last4 = ?, completed_at = ?,"
                " saved_token = ? WHERE id = ? AND status = 'open'",
                (status, brand, last4, utcnow(), token, ref),
            )
            if cursor.rowcount != 1:
                raise _AlreadyDone()
        log.info("sandbox session=%s status=%s", ref, status)
        if session["mode"] == "payment":
            await self._send_notification(ref)
        return status, {}

    async def _send_notification(self, ref: str) -> None:
        result = await self.retrieve(ref)
        if self.notify is None or result is None:
            return
        body = json.dumps(
            {
                "type": "checkout.completed",
                "ref": result.ref,
                "status": result.status,
                "amount_cents": result.amount_cents,
                "method": result.method,
                "brand": result.brand,
                "last4": result.last4,
            },
            separators=(",", ":"),
        ).encode()
        try:
            await self.notify(body, sign(self.settings.gateway_signing_secret, body))
        except Exception:  # the return page settles by asking the gateway anyway
            log.exception("sandbox notification for %s failed", ref)
