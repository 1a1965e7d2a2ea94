"""A local fake of the few Stripe endpoints the portal uses, for the real `stripe` library.

An ASGI app served by uvicorn on 127.0.0.1 (see the `fake_stripe` fixture). It speaks
Stripe's form-encoded requests and JSON answers and errors, keeps idempotent results by
Idempotency-Key (the same key with other parameters is an idempotency_error), refuses
any parameter that the library's own request definitions (stripe.params TypedDicts) do
not define, and signs webhook events with Stripe's scheme: Stripe-Signature
t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">.

Tests drive what happens on Stripe's hosted page with pay(), bank_settles(), refund() …;
each returns the events Stripe would send, which the test delivers (or loses, or sends
twice, or out of order) with signed().
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import typing_extensions
from stripe.params import CustomerCreateParams, PaymentIntentCreateParams
from stripe.params.checkout import SessionCreateParams

API_KEY = "sk_test_portal_fake"
WEBHOOK_SECRET = "whsec_portal_fake"
API_VERSION = "2026-10-29.clover"

CARDS = {
    "4242": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2039},
    "0002": {"brand": "visa", "last4": "0002", "exp_month": 12, "exp_year": 2039},
}


def _typeddict_in(annotation: Any, module: str) -> Any:
    """The TypedDict named inside an annotation like NotRequired["List[X]"] (names are
    looked up in the definition's module; the library keeps some behind TYPE_CHECKING)."""
    names = re.findall(r"\b([A-Z][A-Za-z0-9_]+)\b", str(annotation))
    space = vars(sys.modules[module])
    for name in names:
        found = space.get(name)
        if found is not None and typing_extensions.is_typeddict(found):
            return found
    return None


def unknown_parameter(params: dict, definition: Any, prefix: str = "") -> str | None:
    """The first parameter the library's TypedDict does not define, as Stripe names it."""
    hints = {}
    for klass in reversed(definition.__mro__):
        hints.update(getattr(klass, "__annotations__", {}))
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in hints:
            return name
        inner = _typeddict_in(hints[key], definition.__module__)
        if inner is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):
                where = f"{name}[{index}]" if isinstance(value, list) else name
                found = unknown_parameter(item, inner, where)
                if found:
                    return found
    return None


def decode_form(body: str) -> dict:
    """Stripe's form encoding (a[b][0][c]=v) back into nested dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: fix(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node

    return fix(root)


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def error(status: int, kind: str, message: str, **fields: Any) -> tuple[int, dict]:
    return status, {"error": {"type": kind, "message": message, **fields}}


class FakeStripe:
    def __init__(self) -> None:
        self.url = ""  # set by the fixture once the port is known
        self.objects: dict[str, dict] = {}
        self.idempotent: dict[str, tuple[dict, int, dict]] = {}
        self.requests: list[tuple[str, str, dict, str | None]] = []  # method, path, params, key
        self.fail_next: list[str] = []  # "500" or "timeout", one per coming request
        self.timeout_delay = 2.5
        self.declining_methods: set[str] = set()  # saved methods whose off-session charge fails
        self.lock = threading.Lock()

    # --- the HTTP side ----------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        text = body.decode() if method == "POST" else scope["query_string"].decode()
        params = decode_form(text)
        key = headers.get("idempotency-key") if method == "POST" else None
        with self.lock:
            self.requests.append((method, path, params, key))
            failure = self.fail_next.pop(0) if self.fail_next else None
        if headers.get("authorization") != f"Bearer {API_KEY}":
            status, answer = error(401, "invalid_request_error", "Invalid API Key provided")
        elif failure == "500":
            # Stripe does not keep a 5xx answer for the key: the retry runs again.
            status, answer = error(500, "api_error", "An unknown error occurred")
        else:
            status, answer = self._idempotent(method, path, params, key)
            if failure == "timeout":
                await asyncio.sleep(self.timeout_delay)  # done, but the answer comes late
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"request-id", f"req_{secrets.token_hex(7)}".encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def _idempotent(self, method: str, path: str, params: dict, key: str | None):
        if key is None:
            return self._route(method, path, params)
        with self.lock:
            seen = self.idempotent.get(key)
        if seen is not None:
            if seen[0] != {"path": path, "params": params}:
                return error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters"
                    " they were first used with.",
                )
            return seen[1], seen[2]
        asked = {"path": path, "params": json.loads(json.dumps(params))}
        status, answer = self._route(method, path, params)
        if status < 500:
            with self.lock:
                self.idempotent[key] = (asked, status, answer)
        return status, answer

    def _route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        expand = params.pop("expand", []) if isinstance(params.get("expand"), list) else []
        routes = [
            ("POST", r"/v1/checkout/sessions", self._create_session, SessionCreateParams),
            ("GET", r"/v1/checkout/sessions/([^/]+)", self._get, None),
            ("POST", r"/v1/customers", self._create_customer, CustomerCreateParams),
            ("POST", r"/v1/payment_intents", self._create_intent, PaymentIntentCreateParams),
            ("GET", r"/v1/payment_intents/([^/]+)", self._get, None),
        ]
        for verb, pattern, handler, definition in routes:
            match = re.fullmatch(pattern, path)
            if verb != method or not match:
                continue
            if definition is not None:
                unknown = unknown_parameter(params, definition)
                if unknown:
                    return error(
                        400,
                        "invalid_request_error",
                        f"Received unknown parameter: {unknown}",
                        code="parameter_unknown",
                        param=unknown,
                    )
            elif params:
                return error(
                    400,
                    "invalid_request_error",
                    f"Received unknown parameter: {next(iter(params))}",
                )
            status, found = handler(params, *match.groups())
            return status, self.expanded(found, expand) if status == 200 else found
        return error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")

    def _get(self, params: dict, object_id: str) -> tuple[int, dict]:
        with self.lock:
            found = self.objects.get(object_id)
        if found is None:
            return error(
                404,
                "invalid_request_error",
                f"No such object: '{object_id}'",
                code="resource_missing",
                param="id",
            )
        return 200, found

    def expanded(self, obj: dict, paths: list[str]) -> dict:
        result = json.loads(json.dumps(obj))
        for path in paths:
            node = result
            for part in path.split("."):
                value = node.get(part) if isinstance(node, dict) else None
                if isinstance(value, str) and value in self.objects:
                    node[part] = json.loads(json.dumps(self.objects[value]))
                    value = node[part]
                node = value
        return result

    def _create_session(self, params: dict) -> tuple[int, dict]:
        mode = params.get("mode")
        if mode not in ("payment", "setup") or not params.get("success_url"):
            return error(400, "invalid_request_error", "Missing required param: mode", param="mode")
        total = sum(
            int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1))
            for item in params.get("line_items", [])
        )
        session = {
            "id": new_id("cs"),
            "object": "checkout.session",
            "mode": mode,
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": total if mode == "payment" else None,
            "currency": "usd",
            "client_reference_id": params.get("client_reference_id"),
            "customer": params.get("customer"),
            "metadata": params.get("metadata", {}),
            "payment_intent": None,
            "setup_intent": None,
            "payment_method_types": params.get("allowed_payment_method_types", ["card"]),
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "locale": params.get("locale"),
            "livemode": False,
            "created": int(time.time()),
        }
        session["url"] = f"{self.url}/c/pay/{session['id']}"
        session["_intent_metadata"] = (params.get("payment_intent_data") or {}).get("metadata", {})
        self._store(session)
        return 200, self.public(session)

    def _create_customer(self, params: dict) -> tuple[int, dict]:
        customer = {
            "id": new_id("cus"),
            "object": "customer",
            "email": params.get("email"),
            "metadata": params.get("metadata", {}),
        }
        self._store(customer)
        return 200, customer

    def _create_intent(self, params: dict) -> tuple[int, dict]:
        if params.get("confirm") != "true" or params.get("off_session") != "true":
            return error(400, "invalid_request_error", "This fake only makes off-session charges")
        pm = self.objects.get(params.get("payment_method", ""))
        if pm is None:
            return error(
                400, "invalid_request_error", "No such PaymentMethod", code="resource_missing"
            )
        intent = self._intent(
            int(params["amount"]), pm, params.get("metadata", {}), customer=params.get("customer")
        )
        if pm["id"] in self.declining_methods:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "payment_method": pm,
            }
            self._store(intent)
            return error(
                402,
                "card_error",
                "Your card has insufficient funds.",
                code="card_declined",
                decline_code="insufficient_funds",
                payment_intent=intent,
            )
        intent["status"] = "processing" if pm["type"] == "us_bank_account" else "succeeded"
        self._store(intent)
        return 200, intent

    # --- objects ----------------------------------------------------------------------

    def _store(self, obj: dict) -> None:
        with self.lock:
            self.objects[obj["id"]] = obj

    @staticmethod
    def public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def payment_method(self, kind: str, last4: str = "4242") -> dict:
        pm = {"id": new_id("pm"), "object": "payment_method", "type": kind}
        if kind == "card":
            pm["card"] = dict(CARDS.get(last4, CARDS["4242"]))
        else:
            pm["us_bank_account"] = {
                "bank_name": "STRIPE TEST BANK",
                "last4": "6789",
                "account_type": "checking",
            }
        self._store(pm)
        return pm

    def _intent(self, amount: int, pm: dict | None, metadata: dict, customer=None) -> dict:
        intent = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "currency": "usd",
            "customer": customer,
            "metadata": metadata,
            "payment_method": pm["id"] if pm else None,
            "last_payment_error": None,
            "latest_charge": None,
            "status": "requires_payment_method",
        }
        self._store(intent)
        return intent

    # --- what happens on Stripe's side: each returns the events Stripe sends -----------

    def event(self, kind: str, obj: dict) -> dict:
        return {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": self.public(json.loads(json.dumps(obj)))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }

    def _session_intent(self, session: dict, pm: dict) -> dict:
        if session["payment_intent"] is None:
            intent = self._intent(session["amount_total"], pm, session["_intent_metadata"])
            session["payment_intent"] = intent["id"]
        intent = self.objects[session["payment_intent"]]
        intent["payment_method"] = pm["id"]
        return intent

    def pay(self, session_id: str, how: str) -> list[dict]:
        """The resident on Stripe's page: 'card', 'declined' or 'bank' (processing)."""
        session = self.objects[session_id]
        if how == "declined":
            pm = self.payment_method("card", "0002")
            intent = self._session_intent(session, pm)
            intent["payment_method"] = None
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "payment_method": pm,
            }
            return [self.event("payment_intent.payment_failed", intent)]
        pm = self.payment_method("card" if how == "card" else "us_bank_account")
        intent = self._session_intent(session, pm)
        intent["last_payment_error"] = None
        session["status"] = "complete"
        if how == "card":
            intent["status"] = "succeeded"
            intent["latest_charge"] = self._charge(intent)["id"]
            session["payment_status"] = "paid"
            return [self.event("checkout.session.completed", session)]
        intent["status"] = "processing"
        intent["latest_charge"] = self._charge(intent)["id"]
        return [self.event("checkout.session.completed", session)]

    def _charge(self, intent: dict) -> dict:
        charge = {
            "id": new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": 0,
            "payment_intent": intent["id"],
            "refunded": False,
        }
        self._store(charge)
        return charge

    def bank_settles(self, session_id: str) -> list[dict]:
        session = self.objects[session_id]
        intent = self.objects[session["payment_intent"]]
        intent["status"] = "succeeded"
        session["payment_status"] = "paid"
        return [
            self.event("payment_intent.succeeded", intent),
            self.event("checkout.session.async_payment_succeeded", session),
        ]

    def bank_fails(self, session_id: str, code: str = "insufficient_funds") -> list[dict]:
        session = self.objects[session_id]
        intent = self.objects[session["payment_intent"]]
        pm = self.objects[intent["payment_method"]]
        intent.update(
            status="requires_payment_method",
            payment_method=None,
            last_payment_error={
                "type": "invalid_request_error",
                "code": "payment_method_provider_decline",
                "decline_code": code,
                "payment_method": pm,
            },
        )
        return [
            self.event("payment_intent.payment_failed", intent),
            self.event("checkout.session.async_payment_failed", session),
        ]

    def refund(self, session_id: str, amount: int) -> list[dict]:
        intent = self.objects[self.objects[session_id]["payment_intent"]]
        charge = self.objects[intent["latest_charge"]]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return [self.event("charge.refunded", charge)]

    def dispute(self, session_id: str, reason: str = "fraudulent") -> list[dict]:
        intent = self.objects[self.objects[session_id]["payment_intent"]]
        dispute = {
            "id": new_id("dp"),
            "object": "dispute",
            "amount": intent["amount"],
            "charge": intent["latest_charge"],
            "payment_intent": intent["id"],
            "reason": reason,
            "status": "needs_response",
        }
        self._store(dispute)
        return [self.event("charge.dispute.created", dispute)]

    def expire(self, session_id: str) -> list[dict]:
        session = self.objects[session_id]
        session["status"] = "expired"
        return [self.event("checkout.session.expired", session)]

    def save_method(self, session_id: str, kind: str = "card") -> list[dict]:
        """The resident saves a method on a mode=setup page."""
        session = self.objects[session_id]
        pm = self.payment_method(kind)
        setup = {
            "id": new_id("seti"),
            "object": "setup_intent",
            "status": "succeeded",
            "customer": session["customer"],
            "payment_method": pm["id"],
        }
        self._store(setup)
        session.update(status="complete", setup_intent=setup["id"])
        return [self.event("checkout.session.completed", session)]

    @staticmethod
    def signed(event: dict, secret: str = WEBHOOK_SECRET, at: int | None = None):
        """(body, Stripe-Signature header) as Stripe sends them."""
        body = json.dumps(event).encode()
        stamp = int(time.time()) if at is None else at
        mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return body, f"t={stamp},v1={mac}"
