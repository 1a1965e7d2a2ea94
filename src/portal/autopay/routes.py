"""Saved payment methods and AutoPay over HTTP.

URL map (one router, guarded by requires_resident, no-store; another resident's account
or method answers 404; every POST is CSRF-checked, audited and counted against the
money_actions budget by the spends_money guard; the account in the path comes from the
`account` dependency):
  GET  /profile/payment-methods                     list, rename, default, remove, add
  POST /profile/payment-methods                     add: to the gateway's page in save mode
  GET  /profile/payment-methods/return?ref=         back from it: keep the saved method
  POST /profile/payment-methods/{method_id}/rename  a new nickname
  POST /profile/payment-methods/{method_id}/default the method chosen first in forms
  POST /profile/payment-methods/{method_id}/remove  refused while AutoPay/a schedule uses it
  GET  /accounts/{account_id}/autopay               AutoPay for one account: terms, enrol,
                                                    change, next charge, skip, cancel
  POST /accounts/{account_id}/autopay               enrol or change
  POST /accounts/{account_id}/autopay/cancel        stop AutoPay
  POST /accounts/{account_id}/autopay/skip/{schedule_id}  skip one charge not yet started
  GET  /accounts/{account_id}/scheduled             scheduled one-time payments: list, form
  POST /accounts/{account_id}/scheduled             schedule one (amount, date, method)
  POST /accounts/{account_id}/scheduled/{schedule_id}/cancel  cancel one not yet started
  POST /accounts/{account_id}/scheduled/{schedule_id}/dismiss hide a failed one's notice
  GET  /accounts/{account_id}/pay-saved             pay now from a saved method: amount, method
  POST /accounts/{account_id}/pay-saved             the confirm step (or the form again, to change)
  POST /accounts/{account_id}/pay-saved/confirm     pay (idempotent) -> the receipt page
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Router, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal.autopay.methods import AddMethodForm, MethodsService, NicknameForm
from portal.autopay.saved_pay import SavedPayForm, SavedPayService
from portal.autopay.scheduled import MAX_DAYS_AHEAD, ScheduledService, ScheduleForm
from portal.autopay.service import AutoPayService, EnrolForm, local_today, move_schedule
from portal.billing.service import amount_due
from portal.db import is_row_id
from portal.forms import Form, Result
from portal.i18n import _
from portal.payments import stripe_routes
from portal.payments.gateway import GatewayUnavailable
from portal.payments.service import new_key, payment_amount
from portal.security.auth import requires_resident
from portal.security.headers import NO_STORE
from portal.security.throttle import enforce
from portal.services import AppServices
from portal.settings import Settings
from portal.web import PortalRequest, client_address, render

OwnAccount = NamedDependency[Any]
SavedMethods = NamedDependency[list]

NOTICES = {
    "saved": ("success", lambda: _("Your payment method was saved.")),
    "not_saved": ("info", lambda: _("Nothing was saved. You can add a payment method again.")),
    "renamed": ("success", lambda: _("The nickname was changed.")),
    "default": ("success", lambda: _("This is now your default payment method.")),
    "removed": ("success", lambda: _("The payment method was removed.")),
    "enrolled": ("success", lambda: _("AutoPay is on. We sent you an email with the terms.")),
    "changed": ("success", lambda: _("Your AutoPay was changed. We sent you an email.")),
    "canceled": ("success", lambda: _("AutoPay is off. Nothing more will be charged.")),
    "skipped": ("success", lambda: _("This payment was skipped. Nothing will be charged for it.")),
    "scheduled": ("success", lambda: _("Your payment is scheduled.")),
    "scheduled_canceled": (
        "success",
        lambda: _("The scheduled payment was canceled. Nothing will be charged for it."),
    ),
    "too_late_scheduled": (
        "warning",
        lambda: _("This payment has already started or ended, so it could not be canceled."),
    ),
    "too_late": (
        "warning",
        lambda: _("This payment has already started or ended, so it could not be skipped."),
    ),
}


def _again(result: Result, form: Form) -> dict:
    """A refused form's page again: 422, the errors and what was typed, with a fresh
    idempotency key when the form as a whole was refused (it had expired)."""
    values = dict(form.values)
    if "form" in result.errors:
        values.pop("idempotency_key", None)
    return {"status_code": 422, "errors": result.errors, "values": values}


def _default_method(saved: list) -> str:
    """The resident's default saved method, as a form's first choice ('' without one)."""
    return str(next((m["id"] for m in saved if m["is_default"]), ""))


def _alert(request: PortalRequest) -> dict | None:
    found = NOTICES.get(request.query_params.get("notice", ""))
    return {"kind": found[0], "title": found[1](), "body": None} if found else None


async def spends_money(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Guard of every POST here: counted against the money_actions budget (429 past it)."""
    services = connection.app.state.services
    await enforce(
        services.money_actions, services.db, client_address(connection), connection.url.path
    )


# --- saved payment methods ------------------------------------------------------------


async def _methods_page(
    request: PortalRequest,
    methods: MethodsService,
    *,
    status_code: int = 200,
    errors: dict | None = None,
    values: dict | None = None,
    alert: dict | None = None,
) -> Template:
    saved = await methods.list(request.user.user_id)
    uses = {m["id"]: await methods.uses(m["id"]) for m in saved}
    page = render(
        request,
        "pages/payment_methods.html",
        status_code=status_code,
        methods=saved,
        uses=uses,
        key=new_key(),
        errors=errors or {},
        values={"method": "card", **(values or {})},
        alert=alert or _alert(request),
        test_mode=methods.gateway.name == "sandbox",
    )
    # With Stripe the add form's redirect goes to Stripe's page: its CSP must allow it.
    return stripe_routes.allow_checkout(page) if methods.gateway.name == "stripe" else page


@get("/profile/payment-methods")
async def methods_list(request: PortalRequest, services: AppServices) -> Template:
    return await _methods_page(request, services.methods)


@post("/profile/payment-methods", guards=[spends_money])
async def methods_add(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await AddMethodForm.read(request)
    result = await services.methods.start(request.user, form, client_address(request))
    if result.outcome == "invalid":
        return await _methods_page(
            request, services.methods, status_code=422, errors=result.errors, values=form.values
        )
    if result.outcome == "unavailable":
        return await _methods_page(
            request,
            services.methods,
            status_code=503,
            values=form.values,
            errors={
                "method": _(
                    "The payment processor did not answer. Nothing was saved. Try again in a few minutes"
                )
            },
        )
    return Redirect(result.value, status_code=303)


@get("/profile/payment-methods/return")
async def methods_return(request: PortalRequest, services: AppServices) -> Redirect:
    try:
        result = await services.methods.finish(
            request.user, request.query_params.get("ref", ""), client_address(request)
        )
    except GatewayUnavailable:
        result = None
    if result is None or result.outcome == "missing":
        raise NotFoundException()
    notice = "saved" if result.ok else "not_saved"
    return Redirect(f"/profile/payment-methods?notice={notice}", status_code=303)


def _row_id(value: int) -> int:
    """A saved method's or schedule's id from the path, or 404 for one SQLite cannot hold."""
    if not is_row_id(value):
        raise NotFoundException()
    return value


@post("/profile/payment-methods/{method_id:int}/rename", guards=[spends_money])
async def methods_rename(
    request: PortalRequest, method_id: FromPath[int], services: AppServices
) -> Template | Redirect:
    form = await NicknameForm.read(request)
    result = await services.methods.rename(
        request.user, _row_id(method_id), form, client_address(request)
    )
    if result.outcome == "missing":
        raise NotFoundException()
    if not result.ok:
        return await _methods_page(request, services.methods, status_code=422, errors=result.errors)
    return Redirect("/profile/payment-methods?notice=renamed", status_code=303)


@post("/profile/payment-methods/{method_id:int}/default", guards=[spends_money])
async def methods_default(
    request: PortalRequest, method_id: FromPath[int], services: AppServices
) -> Redirect:
    result = await services.methods.make_default(
        request.user, _row_id(method_id), client_address(request)
    )
    if result.outcome == "missing":
        raise NotFoundException()
    return Redirect("/profile/payment-methods?notice=default", status_code=303)


@post("/profile/payment-methods/{method_id:int}/remove", guards=[spends_money])
async def methods_remove(
    request: PortalRequest, method_id: FromPath[int], services: AppServices
) -> Template | Redirect:
    result = await services.methods.remove(
        request.user, _row_id(method_id), client_address(request)
    )
    if result.outcome == "missing":
        raise NotFoundException()
    if result.outcome == "in_use":
        return await _methods_page(
            request,
            services.methods,
            status_code=409,
            alert={
                "kind": "warning",
                "title": _("This payment method was not removed"),
                "body": _(
                    "AutoPay or a scheduled payment uses it. Choose another method for them first, then remove this one."
                ),
            },
        )
    return Redirect("/profile/payment-methods?notice=removed", status_code=303)


# --- AutoPay --------------------------------------------------------------------------


async def own_account(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Any:
    """Dependency `account`: the resident's own account named in the path, or 404 (and an
    audit row) for anybody else's."""
    account = await services.billing.own_account(
        request.user, account_id, client_address(request), request.url.path
    )
    if account is None:
        raise NotFoundException()
    return account


async def saved_methods(request: PortalRequest, services: AppServices) -> list:
    """Dependency `saved`: the resident's saved payment methods, the default first."""
    return await services.methods.list(request.user.user_id)


async def _autopay_page(
    request: PortalRequest,
    account,
    autopay: AutoPayService,
    saved: list,
    *,
    status_code: int = 200,
    errors: dict | None = None,
    values: dict | None = None,
) -> Template:
    status = await autopay.status(account["id"])
    if values is None:
        chosen = status.enrolment["method_id"] if status.enrolment else None
        max_cents = status.enrolment["max_cents"] if status.enrolment else None
        values = {
            "method_id": str(chosen) if chosen else _default_method(saved),
            "max_amount": f"{max_cents / 100:.2f}" if max_cents else "",
        }
    return render(
        request,
        "pages/autopay.html",
        status_code=status_code,
        account=account,
        status=status,
        methods=saved,
        errors=errors or {},
        values=values,
        alert=_alert(request),
        due=await amount_due(autopay.db, account["id"]),
        days_before=autopay.settings.autopay_days_before,
        reminder_days=autopay.settings.autopay_reminder_days,
    )


@get("/accounts/{account_id:int}/autopay")
async def autopay_page(
    request: PortalRequest,
    account: OwnAccount,
    services: AppServices,
    saved: SavedMethods,
) -> Template:
    return await _autopay_page(request, account, services.autopay, saved)


@post("/accounts/{account_id:int}/autopay", guards=[spends_money])
async def autopay_enrol(
    request: PortalRequest,
    account: OwnAccount,
    services: AppServices,
    saved: SavedMethods,
) -> Template | Redirect:
    form = await EnrolForm.read(request)
    result = await services.autopay.enrol(
        request.user, account, form, saved, client_address(request)
    )
    if result.outcome == "invalid":
        return await _autopay_page(
            request, account, services.autopay, saved, **_again(result, form)
        )
    notice = "changed" if result.outcome == "changed" else "enrolled"
    return Redirect(f"/accounts/{account['id']}/autopay?notice={notice}", status_code=303)


@post("/accounts/{account_id:int}/autopay/cancel", guards=[spends_money])
async def autopay_cancel(
    request: PortalRequest, account: OwnAccount, services: AppServices
) -> Redirect:
    await services.autopay.cancel(request.user, account, client_address(request))
    return Redirect(f"/accounts/{account['id']}/autopay?notice=canceled", status_code=303)


# --- scheduled one-time payments ------------------------------------------------------


async def _scheduled_page(
    request: PortalRequest,
    account,
    scheduled: ScheduledService,
    saved: list,
    *,
    status_code: int = 200,
    errors: dict | None = None,
    values: dict | None = None,
) -> Template:
    if values is None:
        values = {"method_id": _default_method(saved)}
    today = local_today(scheduled.settings)
    return render(
        request,
        "pages/scheduled.html",
        status_code=status_code,
        account=account,
        payments=await scheduled.list(account["id"]),
        methods=saved,
        due_date=await scheduled.due_date(account["id"]),
        due=await amount_due(scheduled.db, account["id"]),
        first_day=(today + timedelta(days=1)).isoformat(),
        last_day=(today + timedelta(days=MAX_DAYS_AHEAD)).isoformat(),
        key=values.get("idempotency_key") or new_key(),
        errors=errors or {},
        values=values,
        alert=_alert(request),
    )


@get("/accounts/{account_id:int}/scheduled")
async def scheduled_page(
    request: PortalRequest,
    account: OwnAccount,
    services: AppServices,
    saved: SavedMethods,
) -> Template:
    return await _scheduled_page(request, account, services.scheduled, saved)


@post("/accounts/{account_id:int}/scheduled", guards=[spends_money])
async def scheduled_add(
    request: PortalRequest,
    account: OwnAccount,
    services: AppServices,
    saved: SavedMethods,
) -> Template | Redirect:
    form = await ScheduleForm.read(request)
    result = await services.scheduled.schedule(
        request.user, account, form, saved, client_address(request)
    )
    if not result.ok:
        return await _scheduled_page(
            request, account, services.scheduled, saved, **_again(result, form)
        )
    return Redirect(f"/accounts/{account['id']}/scheduled?notice=scheduled", status_code=303)


# --- skip, cancel, dismiss: one schedule moved while its state allows it ---------------

# The move, the page it belongs to, and where the resident lands after it or when it was
# too late (None: 404).
MOVED = {
    "skip": ("autopay", "autopay?notice=skipped", "autopay?notice=too_late"),
    "cancel": (
        "scheduled",
        "scheduled?notice=scheduled_canceled",
        "scheduled?notice=too_late_scheduled",
    ),
    "dismiss": ("scheduled", "/account?notice=dismissed", None),
}


@post(
    [
        "/accounts/{account_id:int}/autopay/{move:str}/{schedule_id:int}",
        "/accounts/{account_id:int}/scheduled/{schedule_id:int}/{move:str}",
    ],
    guards=[spends_money],
)
async def schedule_move(
    request: PortalRequest, account: OwnAccount, schedule_id: FromPath[int], move: FromPath[str]
) -> Redirect:
    page, done, too_late = MOVED.get(move, (None, None, None))
    if page is None or request.url.path.split("/")[3] != page:
        raise NotFoundException()
    result = await move_schedule(
        request.app.state.services.db,
        move,
        request.user,
        account,
        _row_id(schedule_id),
        client_address(request),
    )
    target = done if result.ok else too_late
    if target is None:
        raise NotFoundException()
    return Redirect(
        target if target.startswith("/") else f"/accounts/{account['id']}/{target}",
        status_code=303,
    )


# --- paying now from a saved method ----------------------------------------------------


async def _pay_saved_page(
    request: PortalRequest,
    account,
    saved_pay: SavedPayService,
    saved: list,
    *,
    step: str = "form",
    status_code: int = 200,
    errors: dict | None = None,
    values: dict | None = None,
) -> Template:
    due = await amount_due(saved_pay.db, account["id"])
    values = dict(values or {})
    if not values:
        values = {"method_id": _default_method(saved), "amount": f"{due / 100:.2f}" if due else ""}
    values.setdefault("idempotency_key", new_key())
    return render(
        request,
        "pages/pay_saved.html",
        status_code=status_code,
        step=step,
        account=account,
        methods=saved,
        chosen=next((m for m in saved if str(m["id"]) == values.get("method_id")), None),
        cents=payment_amount(values.get("amount", ""), saved_pay.settings)[0],
        due=due,
        errors=errors or {},
        values=values,
    )


@get("/accounts/{account_id:int}/pay-saved")
async def pay_saved_form(
    request: PortalRequest, account: OwnAccount, services: AppServices, saved: SavedMethods
) -> Template:
    return await _pay_saved_page(request, account, services.saved_pay, saved)


@post("/accounts/{account_id:int}/pay-saved", guards=[spends_money])
async def pay_saved_review(
    request: PortalRequest,
    account: OwnAccount,
    services: AppServices,
    saved: SavedMethods,
) -> Template:
    """The confirm step for a valid form; the form again (422) with what to fix, or
    unchanged when the resident chose to change it."""
    form = await SavedPayForm.read(request)
    services.saved_pay.check(form, saved)
    if form.change:
        return await _pay_saved_page(
            request, account, services.saved_pay, saved, values=form.values
        )
    if form.errors:
        return await _pay_saved_page(
            request,
            account,
            services.saved_pay,
            saved,
            status_code=422,
            errors=form.errors,
            values=form.values,
        )
    return await _pay_saved_page(
        request, account, services.saved_pay, saved, step="confirm", values=form.values
    )


@post("/accounts/{account_id:int}/pay-saved/confirm", guards=[spends_money])
async def pay_saved_confirm(
    request: PortalRequest,
    account: OwnAccount,
    services: AppServices,
    saved: SavedMethods,
) -> Template | Redirect:
    form = await SavedPayForm.read(request)
    result = await services.saved_pay.pay(
        request.user, account, form, saved, client_address(request)
    )
    if result.outcome == "invalid":
        return await _pay_saved_page(
            request, account, services.saved_pay, saved, **_again(result, form)
        )
    if result.outcome == "unavailable":  # nothing known yet: Pay again sends the same key
        problem = _(
            "The payment processor did not answer, so we do not know yet if it charged you. Press Pay now again: the same payment cannot be charged twice"
        )
        return await _pay_saved_page(
            request,
            account,
            services.saved_pay,
            saved,
            step="confirm",
            status_code=503,
            values=form.values,
            errors={"form": problem},
        )
    return Redirect(result.value, status_code=303)


def handlers(settings: Settings) -> list:
    return [
        Router(
            path="/",
            guards=[requires_resident],
            dependencies={"account": Provide(own_account), "saved": Provide(saved_methods)},
            cache_control=NO_STORE,
            route_handlers=[
                methods_list,
                methods_add,
                methods_return,
                methods_rename,
                methods_default,
                methods_remove,
                autopay_page,
                autopay_enrol,
                autopay_cancel,
                scheduled_page,
                scheduled_add,
                schedule_move,
                pay_saved_form,
                pay_saved_review,
                pay_saved_confirm,
            ],
        )
    ]
