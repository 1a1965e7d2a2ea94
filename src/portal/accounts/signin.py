"""Login to My Account, sign out, sign out everywhere; failed-login counting.

A username gets 10 tries, then waits of 5 minutes, and is locked (until a password reset)
after 100 in a row (NIST SP 800-63B). A network address gets 50 failures in 15 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from portal.accounts import audit, sessions
from portal.accounts.links import ago
from portal.accounts.passwords import hash_password, needs_rehash, verify_password
from portal.accounts.tokens import utc_in
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.settings import Settings

ACCOUNT_FAILURES_BEFORE_WAIT = 10
ACCOUNT_WAIT = timedelta(minutes=5)
ACCOUNT_FAILURES_MAX = 100  # NIST: never more than 100 consecutive failures
CLIENT_WINDOW = timedelta(minutes=15)
CLIENT_FAILURES_MAX = 50
FOREVER = "9999-12-31T00:00:00.000000Z"


class LoginForm(Form):
    fields = ("username", "next")
    passwords = ("password",)
    checkboxes = ("remember",)


@dataclass(frozen=True)
class NewSession:
    session_id: str
    locale: str  # the language the resident chose last, to follow them to a new device


def wait_minutes(locked_until: str) -> int:
    if locked_until == FOREVER:
        return 0
    left = datetime.fromisoformat(locked_until) - datetime.now(UTC)
    return max(1, int(left.total_seconds() // 60) + 1)


class SignInService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def sign_in(self, form: LoginForm, client: str) -> Result:
        """Outcome 'ok' (value: NewSession), 'missing', 'failed', 'throttled' or 'locked'
        (value: minutes to wait, 0 for "until reset"), 'unverified' (value: username)."""
        username, password = form.username, form.password
        if not username or not password:
            return Result("missing")
        recent = await self.db.fetchval(
            "SELECT count(*) FROM login_failures WHERE client = ? AND at > ?",
            (client, ago(CLIENT_WINDOW)),
        )
        if recent >= CLIENT_FAILURES_MAX:
            async with self.db.write() as conn:
                await audit.record(conn, "sign_in_throttled", username=username, client=client)
            return Result("throttled", value=int(CLIENT_WINDOW.total_seconds() // 60))
        user = await self.db.fetchone(
            "SELECT id, username, password_hash, verified_at, failed_logins, locked_until, locale"
            " FROM users WHERE username_key = ?",
            (username.casefold()[:64],),
        )
        if user is not None and user["locked_until"] and user["locked_until"] > utcnow():
            async with self.db.write() as conn:
                await audit.record(conn, "sign_in_locked", username=user["username"], client=client)
            return Result("locked", value=wait_minutes(user["locked_until"]))
        ok = await verify_password(user["password_hash"] if user else None, password)
        if not ok:
            await self._failed(user, username, client)
            return Result("failed")
        if user["verified_at"] is None:
            async with self.db.write() as conn:
                await audit.record(
                    conn, "sign_in_unverified", username=user["username"], client=client
                )
            return Result("unverified", value=user["username"])
        rehashed = await hash_password(password) if needs_rehash(user["password_hash"]) else None
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL,"
                " password_hash = coalesce(?, password_hash) WHERE id = ?",
                (rehashed, user["id"]),
            )
            session_id = await sessions.start(conn, user["id"], form.remember)
            await audit.record(conn, "sign_in", username=user["username"], client=client)
        return Result(value=NewSession(session_id, user["locale"]))

    async def _failed(self, user, username: str, client: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO login_failures (client, at) VALUES (?, ?)", (client, utcnow())
            )
            await conn.execute("DELETE FROM login_failures WHERE at < ?", (ago(timedelta(days=1)),))
            if user is None:
                await audit.record(
                    conn, "sign_in_failed", username=username, client=client, detail="unknown user"
                )
                return
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

    async def sign_out(self, session_id: str | None, username: str | None, client: str) -> None:
        async with self.db.write() as conn:
            await sessions.end(conn, session_id)
            if username:
                await audit.record(conn, "sign_out", username=username, client=client)

    async def sign_out_everywhere(self, user: sessions.SignedIn, client: str) -> None:
        async with self.db.write() as conn:
            await sessions.end_all(conn, user.user_id)
            await audit.record(conn, "sign_out_everywhere", username=user.username, client=client)
