"""Login to My Account, sign out, sign out everywhere, and counting failed passwords.

Failures are counted per (username, network) so that one attacker cannot lock a
resident out from everywhere: after FREE_TRIES failures from one network, each further
try there waits twice as long as the one before (1, 2, 4 … 60 minutes). A network that
fails ADDRESS_FAILURES_MAX times in ADDRESS_WINDOW, across usernames, waits too. After
ACCOUNT_FAILURES_MAX failures in a row from anywhere, the username is locked until a
password reset (NIST SP 800-63B). A device the resident signed in from before (a
remembered-device cookie) is never held up by the network or account limits, so the
owner still gets in while somebody else is guessing.

Every try is reserved (a failure row, the account's counter raised) in one write
transaction *before* the password is checked, and given back if the password was right:
parallel tries cannot slip past the limits. A refused try still spends a password check,
and unknown usernames are limited the same way, so timing and messages do not tell
whether a username exists.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.datastructures import Cookie

from portal.accounts import audit, sessions
from portal.accounts.links import ago
from portal.accounts.passwords import hash_password, needs_rehash, verify_password
from portal.accounts.tokens import code_hash, new_code
from portal.db import Database, utc_text, utcnow
from portal.forms import Form, Result
from portal.observe import metrics
from portal.security import cookies, totp
from portal.settings import Settings

FREE_TRIES = 5
BACKOFF_MAX = timedelta(minutes=60)
FAILURE_MEMORY = timedelta(days=1)
ADDRESS_WINDOW = timedelta(minutes=15)
ADDRESS_FAILURES_MAX = 100
ACCOUNT_FAILURES_MAX = 100  # NIST: never more than 100 consecutive failures
DEVICE_COOKIE = cookies.DEVICE  # __Host-portal_device in production (security/cookies.py)
DEVICE_FOR = timedelta(days=365)
CODE_WAIT = timedelta(minutes=5)  # the code step of a sign-in with two-step verification
CODE_TRIES = 5  # wrong codes before that step starts over at the password
CODE_FAILURES_MAX = 10  # wrong codes in a row, on any device, before a password reset
NEW_DEVICE_QUIET = timedelta(minutes=15)  # one "new device" email at most this often


class LoginForm(Form):
    fields = ("username", "next")
    passwords = ("password",)
    checkboxes = ("remember",)


class CodeForm(Form):
    """The code step of a login with two-step verification."""

    fields = ("code",)


@dataclass(frozen=True)
class NewSession:
    session_id: str
    locale: str  # the language the resident chose last, to follow them to a new device
    device: str | None  # a new remembered-device value for the cookie, if one was issued


@functools.lru_cache(maxsize=4096)  # parsed once per address (every throttled request)
def network(client: str) -> str:
    """The unit a limit counts: an IPv4 address, or an IPv6 /64 (one household or
    phone gets a whole /64, so counting single IPv6 addresses would be no limit)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def audit_name(username_key: str) -> str:
    """How an unknown username appears in the audit log: people type passwords into the
    username box, so never the text itself."""
    return (
        "unknown:" + hashlib.sha256(username_key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    )


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def device_cookie(value: str, settings: Settings) -> Cookie:
    return Cookie(
        key=DEVICE_COOKIE,
        value=value,
        max_age=int(DEVICE_FOR.total_seconds()),
        httponly=True,
        secure=settings.production,
        samesite="lax",
        path="/",
    )


def _minutes_until(moment: datetime) -> int:
    return max(1, int((moment - datetime.now(UTC)).total_seconds() // 60) + 1)


class PasswordChecks:
    """One password try, counted: sign-in and the profile's "current password" boxes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _reserve(self, user_key: str, user: Any, net: str, known_device: bool) -> Result:
        """In one write transaction: refuse the try, or record it as a failure in advance."""
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT count(*), max(at) FROM login_failures"
                " WHERE user_key = ? AND client = ? AND at > ?",
                (user_key, net, ago(FAILURE_MEMORY)),
            )
            mine, last = await cursor.fetchone()
            if user is not None:
                cursor = await conn.execute(
                    "SELECT failed_logins FROM users WHERE id = ?", (user["id"],)
                )
                in_a_row = (await cursor.fetchone())[0]
            else:
                cursor = await conn.execute(
                    "SELECT count(*) FROM login_failures WHERE user_key = ? AND at > ?",
                    (user_key, ago(FAILURE_MEMORY)),
                )
                in_a_row = (await cursor.fetchone())[0]
            if not known_device:
                if in_a_row >= ACCOUNT_FAILURES_MAX:
                    return Result("locked", value=0)
                cursor = await conn.execute(
                    "SELECT count(*), min(at) FROM login_failures WHERE client = ? AND at > ?",
                    (net, ago(ADDRESS_WINDOW)),
                )
                from_network, oldest = await cursor.fetchone()
                if from_network >= ADDRESS_FAILURES_MAX:
                    free_at = datetime.fromisoformat(oldest) + ADDRESS_WINDOW
                    return Result("throttled", value=_minutes_until(free_at))
                if mine >= FREE_TRIES:
                    wait = min(timedelta(minutes=2 ** (mine - FREE_TRIES)), BACKOFF_MAX)
                    free_at = datetime.fromisoformat(last) + wait
                    if free_at > now:
                        return Result("throttled", value=_minutes_until(free_at))
            cursor = await conn.execute(
                "INSERT INTO login_failures (client, user_key, at) VALUES (?, ?, ?)",
                (net, user_key, utcnow()),
            )
            reservation = cursor.lastrowid
            if user is not None:
                await conn.execute(
                    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?",
                    (user["id"],),
                )
            await conn.execute("DELETE FROM login_failures WHERE at < ?", (ago(FAILURE_MEMORY),))
        return Result(value=(reservation, mine + 1, in_a_row + 1))

    async def check(
        self, user_key: str, user: Any, password: str, client: str, known_device: bool = False
    ) -> Result:
        """Outcome 'ok', 'failed', 'throttled' (value: minutes to wait) or 'locked'."""
        net = network(client)
        name = user["username"] if user is not None else audit_name(user_key)
        reserved = await self._reserve(user_key, user, net, known_device)
        if not reserved.ok:
            await verify_password(None, password)  # the same work as a real check
            await audit.write(self.db, f"sign_in_{reserved.outcome}", username=name, client=client)
            return reserved
        reservation, mine, in_a_row = reserved.value
        if await verify_password(user["password_hash"] if user is not None else None, password):
            async with self.db.write() as conn:
                await conn.execute(
                    "DELETE FROM login_failures WHERE user_key = ? AND client = ?", (user_key, net)
                )
                await conn.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?",
                    (user["id"],),
                )
            return Result()
        async with self.db.write() as conn:
            await audit.record(
                conn,
                "sign_in_failed",
                username=name,
                client=client,
                detail=f"failures={mine}" if user is not None else "unknown user",
            )
            if mine == FREE_TRIES or in_a_row == ACCOUNT_FAILURES_MAX:
                reach = "network" if mine == FREE_TRIES else "until reset"
                await audit.record(conn, "lockout", username=name, client=client, detail=reach)
                metrics.record_sign_in("lockout")
        return Result("failed")


class SignInService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer
        self.passwords = PasswordChecks(db)

    async def _known_device(self, device: str | None, user: Any) -> bool:
        if not device or user is None or len(device) > 100:
            return False
        found = await self.db.fetchval(
            "SELECT user_id FROM known_devices WHERE token_hash = ?", (_hash(device),)
        )
        return found == user["id"]

    async def sign_in(self, form: LoginForm, client: str, device: str | None = None) -> Result:
        """Outcome 'ok' (value: NewSession), 'code_needed' (two-step verification is on;
        value: the pending sign-in's id for its cookie, see finish_with_code, and the
        resident's language), 'missing',
        'failed', 'throttled' (value: minutes to wait), 'locked' or 'unverified' (value:
        username)."""
        username, password = form.username, form.password
        if not username or not password:
            return Result("missing")
        user_key = username.casefold()[:64]
        user = await self.db.fetchone(
            "SELECT id, username, password_hash, verified_at, locale, two_step_at,"
            " code_failures FROM users WHERE username_key = ?",
            (user_key,),
        )
        known = await self._known_device(device, user)
        checked = await self.passwords.check(user_key, user, password, client, known)
        if not checked.ok:
            metrics.record_sign_in("failure" if checked.outcome == "failed" else checked.outcome)
            return checked
        if user["verified_at"] is None:
            await audit.write(
                self.db, "sign_in_unverified", username=user["username"], client=client
            )
            return Result("unverified", value=user["username"])
        if needs_rehash(user["password_hash"]):
            rehashed = await hash_password(password)
            async with self.db.write() as conn:
                await conn.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?", (rehashed, user["id"])
                )
        device_hash = _hash(device) if known and device else None
        if user["two_step_at"] is not None:
            if user["code_failures"] >= CODE_FAILURES_MAX:
                metrics.record_sign_in("locked")
                await audit.write(
                    self.db, "sign_in_code_locked", username=user["username"], client=client
                )
                return Result("locked", value=0)
            pending_id = new_code()
            async with self.db.write() as conn:
                await conn.execute(
                    "INSERT INTO pending_sign_ins (id_hash, user_id, remember, next, device,"
                    " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        code_hash(pending_id),
                        user["id"],
                        int(form.remember),
                        form.next[:500],
                        device_hash,
                        utcnow(),
                        utc_text(datetime.now(UTC) + CODE_WAIT),
                    ),
                )
                await audit.record(
                    conn, "sign_in_password_ok", username=user["username"], client=client
                )
            return Result("code_needed", value=(pending_id, user["locale"]))
        async with self.db.write() as conn:
            new = await self._start(conn, user, bool(form.remember), device_hash, client)
        metrics.record_sign_in("success")
        return Result(value=new)

    async def _start(
        self, conn, user: Any, remember: bool, device_hash: str | None, client: str
    ) -> NewSession:
        """The session of a sign-in that passed every check, in the caller's transaction:
        the device remembered (or a new one issued, and the resident told), the audit row."""
        now = utcnow()
        new_device = None
        if device_hash is None:
            new_device = secrets.token_urlsafe(32)
            await self._tell_of_new_device(conn, user, client)
            await conn.execute(
                "INSERT INTO known_devices (token_hash, user_id, created_at, last_used_at)"
                " VALUES (?, ?, ?, ?)",
                (_hash(new_device), user["id"], now, now),
            )
        else:
            await conn.execute(
                "UPDATE known_devices SET last_used_at = ? WHERE token_hash = ?",
                (now, device_hash),
            )
        session_id = await sessions.start(conn, user["id"], remember)
        await audit.record(conn, "sign_in", username=user["username"], client=client)
        return NewSession(session_id, user["locale"], new_device)

    async def _tell_of_new_device(self, conn, user: Any, client: str) -> None:
        """Email the resident when a device they never signed in from before does (not
        for the very first sign-in, and at most once per NEW_DEVICE_QUIET: a resident
        who clears cookies or uses private windows is not flooded)."""
        cursor = await conn.execute(
            "SELECT count(*), max(created_at) FROM known_devices WHERE user_id = ?",
            (user["id"],),
        )
        devices, newest = await cursor.fetchone()
        if not devices or newest > utc_text(datetime.now(UTC) - NEW_DEVICE_QUIET):
            return
        cursor = await conn.execute("SELECT email, locale FROM users WHERE id = ?", (user["id"],))
        row = await cursor.fetchone()
        await self.mailer.enqueue(
            conn,
            to=row["email"],
            template="new_device",
            context={"username": user["username"], "at": utcnow(), "client": client},
            locale=row["locale"],
            accounts_of=[user["id"]],
        )
        await audit.record(conn, "new_device_email", username=user["username"], client=client)

    async def pending(self, pending_id: str | None) -> Any:
        """The sign-in waiting for a code, if this id names one not yet expired."""
        if not pending_id or len(pending_id) > 100:
            return None
        return await self.db.fetchone(
            "SELECT p.user_id, p.remember, p.next, p.tries, u.username FROM pending_sign_ins p"
            " JOIN users u ON u.id = p.user_id WHERE p.id_hash = ? AND p.expires_at > ?",
            (code_hash(pending_id), utcnow()),
        )

    async def finish_with_code(self, pending_id: str | None, code: str, client: str) -> Result:
        """The second step. Outcome 'ok' (value: (NewSession, remember, next)), 'missing'
        (no code typed), 'wrong' (value: tries left), 'expired' (start again at the
        login page: no pending sign-in, too old, or out of tries) or 'locked' (too many
        wrong codes in a row: a password reset ends it)."""
        if not pending_id or len(pending_id) > 100:
            return Result("expired")
        id_hash = code_hash(pending_id)
        code = code.strip()[:40]
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT p.user_id, p.remember, p.next, p.device, p.tries, p.expires_at,"
                " u.username, u.locale, u.totp_secret, u.totp_last_step, u.code_failures"
                " FROM pending_sign_ins p JOIN users u ON u.id = p.user_id"
                " WHERE p.id_hash = ? AND u.two_step_at IS NOT NULL",
                (id_hash,),
            )
            row = await cursor.fetchone()
            if row is None or row["expires_at"] <= utcnow() or row["tries"] >= CODE_TRIES:
                await conn.execute("DELETE FROM pending_sign_ins WHERE id_hash = ?", (id_hash,))
                return Result("expired")
            if row["code_failures"] >= CODE_FAILURES_MAX:
                await conn.execute("DELETE FROM pending_sign_ins WHERE id_hash = ?", (id_hash,))
                return Result("locked")
            if not code:
                return Result("missing")
            user = {"id": row["user_id"], "username": row["username"], "locale": row["locale"]}
            step = totp.matching_step(row["totp_secret"], code, row["totp_last_step"])
            used = None
            if step is None and totp.looks_like_recovery_code(code):
                cursor = await conn.execute(
                    "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ?"
                    " AND used_at IS NULL RETURNING id",
                    (utcnow(), row["user_id"], totp.recovery_hash(code, "resident")),
                )
                used = await cursor.fetchone()
            if step is None and used is None:
                tries = row["tries"] + 1
                await conn.execute(
                    "UPDATE pending_sign_ins SET tries = ? WHERE id_hash = ?", (tries, id_hash)
                )
                await conn.execute(
                    "UPDATE users SET code_failures = code_failures + 1 WHERE id = ?",
                    (row["user_id"],),
                )
                await audit.record(
                    conn,
                    "sign_in_code_failed",
                    username=row["username"],
                    client=client,
                    detail=f"failures={row['code_failures'] + 1}",
                )
                metrics.record_sign_in("code_failure")
                if row["code_failures"] + 1 >= CODE_FAILURES_MAX:
                    metrics.record_sign_in("lockout")
                    await audit.record(
                        conn, "lockout", username=row["username"], client=client, detail="codes"
                    )
                    await conn.execute("DELETE FROM pending_sign_ins WHERE id_hash = ?", (id_hash,))
                    return Result("locked")
                if tries >= CODE_TRIES:
                    await conn.execute("DELETE FROM pending_sign_ins WHERE id_hash = ?", (id_hash,))
                    return Result("expired")
                return Result("wrong", value=CODE_TRIES - tries)
            await conn.execute("DELETE FROM pending_sign_ins WHERE id_hash = ?", (id_hash,))
            await conn.execute(
                "UPDATE users SET code_failures = 0, totp_last_step = coalesce(?, totp_last_step)"
                " WHERE id = ?",
                (step, row["user_id"]),
            )
            if used is not None:
                await audit.record(
                    conn, "recovery_code_used", username=row["username"], client=client
                )
            new = await self._start(conn, user, bool(row["remember"]), row["device"], client)
        metrics.record_sign_in("success")
        return Result(value=(new, bool(row["remember"]), row["next"]))

    async def sign_out(self, session_id: str | None, username: str | None, client: str) -> None:
        async with self.db.write() as conn:
            await sessions.end(conn, session_id)
            if username:
                await audit.record(conn, "sign_out", username=username, client=client)

    async def sign_out_everywhere(self, user: sessions.SignedIn, client: str) -> None:
        async with self.db.write() as conn:
            await sessions.end_all(conn, user.user_id)
            await void_pending_links(conn, user.user_id)
            await audit.record(conn, "sign_out_everywhere", username=user.username, client=client)


async def void_pending_links(conn, user_id: int) -> None:
    """Unused password-reset and email-change links die when the password changes or the
    resident signs out everywhere: a link asked for by whoever had the session is void."""
    await conn.execute(
        "UPDATE tokens SET used_at = ? WHERE user_id = ? AND purpose IN ('reset', 'email')"
        " AND used_at IS NULL",
        (utcnow(), user_id),
    )


async def forget_failures(conn, user_id: int, username_key: str) -> None:
    """A password reset proves the owner: the failures counted against the name end,
    wrong authenticator codes included, and so does any sign-in waiting for a code (it
    was started with the old password)."""
    await conn.execute("DELETE FROM login_failures WHERE user_key = ?", (username_key,))
    await conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, code_failures = 0 WHERE id = ?",
        (user_id,),
    )
    await conn.execute("DELETE FROM pending_sign_ins WHERE user_id = ?", (user_id,))
