"""Online accounts: registration, verification, sign-in, recovery, profile changes.

No HTTP objects here: routes parse the request, call these, and choose a template.
Emails go into the outbox in the same transaction as the change that causes them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from portal.accounts import audit, sessions
from portal.accounts.passwords import hash_password, needs_rehash, password_problem, verify_password
from portal.accounts.tokens import code_hash, new_code, utc_in
from portal.accounts.validation import (
    account_not_found,
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
from portal.i18n import _, current_locale
from portal.settings import Settings

VERIFY_FOR = timedelta(hours=24)
RESET_FOR = timedelta(hours=1)
EMAIL_CHANGE_FOR = timedelta(hours=24)
ACCOUNT_FAILURES_BEFORE_WAIT = 10
ACCOUNT_WAIT = timedelta(minutes=5)
ACCOUNT_FAILURES_MAX = 100  # NIST: never more than 100 consecutive failures
CLIENT_WINDOW = timedelta(minutes=15)
CLIENT_FAILURES_MAX = 50
RESEND_EVERY = timedelta(minutes=2)
LINKS_PER_DAY = 5
FOREVER = "9999-12-31T00:00:00.000000Z"

REGISTRATION_FIELDS = (
    "username",
    "password",
    "confirm_password",
    "customer_number",
    "account_number",
    "delivery",
    "email",
    "confirm_email",
)


def _ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Registration:
    username: str = ""
    password: str = ""
    confirm_password: str = ""
    customer_number: str = ""
    account_number: str = ""
    paperless: bool = False
    printed: bool = False
    email: str = ""
    confirm_email: str = ""

    @classmethod
    def from_form(cls, data: dict[str, str]) -> Registration:
        text = {name: data.get(name, "") for name in REGISTRATION_FIELDS if name != "delivery"}
        for name in ("username", "customer_number", "account_number", "email", "confirm_email"):
            text[name] = text[name].strip()
        return cls(**text, paperless="paperless" in data, printed="printed" in data)

    def answers(self) -> dict[str, Any]:
        """What the resident typed, to show again after a failed submit (never passwords)."""
        return {
            "username": self.username,
            "customer_number": self.customer_number,
            "account_number": self.account_number,
            "paperless": self.paperless,
            "printed": self.printed,
            "email": self.email,
            "confirm_email": self.confirm_email,
        }


@dataclass
class SignInResult:
    outcome: str  # "ok", "failed", "locked", "unverified", "throttled", "missing"
    session_id: str | None = None
    wait_minutes: int = 0
    username: str = ""
    locale: str = ""  # the language the resident chose last, to follow them to a new device


@dataclass
class FormResult:
    errors: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None  # a new session id, when the change rotated it
    remember: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


class AccountsService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer

    # --- registration ------------------------------------------------------------

    async def account_problem(self, customer_number: str, account_number: str) -> str | None:
        """Do these numbers name an active service account with no online account yet?"""
        row = await self.db.fetchone(
            "SELECT sa.status, ua.user_id FROM service_accounts sa"
            " LEFT JOIN user_accounts ua ON ua.account_id = sa.id"
            " WHERE sa.customer_key = ? AND sa.account_key = ?",
            (number_key(customer_number), number_key(account_number)),
        )
        if row is None:
            return account_not_found()
        if row["status"] != "active":
            return _(
                "This account is closed, so it cannot be registered. Call the Utilities "
                "Customer Services Center at %(phone)s",
                phone=self.settings.support_phone,
            )
        if row["user_id"] is not None:
            return _(
                "This account is already registered for online access. If it is yours, "
                "use Forgot Username to find your username"
            )
        return None

    async def username_taken(self, username: str) -> bool:
        found = await self.db.fetchval(
            "SELECT 1 FROM users WHERE username_key = ?", (username.casefold(),)
        )
        return found is not None

    async def field_problem(self, form: Registration, name: str) -> str | None:
        """The message for one registration field, checked alone (inline alerts)."""
        if name == "username":
            problem = username_problem(form.username)
            if problem is None and await self.username_taken(form.username):
                problem = _("That username is taken. Choose a different one")
            return problem
        if name == "password":
            return await self._password_problem(form.password, form.username, form.email)
        if name == "confirm_password":
            return confirm_password_problem(form.password, form.confirm_password)
        if name == "customer_number":
            return customer_number_problem(form.customer_number)
        if name == "account_number":
            problem = account_number_problem(form.account_number)
            if problem is None and customer_number_problem(form.customer_number) is None:
                problem = await self.account_problem(form.customer_number, form.account_number)
            return problem
        if name == "delivery":
            return delivery_problem(form.paperless, form.printed)
        if name == "email":
            return email_problem(form.email)
        if name == "confirm_email":
            return confirm_email_problem(form.email, form.confirm_email)
        raise ValueError(f"unknown registration field {name!r}")

    async def registration_problems(self, form: Registration) -> dict[str, str]:
        problems = {}
        for name in REGISTRATION_FIELDS:
            problem = await self.field_problem(form, name)
            if problem:
                problems[name] = problem
        return problems

    async def register(self, form: Registration, client: str) -> FormResult:
        problems = await self.registration_problems(form)
        if problems:
            return FormResult(problems)
        password_hash = await hash_password(form.password)
        email = normalize_email(form.email) or form.email
        code = new_code()
        try:
            async with self.db.write() as conn:
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
                    "SELECT id FROM service_accounts WHERE customer_key = ? AND account_key = ?"
                    " AND status = 'active'",
                    (number_key(form.customer_number), number_key(form.account_number)),
                )
                account = await cursor.fetchone()
                if account is None:  # closed or removed by an import since the check
                    raise _Refused("account_number")
                await conn.execute(
                    "INSERT INTO user_accounts (account_id, user_id, linked_at) VALUES (?, ?, ?)",
                    (account["id"], user_id, now),
                )
                await self._send_verification(conn, user_id, form.username, email, code)
                await audit.record(conn, "register", username=form.username, client=client)
        except sqlite3.IntegrityError as exc:
            if "users.username_key" in str(exc):
                return FormResult({"username": _("That username is taken. Choose a different one")})
            if "user_accounts" in str(exc):
                return FormResult(
                    {
                        "account_number": await self.account_problem(
                            form.customer_number, form.account_number
                        )
                        or ""
                    }
                )
            raise
        except _Refused:
            problem = await self.account_problem(form.customer_number, form.account_number)
            return FormResult({"account_number": problem or ""})
        return FormResult()

    async def _send_verification(
        self, conn, user_id: int, username: str, email: str, code: str
    ) -> None:
        await conn.execute(
            "INSERT INTO tokens (user_id, purpose, token_hash, created_at, expires_at)"
            " VALUES (?, 'verify', ?, ?, ?)",
            (user_id, code_hash(code), utcnow(), utc_in(VERIFY_FOR)),
        )
        await self.mailer.enqueue(
            conn,
            to=email,
            template="verify_email",
            context={
                "username": username,
                "link": self.link("/verify", username=username, verificationcode=code),
            },
            locale=current_locale.get(),
        )

    def link(self, path: str, **params: str) -> str:
        return f"{self.settings.base_url}{path}?{urlencode(params)}"

    # --- verification ------------------------------------------------------------

    async def verify(self, username: str, code: str, client: str) -> str:
        """'verified' the first time, 'already' on later opens, 'invalid' or 'expired'."""
        if not username or not code or len(code) > 200:
            return "invalid"
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT t.id, t.expires_at, t.used_at, u.id AS user_id, u.verified_at"
                " FROM tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND t.purpose = 'verify' AND u.username_key = ?",
                (code_hash(code), username.casefold()),
            )
            row = await cursor.fetchone()
            if row is None:
                return "invalid"
            if row["verified_at"] is not None:
                return "already"
            if row["expires_at"] <= utcnow():
                return "expired"
            now = utcnow()
            await conn.execute("UPDATE tokens SET used_at = ? WHERE id = ?", (now, row["id"]))
            await conn.execute(
                "UPDATE users SET verified_at = ? WHERE id = ?", (now, row["user_id"])
            )
            await audit.record(conn, "verified", username=username, client=client)
        return "verified"

    async def resend_verification(self, username: str, client: str) -> None:
        """Send a new link if the username has an unverified registration (rate limited)."""
        user = await self.db.fetchone(
            "SELECT id, username, email, verified_at FROM users WHERE username_key = ?",
            (username.strip().casefold(),),
        )
        if user is None or user["verified_at"] is not None:
            return
        async with self.db.write() as conn:
            if not await self._may_send_link(conn, user["id"], "verify"):
                await audit.record(
                    conn, "verify_resend_limited", username=user["username"], client=client
                )
                return
            await self._send_verification(
                conn, user["id"], user["username"], user["email"], new_code()
            )
            await audit.record(conn, "verify_resent", username=user["username"], client=client)

    async def _may_send_link(self, conn, user_id: int, purpose: str) -> bool:
        cursor = await conn.execute(
            "SELECT count(*), max(created_at) FROM tokens"
            " WHERE user_id = ? AND purpose = ? AND created_at > ?",
            (user_id, purpose, _ago(timedelta(days=1))),
        )
        count, newest = await cursor.fetchone()
        return count < LINKS_PER_DAY and (newest is None or newest < _ago(RESEND_EVERY))

    # --- sign-in -----------------------------------------------------------------

    async def sign_in(
        self, username: str, password: str, remember: bool, client: str
    ) -> SignInResult:
        if not username.strip() or not password:
            return SignInResult("missing")
        recent = await self.db.fetchval(
            "SELECT count(*) FROM login_failures WHERE client = ? AND at > ?",
            (client, _ago(CLIENT_WINDOW)),
        )
        if recent >= CLIENT_FAILURES_MAX:
            async with self.db.write() as conn:
                await audit.record(conn, "sign_in_throttled", username=username, client=client)
            return SignInResult("throttled", wait_minutes=int(CLIENT_WINDOW.total_seconds() // 60))
        user = await self.db.fetchone(
            "SELECT id, username, password_hash, verified_at, failed_logins, locked_until, locale"
            " FROM users WHERE username_key = ?",
            (username.strip().casefold()[:64],),
        )
        if user is not None and user["locked_until"] and user["locked_until"] > utcnow():
            async with self.db.write() as conn:
                await audit.record(conn, "sign_in_locked", username=user["username"], client=client)
            return SignInResult("locked", wait_minutes=self._wait_minutes(user["locked_until"]))
        ok = await verify_password(user["password_hash"] if user else None, password)
        if not ok:
            return await self._failed(user, username, client)
        if user["verified_at"] is None:
            async with self.db.write() as conn:
                await audit.record(
                    conn, "sign_in_unverified", username=user["username"], client=client
                )
            return SignInResult("unverified", username=user["username"])
        rehashed = await hash_password(password) if needs_rehash(user["password_hash"]) else None
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL,"
                " password_hash = coalesce(?, password_hash) WHERE id = ?",
                (rehashed, user["id"]),
            )
            session_id = await sessions.start(conn, user["id"], remember)
            await audit.record(conn, "sign_in", username=user["username"], client=client)
        return SignInResult(
            "ok", session_id=session_id, username=user["username"], locale=user["locale"]
        )

    async def _failed(self, user, username: str, client: str) -> SignInResult:
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO login_failures (client, at) VALUES (?, ?)", (client, utcnow())
            )
            await conn.execute(
                "DELETE FROM login_failures WHERE at < ?", (_ago(timedelta(days=1)),)
            )
            if user is None:
                await audit.record(
                    conn, "sign_in_failed", username=username, client=client, detail="unknown user"
                )
                return SignInResult("failed")
            failures = user["failed_logins"] + 1
            locked_until = None
            if failures >= ACCOUNT_FAILURES_MAX:
                locked_until = FOREVER
            elif failures >= ACCOUNT_FAILURES_BEFORE_WAIT:
                locked_until = utc_in(ACCOUNT_WAIT)
            await conn.execute(
                "UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                (failures, locked_until, user["id"]),
            )
            await audit.record(
                conn,
                "sign_in_failed",
                username=user["username"],
                client=client,
                detail=f"failures={failures}",
            )
            if locked_until:
                await audit.record(
                    conn,
                    "lockout",
                    username=user["username"],
                    client=client,
                    detail=f"until={locked_until}",
                )
        return SignInResult("failed")

    @staticmethod
    def _wait_minutes(locked_until: str) -> int:
        if locked_until == FOREVER:
            return 0
        left = datetime.fromisoformat(locked_until) - datetime.now(UTC)
        return max(1, int(left.total_seconds() // 60) + 1)

    async def sign_out(self, session_id: str | None, username: str | None, client: str) -> None:
        async with self.db.write() as conn:
            await sessions.end(conn, session_id)
            if username:
                await audit.record(conn, "sign_out", username=username, client=client)

    async def sign_out_everywhere(self, user: sessions.SignedIn, client: str) -> None:
        async with self.db.write() as conn:
            await sessions.end_all(conn, user.user_id)
            await audit.record(conn, "sign_out_everywhere", username=user.username, client=client)

    # --- recovery ----------------------------------------------------------------

    async def forgot_username(self, email: str, client: str) -> None:
        """Email the usernames registered to an address; silent when there are none."""
        address = normalize_email(email)
        if address is None:
            return
        users = await self.db.fetchall(
            "SELECT username, email, locale FROM users WHERE email_key = ? ORDER BY username_key",
            (address.casefold(),),
        )
        if not users:
            return
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM audit_log WHERE event = 'username_reminder' AND detail = ? AND at > ?",
                (address.casefold(), _ago(timedelta(hours=1))),
            )
            if (await cursor.fetchone())[0] >= 3:
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
            )
            await audit.record(conn, "username_reminder", client=client, detail=address.casefold())

    async def forgot_password(self, identifier: str, client: str) -> None:
        """Email a reset link for a username or an email address; silent when none match."""
        identifier = identifier.strip()
        if not identifier or len(identifier) > 254:
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
                if not await self._may_send_link(conn, user["id"], "reset"):
                    await audit.record(
                        conn, "reset_limited", username=user["username"], client=client
                    )
                    continue
                code = new_code()
                await conn.execute(
                    "INSERT INTO tokens (user_id, purpose, token_hash, created_at, expires_at)"
                    " VALUES (?, 'reset', ?, ?, ?)",
                    (user["id"], code_hash(code), utcnow(), utc_in(RESET_FOR)),
                )
                await self.mailer.enqueue(
                    conn,
                    to=user["email"],
                    template="password_reset",
                    context={
                        "username": user["username"],
                        "link": self.link("/reset-password", token=code),
                    },
                    locale=current_locale.get(),
                )
                await audit.record(
                    conn, "reset_requested", username=user["username"], client=client
                )

    async def reset_token_user(self, code: str) -> Any:
        """The user a live reset code belongs to, or None. Does not spend the code."""
        if not code or len(code) > 200:
            return None
        return await self.db.fetchone(
            "SELECT u.id, u.username, u.email FROM tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = ? AND t.purpose = 'reset' AND t.used_at IS NULL"
            " AND t.expires_at > ?",
            (code_hash(code), utcnow()),
        )

    async def reset_password(
        self, code: str, password: str, confirm: str, client: str
    ) -> FormResult | None:
        """Spend a reset code on a new password. None means the code is not valid."""
        user = await self.reset_token_user(code)
        if user is None:
            return None
        errors = await self._new_password_problems(
            password, confirm, user["username"], user["email"], "password"
        )
        if errors:
            return FormResult(errors)
        new_hash = await hash_password(password)
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
                (utcnow(), code_hash(code)),
            )
            if cursor.rowcount != 1:  # spent by a parallel request
                return None
            # Other reset links of this user die with this one.
            await conn.execute(
                "UPDATE tokens SET used_at = ? WHERE user_id = ? AND purpose = 'reset' AND used_at IS NULL",
                (utcnow(), user["id"]),
            )
            await conn.execute(
                "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL,"
                " verified_at = coalesce(verified_at, ?) WHERE id = ?",
                (new_hash, utcnow(), user["id"]),
            )
            await sessions.end_all(conn, user["id"])
            await audit.record(conn, "password_reset", username=user["username"], client=client)
        return FormResult()

    async def _password_problem(self, password: str, username: str, email: str) -> str | None:
        """The password rules, in a worker thread: the strength estimate takes
        milliseconds of CPU that the event loop should spend on other residents."""
        return await asyncio.to_thread(
            password_problem,
            password,
            min_length=self.settings.password_min_length,
            username=username,
            email=email,
            utility=self.settings.utility_name,
        )

    async def _new_password_problems(
        self, password: str, confirm: str, username: str, email: str, name: str
    ) -> dict[str, str]:
        errors = {}
        problem = await self._password_problem(password, username, email)
        if problem:
            errors[name] = problem
        problem = confirm_password_problem(password, confirm)
        if problem:
            errors[f"confirm_{name}"] = problem
        return errors

    # --- profile -----------------------------------------------------------------

    async def profile(self, user_id: int) -> Any:
        return await self.db.fetchone(
            "SELECT username, email, paperless, printed FROM users WHERE id = ?", (user_id,)
        )

    async def _check_current_password(self, user_id: int, password: str) -> bool:
        stored = await self.db.fetchval("SELECT password_hash FROM users WHERE id = ?", (user_id,))
        return await verify_password(stored, password)

    async def set_delivery(
        self, user: sessions.SignedIn, paperless: bool, printed: bool, client: str
    ) -> FormResult:
        problem = delivery_problem(paperless, printed)
        if problem:
            return FormResult({"delivery": problem})
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE users SET paperless = ?, printed = ? WHERE id = ?",
                (int(paperless), int(printed), user.user_id),
            )
            await audit.record(
                conn,
                "delivery_changed",
                username=user.username,
                client=client,
                detail=f"paperless={int(paperless)} printed={int(printed)}",
            )
        return FormResult()

    async def change_password(
        self, user: sessions.SignedIn, current: str, new: str, confirm: str, client: str
    ) -> FormResult:
        errors = {}
        if not current:
            errors["current_password"] = _("Enter your current password")
        elif not await self._check_current_password(user.user_id, current):
            errors["current_password"] = _("Your current password is not right. Enter it again")
        errors.update(
            await self._new_password_problems(
                new, confirm, user.username, user.email, "new_password"
            )
        )
        if errors:
            return FormResult(errors)
        new_hash = await hash_password(new)
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
            session_id = await sessions.start(conn, user.user_id, remember)
            await self.mailer.enqueue(
                conn,
                to=user.email,
                template="password_changed",
                context={"username": user.username},
                locale=current_locale.get(),
            )
            await audit.record(conn, "password_changed", username=user.username, client=client)
        return FormResult(session_id=session_id, remember=remember)

    async def change_email(
        self, user: sessions.SignedIn, password: str, email: str, confirm: str, client: str
    ) -> FormResult:
        errors = {}
        if not password:
            errors["email_password"] = _("Enter your current password")
        elif not await self._check_current_password(user.user_id, password):
            errors["email_password"] = _("Your current password is not right. Enter it again")
        problem = email_problem(email)
        if problem:
            errors["new_email"] = problem
        problem = confirm_email_problem(email, confirm)
        if problem:
            errors["confirm_new_email"] = problem
        if errors:
            return FormResult(errors)
        address = normalize_email(email) or email
        code = new_code()
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO tokens (user_id, purpose, token_hash, data, created_at, expires_at)"
                " VALUES (?, 'email', ?, ?, ?, ?)",
                (user.user_id, code_hash(code), address, utcnow(), utc_in(EMAIL_CHANGE_FOR)),
            )
            await self.mailer.enqueue(
                conn,
                to=address,
                template="confirm_email_change",
                context={
                    "username": user.username,
                    "link": self.link("/profile/email/confirm", token=code),
                },
                locale=current_locale.get(),
            )
            await audit.record(
                conn, "email_change_requested", username=user.username, client=client
            )
        return FormResult()

    async def confirm_email_change(self, code: str, client: str) -> str:
        """'changed', 'already' (link opened before) or 'invalid'."""
        if not code or len(code) > 200:
            return "invalid"
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT t.id, t.user_id, t.data, t.used_at, t.expires_at, u.username, u.email"
                " FROM tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND t.purpose = 'email'",
                (code_hash(code),),
            )
            row = await cursor.fetchone()
            if row is None:
                return "invalid"
            if row["used_at"] is not None:
                return "already"
            if row["expires_at"] <= utcnow():
                return "invalid"
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
            )
            await audit.record(conn, "email_changed", username=row["username"], client=client)
        return "changed"


class _Refused(Exception):
    """The service account stopped qualifying between the check and the write."""

    def __init__(self, field_name: str) -> None:
        self.field_name = field_name
