"""The Customer Services console over HTTP: parse, call a service, choose a template.

URL map (open: the staff sign-in and the one-time enrolment link):
  GET  /staff                                   staff sign-in (password + code)
  POST /staff                                   sign in
  GET  /staff/enrol?token=, POST                enrolment: password, authenticator app
                                                (QR code + text), first code; then the
                                                ten recovery codes, shown once
  GET  /staff/session, POST                     how long until an idle sign-out (not a
                                                visit; 0 without a session); "Stay
                                                signed in" (the warning's script)

Staff, either role (router guarded by requires_staff, no-store; anybody else: 404,
audited):
  POST /staff/sign-out                          sign out
  GET  /staff/search?q=                         find a customer
  GET  /staff/accounts/{account_id}             the resident's account, read-only
  POST /staff/accounts/{account_id}/notes       add a note
  POST /staff/accounts/{account_id}/release     release the account from its login
  POST /staff/accounts/{account_id}/autopay/cancel                 turn AutoPay off
  POST /staff/accounts/{account_id}/scheduled/{schedule_id}/cancel cancel a scheduled
                                                payment not yet started
  GET  /staff/accounts/{account_id}/pay, POST   take a payment by phone -> gateway page
  GET  /staff/logins/{user_id}                  a login with no account left
  POST /staff/logins/{user_id}/{action}         resend-verification, unlock, email (change
                                                it: the new address confirms)

Every action needs a reason and is audited under the staff member's name; cancelling
AutoPay or a scheduled payment also spends from the console_money budget.

Supervisors (router guarded by requires_supervisor, no-store):
  GET  /staff/team                              the staff list
  GET  /staff/audit?staff=&action=&date_from=&date_to=&account=   staff actions
  GET  /staff/audit.csv?…                       the same rows as CSV
  GET  /staff/notice, POST                      the service notice on every page (a
                                                boil-water notice …), with a reason
  POST /staff/notice/clear                      take it down, with a reason
"""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal.i18n import _
from portal.pages.notice import CURRENT as CURRENT_NOTICE
from portal.payments.service import new_key
from portal.security import totp
from portal.security.auth import requires_staff, requires_supervisor
from portal.security.cookies import issue_csrf_cookie
from portal.security.headers import NO_STORE
from portal.security.throttle import enforce
from portal.services import AppServices
from portal.settings import Settings
from portal.staff import sessions
from portal.staff.accounts import EnrolForm, StaffAuthService, StaffSignInForm
from portal.staff.console import (
    ConsoleService,
    NoteForm,
    NoticeClearForm,
    NoticeForm,
    ReasonForm,
    StaffEmailForm,
    StaffPaymentForm,
)
from portal.staff.oversight import ACTIONS, AuditFilterForm
from portal.web import PortalRequest, client_address, render, session_time

# --- sign-in and enrolment (open) ------------------------------------------------------


# ?notice= on the sign-in page: its kind, title and text.
_SIGN_IN_NOTICES = {
    "signed-out": ("success", lambda: _("You have signed out"), lambda: None),
    "session-ended": (
        "info",
        lambda: _("Sign in to continue"),
        lambda: _("Your staff session ended after 15 minutes without activity, or 8 hours in all."),
    ),
    "enrolled": (
        "success",
        lambda: _("You are enrolled"),
        lambda: _("Sign in with your username, password and a code from your authenticator app."),
    ),
}


def _sign_in_notice(notice: str) -> dict | None:
    if notice not in _SIGN_IN_NOTICES:
        return None
    kind, title, body = _SIGN_IN_NOTICES[notice]
    return {"kind": kind, "title": title(), "body": body()}


@get("/staff", cache_control=NO_STORE)
async def sign_in_form(request: PortalRequest) -> Template | Redirect:
    if isinstance(request.user, sessions.StaffMember):
        return Redirect("/staff/search", status_code=303)
    alert = _sign_in_notice(request.query_params.get("notice", ""))
    return render(request, "pages/staff/sign_in.html", alert=alert)


@post("/staff", cache_control=NO_STORE)
async def sign_in(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await StaffSignInForm.read(request)
    result = await services.staff_auth.sign_in(form, client_address(request))
    if result.ok:
        # Rotation: whatever staff session this browser had ends now.
        await services.staff_auth.sign_out(
            request.cookies.get(sessions.COOKIE), None, client_address(request)
        )
        response = Redirect("/staff/search", status_code=303)
        response.set_cookie(sessions.cookie(result.value, services.settings))
        issue_csrf_cookie(
            response, services.settings
        )  # a token from before sign-in is worth nothing
        return response
    if result.outcome == "missing":
        message = _("Enter your username, password and the code from your authenticator app")
    elif result.outcome == "throttled":
        message = _(
            "There have been too many failed sign-ins. Wait %(minutes)s minutes and try again.",
            minutes=result.value,
        )
    else:
        message = _("The username, password or code is not right")
    return render(
        request,
        "pages/staff/sign_in.html",
        status_code=429 if result.outcome == "throttled" else 422,
        message=message,
        values={"username": form.username[:64]},
    )


async def _enrol_page(
    request: PortalRequest, staff_auth: StaffAuthService, token: str, **context
) -> Template:
    staff = await staff_auth.enrolment(token)
    if staff is None:
        return render(request, "pages/staff/enrol.html", status_code=400, invalid=True)
    uri = staff_auth.otpauth_uri(staff)
    return render(
        request,
        "pages/staff/enrol.html",
        staff=staff,
        token=token,
        uri=uri,
        qr=totp.qr_svg(uri, _("QR code for your authenticator app")),
        secret=staff["totp_secret"],
        **context,
    )


@get("/staff/enrol", cache_control=NO_STORE)
async def enrol_form(request: PortalRequest, services: AppServices) -> Template:
    """Shows the form only: a mail scanner opening the link spends nothing."""
    return await _enrol_page(request, services.staff_auth, request.query_params.get("token", ""))


@post("/staff/enrol", cache_control=NO_STORE)
async def enrol(request: PortalRequest, services: AppServices) -> Template:
    form = await EnrolForm.read(request)
    result = await services.staff_auth.enrol(form, client_address(request))
    if result.outcome == "expired":
        return render(request, "pages/staff/enrol.html", status_code=400, invalid=True)
    if not result.ok:
        return await _enrol_page(
            request, services.staff_auth, form.token, status_code=422, errors=result.errors
        )
    return render(request, "pages/staff/recovery_codes.html", codes=result.value)


# --- staff pages ---------------------------------------------------------------------------


@post("/staff/sign-out")
async def sign_out(request: PortalRequest, services: AppServices) -> Redirect:
    await services.staff_auth.sign_out(
        request.cookies.get(sessions.COOKIE), request.user.username, client_address(request)
    )
    response = Redirect("/staff?notice=signed-out", status_code=303)
    response.set_cookie(sessions.clear_cookie(services.settings))
    return response


@get("/staff/search")
async def search(request: PortalRequest, services: AppServices) -> Template:
    query = request.query_params.get("q", "")[:100]
    accounts, logins = await services.console.search(query)
    return render(
        request,
        "pages/staff/search.html",
        partial="partials/staff/search_results.html",
        query=query.strip(),
        accounts=accounts,
        logins=logins,
    )


_DONE = {
    "note": lambda: _("The note was added."),
    "released": lambda: _("The account was released from the login."),
    "resent": lambda: _("A new verification email is on its way to the resident."),
    "unlocked": lambda: _("The login was unlocked."),
    "two_step_off": lambda: _(
        "Two-step verification is off for this login. The resident was sent an email."
    ),
    "email": lambda: _(
        "A confirmation link went to the new address. The email address changes when the resident opens it."
    ),
    "autopay_canceled": lambda: _(
        "AutoPay is off for this account. The resident was sent an email."
    ),
    "scheduled_canceled": lambda: _(
        "The scheduled payment was canceled. The resident was sent an email."
    ),
}

_REFUSED = {
    "not_enrolled": lambda: _("AutoPay was already off for this account. Nothing was changed."),
    "too_late": lambda: _(
        "This payment has already started or ended, so it could not be canceled."
    ),
}


def _console_page(request: PortalRequest, page: str, status_code: int, **context) -> Template:
    """An account's or a login's page: the ?done= alert of the action that led here,
    unless the caller brings its own."""
    message = _DONE.get(request.query_params.get("done", ""))
    done = {"kind": "success", "title": message(), "body": None} if message else None
    return render(request, page, status_code=status_code, **{"alert": done, **context})


async def _account_page(
    request: PortalRequest,
    console: ConsoleService,
    account_id: int,
    status_code: int = 200,
    **context,
) -> Template:
    view = await console.account_view(account_id)
    if view is None:
        raise NotFoundException()
    locked = console.locked(view["login"].login) if view["login"] else False
    return _console_page(
        request, "pages/staff/account.html", status_code, view=view, locked=locked, **context
    )


@get("/staff/accounts/{account_id:int}")
async def account(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template:
    return await _account_page(request, services.console, account_id)


async def _account_action(
    request: PortalRequest,
    console: ConsoleService,
    account_id: int,
    name: str,
    action,
    done: str,
    form_class=ReasonForm,
) -> Template | Redirect:
    """An action on the account with its inputs named `{name}_{field}` (a reason box, or
    the note): 422 with the errors, 409 with the alert when it was already done or too
    late; `done` is the ?done= notice (and the #part to show)."""
    if await console.account(account_id) is None:
        raise NotFoundException()
    form = await _read_prefixed(form_class, request, name)
    result = await action(request.user, account_id, form, client_address(request))
    if result.outcome == "invalid":
        return await _account_page(
            request,
            console,
            account_id,
            422,
            **_shown_again(result.errors, form, name),
        )
    if result.outcome in _REFUSED:
        alert = {"kind": "warning", "title": _REFUSED[result.outcome](), "body": None}
        return await _account_page(request, console, account_id, 409, alert=alert)
    return Redirect(f"/staff/accounts/{account_id}?done={done}", status_code=303)


@post("/staff/accounts/{account_id:int}/notes")
async def add_note(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template | Redirect:
    return await _account_action(
        request,
        services.console,
        account_id,
        "note",
        services.console.add_note,
        "note#notes",
        NoteForm,
    )


@post("/staff/accounts/{account_id:int}/release")
async def release(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template | Redirect:
    return await _account_action(
        request, services.console, account_id, "release", services.console.release, "released"
    )


@post("/staff/accounts/{account_id:int}/autopay/cancel")
async def cancel_autopay(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template | Redirect:
    await enforce(
        services.console_money, services.console.db, client_address(request), request.url.path
    )
    return await _account_action(
        request,
        services.console,
        account_id,
        "autopay",
        services.console.cancel_autopay,
        "autopay_canceled",
    )


@post("/staff/accounts/{account_id:int}/scheduled/{schedule_id:int}/cancel")
async def cancel_scheduled(
    request: PortalRequest,
    account_id: FromPath[int],
    schedule_id: FromPath[int],
    services: AppServices,
) -> Template | Redirect:
    if await services.console.schedule(account_id, schedule_id) is None:
        raise NotFoundException()
    await enforce(
        services.console_money, services.console.db, client_address(request), request.url.path
    )
    return await _account_action(
        request,
        services.console,
        account_id,
        f"scheduled_{schedule_id}",
        partial(services.console.cancel_scheduled, schedule_id=schedule_id),
        "scheduled_canceled",
    )


async def _read_prefixed(form_class, request: PortalRequest, form_name: str):
    """A form whose inputs are named `{form_name}_{field}` (several forms on one page
    each have a reason box, and ids must be unique)."""
    posted = await request.form()
    data: dict[str, str] = {}
    for key, value in posted.multi_items():
        if isinstance(value, str) and key.startswith(form_name + "_"):
            data.setdefault(key[len(form_name) + 1 :], value)
    return form_class(data)


def _named(fields: dict, form_name: str) -> dict:
    """Field names prefixed with their form's, so two reason boxes on a page stay apart."""
    return {f"{form_name}_{key}": value for key, value in fields.items()}


def _shown_again(errors: dict, form: Any, form_name: str) -> dict:
    """A refused form's errors and what was typed, for its page again."""
    return {"errors": _named(errors, form_name), "values": _named(form.values, form_name)}


async def _pay_page(
    request: PortalRequest,
    console: ConsoleService,
    account_id: int,
    status_code: int = 200,
    values: dict | None = None,
    errors: dict | None = None,
    key: str | None = None,
) -> Template:
    account = await console.active_account(account_id)
    if account is None:
        raise NotFoundException()
    due = await console.payments.amount_due(account_id)
    values = dict(values or {})
    values.setdefault("amount", f"{due / 100:.2f}" if due and due >= 100 else "")
    values.setdefault("method", "card")
    return render(
        request,
        "pages/staff/pay.html",
        status_code=status_code,
        account=account,
        due=due,
        key=key or new_key(),
        values=values,
        errors=errors or {},
    )


@get("/staff/accounts/{account_id:int}/pay")
async def pay_form(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template:
    return await _pay_page(request, services.console, account_id)


@post("/staff/accounts/{account_id:int}/pay")
async def pay(
    request: PortalRequest, account_id: FromPath[int], services: AppServices
) -> Template | Redirect:
    if await services.console.active_account(account_id) is None:
        raise NotFoundException()
    form = await StaffPaymentForm.read(request)
    result = await services.console.take_payment(
        request.user, account_id, form, client_address(request)
    )
    if result.outcome == "invalid":
        return await _pay_page(
            request,
            services.console,
            account_id,
            422,
            values={k: form.values[k] for k in ("amount", "method", "receipt_email", "reason")},
            errors=result.errors,
            key=form.idempotency_key if "form" not in result.errors else None,
        )
    return Redirect(result.value, status_code=303)


async def _login_page(
    request: PortalRequest, console: ConsoleService, user_id: int, status_code: int = 200, **context
) -> Template:
    """A login's actions answer on its account's page; a login with no account has its own."""
    view = await console.login_view(user_id)
    if view is None:
        raise NotFoundException()
    if view.accounts and status_code != 200:
        return await _account_page(request, console, view.accounts[0]["id"], status_code, **context)
    locked = console.locked(view.login)
    return _console_page(
        request, "pages/staff/login.html", status_code, login_view=view, locked=locked, **context
    )


def _back_to(view_accounts: list, user_id: int, done: str) -> Redirect:
    if view_accounts:
        return Redirect(
            f"/staff/accounts/{view_accounts[0]['id']}?done={done}#login", status_code=303
        )
    return Redirect(f"/staff/logins/{user_id}?done={done}", status_code=303)


@get("/staff/logins/{user_id:int}")
async def login(request: PortalRequest, user_id: FromPath[int], services: AppServices) -> Template:
    return await _login_page(request, services.console, user_id)


# The actions on a login, by the last part of their URL: the name of their reason box's
# form, the form, the ConsoleService method, and the ?done= notice.
_LOGIN_ACTIONS = {
    "resend-verification": ("resend", ReasonForm, "resend_verification", "resent"),
    "unlock": ("unlock", ReasonForm, "unlock", "unlocked"),
    "two-step-off": ("twostep", ReasonForm, "two_step_off", "two_step_off"),
    "email": ("email", StaffEmailForm, "change_email", "email"),
}


@post("/staff/logins/{user_id:int}/{action:str}")
async def login_action(
    request: PortalRequest, user_id: FromPath[int], action: FromPath[str], services: AppServices
) -> Template | Redirect:
    if action not in _LOGIN_ACTIONS:
        raise NotFoundException()
    name, form_class, method, done = _LOGIN_ACTIONS[action]
    view = await services.console.login_view(user_id)
    if view is None:
        raise NotFoundException()
    form = await _read_prefixed(form_class, request, name)
    result = await getattr(services.console, method)(
        request.user, user_id, form, client_address(request)
    )
    if result.outcome == "missing":
        raise NotFoundException()
    if not result.ok:
        return await _login_page(
            request,
            services.console,
            user_id,
            422,
            **_shown_again(result.errors, form, name),
        )
    return _back_to(view.accounts, user_id, done)


# --- supervisors ---------------------------------------------------------------------------


@get("/staff/team")
async def team(request: PortalRequest, services: AppServices) -> Template:
    return render(request, "pages/staff/team.html", team=await services.staff_auth.team())


NOTICE_SAID = {
    "set": lambda: _("The notice is now shown on every page."),
    "removed": lambda: _("The notice was taken down."),
}


async def _notice_page(
    request: PortalRequest, services: AppServices, status_code: int = 200, **context: Any
) -> Template:
    current = await services.db.fetchone(CURRENT_NOTICE)
    said = NOTICE_SAID.get(request.query_params.get("notice", ""))
    return render(
        request,
        "pages/staff/notice.html",
        status_code=status_code,
        current=current,
        said=said() if said else None,
        **context,
    )


@get("/staff/notice")
async def notice_page(request: PortalRequest, services: AppServices) -> Template:
    return await _notice_page(request, services)


@post("/staff/notice")
async def notice_set(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await NoticeForm.read(request)
    result = await services.console.post_notice(request.user, form, client_address(request))
    if not result.ok:
        return await _notice_page(
            request, services, status_code=422, errors=result.errors, values=form.values
        )
    await request.app.state.site_notice.round()  # shown from this process's next page on
    return Redirect("/staff/notice?notice=set", status_code=303)


@post("/staff/notice/clear")
async def notice_clear(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await NoticeClearForm.read(request)
    result = await services.console.remove_notice(request.user, form, client_address(request))
    if result.outcome == "invalid":
        return await _notice_page(
            request, services, status_code=422, errors=result.errors, values=form.values
        )
    if result.outcome == "missing":  # already down (another supervisor, the CLI)
        return Redirect("/staff/notice", status_code=303)
    await request.app.state.site_notice.round()
    return Redirect("/staff/notice?notice=removed", status_code=303)


@get("/staff/audit")
async def audit_log(request: PortalRequest, services: AppServices) -> Template:
    form = AuditFilterForm.from_query(request.query_params)
    result = await services.oversight.actions(form)
    return render(
        request,
        "pages/staff/audit.html",
        status_code=200 if result.ok else 422,
        rows=result.value or [],
        values=form.values,
        errors=result.errors,
        actions=ACTIONS,
        query=request.url.query,
    )


@get("/staff/audit.csv")
async def audit_csv(request: PortalRequest, services: AppServices) -> Response:
    form = AuditFilterForm.from_query(request.query_params)
    result = await services.oversight.actions_csv(form)
    if not result.ok:
        return Response(
            "\n".join(result.errors.values()) + "\n",
            media_type="text/plain",
            status_code=400,
        )
    return Response(
        result.value,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="staff-actions.csv"'},
    )


# The warning before an idle sign-out, as for residents (accounts/routes.py): outside
# SessionAuth, since asking is not a visit.
@get("/staff/session", opt={"exclude_from_auth": True}, cache_control=NO_STORE)
async def session_status(request: PortalRequest, services: AppServices) -> Response:
    left = await sessions.time_left(services.db, request.cookies.get(sessions.COOKIE))
    return session_time(request, left, "/staff/search", sessions.TIMEOUT.ended_url)


@post("/staff/session", opt={"exclude_from_auth": True}, cache_control=NO_STORE)
async def session_keep_alive(request: PortalRequest, services: AppServices) -> Response:
    left = await sessions.keep_alive(services.db, request.cookies.get(sessions.COOKIE))
    return session_time(request, left, "/staff/search", sessions.TIMEOUT.ended_url)


def handlers(settings: Settings) -> list:
    staff = Router(
        path="/",
        guards=[requires_staff],
        cache_control=NO_STORE,
        route_handlers=[
            sign_out,
            search,
            account,
            add_note,
            release,
            pay_form,
            pay,
            cancel_autopay,
            cancel_scheduled,
            login,
            login_action,
        ],
    )
    supervisors = Router(
        path="/",
        guards=[requires_supervisor],
        cache_control=NO_STORE,
        route_handlers=[team, audit_log, audit_csv, notice_page, notice_set, notice_clear],
    )
    return [
        sign_in_form,
        sign_in,
        enrol_form,
        enrol,
        session_status,
        session_keep_alive,
        staff,
        supervisors,
    ]
