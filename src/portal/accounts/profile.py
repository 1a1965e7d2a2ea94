"""My Profile: bill delivery, password, email address (confirmed from a link), language."""

from __future__ import annotations

from typing import Any

from portal.accounts import audit, sessions
from portal.accounts.links import EMAIL_CHANGE, issue_link, may_send_link
from portal.accounts.passwords import hash_password, new_password_problems
from portal.accounts.signin import PasswordChecks, void_pending_links
from portal.accounts.tokens import code_hash
from portal.accounts.validation import (
    confirm_email_problem,
    delivery_problem,
    email_problem,
    normalize_email,
)
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _, current_locale
from portal.settings import Settings


class DeliveryForm(Form):
    checkboxes = ("paperless", "printed")


class PasswordForm(Form):
    passwords = ("current_password", "new_password", "confirm_new_password")


class EmailForm(Form):
    fields = ("new_email", "confirm_new_email")
    passwords = ("email_password",)


# What My Profile → Recent activity shows of a resident's audit trail, in their words:
# logins and the changes that matter to the account's safety (never other people's
# events, never payments: those are on the bill history).
ACTIVITY_EVENTS = {
    "sign_in": lambda: _("Logged in"),
    "sign_in_failed": lambda: _("Wrong password"),
    "sign_in_throttled": lambda: _("Login refused: too many wrong passwords"),
    "sign_in_locked": lambda: _("Login refused: the login is locked"),
    "lockout": lambda: _("Locked after too many wrong passwords or codes"),
    "sign_in_code_failed": lambda: _("Wrong two-step code"),
    "sign_in_code_locked": lambda: _("Login refused: too many wrong two-step codes"),
    "recovery_code_used": lambda: _("Logged in with a recovery code"),
    "new_device_email": lambda: _("Logged in from a new device (we emailed you)"),
    "sign_out_everywhere": lambda: _("Signed out everywhere"),
    "password_changed": lambda: _("Password changed"),
    "password_reset": lambda: _("New password chosen from the emailed link"),
    "email_changed": lambda: _("Email address changed"),
    "two_step_on": lambda: _("Two-step verification turned on"),
    "two_step_off": lambda: _("Two-step verification turned off"),
    "recovery_codes_replaced": lambda: _("New recovery codes made"),
    "two_step_off_by_staff": lambda: _("Customer Services turned off two-step verification"),
    "unlocked_by_staff": lambda: _("Customer Services unlocked the login"),
}
ACTIVITY_SHOWN = 20


class ProfileService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer
        self.passwords = PasswordChecks(db)

    async def profile(self, user_id: int) -> Any:
        return await self.db.fetchone(
            "SELECT username, email, paperless, printed, two_step_at FROM users WHERE id = ?",
            (user_id,),
        )

    async def activity(self, user: sessions.SignedIn) -> list[dict]:
        """The resident's last logins and safety changes, newest first: when, what (in
        the current language) and from which network address."""
        events = list(ACTIVITY_EVENTS)
        rows = await self.db.fetchall(
            f"SELECT at, event, client FROM audit_log WHERE username = ?"
            f" AND event IN ({', '.join('?' * len(events))}) ORDER BY at DESC LIMIT ?",
            (user.username, *events, ACTIVITY_SHOWN),
            bounded=True,
        )
        return [
            {"at": row["at"], "what": ACTIVITY_EVENTS[row["event"]](), "client": row["client"]}
            for row in rows
        ]

    async def set_delivery(
        self, user: sessions.SignedIn, form: DeliveryForm, client: str
    ) -> Result:
        problem = delivery_problem(form.paperless, form.printed)
        if problem:
            return Result.invalid({"delivery": problem})
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE users SET paperless = ?, printed = ? WHERE id = ?",
                (int(form.paperless), int(form.printed), user.user_id),
            )
            await audit.record(
                conn,
                "delivery_changed",
                username=user.username,
                client=client,
                detail=f"paperless={int(form.paperless)} printed={int(form.printed)}",
            )
        return Result()

    async def set_locale(self, user: sessions.SignedIn, locale: str) -> None:
        """The language the resident chose, so emails and a new device follow it."""
        async with self.db.write() as conn:
            await conn.execute("UPDATE users SET locale = ? WHERE id = ?", (locale, user.user_id))

    async def change_password(
        self, user: sessions.SignedIn, form: PasswordForm, client: str
    ) -> Result:
        """Value on success: (new session id, remember) for this device's cookie."""
        errors = {}
        problem = await current_password_problem(
            self.passwords, user, form.current_password, client
        )
        if problem:
            errors["current_password"] = problem
        errors.update(
            await new_password_problems(
                self.settings,
                form.new_password,
                form.confirm_new_password,
                user.username,
                user.email,
                "new_password",
            )
        )
        if errors:
            return Result.invalid(errors)
        new_hash = await hash_password(form.new_password)
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (new_hash, user.user_id)
            )
            # Every other device is signed out; this one gets a new session id (rotation
            # at a privilege change), keeping its "Remember me" choice.
            cursor = await conn.execute(
                "SELECT remember FROM sessions WHERE id_hash = ?", (user.session_hash,)
            )
            remember = bool(((await cursor.fetchone()) or [0])[0])
            await sessions.end_all(conn, user.user_id)
            await void_pending_links(conn, user.user_id)
            session_id = await sessions.start(conn, user.user_id, remember)
            await self.mailer.enqueue(
                conn,
                to=user.email,
                template="password_changed",
                context={"username": user.username},
                locale=current_locale.get(),
                accounts_of=[user.user_id],
            )
            await audit.record(conn, "password_changed", username=user.username, client=client)
        return Result(value=(session_id, remember))

    async def change_email(self, user: sessions.SignedIn, form: EmailForm, client: str) -> Result:
        errors = {}
        problem = await current_password_problem(self.passwords, user, form.email_password, client)
        if problem:
            errors["email_password"] = problem
        problem = email_problem(form.new_email)
        if problem:
            errors["new_email"] = problem
        problem = confirm_email_problem(form.new_email, form.confirm_new_email)
        if problem:
            errors["confirm_new_email"] = problem
        if errors:
            return Result.invalid(errors)
        address = normalize_email(form.new_email) or form.new_email
        async with self.db.write() as conn:
            if not await may_send_link(conn, user.user_id, "email", address):
                await audit.record(
                    conn, "email_change_limited", username=user.username, client=client
                )
                return Result.invalid(
                    {
                        "new_email": _(
                            "We sent a confirmation link a short time ago. Open that link, or wait a few minutes and try again."
                        )
                    }
                )
            await issue_link(
                conn,
                self.mailer,
                self.settings,
                EMAIL_CHANGE,
                user_id=user.user_id,
                username=user.username,
                to=address,
                audit_event="email_change_requested",
                client=client,
            )
        return Result()

    async def confirm_email_change(self, code: str, client: str) -> Result:
        """Outcome 'changed', 'already' (link opened before) or 'invalid'."""
        if not code or len(code) > 200:
            return Result("invalid")
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT t.id, t.user_id, t.data, t.used_at, t.expires_at, u.username, u.email"
                " FROM tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND t.purpose = 'email'",
                (code_hash(code),),
            )
            row = await cursor.fetchone()
            if row is None:
                return Result("invalid")
            if row["used_at"] is not None:
                return Result("already")
            if row["expires_at"] <= utcnow():
                return Result("invalid")
            # This link and any older pending email-change link of the user are spent.
            await conn.execute(
                "UPDATE tokens SET used_at = ? WHERE user_id = ? AND purpose = 'email' AND used_at IS NULL",
                (utcnow(), row["user_id"]),
            )
            await conn.execute(
                "UPDATE users SET email = ?, email_key = ? WHERE id = ?",
                (row["data"], row["data"].casefold(), row["user_id"]),
            )
            await self.mailer.enqueue(
                conn,
                to=row["email"],
                template="email_changed",
                context={"username": row["username"], "new_email": row["data"]},
                locale=current_locale.get(),
                accounts_of=[row["user_id"]],
            )
            await audit.record(conn, "email_changed", username=row["username"], client=client)
        return Result("changed")


async def current_password_problem(
    passwords: PasswordChecks, user: sessions.SignedIn, password: str, client: str
) -> str | None:
    """The "current password" box: a try counted like a sign-in, so a stolen session
    cannot guess the password without limit."""
    if not password:
        return _("Enter your current password")
    row = await passwords.db.fetchone(
        "SELECT id, username, password_hash FROM users WHERE id = ?", (user.user_id,)
    )
    checked = await passwords.check(user.username.casefold(), row, password, client)
    if checked.outcome == "failed":
        return _("Your current password is not right. Enter it again")
    if checked.outcome == "throttled":
        return _(
            "There have been too many wrong passwords. Wait %(minutes)s minutes and try again.",
            minutes=checked.value,
        )
    if checked.outcome == "locked":
        return _(
            "This account is locked after too many failed logins. Use Forgot Password to choose a new password."
        )
    return None
