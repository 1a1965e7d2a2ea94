"""Online accounts over HTTP: parse, call a service, choose a template.

URL map (open to everyone):
  GET  /register                       New User Registration
  POST /register                       register (422 with alerts; success message)
  POST /register/check/{field}         one field's alert while filling in (htmx)
  GET  /verify?username=&verificationcode=   link from the verification email
  GET  /verify/resend, POST            send a new verification link
  GET  /login, POST /login             Login to My Account
  GET  /login/code, POST               the code step of a login with two-step verification
  POST /logout                         sign out
  GET  /session, POST                  how long until an idle sign-out (the warning's
                                       question, not a visit); "Stay signed in"
  GET  /forgot-username, POST          Forgot Username
  GET  /forgot-password, POST          Forgot Password
  GET  /reset-password?token=, POST    choose a new password from the emailed link
  GET  /profile/email/confirm?token=   confirm a new email address (from the email)

Signed-in resident (router guarded by requires_resident, no-store):
  GET  /profile                        My Profile
  GET  /profile/activity               Recent activity: the last logins and safety changes
  POST /profile/delivery | /profile/password | /profile/email | /profile/sign-out-everywhere
  GET  /profile/two-step, POST         turn two-step verification on (key, QR, recovery codes)
  POST /profile/two-step/codes         ten new recovery codes in place of the old
  POST /profile/two-step/off           turn it off
"""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Router, get, post
from litestar.background_tasks import BackgroundTask
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from portal import i18n
from portal.accounts import sessions
from portal.accounts.profile import DeliveryForm, EmailForm, PasswordForm, ProfileService
from portal.accounts.recovery import (
    ForgotPasswordForm,
    ForgotUsernameForm,
    ResetForm,
)
from portal.accounts.registration import (
    REGISTRATION_FIELDS,
    Registration,
    UsernameForm,
)
from portal.accounts.signin import (
    CODE_WAIT,
    DEVICE_COOKIE,
    CodeForm,
    LoginForm,
    NewSession,
    device_cookie,
)
from portal.accounts.two_step import NewCodesForm, TurnOffForm, TurnOnForm
from portal.i18n import _
from portal.security import cookies, totp
from portal.security.auth import requires_resident
from portal.security.cookies import issue_csrf_cookie
from portal.security.headers import NO_STORE
from portal.security.throttle import Throttled, enforce
from portal.services import AppServices
from portal.settings import Settings
from portal.web import PortalRequest, client_address, local_path, render, session_time

# Per-field checks that may look the bill's numbers up spend the look-up budget.
LOOKUP_FIELDS = {"account_number", "bill_amount"}


# --- registration ----------------------------------------------------------------


@get("/register")
async def register_form(request: PortalRequest) -> Template:
    return render(request, "pages/register.html")


@post("/register")
async def register(request: PortalRequest, services: AppServices) -> Template:
    await enforce(
        services.lookups, services.registration.db, client_address(request), request.url.path
    )
    form = await Registration.read(request)
    result = await services.registration.register(form, client_address(request))
    if not result.ok:
        return render(
            request,
            "pages/register.html",
            partial="partials/register_form.html",
            status_code=422,
            values=form.values,
            errors=result.errors,
        )
    return render(
        request,
        "pages/register.html",
        partial="partials/register_success.html",
        done=True,
        email=form.email,
    )


@post("/register/check/{name:str}")
async def register_check(
    request: PortalRequest, name: FromPath[str], services: AppServices
) -> Template:
    """Check one field the resident changed; answer with just its message."""
    if name not in REGISTRATION_FIELDS:
        raise NotFoundException()
    budget = services.lookups if name in LOOKUP_FIELDS else services.checks
    try:
        await enforce(budget, services.registration.db, client_address(request), request.url.path)
    except Throttled as refused:
        return Template(
            template_name="partials/field_check.html",
            media_type=MediaType.HTML,
            context={
                "error": _(
                    "Too many checks from your network. Wait %(minutes)s minutes, then send the form.",
                    minutes=refused.wait_minutes,
                ),
                "confirm": None,
                "confirm_error": None,
            },
            headers={"Vary": "HX-Request, Accept-Language"},
        )
    form = await Registration.read(request)
    error = await services.registration.field_problem(form, name)
    # Changing a password or email re-checks its confirmation, if already typed.
    confirm = {"password": "confirm_password", "email": "confirm_email"}.get(name)
    if confirm and not getattr(form, confirm):
        confirm = None
    confirm_error = await services.registration.field_problem(form, confirm) if confirm else None
    return Template(
        template_name="partials/field_check.html",
        media_type=MediaType.HTML,
        context={"error": error, "confirm": confirm, "confirm_error": confirm_error},
        headers={"Vary": "HX-Request, Accept-Language"},
    )


# --- verification ----------------------------------------------------------------


@get("/verify")
async def verify(request: PortalRequest, services: AppServices) -> Template:
    username = request.query_params.get("username", "")
    code = request.query_params.get("verificationcode", "")
    result = await services.registration.verify(username, code, client_address(request))
    if result.outcome == "verified":
        dialog = {
            "title": _("Verification success"),
            "body": _("Your account has been successfully verified."),
            "close_url": "/login",
        }
        return render(request, "pages/login.html", dialog=dialog, values={"username": username})
    if result.outcome == "already":
        alert = {
            "kind": "success",
            "title": _("Your account is verified"),
            "body": _("This link was already used, and your account is verified. Log in below."),
        }
        return render(request, "pages/login.html", alert=alert, values={"username": username})
    return render(
        request,
        "pages/verify_failed.html",
        status_code=400,
        expired=result.outcome == "expired",
        username=username,
    )


@get("/verify/resend")
async def resend_form(request: PortalRequest) -> Template:
    return render(
        request, "pages/verify_resend.html", username=request.query_params.get("username", "")
    )


@post("/verify/resend")
async def resend(request: PortalRequest, services: AppServices) -> Template:
    form = await UsernameForm.read(request)
    result = services.registration.resend_verification(form, client_address(request))
    if not result.ok:
        return render(
            request, "pages/verify_resend.html", status_code=422, errors=result.errors, username=""
        )
    return render(
        request,
        "pages/verify_resend.html",
        sent=True,
        username=form.username,
        background=BackgroundTask(result.value),
    )


# --- sign-in and sign-out --------------------------------------------------------


def _login_notice(notice: str) -> dict | None:
    """The alert for /login?notice=… (after signing out, a reset, an ended session)."""
    if notice == "signed-out":
        return {"kind": "success", "title": _("You have signed out"), "body": None}
    if notice == "signed-out-everywhere":
        return {"kind": "success", "title": _("You have signed out on every device"), "body": None}
    if notice == "password-reset":
        return {
            "kind": "success",
            "title": _("Your password has been changed"),
            "body": _("Log in with your new password."),
        }
    if notice == "timed-out":
        return {
            "kind": "info",
            "title": _("You were signed out"),
            "body": _(
                "For your security, we sign you out after %(minutes)s minutes without activity. Log in to continue.",
                minutes=sessions.RESIDENT_TIMEOUT.idle_minutes,
            ),
        }
    if notice == "session-ended":
        return {
            "kind": "info",
            "title": _("Log in to continue"),
            "body": _(
                "You need to log in to see that page. If you were logged in, your session ended."
            ),
        }
    return None


@get("/login")
async def login_form(request: PortalRequest) -> Template | Redirect:
    if request.user:
        return Redirect("/account", status_code=303)
    alert = _login_notice(request.query_params.get("notice", ""))
    return render(
        request, "pages/login.html", alert=alert, next=request.query_params.get("next", "")
    )


def _login_problem(outcome: str, value) -> tuple[str, dict | None]:
    """The message (and a link to the way out, if any) for a refused login."""
    if outcome == "missing":
        return _("Enter your username and password"), None
    if outcome == "throttled":
        return _(
            "There have been too many failed logins for this account. Wait %(minutes)s minutes and try again, or use Forgot Password to choose a new password.",
            minutes=value,
        ), None
    if outcome == "locked":
        return _(
            "This account is locked after too many failed logins. Use Forgot Password to choose a new password."
        ), {"href": "/forgot-password", "text": _("Forgot Password")}
    if outcome == "unverified":
        return _(
            "You need to verify your registration before you can log in. Open the link in the email we sent when you registered."
        ), {
            "href": "/verify/resend?" + urlencode({"username": value}),
            "text": _("Send the verification email again"),
        }
    return _("Username or password is incorrect"), None


@post("/login")
async def login(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await LoginForm.read(request)
    device = request.cookies.get(DEVICE_COOKIE)
    result = await services.signin.sign_in(form, client_address(request), device)
    if result.ok:
        return await _signed_in(request, services, result.value, form.remember, form.next)
    if result.outcome == "code_needed":
        pending_id, locale = result.value
        response = Redirect("/login/code", status_code=303)
        response.set_cookie(_pending_cookie(pending_id, services.settings))
        if i18n.LOCALE_COOKIE not in request.cookies and locale in i18n.LOCALES:
            response.set_cookie(i18n.locale_cookie(locale, services.settings.production))
        return response
    message, link = _login_problem(result.outcome, result.value)
    return render(
        request,
        "pages/login.html",
        status_code=429 if result.outcome == "throttled" else 422,
        message=message,
        message_link=link,
        values={"username": form.username[:64], "remember": form.remember},
        next=form.next,
    )


async def _signed_in(
    request: PortalRequest, services: AppServices, new: NewSession, remember: bool, next: str
) -> Redirect:
    """The answer to a login that passed every step: the session cookie, and onwards."""
    response = Redirect(local_path(next), status_code=303)
    response.set_cookie(sessions.cookie(new.session_id, remember, services.settings))
    if new.device:
        response.set_cookie(device_cookie(new.device, services.settings))
    if i18n.LOCALE_COOKIE not in request.cookies and new.locale in i18n.LOCALES:
        # A new device: the language the resident chose before follows them.
        response.set_cookie(i18n.locale_cookie(new.locale, services.settings.production))
    # Rotation: the session the browser had before (if any) ends now, and so does its
    # CSRF token (one planted or read before sign-in is worth nothing after it).
    await services.signin.sign_out(
        request.cookies.get(sessions.COOKIE), None, client_address(request)
    )
    issue_csrf_cookie(response, services.settings)
    return response


def _pending_cookie(value: str, settings: Settings, clear: bool = False):
    max_age = 0 if clear else int(CODE_WAIT.total_seconds())
    return cookies.session_cookie(
        cookies.PENDING, value, settings, samesite="lax", path="/", max_age=max_age
    )


def _code_problem(outcome: str, value) -> tuple[str, dict | None]:
    """Why the code step starts over (the page then has no form), with the way out."""
    if outcome == "locked":
        return _(
            "There have been too many wrong codes for this account. Use Forgot Password to choose a new password, or call us."
        ), {"href": "/forgot-password", "text": _("Forgot Password")}
    return _(
        "Your login took too long or had too many wrong codes. Log in again with your username and password."
    ), {"href": "/login", "text": _("Login to My Account")}


@get("/login/code", cache_control=NO_STORE)
async def login_code_form(request: PortalRequest, services: AppServices) -> Template | Redirect:
    if request.user:
        return Redirect("/account", status_code=303)
    pending = await services.signin.pending(request.cookies.get(cookies.PENDING))
    message, link = _code_problem("expired", None) if pending is None else (None, None)
    return render(
        request,
        "pages/login_code.html",
        status_code=200 if pending else 422,
        message=message,
        message_link=link,
    )


@post("/login/code", cache_control=NO_STORE)
async def login_code(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await CodeForm.read(request)
    pending_id = request.cookies.get(cookies.PENDING)
    result = await services.signin.finish_with_code(pending_id, form.code, client_address(request))
    if result.ok:
        new, remember, next = result.value
        response = await _signed_in(request, services, new, remember, next)
        response.set_cookie(_pending_cookie("", services.settings, clear=True))
        return response
    if result.outcome in ("missing", "wrong"):
        error = (
            _("Enter the code from your authenticator app, or a recovery code")
            if result.outcome == "missing"
            else _("That code is not right. Enter the code your app shows now, or a recovery code")
        )
        return render(request, "pages/login_code.html", status_code=422, errors={"code": error})
    message, link = _code_problem(result.outcome, result.value)
    response = render(
        request, "pages/login_code.html", status_code=422, message=message, message_link=link
    )
    response.set_cookie(_pending_cookie("", services.settings, clear=True))
    return response


@post("/logout")
async def logout(request: PortalRequest, services: AppServices) -> Redirect:
    user = request.user
    await services.signin.sign_out(
        request.cookies.get(sessions.COOKIE),
        user.username if user else None,
        client_address(request),
    )
    response = Redirect("/login?notice=signed-out", status_code=303)
    response.set_cookie(sessions.clear_cookie(services.settings))
    return response


# --- Forgot Username / Forgot Password --------------------------------------------


# The page, the form and the RecoveryService check of each: one pair of handlers for both.
FORGOT = {
    "/forgot-username": ("pages/forgot_username.html", ForgotUsernameForm, "forgot_username"),
    "/forgot-password": ("pages/forgot_password.html", ForgotPasswordForm, "forgot_password"),
}


# The warning before an idle sign-out (partials/session_timeout.html, static/js/portal.js).
# Outside SessionAuth: asking is not a visit (accounts/sessions.py).
@get("/session", opt={"exclude_from_auth": True}, cache_control=NO_STORE)
async def session_status(request: PortalRequest, services: AppServices) -> Response:
    left = await sessions.time_left(services.db, request.cookies.get(sessions.COOKIE))
    return session_time(request, left, "/account", sessions.RESIDENT_TIMEOUT.ended_url)


@post("/session", opt={"exclude_from_auth": True}, cache_control=NO_STORE)
async def session_keep_alive(request: PortalRequest, services: AppServices) -> Response:
    left = await sessions.keep_alive(services.db, request.cookies.get(sessions.COOKIE))
    return session_time(request, left, "/account", sessions.RESIDENT_TIMEOUT.ended_url)


@get(list(FORGOT))
async def forgot_form(request: PortalRequest) -> Template:
    return render(request, FORGOT[request.url.path][0])


@post(list(FORGOT))
async def forgot(request: PortalRequest, services: AppServices) -> Template:
    """Check the form, answer, then do the work (after the answer: see recovery.later)."""
    page, form_class, check = FORGOT[request.url.path]
    form = await form_class.read(request)
    result = getattr(services.recovery, check)(form, client_address(request))
    if not result.ok:
        return render(request, page, status_code=422, errors=result.errors)
    return render(
        request, page, sent=True, values=form.values, background=BackgroundTask(result.value)
    )


@get("/reset-password", cache_control=NO_STORE)
async def reset_form(request: PortalRequest, services: AppServices) -> Template:
    """Shows the form only: a mail scanner opening the link spends nothing."""
    token = request.query_params.get("token", "")
    user = await services.recovery.reset_token_user(token)
    if user is None:
        return render(request, "pages/reset_password.html", status_code=400, invalid=True)
    return render(request, "pages/reset_password.html", token=token, username=user["username"])


@post("/reset-password", cache_control=NO_STORE)
async def reset(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await ResetForm.read(request)
    result = await services.recovery.reset_password(form, client_address(request))
    if result.outcome == "expired":
        return render(request, "pages/reset_password.html", status_code=400, invalid=True)
    if not result.ok:
        return render(
            request,
            "pages/reset_password.html",
            status_code=422,
            token=form.token,
            errors=result.errors,
            username=result.value,
        )
    return Redirect("/login?notice=password-reset", status_code=303)


@get("/profile/email/confirm", cache_control=NO_STORE)
async def profile_email_confirm(request: PortalRequest, services: AppServices) -> Template:
    result = await services.profiles.confirm_email_change(
        request.query_params.get("token", ""), client_address(request)
    )
    return render(
        request,
        "pages/email_confirmed.html",
        status_code=400 if result.outcome == "invalid" else 200,
        outcome=result.outcome,
    )


# --- My Profile (signed in) ---------------------------------------------------------


def _profile_notice(notice: str) -> str | None:
    if notice == "delivery":
        return _("Your bill delivery choice was saved.")
    if notice == "password":
        return _(
            "Your password has been changed. You stay logged in on this device; other devices were logged out."
        )
    if notice == "email-sent":
        return _(
            "We sent a link to your new email address. Your email address changes when you open that link."
        )
    if notice == "two-step-off":
        return _("Two-step verification is off. Logging in asks only for your password.")
    return None


async def _profile_page(
    request: PortalRequest, profiles: ProfileService, status_code: int = 200, **context
) -> Template:
    profile = await profiles.profile(request.user.user_id)
    return render(
        request, "pages/profile.html", status_code=status_code, profile=profile, **context
    )


@get("/profile")
async def profile(request: PortalRequest, services: AppServices) -> Template:
    notice = _profile_notice(request.query_params.get("notice", ""))
    alert = {"kind": "success", "title": notice, "body": None} if notice else None
    return await _profile_page(request, services.profiles, alert=alert)


@get("/profile/activity")
async def profile_activity(request: PortalRequest, services: AppServices) -> Template:
    activity = await services.profiles.activity(request.user)
    return render(request, "pages/activity.html", activity=activity)


@post("/profile/delivery")
async def profile_delivery(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await DeliveryForm.read(request)
    result = await services.profiles.set_delivery(request.user, form, client_address(request))
    if not result.ok:
        return await _profile_page(
            request, services.profiles, status_code=422, errors=result.errors
        )
    return Redirect("/profile?notice=delivery", status_code=303)


@post("/profile/password")
async def profile_password(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await PasswordForm.read(request)
    result = await services.profiles.change_password(request.user, form, client_address(request))
    if not result.ok:
        return await _profile_page(
            request, services.profiles, status_code=422, errors=result.errors
        )
    session_id, remember = result.value
    response = Redirect("/profile?notice=password", status_code=303)
    response.set_cookie(sessions.cookie(session_id, remember, services.settings))
    issue_csrf_cookie(response, services.settings)
    return response


@post("/profile/email")
async def profile_email(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await EmailForm.read(request)
    result = await services.profiles.change_email(request.user, form, client_address(request))
    if not result.ok:
        return await _profile_page(
            request, services.profiles, status_code=422, errors=result.errors, values=form.values
        )
    return Redirect("/profile?notice=email-sent", status_code=303)


async def _two_step_page(
    request: PortalRequest, services: AppServices, status_code: int = 200, **context
) -> Template:
    status = await services.two_step.status(request.user.user_id)
    if status["two_step_at"] is None and "codes" not in context:
        secret, uri = await services.two_step.setup_key(request.user)
        context.update(
            secret=secret, uri=uri, qr=totp.qr_svg(uri, _("QR code for your authenticator app"))
        )
    return render(request, "pages/two_step.html", status_code=status_code, status=status, **context)


@get("/profile/two-step")
async def two_step(request: PortalRequest, services: AppServices) -> Template:
    return await _two_step_page(request, services)


@post("/profile/two-step")
async def two_step_on(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await TurnOnForm.read(request)
    result = await services.two_step.turn_on(request.user, form, client_address(request))
    if result.outcome == "already":
        return Redirect("/profile/two-step", status_code=303)
    if not result.ok:
        return await _two_step_page(request, services, 422, errors=result.errors)
    return await _two_step_page(request, services, codes=result.value)


@post("/profile/two-step/codes")
async def two_step_codes(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await NewCodesForm.read(request)
    result = await services.two_step.new_codes(request.user, form, client_address(request))
    if result.outcome == "invalid":
        return await _two_step_page(request, services, 422, errors=result.errors)
    if result.outcome == "already":
        return Redirect("/profile/two-step", status_code=303)
    return await _two_step_page(request, services, codes=result.value, renewed=True)


@post("/profile/two-step/off")
async def two_step_off(request: PortalRequest, services: AppServices) -> Template | Redirect:
    form = await TurnOffForm.read(request)
    result = await services.two_step.turn_off(request.user, form, client_address(request))
    if result.outcome == "invalid":
        return await _two_step_page(request, services, 422, errors=result.errors)
    return Redirect("/profile?notice=two-step-off", status_code=303)


@post("/profile/sign-out-everywhere")
async def sign_out_everywhere(request: PortalRequest, services: AppServices) -> Redirect:
    await services.signin.sign_out_everywhere(request.user, client_address(request))
    response = Redirect("/login?notice=signed-out-everywhere", status_code=303)
    response.set_cookie(sessions.clear_cookie(services.settings))
    return response


def handlers(settings: Settings) -> list:
    signed_in = Router(
        path="/",
        guards=[requires_resident],
        cache_control=NO_STORE,
        route_handlers=[
            profile,
            profile_activity,
            profile_delivery,
            profile_password,
            profile_email,
            two_step,
            two_step_on,
            two_step_codes,
            two_step_off,
            sign_out_everywhere,
        ],
    )
    return [
        register_form,
        register,
        register_check,
        verify,
        resend_form,
        resend,
        login_form,
        login,
        login_code_form,
        login_code,
        logout,
        session_status,
        session_keep_alive,
        forgot_form,
        forgot,
        reset_form,
        reset,
        profile_email_confirm,
        signed_in,
    ]
