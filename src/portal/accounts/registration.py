"""New User Registration and its emailed verification link."""

from __future__ import annotations

import sqlite3
from typing import Any

from portal.accounts import audit
from portal.accounts.links import VERIFY, issue_link, may_send_link
from portal.accounts.ownership import (
    alert_owner,
    bill_amount_problem,
    check_claim,
    release_stale_registrations,
)
from portal.accounts.passwords import hash_password, new_password_problem
from portal.accounts.recovery import later
from portal.accounts.tokens import code_hash
from portal.accounts.validation import (
    account_number_problem,
    confirm_email_problem,
    confirm_password_problem,
    customer_number_problem,
    delivery_problem,
    email_problem,
    normalize_email,
    username_problem,
)
from portal.billing.numbers import number_key
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _, current_locale
from portal.observe import metrics
from portal.settings import Settings

REGISTRATION_FIELDS = (
    "username",
    "password",
    "confirm_password",
    "customer_number",
    "account_number",
    "bill_amount",
    "delivery",
    "email",
    "confirm_email",
)


class Registration(Form):
    fields = (
        "username",
        "customer_number",
        "account_number",
        "bill_amount",
        "email",
        "confirm_email",
    )
    passwords = ("password", "confirm_password")
    checkboxes = ("paperless", "printed")


class UsernameForm(Form):
    fields = ("username",)


class RegistrationService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer

    async def username_taken(self, username: str) -> bool:
        found = await self.db.fetchval(
            "SELECT 1 FROM users WHERE username_key = ?", (username.casefold(),)
        )
        return found is not None

    async def _claim_problem(self, form: Registration) -> str | None:
        if customer_number_problem(form.customer_number) or account_number_problem(
            form.account_number
        ):
            return None  # their own messages say what to fix first
        claim = await check_claim(
            self.db, self.settings, form.customer_number, form.account_number, form.bill_amount
        )
        return claim.problem[1] if claim.problem else None

    async def field_problem(self, form: Registration, name: str, lookup: bool = True) -> str | None:
        """The message for one registration field, checked alone (inline alerts). The
        bill's numbers are looked up with the last of the facts the claim needs (the
        account number, or the bill amount when that proof is asked), never before, so
        the numbers alone are no oracle."""
        proof = self.settings.account_proof == "bill_amount"
        if name == "username":
            problem = username_problem(form.username)
            if problem is None and await self.username_taken(form.username):
                problem = _("That username is taken. Choose a different one")
            return problem
        if name == "password":
            return await new_password_problem(
                self.settings, form.password, form.username, form.email
            )
        if name == "confirm_password":
            return confirm_password_problem(form.password, form.confirm_password)
        if name == "customer_number":
            return customer_number_problem(form.customer_number)
        if name == "account_number":
            problem = account_number_problem(form.account_number)
            if problem is None and lookup and not proof:
                problem = await self._claim_problem(form)
            return problem
        if name == "bill_amount":
            if not proof:
                return None
            problem = bill_amount_problem(form.bill_amount)
            if problem is None and lookup:
                problem = await self._claim_problem(form)
            return problem
        if name == "delivery":
            return delivery_problem(form.paperless, form.printed)
        if name == "email":
            return email_problem(form.email)
        if name == "confirm_email":
            return confirm_email_problem(form.email, form.confirm_email)
        raise ValueError(f"unknown registration field {name!r}")

    async def register(self, form: Registration, client: str) -> Result:
        for name in REGISTRATION_FIELDS:
            problem = await self.field_problem(form, name, lookup=False)
            if problem:
                form.errors[name] = problem
        if not {"customer_number", "account_number", "bill_amount"} & form.errors.keys():
            claim = await check_claim(
                self.db, self.settings, form.customer_number, form.account_number, form.bill_amount
            )
            if claim.problem:
                form.errors[claim.problem[0]] = claim.problem[1]
            if claim.owner is not None:
                async with self.db.write() as conn:
                    await alert_owner(conn, self.mailer, claim.owner, "register", client)
        if form.errors:
            return Result.invalid(form.errors)
        password_hash = await hash_password(form.password)
        email = normalize_email(form.email) or form.email
        try:
            async with self.db.write() as conn:
                await release_stale_registrations(conn, client)
                now = utcnow()
                cursor = await conn.execute(
                    "INSERT INTO users (username, username_key, email, email_key, password_hash,"
                    " paperless, printed, locale, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        form.username,
                        form.username.casefold(),
                        email,
                        email.casefold(),
                        password_hash,
                        int(form.paperless),
                        int(form.printed),
                        current_locale.get(),
                        now,
                    ),
                )
                user_id = cursor.lastrowid
                cursor = await conn.execute(
                    "INSERT INTO user_accounts (account_id, user_id, linked_at)"
                    " SELECT id, ?, ? FROM service_accounts"
                    " WHERE customer_key = ? AND account_key = ? AND status = 'active'",
                    (
                        user_id,
                        now,
                        number_key(form.customer_number),
                        number_key(form.account_number),
                    ),
                )
                if cursor.rowcount != 1:  # closed or removed by an import since the check
                    raise sqlite3.IntegrityError("user_accounts: account no longer qualifies")
                await self._send_verification(conn, user_id, form.username, email, client, None)
                await audit.record(conn, "register", username=form.username, client=client)
        except sqlite3.IntegrityError as exc:
            if "users.username_key" in str(exc):
                return Result.invalid(
                    {"username": _("That username is taken. Choose a different one")}
                )
            if "user_accounts" in str(exc):
                claim = await check_claim(
                    self.db,
                    self.settings,
                    form.customer_number,
                    form.account_number,
                    form.bill_amount,
                )
                return Result.invalid({"account_number": claim.problem[1] if claim.problem else ""})
            raise
        metrics.record_registration()
        return Result()

    async def _send_verification(
        self, conn, user_id: int, username: str, email: str, client: str, event: str | None
    ) -> None:
        await issue_link(
            conn,
            self.mailer,
            self.settings,
            VERIFY,
            user_id=user_id,
            username=username,
            to=email,
            audit_event=event,
            client=client,
        )

    async def verify(self, username: str, code: str, client: str) -> Result:
        """Outcome 'verified' the first time, 'already' on later opens, 'invalid' or
        'expired'."""
        if not username or not code or len(code) > 200:
            return Result("invalid")
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT t.id, t.expires_at, t.used_at, u.id AS user_id, u.verified_at"
                " FROM tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND t.purpose = 'verify' AND u.username_key = ?",
                (code_hash(code), username.casefold()),
            )
            row = await cursor.fetchone()
            if row is None:
                return Result("invalid")
            if row["verified_at"] is not None:
                return Result("already")
            if row["expires_at"] <= utcnow():
                return Result("expired")
            now = utcnow()
            await conn.execute("UPDATE tokens SET used_at = ? WHERE id = ?", (now, row["id"]))
            await conn.execute(
                "UPDATE users SET verified_at = ? WHERE id = ?", (now, row["user_id"])
            )
            await audit.record(conn, "verified", username=username, client=client)
        return Result("verified")

    def resend_verification(self, form: UsernameForm, client: str) -> Result:
        """Check the form; value: the work to run after answering (see recovery.later)."""
        if not form.username:
            return Result.invalid({"username": _("Enter your username")})
        return Result(value=later(self._resend, form.username, client))

    async def _resend(self, username: str, client: str) -> None:
        """Send a new link if the username has an unverified registration (rate limited)."""
        user = await self.db.fetchone(
            "SELECT id, username, email, verified_at FROM users WHERE username_key = ?",
            (username.casefold(),),
        )
        if user is None or user["verified_at"] is not None:
            return
        async with self.db.write() as conn:
            if not await may_send_link(conn, user["id"], "verify"):
                await audit.record(
                    conn, "verify_resend_limited", username=user["username"], client=client
                )
                return
            await self._send_verification(
                conn, user["id"], user["username"], user["email"], client, "verify_resent"
            )
        return
