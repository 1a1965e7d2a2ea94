"""The Stripe adapter (PORTAL_GATEWAY=stripe), through the official `stripe` library.

    create_checkout(...)         a hosted Checkout Session, mode=payment: the resident's
                                 card or bank details go to Stripe's page, never to ours
    retrieve(session id)         how that session ended, asked of Stripe (never trusted
                                 from a query string)
    create_setup_checkout(...)   mode=setup: save a card or bank account to a Customer
    retrieve_saved_method(...)   the saved method's token, brand, last four and expiry
    charge_saved(...)            an off-session PaymentIntent on a saved method (autopay)
    parse_event(body, header)    a webhook verified by Webhook.construct_event, in the
                                 portal's terms (GatewayEvent), or None if not genuine

Every call is async (the library's *_async methods over httpx), so the event loop never
waits on Stripe. The portal's idempotency key is sent as Stripe's Idempotency-Key, so a
retry after an error or a timeout finds the session the first try made. An error on
Stripe's side or a timeout raises GatewayUnavailable; the resident is asked to try again.
"""

from __future__ import annotations

import logging
from typing import Any, Unpack

import stripe

from portal.i18n import _, current_locale
from portal.payments.gateway import (
    Checkout,
    CheckoutOrder,
    GatewayEvent,
    GatewayResult,
    GatewayUnavailable,
    Reversal,
    SavedCharge,
    SavedMethod,
    SetupCheckout,
    SetupOrder,
)
from portal.settings import Settings

log = logging.getLogger("portal.stripe")
METHOD_TYPES = {"card": "card", "bank": "us_bank_account"}
BRANDS = {
    "amex": "American Express",
    "diners": "Diners Club",
    "discover": "Discover",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}
REFERENCE_KEY = "portal_payment"  # metadata key holding the portal's payment reference
UNAVAILABLE = (
    stripe.APIConnectionError,  # timeouts and refused connections
    stripe.APIError,  # 5xx
    stripe.RateLimitError,
    stripe.AuthenticationError,  # a wrong key: the operator's to fix, the resident waits
    stripe.PermissionError,
    stripe.IdempotencyError,
)


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> str | None:
    """An expandable field: an id, or the expanded object with its id."""
    if isinstance(value, str):
        return value
    return _obj(value).get("id")


def describe(payment_method: Any) -> tuple[str | None, str | None, str | None]:
    """(method, brand, last4) of a PaymentMethod object; nothing more is ever kept."""
    pm = _obj(payment_method)
    if pm.get("type") == "card":
        card = _obj(pm.get("card"))
        brand = str(card.get("brand") or "card")
        return "card", BRANDS.get(brand, brand.title()), card.get("last4")
    if pm.get("type") == "us_bank_account":
        bank = _obj(pm.get("us_bank_account"))
        return "bank", bank.get("bank_name") or "Bank account", bank.get("last4")
    return None, None, None


def failure_code(intent: Any) -> str | None:
    error = _obj(_obj(intent).get("last_payment_error"))
    return error.get("decline_code") or error.get("code") or None


def _result(
    ref: str,
    status: str,
    *,
    amount: Any,
    payment_method: Any,
    intent: str | None,
    failure: str | None,
) -> GatewayResult:
    """A result in the portal's terms: the method described, `failure` kept only when
    the status is "failed"."""
    method, brand, last4 = describe(payment_method)
    return GatewayResult(
        ref=ref,
        status=status,
        amount_cents=int(amount or 0),
        method=method,
        brand=brand,
        last4=last4,
        intent=intent,
        failure_code=failure if status == "failed" else None,
    )


def session_result(session: dict) -> GatewayResult:
    """How a Checkout Session stands, from the session with its PaymentIntent expanded."""
    intent = _obj(session.get("payment_intent"))
    code = failure_code(intent)
    if session.get("status") == "complete":
        if session.get("payment_status") in ("paid", "no_payment_required") or (
            intent.get("status") == "succeeded"
        ):
            status = "succeeded"
        elif intent.get("status") in ("requires_payment_method", "canceled"):
            status = "failed"  # a bank payment that failed after processing
        else:
            status = "processing"
    elif session.get("status") == "expired":
        status = "failed" if code else "canceled"
    else:
        status = "open"
    payment_method = intent.get("payment_method") or _obj(intent.get("last_payment_error")).get(
        "payment_method"
    )
    return _result(
        session["id"],
        status,
        amount=session.get("amount_total"),
        payment_method=payment_method,
        intent=_id(session.get("payment_intent")),
        failure=code or "failed",
    )


def intent_result(intent: dict) -> GatewayResult:
    status = {"succeeded": "succeeded", "processing": "processing"}.get(
        intent.get("status", ""), "failed"
    )
    return _result(
        intent["id"],
        status,
        amount=intent.get("amount"),
        payment_method=intent.get("payment_method"),
        intent=intent["id"],
        failure=failure_code(intent) or intent.get("status"),
    )


def event_in_portal_terms(event: dict) -> GatewayEvent:
    """The few fields of a Stripe event the portal acts on. Unknown types keep only id
    and type: they are recorded and otherwise ignored."""
    kind = str(event.get("type", ""))
    obj = _obj(_obj(event.get("data")).get("object"))
    reference = _obj(obj.get("metadata")).get(REFERENCE_KEY)
    reference = reference if isinstance(reference, str) else None
    base = {"id": str(event["id"]), "type": kind}
    if kind.startswith("checkout.session."):
        return GatewayEvent(
            **base,
            checkout_ref=_id(obj),
            intent=_id(obj.get("payment_intent")),
            reference=reference,
        )
    if kind.startswith("payment_intent."):
        return GatewayEvent(
            **base, intent=_id(obj), reference=reference, failure_code=failure_code(obj)
        )
    if kind == "charge.refunded":
        refunded = int(obj.get("amount_refunded") or 0)
        return GatewayEvent(
            **base,
            intent=_id(obj.get("payment_intent")),
            reference=reference,
            reversal=Reversal(
                "refund", refunded, "refund", f"{_id(obj)}:refunded:{refunded}", cumulative=True
            ),
        )
    if kind == "charge.dispute.created":
        return GatewayEvent(
            **base,
            intent=_id(obj.get("payment_intent")),
            reversal=Reversal(
                "dispute",
                int(obj.get("amount") or 0),
                str(obj.get("reason") or "dispute"),
                _id(obj),
            ),
        )
    return GatewayEvent(**base)


class StripeGateway:
    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = stripe.HTTPXClient(timeout=settings.stripe_timeout)
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base},
            max_network_retries=1,  # with the same Idempotency-Key, so never twice
            http_client=self.http,
        )

    async def close(self) -> None:
        await self.http.close_async()

    async def _call(self, method, *args: Any) -> Any:
        try:
            return await method(*args)
        except UNAVAILABLE as exc:
            # The class and Stripe's request id say enough; no parameters are logged.
            log.warning("stripe unavailable: %s %s", type(exc).__name__, exc.request_id or "")
            raise GatewayUnavailable(type(exc).__name__) from exc

    def _urls(self, return_url: str) -> dict[str, str]:
        # Stripe puts the session id in place of {CHECKOUT_SESSION_ID}; the return page
        # then asks Stripe how it stands. Cancelling comes back to the same page, which
        # says the payment is not finished and offers Stripe's page again.
        back = f"{return_url}?ref={{CHECKOUT_SESSION_ID}}"
        return {"success_url": back, "cancel_url": back}

    @staticmethod
    def _locale() -> str:
        return "es" if current_locale.get() == "es" else "en"

    async def create_checkout(self, **order: Unpack[CheckoutOrder]) -> Checkout:
        reference = order["reference"]
        metadata = {REFERENCE_KEY: reference, "account_number": order.get("account_number", "")}
        params = {
            "mode": "payment",
            "allowed_payment_method_types": [METHOD_TYPES[order["method"]]],
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": order["amount_cents"],
                        "product_data": {"name": _("Water bill payment")},
                    },
                }
            ],
            "client_reference_id": reference,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "locale": self._locale(),
            **self._urls(order["return_url"]),
        }
        session = await self._call(
            self.client.v1.checkout.sessions.create_async,
            params,
            {"idempotency_key": order["idempotency_key"]},
        )
        return Checkout(ref=session.id, url=session.url)

    def checkout_url(self, ref: str) -> str:
        """Back to Stripe's page for an unfinished session (asks Stripe for its address)."""
        return f"/payments/stripe/resume/{ref}"

    async def _session(self, ref: str, expand: str) -> dict | None:
        if not ref or len(ref) > 255 or not ref.isascii():
            return None
        try:
            session = await self._call(
                self.client.v1.checkout.sessions.retrieve_async, ref, {"expand": [expand]}
            )
        except stripe.InvalidRequestError:  # no such session
            return None
        return session.to_dict()

    async def retrieve(self, ref: str) -> GatewayResult | None:
        session = await self._session(ref, "payment_intent.payment_method")
        if session is None or session.get("mode") != "payment":
            return None
        return session_result(session)

    async def session_url(self, ref: str) -> str | None:
        """The hosted page's address while the session is open, else None."""
        session = await self._session(ref, "payment_intent")
        if session is None or session.get("status") != "open":
            return None
        return session.get("url")

    async def reference_for_intent(self, intent: str) -> str | None:
        """The portal's reference on a PaymentIntent (for events that name only it)."""
        try:
            found = await self._call(self.client.v1.payment_intents.retrieve_async, intent)
        except stripe.InvalidRequestError:
            return None
        reference = _obj(found.to_dict().get("metadata")).get(REFERENCE_KEY)
        return reference if isinstance(reference, str) else None

    # --- saved methods and off-session charges (autopay) ----------------------------

    async def create_setup_checkout(self, **order: Unpack[SetupOrder]) -> SetupCheckout:
        """A hosted page that saves a card or bank account to the Stripe Customer
        (created first, with the same idempotency key plus ':customer', if none)."""
        idempotency_key, reference = order["idempotency_key"], order["reference"]
        customer = order.get("customer")
        if customer is None:
            created = await self._call(
                self.client.v1.customers.create_async,
                {"email": order["email"], "metadata": {REFERENCE_KEY: reference}},
                {"idempotency_key": f"{idempotency_key}:customer"},
            )
            customer = created.id
        session = await self._call(
            self.client.v1.checkout.sessions.create_async,
            {
                "mode": "setup",
                "customer": customer,
                "currency": "usd",
                "allowed_payment_method_types": [METHOD_TYPES[order["method"]]],
                "metadata": {REFERENCE_KEY: reference},
                "setup_intent_data": {"metadata": {REFERENCE_KEY: reference}},
                "locale": self._locale(),
                **self._urls(order["return_url"]),
            },
            {"idempotency_key": idempotency_key},
        )
        return SetupCheckout(ref=session.id, url=session.url, customer=customer)

    async def retrieve_saved_method(self, ref: str) -> SavedMethod | None:
        """The method a finished setup session saved, or None if it saved none."""
        session = await self._session(ref, "setup_intent.payment_method")
        if session is None or session.get("mode") != "setup":
            return None
        setup = _obj(session.get("setup_intent"))
        if session.get("status") != "complete" or setup.get("status") != "succeeded":
            return None
        pm = _obj(setup.get("payment_method"))
        method, brand, last4 = describe(pm)
        card = _obj(pm.get("card"))
        return SavedMethod(
            customer=_id(session.get("customer")) or "",
            token=pm.get("id", ""),
            method=method or "card",
            brand=brand,
            last4=last4,
            exp_month=card.get("exp_month"),
            exp_year=card.get("exp_year"),
        )

    async def charge_saved(self, **order: Unpack[SavedCharge]) -> GatewayResult:
        """Charge a saved method with nobody at the keyboard. A decline is a result
        ("failed" with Stripe's code), not an exception; GatewayUnavailable means retry
        later with the same key."""
        params = {
            "amount": order["amount_cents"],
            "currency": "usd",
            "customer": order["customer"],
            "payment_method": order["token"],
            "allowed_payment_method_types": [METHOD_TYPES[order["method"]]],
            "off_session": True,
            "confirm": True,
            "metadata": {REFERENCE_KEY: order["reference"]},
            "expand": ["payment_method"],
        }
        try:
            intent = await self._call(
                self.client.v1.payment_intents.create_async,
                params,
                {"idempotency_key": order["idempotency_key"]},
            )
        except stripe.CardError as exc:
            declined = exc.error.payment_intent if exc.error else None
            found = declined.to_dict() if declined is not None else {}
            return GatewayResult(
                ref=found.get("id", ""),
                status="failed",
                amount_cents=order["amount_cents"],
                intent=found.get("id"),
                failure_code=(exc.error.decline_code if exc.error else None)
                or exc.code
                or "card_error",
            )
        return intent_result(intent.to_dict())

    async def retrieve_intent(self, intent: str) -> GatewayResult | None:
        try:
            found = await self._call(
                self.client.v1.payment_intents.retrieve_async,
                intent,
                {"expand": ["payment_method"]},
            )
        except stripe.InvalidRequestError:
            return None
        return intent_result(found.to_dict())

    # --- webhooks ----------------------------------------------------------------------

    def parse_event(self, body: bytes, signature: str | None) -> GatewayEvent | None:
        """A genuine event in the portal's terms, or None (bad signature, not an event)."""
        try:
            event = stripe.Webhook.construct_event(
                body, signature, self.settings.stripe_webhook_secret
            )
            return event_in_portal_terms(event.to_dict())
        except stripe.SignatureVerificationError:
            log.warning("stripe webhook with a bad signature refused")
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("stripe webhook that is not an event refused")
            return None
