"""Forgot Username, Forgot Password, and choosing a new password from the emailed link.

Answers never say whether an address or username exists; a reset link is spent only by
the form's POST, so a mail scanner opening it changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal.accounts import audit, sessions
from portal.accounts.links import RESET, ago, issue_link, may_mail, may_send_link
from portal.accounts.passwords import hash_password, new_password_problems
from portal.accounts.signin import forget_failures, void_pending_links
from portal.accounts.tokens import code_hash
from portal.accounts.validation import normalize_email
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _, current_locale
from portal.settings import Settings

REMINDERS_PER_HOUR = 3


class ForgotUsernameForm(Form):
    fields = ("email",)


class ForgotPasswordForm(Form):
    fields = ("identifier",)


class ResetForm(Form):
    fields = ("token",)
    passwords = ("password", "confirm_password")


def later(work, *args):
    """Work to run after the answer is sent: the answer is the same, and as fast, whether
    or not an account matched, so neither its words nor its timing tell which."""

    async def run() -> None:
        await work(*args)

    return run


class RecoveryService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer

    def forgot_username(self, form: ForgotUsernameForm, client: str) -> Result:
        """Check the form; value: the work to run after answering (see `later`)."""
        if not form.email:
            return Result.invalid({"email": _("Enter your email address")})
        return Result(value=later(self._send_usernames, form.email, client))

    def forgot_password(self, form: ForgotPasswordForm, client: str) -> Result:
        """Check the form; value: the work to run after answering (see `later`)."""
        if not form.identifier:
            return Result.invalid({"identifier": _("Enter your username or email address")})
        return Result(value=later(self._send_reset, form.identifier, client))

    async def _send_usernames(self, email: str, client: str) -> None:
        """Email the usernames registered to an address; nothing when there are none."""
        address = normalize_email(email)
        if address is None:
            return
        users = await self.db.fetchall(
            "SELECT id, username, email, locale FROM users WHERE email_key = ? ORDER BY username_key",
            (address.casefold(),),
        )
        if not users:
            return
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM audit_log WHERE event = 'username_reminder' AND detail = ? AND at > ?",
                (address.casefold(), ago(timedelta(hours=1))),
            )
            if (await cursor.fetchone())[0] >= REMINDERS_PER_HOUR or not await may_mail(
                conn, users[0]["email"]
            ):
                await audit.record(conn, "username_reminder_limited", client=client)
                return
            await self.mailer.enqueue(
                conn,
                to=users[0]["email"],
                template="username_reminder",
                context={
                    "usernames": [u["username"] for u in users],
                    "link": f"{self.settings.base_url}/login",
                },
                locale=current_locale.get(),
                accounts_of=[u["id"] for u in users],
            )
            await audit.record(conn, "username_reminder", client=client, detail=address.casefold())
        return

    async def _send_reset(self, identifier: str, client: str) -> None:
        """Email a reset link for a username or an email address; nothing when none match."""
        if len(identifier) > 254:
            return
        if "@" in identifier:
            address = normalize_email(identifier)
            users = await self.db.fetchall(
                "SELECT id, username, email FROM users WHERE email_key = ?",
                ((address or identifier).casefold(),),
            )
        else:
            users = await self.db.fetchall(
                "SELECT id, username, email FROM users WHERE username_key = ?",
                (identifier.casefold(),),
            )
        for user in users:
            async with self.db.write() as conn:
                if not await may_send_link(conn, user["id"], "reset", user["email"]):
                    await audit.record(
                        conn, "reset_limited", username=user["username"], client=client
                    )
                    continue
                await issue_link(
                    conn,
                    self.mailer,
                    self.settings,
                    RESET,
                    user_id=user["id"],
                    username=user["username"],
                    to=user["email"],
                    audit_event="reset_requested",
                    client=client,
                )
        return

    async def reset_token_user(self, code: str) -> Any:
        """The user a live reset code belongs to, or None. Does not spend the code."""
        if not code or len(code) > 200:
            return None
        return await self.db.fetchone(
            "SELECT u.id, u.username, u.username_key, u.email, u.locale"
            " FROM tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = ? AND t.purpose = 'reset' AND t.used_at IS NULL"
            " AND t.expires_at > ?",
            (code_hash(code), utcnow()),
        )

    async def reset_password(self, form: ResetForm, client: str) -> Result:
        """Spend a reset code on a new password. Outcome 'expired' when the code is not
        (or no longer) valid; 'invalid' with errors (value: the username) otherwise."""
        user = await self.reset_token_user(form.token)
        if user is None:
            return Result("expired")
        errors = await new_password_problems(
            self.settings,
            form.password,
            form.confirm_password,
            user["username"],
            user["email"],
            "password",
        )
        if errors:
            return Result("invalid", errors, value=user["username"])
        new_hash = await hash_password(form.password)
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
                (utcnow(), code_hash(form.token)),
            )
            if cursor.rowcount != 1:  # spent by a parallel request
                return Result("expired")
            await conn.execute(
                "UPDATE users SET password_hash = ?, verified_at = coalesce(verified_at, ?)"
                " WHERE id = ?",
                (new_hash, utcnow(), user["id"]),
            )
            # Whoever asked for other links or held a session is out: every other reset
            # and email-change link dies, every session ends, the failure count is cleared.
            await void_pending_links(conn, user["id"])
            await forget_failures(conn, user["id"], user["username_key"])
            await sessions.end_all(conn, user["id"])
            await self.mailer.enqueue(
                conn,
                to=user["email"],
                template="password_changed",
                context={"username": user["username"]},
                locale=user["locale"],
                accounts_of=[user["id"]],
            )
            await audit.record(conn, "password_reset", username=user["username"], client=client)
        return Result()
