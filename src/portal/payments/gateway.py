"""The payment gateway interface, in the shape processors use for hosted payment pages.

    create_checkout(...) -> Checkout      a session on the processor for an amount and a
                                          reference; the resident is redirected to its URL
    retrieve(ref) -> GatewayResult        ask the processor how a session ended
    create_setup_checkout(...)            the same hosted page in save mode: it keeps a
                                          card or bank account and returns its token
    retrieve_saved_method(ref)            the saved method's token, brand, last four, expiry
    charge_saved(...)                     charge a saved method with nobody at the keyboard;
                                          the same idempotency key never charges twice
    notifications                         the processor POSTs a signed event to
                                          /payments/webhook; verify_signature() checks it

The portal settles a payment only from a verified notification or from retrieve(), and
settling is idempotent. A real processor adapter (Stripe Checkout is the likely first)
implements the same three methods and is chosen by PORTAL_GATEWAY.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import NotRequired, Protocol, TypedDict, Unpack

SIGNATURE_HEADER = "x-gateway-signature"
SIGNATURE_TOLERANCE = 300  # seconds; older notifications are refused (replay window)


@dataclass(frozen=True)
class Checkout:
    ref: str
    url: str


@dataclass(frozen=True)
class SetupCheckout:
    """A hosted page in save mode: it saves a card or bank account, charges nothing."""

    ref: str
    url: str
    customer: str


@dataclass(frozen=True)
class SavedMethod:
    """What the portal may keep of a saved method: the gateway's ids and what a receipt
    shows."""

    customer: str
    token: str  # the gateway's id of the saved method (Stripe pm_…)
    method: str  # "card" or "bank"
    brand: str | None
    last4: str | None
    exp_month: int | None = None
    exp_year: int | None = None


class GatewayUnavailable(Exception):
    """The processor did not answer (an error on its side, a timeout): nothing is known
    to have happened; asking again with the same idempotency key is safe."""


@dataclass(frozen=True)
class GatewayResult:
    ref: str
    # "open", "succeeded", "failed", "canceled", or "processing": a bank payment that
    # the processor accepted but whose money arrives days later (it may still fail).
    status: str
    amount_cents: int
    method: str | None = None
    brand: str | None = None
    last4: str | None = None
    intent: str | None = None  # the processor's id of the money movement, if it has one
    failure_code: str | None = None  # why it failed, in the processor's words


@dataclass(frozen=True)
class Reversal:
    """Money taken back after a payment was accepted."""

    kind: str  # "bank_failed", "refund" or "dispute"
    amount_cents: int
    reason_code: str
    ref: str  # unique at the processor: the same reversal told twice is recorded once
    cumulative: bool = False  # amount_cents is the total refunded so far, not this refund


@dataclass(frozen=True)
class GatewayEvent:
    """A verified event from the processor, in the portal's terms."""

    id: str
    type: str
    checkout_ref: str | None = None  # the checkout session it is about
    intent: str | None = None  # the money movement it is about
    reference: str | None = None  # the portal's payment reference, if the event carries it
    reversal: Reversal | None = None
    failure_code: str | None = None


# The keyword arguments of the Gateway methods, named once for the interface and every
# adapter. The same idempotency key never makes a second session, customer or charge.


class CheckoutOrder(TypedDict):
    idempotency_key: str
    amount_cents: int
    reference: str  # the portal's payment reference
    method: str  # "card" or "bank"
    return_url: str  # the processor sends the resident back here
    account_number: NotRequired[str]


class SetupOrder(TypedDict):
    idempotency_key: str
    email: str
    reference: str
    method: str
    return_url: str
    customer: NotRequired[str | None]  # the processor's customer, if there is one yet


class SavedCharge(TypedDict):
    idempotency_key: str
    customer: str
    token: str  # SavedMethod.token
    method: str
    amount_cents: int
    reference: str


class Gateway(Protocol):
    name: str

    async def create_checkout(self, **order: Unpack[CheckoutOrder]) -> Checkout: ...

    async def retrieve(self, ref: str) -> GatewayResult | None: ...

    def checkout_url(self, ref: str) -> str: ...

    # Saved methods and charges with nobody at the keyboard (AutoPay, scheduled payments).

    async def create_setup_checkout(self, **order: Unpack[SetupOrder]) -> SetupCheckout: ...

    async def retrieve_saved_method(self, ref: str) -> SavedMethod | None: ...

    async def charge_saved(self, **order: Unpack[SavedCharge]) -> GatewayResult: ...


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for a notification body: t=<unix time>,v1=<hex HMAC>."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, body: bytes, header: str | None, now: float | None = None
) -> bool:
    """True only for a correctly signed, recent notification (constant-time compare)."""
    if not header:
        return False
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    # Plain ASCII digits of a sane length: int() also takes "١٢", "1_0" and 5,000 digits,
    # and a huge timestamp overflows the float arithmetic below.
    if not re.fullmatch(r"[0-9]{1,12}", parts.get("t", "")):
        return False
    timestamp = int(parts["t"])
    now = time.time() if now is None else now
    if abs(now - timestamp) > SIGNATURE_TOLERANCE:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    # As bytes: compare_digest raises TypeError for non-ASCII text (headers are latin-1).
    return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode())
