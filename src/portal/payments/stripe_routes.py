"""Stripe's side of Pay My Bill over HTTP (only with PORTAL_GATEWAY=stripe).

URL map:
  POST /payments/stripe/webhook        Stripe's signed events (no CSRF token: it is
                                       server-to-server and verified by Stripe-Signature
                                       instead). 400 if not genuine, 503 if Stripe cannot
                                       be asked right now (Stripe delivers it again).
  GET  /payments/stripe/resume/{ref}   back to Stripe's page for an unfinished payment
"""

from __future__ import annotations

from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from portal.payments.gateway import GatewayUnavailable
from portal.payments.trail import handle_event
from portal.security.headers import CSP
from portal.services import AppServices

CHECKOUT_ORIGIN = "https://checkout.stripe.com"


def allow_checkout(response: Response) -> Response:
    """A page whose form leads to Stripe's hosted page: its CSP lets the form's redirect
    go there (form-action covers redirects after a submit). Only these pages."""
    response.headers["content-security-policy"] = CSP.replace(
        "form-action 'self'", f"form-action 'self' {CHECKOUT_ORIGIN}"
    )
    return response


@post("/payments/stripe/webhook", exclude_from_csrf=True)
async def stripe_webhook(request: Request, services: AppServices) -> Response:
    body = await request.body()
    event = services.payments.gateway.parse_event(body, request.headers.get("stripe-signature"))
    if event is None:
        return Response({"received": False}, status_code=400)
    try:
        outcome = await handle_event(services.payments, event)
    except GatewayUnavailable:
        return Response({"received": False}, status_code=503)
    return Response({"received": True, "outcome": outcome}, status_code=200)


@get("/payments/stripe/resume/{ref:str}")
async def stripe_resume(ref: FromPath[str], services: AppServices) -> Redirect:
    try:
        url = await services.payments.gateway.session_url(ref)
    except GatewayUnavailable:
        url = None
    # Not open any more (or Stripe not answering): the return page says how it stands.
    return Redirect(url or f"/pay/return?ref={quote(ref, safe='')}", status_code=303)


def handlers() -> list:
    return [stripe_webhook, stripe_resume]
