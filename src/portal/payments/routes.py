"""Pay My Bill over HTTP, with or without an online account.

URL map:
  GET  /pay                        Pay My Bill: customer + account number (or ?account=ID
                                   from My Account when signed in)
  POST /pay                        look the account up, show the amount form
  POST /pay/confirm                start the payment (idempotent) -> gateway's page
  GET  /pay/return?ref=            back from the gateway: settle by asking it
  GET  /pay/receipt/{token}        confirmation (or declined) page
  GET  /pay/again/{token}          a fresh form (new key) after a decline
  POST /payments/webhook           signed notification from the gateway (no CSRF: it is
                                   server-to-server and verified by HMAC instead)
  /payments/stripe/…               Stripe's webhook and resume page (stripe_routes.py)
  GET  /sandbox-gateway/checkout/{ref}, POST   the sandbox's hosted page (TEST MODE)
"""

from __future__ import annotations

import re

from litestar import Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal.accounts.linking import NumbersForm
from portal.billing.service import BillingService
from portal.i18n import _
from portal.payments import stripe_routes
from portal.payments.gateway import SIGNATURE_HEADER, GatewayUnavailable
from portal.payments.sandbox import SandboxCardForm
from portal.payments.service import PaymentForm, PaymentsService, initials, mask_address, new_key
from portal.security.throttle import enforce
from portal.services import AppServices
from portal.settings import Settings
from portal.web import PortalRequest, client_address, render


async def _own_linked_account(request: PortalRequest, billing: BillingService, account_id: int):
    """The signed-in resident's own active account, or None (guests, other accounts)."""
    if request.user is None:
        return None
    account = await billing.linked_account(request.user.user_id, account_id)
    return account if account is not None and account["status"] == "active" else None


async def _is_owner(
    request: PortalRequest, billing: BillingService, account_id: int, payer_id: int | None = None
) -> bool:
    """Whether the full name and address may be shown: only to the account's own login
    or the payment's own payer. Anyone else holding a bill (signed in or not) sees them
    masked."""
    if request.user is None:
        return False
    if payer_id is not None and payer_id == request.user.user_id:
        return True
    return await billing.linked_account(request.user.user_id, account_id) is not None


async def _amount_page(
    request: PortalRequest,
    payments: PaymentsService,
    account,
    *,
    owner: bool,
    status_code: int = 200,
    values: dict | None = None,
    errors: dict | None = None,
    key: str | None = None,
) -> Template:
    due = await payments.amount_due(account["id"])
    values = dict(values or {})
    if "amount" not in values:
        values["amount"] = f"{due / 100:.2f}" if due and due >= 100 else ""
    values.setdefault("method", "card")
    page = render(
        request,
        "pages/pay_amount.html",
        status_code=status_code,
        account_token=payments.account_token(account["id"]),
        key=key or new_key(),
        due=due,
        values=values,
        errors=errors or {},
        address=account["service_address"] if owner else mask_address(account["service_address"]),
        holder=account["name"] if owner else initials(account["name"]),
        account_number=account["account_number"],
        max_cents=payments.settings.payment_max_cents,
    )
    return stripe_routes.allow_checkout(page) if payments.gateway.name == "stripe" else page


@get("/pay")
async def pay_start(request: PortalRequest, services: AppServices) -> Template:
    account_id = request.query_params.get("account", "")
    # ASCII digits only, and few enough for SQLite ("²".isdigit() is True; int() refuses it)
    if re.fullmatch(r"[0-9]{1,18}", account_id):
        account = await _own_linked_account(request, services.billing, int(account_id))
        if account is not None:
            return await _amount_page(request, services.payments, account, owner=True)
    return render(request, "pages/pay.html")


@post("/pay")
async def pay_lookup(request: PortalRequest, services: AppServices) -> Template:
    await enforce(services.lookups, services.payments.db, client_address(request), request.url.path)
    form = await NumbersForm.read(request)
    result = await services.payments.look_up(form)
    if not result.ok:
        return render(
            request, "pages/pay.html", status_code=422, errors=result.errors, values=form.values
        )
    account = result.value
    owner = await _is_owner(request, services.billing, account["id"])
    return await _amount_page(request, services.payments, account, owner=owner)


@post("/pay/confirm")
async def pay_confirm(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await PaymentForm.read(request)
    account_id = services.payments.account_from_token(form.account_token)
    account = await services.payments.account(account_id) if account_id else None
    if account is None:
        return render(
            request,
            "pages/pay.html",
            status_code=422,
            errors={
                "customer_number": _("This payment form has expired. Enter your numbers again")
            },
        )
    linked = await _own_linked_account(request, services.billing, account_id)
    result = await services.payments.start(
        account_id, request.user.user_id if linked else None, form
    )
    if result.outcome == "unavailable":
        # Same form, same idempotency key: trying again cannot charge twice.
        page = render(request, "pages/pay_unavailable.html", status_code=503, values=form.values)
        return stripe_routes.allow_checkout(page)
    if result.outcome == "invalid":
        return await _amount_page(
            request,
            services.payments,
            account,
            owner=linked is not None,
            status_code=422,
            values={k: form.values[k] for k in ("amount", "method", "receipt_email")},
            errors=result.errors,
            key=form.idempotency_key if "form" not in result.errors else None,
        )
    return Redirect(result.value, status_code=303)


@get("/pay/return")
async def pay_return(request: PortalRequest, services: AppServices) -> Template | Redirect:
    ref = request.query_params.get("ref", "")
    try:
        payment = await services.payments.settle_from_gateway(ref)
    except GatewayUnavailable:  # the receipt says we are waiting for the processor
        payment = await services.payments.by_gateway_ref(ref)
        if payment is None:
            raise NotFoundException() from None
        return Redirect(f"/pay/receipt/{payment['receipt_token']}", status_code=303)
    if payment is None:
        raise NotFoundException()
    if payment["status"] == "pending":
        return render(
            request,
            "pages/pay_pending.html",
            checkout_url=services.payments.gateway.checkout_url(ref),
        )
    return Redirect(f"/pay/receipt/{payment['receipt_token']}", status_code=303)


@get("/pay/receipt/{token:str}")
async def pay_receipt(
    request: PortalRequest, token: FromPath[str], services: AppServices
) -> Template:
    payment = await services.payments.by_receipt_token(token)
    if payment is None:
        raise NotFoundException()
    owner = await _is_owner(request, services.billing, payment["account_id"], payment["user_id"])
    address = payment["service_address"] if owner else mask_address(payment["service_address"])
    return render(
        request, "pages/pay_receipt.html", payment=payment, address=address, status_code=200
    )


@get("/pay/again/{token:str}")
async def pay_again(
    request: PortalRequest, token: FromPath[str], services: AppServices
) -> Template:
    payment = await services.payments.by_receipt_token(token)
    account = await services.payments.account(payment["account_id"]) if payment else None
    if account is None:
        raise NotFoundException()
    values = {
        "amount": f"{payment['amount_cents'] / 100:.2f}",
        "method": payment["method"] or "card",
        "receipt_email": payment["receipt_email"] or "",
    }
    owner = await _is_owner(request, services.billing, account["id"], payment["user_id"])
    return await _amount_page(request, services.payments, account, owner=owner, values=values)


@post("/payments/webhook", exclude_from_csrf=True)
async def webhook(request: PortalRequest, services: AppServices) -> Response:
    body = await request.body()
    accepted = await services.payments.handle_notification(
        body, request.headers.get(SIGNATURE_HEADER)
    )
    return Response({"received": accepted}, status_code=200 if accepted else 400)


# --- the sandbox gateway's hosted page ------------------------------------------------


@get("/sandbox-gateway/checkout/{ref:str}")
async def sandbox_page(
    request: PortalRequest, ref: FromPath[str], services: AppServices
) -> Template | Redirect:
    session = await services.sandbox.session(ref)
    if session is None:
        raise NotFoundException()
    if session["status"] != "open":
        return Redirect(f"{session['return_url']}?ref={ref}", status_code=303)
    return render(request, "pages/sandbox_checkout.html", session=session)


@post("/sandbox-gateway/checkout/{ref:str}")
async def sandbox_pay(
    request: PortalRequest, ref: FromPath[str], services: AppServices
) -> Template | Redirect:
    data = (await SandboxCardForm.read(request)).data
    outcome, errors = await services.sandbox.complete(ref, data)
    if outcome == "missing":
        raise NotFoundException()
    session = await services.sandbox.session(ref)
    if outcome == "invalid":
        # Card number and security code are never sent back into the page.
        values = {k: data.get(k, "") for k in ("expiry", "name_on_card")}
        return render(
            request,
            "pages/sandbox_checkout.html",
            status_code=422,
            session=session,
            errors=errors,
            values=values,
        )
    return Redirect(f"{session['return_url']}?ref={ref}", status_code=303)


def handlers(settings: Settings) -> list:
    routes = [pay_start, pay_lookup, pay_confirm, pay_return, pay_receipt, pay_again, webhook]
    if settings.gateway == "sandbox" and not settings.production:  # never a test page live
        routes += [sandbox_page, sandbox_pay]
    if settings.gateway == "stripe":
        routes += stripe_routes.handlers()
    return routes
