"""Online accounts over HTTP: parse, call AccountsService, choose a template.

URL map:
  GET  /register                       New User Registration
  POST /register                       register (422 with alerts; success message)
  POST /register/check/{field}         one field's alert while filling in (htmx)
  GET  /verify?username=&verificationcode=   link from the verification email
  GET  /verify/resend, POST            send a new verification link
  GET  /login, POST /login             Login to My Account
  POST /logout                         sign out
  GET  /forgot-username, POST          Forgot Username
  GET  /forgot-password, POST          Forgot Password
  GET  /reset-password?token=, POST    choose a new password from the emailed link
  GET  /profile                        My Profile
  POST /profile/delivery | /profile/password | /profile/email | /profile/sign-out-everywhere
  GET  /profile/email/confirm?token=   confirm a new email address
"""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal import i18n
from portal.accounts import sessions
from portal.accounts.service import REGISTRATION_FIELDS, AccountsService, Registration
from portal.i18n import _
from portal.settings import Settings
from portal.web import client_address, form_data, render

Accounts = NamedDependency[AccountsService]
SiteSettings = NamedDependency[Settings]


def signed_in(request: Request) -> sessions.SignedIn:
    """The signed-in resident, or a 401 that the error handler turns into the login page."""
    user = getattr(request.state, "user", None)
    if user is None:
        raise NotAuthorizedException()
    return user


def _local_path(target: str | None) -> str:
    """Only follow a 'next' that stays on this site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/account"


# --- registration ----------------------------------------------------------------


@get("/register")
async def register_form(request: Request) -> Template:
    return render(request, "pages/register.html", values={}, errors={})


@post("/register")
async def register(request: Request, accounts: Accounts) -> Template:
    form = Registration.from_form(await form_data(request))
    result = await accounts.register(form, client_address(request))
    if not result.ok:
        return render(
            request,
            "pages/register.html",
            partial="partials/register_form.html",
            status_code=422,
            values=form.answers(),
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
async def register_check(request: Request, name: FromPath[str], accounts: Accounts) -> Template:
    """Check one field the resident changed; answer with just its message."""
    if name not in REGISTRATION_FIELDS:
        raise NotFoundException()
    form = Registration.from_form(await form_data(request))
    error = await accounts.field_problem(form, name)
    # Changing a password or email re-checks its confirmation, if already typed.
    confirm = {"password": "confirm_password", "email": "confirm_email"}.get(name)
    confirm_error = None
    if confirm and getattr(form, confirm):
        confirm_error = await accounts.field_problem(form, confirm)
    return Template(
        template_name="partials/field_check.html",
        context={
            "error": error,
            "confirm": confirm if confirm and getattr(form, confirm) else None,
            "confirm_error": confirm_error,
        },
        headers={"Vary": "HX-Request"},
    )


# --- verification ----------------------------------------------------------------


@get("/verify")
async def verify(request: Request, accounts: Accounts) -> Template:
    username = request.query_params.get("username", "")
    code = request.query_params.get("verificationcode", "")
    outcome = await accounts.verify(username, code, client_address(request))
    if outcome == "verified":
        dialog = {
            "title": _("Verification success"),
            "body": _("Your account has been successfully verified."),
            "close_url": "/login",
        }
        return render(request, "pages/login.html", dialog=dialog, values={"username": username})
    if outcome == "already":
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
        expired=outcome == "expired",
        username=username,
    )


@get("/verify/resend")
async def resend_form(request: Request) -> Template:
    return render(
        request, "pages/verify_resend.html", username=request.query_params.get("username", "")
    )


@post("/verify/resend")
async def resend(request: Request, accounts: Accounts) -> Template:
    username = (await form_data(request)).get("username", "").strip()
    if not username:
        return render(
            request,
            "pages/verify_resend.html",
            status_code=422,
            errors={"username": _("Enter your username")},
            username="",
        )
    await accounts.resend_verification(username, client_address(request))
    return render(request, "pages/verify_resend.html", sent=True, username=username)


# --- sign-in and sign-out --------------------------------------------------------


@get("/login")
async def login_form(request: Request) -> Template | Redirect:
    if getattr(request.state, "user", None):
        return Redirect("/account", status_code=303)
    alert = None
    notice = request.query_params.get("notice")
    if notice == "signed-out":
        alert = {"kind": "success", "title": _("You have signed out"), "body": None}
    elif notice == "signed-out-everywhere":
        alert = {"kind": "success", "title": _("You have signed out on every device"), "body": None}
    elif notice == "password-reset":
        alert = {
            "kind": "success",
            "title": _("Your password has been changed"),
            "body": _("Log in with your new password."),
        }
    elif notice == "session-ended":
        alert = {
            "kind": "info",
            "title": _("Log in to continue"),
            "body": _(
                "You need to log in to see that page. If you were logged in, your session ended."
            ),
        }
    return render(
        request,
        "pages/login.html",
        alert=alert,
        values={},
        next=request.query_params.get("next", ""),
    )


@post("/login")
async def login(
    request: Request, accounts: Accounts, settings: SiteSettings
) -> Template | Redirect:
    data = await form_data(request)
    username, password = data.get("username", ""), data.get("password", "")
    remember = "remember" in data
    result = await accounts.sign_in(username, password, remember, client_address(request))
    if result.outcome == "ok":
        response = Redirect(_local_path(data.get("next")), status_code=303)
        response.set_cookie(sessions.cookie(result.session_id, remember, settings))
        if i18n.LOCALE_COOKIE not in request.cookies and result.locale in i18n.LOCALES:
            # A new device: the language the resident chose before follows them.
            response.set_cookie(i18n.locale_cookie(result.locale, settings.production))
        # Rotation: the session the browser had before (if any) ends now.
        await accounts.sign_out(request.cookies.get(sessions.COOKIE), None, client_address(request))
        return response
    values = {"username": username.strip()[:64], "remember": remember}
    link = None
    if result.outcome == "missing":
        message = _("Enter your username and password")
    elif result.outcome == "throttled":
        message = _(
            "There have been too many failed logins from your device. Wait %(minutes)s minutes and try again.",
            minutes=result.wait_minutes,
        )
    elif result.outcome == "locked" and result.wait_minutes:
        message = _(
            "There have been too many failed logins for this account. Wait %(minutes)s minutes and try again, or use Forgot Password to choose a new password.",
            minutes=result.wait_minutes,
        )
    elif result.outcome == "locked":
        message = _(
            "This account is locked after too many failed logins. Use Forgot Password to choose a new password."
        )
        link = {"href": "/forgot-password", "text": _("Forgot Password")}
    elif result.outcome == "unverified":
        message = _(
            "You need to verify your registration before you can log in. Open the link in the email we sent when you registered."
        )
        link = {
            "href": "/verify/resend?" + urlencode({"username": result.username}),
            "text": _("Send the verification email again"),
        }
    else:
        message = _("Username or password is incorrect")
    status = 429 if result.outcome == "throttled" else 422
    return render(
        request,
        "pages/login.html",
        status_code=status,
        message=message,
        message_link=link,
        values=values,
        next=data.get("next", ""),
    )


@post("/logout")
async def logout(request: Request, accounts: Accounts, settings: SiteSettings) -> Redirect:
    user = getattr(request.state, "user", None)
    await accounts.sign_out(
        request.cookies.get(sessions.COOKIE),
        user.username if user else None,
        client_address(request),
    )
    response = Redirect("/login?notice=signed-out", status_code=303)
    response.set_cookie(sessions.clear_cookie(settings))
    return response


# --- Forgot Username / Forgot Password --------------------------------------------


@get("/forgot-username")
async def forgot_username_form(request: Request) -> Template:
    return render(request, "pages/forgot_username.html", values={}, errors={})


@post("/forgot-username")
async def forgot_username(request: Request, accounts: Accounts) -> Template:
    email = (await form_data(request)).get("email", "").strip()
    if not email:
        return render(
            request,
            "pages/forgot_username.html",
            status_code=422,
            values={},
            errors={"email": _("Enter your email address")},
        )
    await accounts.forgot_username(email, client_address(request))
    return render(
        request, "pages/forgot_username.html", sent=True, values={"email": email}, errors={}
    )


@get("/forgot-password")
async def forgot_password_form(request: Request) -> Template:
    return render(request, "pages/forgot_password.html", values={}, errors={})


@post("/forgot-password")
async def forgot_password(request: Request, accounts: Accounts) -> Template:
    identifier = (await form_data(request)).get("identifier", "").strip()
    if not identifier:
        return render(
            request,
            "pages/forgot_password.html",
            status_code=422,
            values={},
            errors={"identifier": _("Enter your username or email address")},
        )
    await accounts.forgot_password(identifier, client_address(request))
    return render(
        request,
        "pages/forgot_password.html",
        sent=True,
        values={"identifier": identifier},
        errors={},
    )


@get("/reset-password")
async def reset_form(request: Request, accounts: Accounts) -> Template:
    """Shows the form only: a mail scanner opening the link spends nothing."""
    token = request.query_params.get("token", "")
    user = await accounts.reset_token_user(token)
    if user is None:
        return render(
            request, "pages/reset_password.html", status_code=400, invalid=True, errors={}
        )
    return render(
        request, "pages/reset_password.html", token=token, errors={}, username=user["username"]
    )


@post("/reset-password")
async def reset(request: Request, accounts: Accounts) -> Template | Redirect:
    data = await form_data(request)
    token = data.get("token", "")
    result = await accounts.reset_password(
        token, data.get("password", ""), data.get("confirm_password", ""), client_address(request)
    )
    if result is None:
        return render(
            request, "pages/reset_password.html", status_code=400, invalid=True, errors={}
        )
    if not result.ok:
        user = await accounts.reset_token_user(token)
        return render(
            request,
            "pages/reset_password.html",
            status_code=422,
            token=token,
            errors=result.errors,
            username=user["username"] if user else "",
        )
    return Redirect("/login?notice=password-reset", status_code=303)


# --- My Account and My Profile ----------------------------------------------------


async def _profile_page(
    request: Request, accounts: Accounts, status_code: int = 200, **context
) -> Template:
    user = signed_in(request)
    profile = await accounts.profile(user.user_id)
    context.setdefault("errors", {})
    context.setdefault("values", {})
    return render(
        request, "pages/profile.html", status_code=status_code, profile=profile, **context
    )


@get("/profile")
async def profile(request: Request, accounts: Accounts) -> Template:
    notices = {
        "delivery": _("Your bill delivery choice was saved."),
        "password": _(
            "Your password has been changed. You stay logged in on this device; other devices were logged out."
        ),
        "email-sent": _(
            "We sent a link to your new email address. Your email address changes when you open that link."
        ),
    }
    notice = notices.get(request.query_params.get("notice", ""))
    alert = {"kind": "success", "title": notice, "body": None} if notice else None
    return await _profile_page(request, accounts, alert=alert)


@post("/profile/delivery")
async def profile_delivery(request: Request, accounts: Accounts) -> Template | Redirect:
    user = signed_in(request)
    data = await form_data(request)
    result = await accounts.set_delivery(
        user, "paperless" in data, "printed" in data, client_address(request)
    )
    if not result.ok:
        return await _profile_page(request, accounts, status_code=422, errors=result.errors)
    return Redirect("/profile?notice=delivery", status_code=303)


@post("/profile/password")
async def profile_password(
    request: Request, accounts: Accounts, settings: SiteSettings
) -> Template | Redirect:
    user = signed_in(request)
    data = await form_data(request)
    result = await accounts.change_password(
        user,
        data.get("current_password", ""),
        data.get("new_password", ""),
        data.get("confirm_new_password", ""),
        client_address(request),
    )
    if not result.ok:
        return await _profile_page(request, accounts, status_code=422, errors=result.errors)
    response = Redirect("/profile?notice=password", status_code=303)
    response.set_cookie(sessions.cookie(result.session_id, result.remember, settings))
    return response


@post("/profile/email")
async def profile_email(request: Request, accounts: Accounts) -> Template | Redirect:
    user = signed_in(request)
    data = await form_data(request)
    result = await accounts.change_email(
        user,
        data.get("email_password", ""),
        data.get("new_email", "").strip(),
        data.get("confirm_new_email", "").strip(),
        client_address(request),
    )
    if not result.ok:
        values = {
            "new_email": data.get("new_email", ""),
            "confirm_new_email": data.get("confirm_new_email", ""),
        }
        return await _profile_page(
            request, accounts, status_code=422, errors=result.errors, values=values
        )
    return Redirect("/profile?notice=email-sent", status_code=303)


@get("/profile/email/confirm")
async def profile_email_confirm(request: Request, accounts: Accounts) -> Template:
    outcome = await accounts.confirm_email_change(
        request.query_params.get("token", ""), client_address(request)
    )
    return render(
        request,
        "pages/email_confirmed.html",
        status_code=400 if outcome == "invalid" else 200,
        outcome=outcome,
    )


@post("/profile/sign-out-everywhere")
async def sign_out_everywhere(
    request: Request, accounts: Accounts, settings: SiteSettings
) -> Redirect:
    user = signed_in(request)
    await accounts.sign_out_everywhere(user, client_address(request))
    response = Redirect("/login?notice=signed-out-everywhere", status_code=303)
    response.set_cookie(sessions.clear_cookie(settings))
    return response


def handlers(settings: SiteSettings) -> list:
    return [
        register_form,
        register,
        register_check,
        verify,
        resend_form,
        resend,
        login_form,
        login,
        logout,
        forgot_username_form,
        forgot_username,
        forgot_password_form,
        forgot_password,
        reset_form,
        reset,
        profile,
        profile_delivery,
        profile_password,
        profile_email,
        profile_email_confirm,
        sign_out_everywhere,
    ]
