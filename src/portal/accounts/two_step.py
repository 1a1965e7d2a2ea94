"""Two-step verification for residents (My Profile → Two-step verification): after the
password, a code from an authenticator app, or one of ten single-use recovery codes.

Turning it on or off asks for the current password: someone with a stolen session must
not be able to put their own app on the account (and lock its owner out), nor take the
second step away. Each change is audited and emailed. The code step of a sign-in lives
in signin.py (SignInService.finish_with_code); Customer Services can turn it off for a
resident who lost both the phone and the codes (staff/console.py).
"""

from __future__ import annotations

from typing import Any

from portal.accounts import audit, sessions
from portal.accounts.profile import current_password_problem
from portal.accounts.signin import PasswordChecks
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _, current_locale
from portal.security import totp
from portal.settings import Settings


class TurnOnForm(Form):
    fields = ("code",)
    passwords = ("current_password",)


class TurnOffForm(Form):
    passwords = ("current_password",)


class NewCodesForm(Form):
    passwords = ("codes_password",)  # its own name: the page also has turning off's box


class TwoStepService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer
        self.passwords = PasswordChecks(db)

    async def status(self, user_id: int) -> Any:
        """two_step_at (None when off), totp_secret, and the recovery codes left."""
        return await self.db.fetchone(
            "SELECT two_step_at, totp_secret, (SELECT count(*) FROM recovery_codes"
            " WHERE user_id = users.id AND used_at IS NULL) AS codes_left"
            " FROM users WHERE id = ?",
            (user_id,),
        )

    async def setup_key(self, user: sessions.SignedIn) -> tuple[str, str]:
        """The key (and its otpauth URI) the resident puts in their app while turning
        two-step verification on; the same key until it is on, so a reload of the page
        does not invalidate a key already scanned."""
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT totp_secret, two_step_at FROM users WHERE id = ?", (user.user_id,)
            )
            row = await cursor.fetchone()
            secret = row["totp_secret"]
            if secret is None:
                secret = totp.new_secret()
                await conn.execute(
                    "UPDATE users SET totp_secret = ? WHERE id = ?", (secret, user.user_id)
                )
        return secret, totp.uri(secret, user.username, self.settings.utility_name)

    async def turn_on(self, user: sessions.SignedIn, form: TurnOnForm, client: str) -> Result:
        """Value on success: the ten recovery codes, to be shown once."""
        errors = {}
        problem = await current_password_problem(
            self.passwords, user, form.current_password, client
        )
        if problem:
            errors["current_password"] = problem
        status = await self.status(user.user_id)
        if status["two_step_at"] is not None:
            return Result("already")
        step = None
        if not form.code:
            errors["code"] = _("Enter the 6-digit code your app shows")
        elif status["totp_secret"]:
            step = totp.matching_step(status["totp_secret"], form.code, None)
            if step is None:
                errors["code"] = _(
                    "That code is not right. Enter the 6-digit code your app shows now"
                )
        if errors:
            return Result.invalid(errors)
        codes = totp.new_recovery_codes()
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE users SET two_step_at = ?, totp_last_step = ?, code_failures = 0"
                " WHERE id = ? AND two_step_at IS NULL AND totp_secret = ?",
                (utcnow(), step, user.user_id, status["totp_secret"]),
            )
            if cursor.rowcount != 1:
                return Result("already")  # another tab finished (or changed the key) first
            await _replace_codes(conn, user.user_id, codes)
            await self._notify(conn, user.user_id, user.username, user.email, turned_on=True)
            await audit.record(conn, "two_step_on", username=user.username, client=client)
        return Result(value=codes)

    async def new_codes(self, user: sessions.SignedIn, form: NewCodesForm, client: str) -> Result:
        """Ten new recovery codes in place of the old ones (used or not). Value on
        success: the codes, to be shown once."""
        problem = await current_password_problem(self.passwords, user, form.codes_password, client)
        if problem:
            return Result.invalid({"codes_password": problem})
        codes = totp.new_recovery_codes()
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT two_step_at FROM users WHERE id = ?", (user.user_id,)
            )
            if (await cursor.fetchone())["two_step_at"] is None:
                return Result("already")
            await _replace_codes(conn, user.user_id, codes)
            await self._notify(conn, user.user_id, user.username, user.email, turned_on=None)
            await audit.record(
                conn, "recovery_codes_replaced", username=user.username, client=client
            )
        return Result(value=codes)

    async def turn_off(self, user: sessions.SignedIn, form: TurnOffForm, client: str) -> Result:
        problem = await current_password_problem(
            self.passwords, user, form.current_password, client
        )
        if problem:
            return Result.invalid({"current_password": problem})
        async with self.db.write() as conn:
            if not await turn_off_in(conn, user.user_id):
                return Result("already")
            await self._notify(conn, user.user_id, user.username, user.email, turned_on=False)
            await audit.record(conn, "two_step_off", username=user.username, client=client)
        return Result()

    async def _notify(
        self, conn, user_id: int, username: str, email: str, *, turned_on: bool | None
    ) -> None:
        """The email about a change: turned on (True), off (False), new codes (None)."""
        await self.mailer.enqueue(
            conn,
            to=email,
            template="two_step_changed",
            context={"username": username, "turned_on": turned_on, "by_staff": False},
            locale=current_locale.get(),
            accounts_of=[user_id],
        )


async def _replace_codes(conn, user_id: int, codes: list[str]) -> None:
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
    await conn.executemany(
        "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
        [(user_id, totp.recovery_hash(code, "resident")) for code in codes],
    )


async def turn_off_in(conn, user_id: int) -> bool:
    """Two-step verification off, in the caller's transaction: the key, the recovery
    codes and any sign-in waiting for a code are gone. False if it was not on."""
    cursor = await conn.execute(
        "UPDATE users SET two_step_at = NULL, totp_secret = NULL, totp_last_step = NULL,"
        " code_failures = 0 WHERE id = ? AND two_step_at IS NOT NULL",
        (user_id,),
    )
    if cursor.rowcount != 1:
        return False
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
    await conn.execute("DELETE FROM pending_sign_ins WHERE user_id = ?", (user_id,))
    return True
