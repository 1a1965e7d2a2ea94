"""Staff accounts: created from the command line with a one-time enrolment link,
enrolled (password by the resident rules, TOTP, ten recovery codes), signed in with
password and code, listed and disabled.

Failed sign-ins are counted per username (5 in 15 minutes) and per network address
(20 in 15 minutes); past either the sign-in is refused for the rest of the window.
Every attempt is in the audit log under "staff:USERNAME".
"""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from typing import Any

from portal.accounts import audit
from portal.accounts.links import ago
from portal.accounts.passwords import hash_password, new_password_problem, verify_password
from portal.accounts.tokens import code_hash, new_code, utc_in
from portal.accounts.validation import confirm_password_problem, normalize_email
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _
from portal.security import totp
from portal.settings import Settings
from portal.staff import sessions

ROLES = ("csr", "supervisor")
ENROL_FOR = timedelta(days=3)
WINDOW = timedelta(minutes=15)
FAILURE_MEMORY = timedelta(days=1)  # failed sign-ins older than this are deleted
USERNAME_FAILURES_MAX = 5
CLIENT_FAILURES_MAX = 20
USERNAME_RE = re.compile(r"[A-Za-z0-9._-]{3,64}")


def audit_name(username: str) -> str:
    """Staff appear in the audit log as staff:NAME, never mistaken for a resident."""
    return f"staff:{username}"


class StaffAdminError(Exception):
    """A refused command-line request, with a one-line reason."""


# --- command line (synchronous, on the CLI's own connection) -------------------------


def add_staff(
    conn: sqlite3.Connection, settings: Settings, username: str, role: str, email: str
) -> str:
    """Create a staff account and return its one-time enrolment link."""
    if not USERNAME_RE.fullmatch(username):
        raise StaffAdminError(
            "USERNAME must be 3 to 64 letters, digits, dots, dashes or underscores"
        )
    if role not in ROLES:
        raise StaffAdminError("--role must be csr or supervisor")
    address = normalize_email(email)
    if address is None:
        raise StaffAdminError(f"{email!r} is not an email address")
    code = new_code()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO staff (username, username_key, email, role, totp_secret, enrol_hash,"
            " enrol_expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                username,
                username.casefold(),
                address,
                role,
                totp.new_secret(),
                code_hash(code),
                utc_in(ENROL_FOR),
                utcnow(),
            ),
        )
        _audit_sync(conn, "staff_added", username, f"role={role}")
        conn.execute("COMMIT")
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK")
        raise StaffAdminError(f"a staff member named {username} already exists") from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return f"{settings.base_url}/staff/enrol?token={code}"


def list_staff(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT username, role, email, created_at, enrolled_at, disabled_at FROM staff"
        " ORDER BY username_key"
    ).fetchall()


def disable_staff(conn: sqlite3.Connection, username: str) -> None:
    """Disable the account and end its sessions at once; unused enrolment links die too."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT id, disabled_at FROM staff WHERE username_key = ?", (username.casefold(),)
        ).fetchone()
        if row is None:
            raise StaffAdminError(f"no staff member named {username}")
        conn.execute(
            "UPDATE staff SET disabled_at = coalesce(disabled_at, ?), enrol_hash = NULL WHERE id = ?",
            (utcnow(), row["id"]),
        )
        conn.execute("DELETE FROM staff_sessions WHERE staff_id = ?", (row["id"],))
        _audit_sync(conn, "staff_disabled", username, None)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _audit_sync(conn: sqlite3.Connection, event: str, username: str, detail: str | None) -> None:
    audit.record_sync(conn, event, username=audit_name(username), detail=detail)


# --- enrolment and sign-in over the web -----------------------------------------------


class EnrolForm(Form):
    fields = ("token", "code")
    passwords = ("password", "confirm_password")


class StaffSignInForm(Form):
    fields = ("username", "code")
    passwords = ("password",)


class StaffAuthService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def enrolment(self, token: str) -> Any:
        """The staff row an unused, unexpired enrolment link belongs to, or None."""
        if not token or len(token) > 200:
            return None
        return await self.db.fetchone(
            "SELECT id, username, email, role, totp_secret FROM staff WHERE enrol_hash = ?"
            " AND enrol_expires_at > ? AND enrolled_at IS NULL AND disabled_at IS NULL",
            (code_hash(token), utcnow()),
        )

    def otpauth_uri(self, staff: Any) -> str:
        return totp.uri(staff["totp_secret"], staff["username"], self.settings.utility_name)

    async def enrol(self, form: EnrolForm, client: str) -> Result:
        """Outcome 'expired' (the link does not work), 'invalid', or 'ok' with the ten
        recovery codes as value (shown once; only their hashes are kept)."""
        staff = await self.enrolment(form.token)
        if staff is None:
            return Result("expired")
        errors = {}
        problem = await new_password_problem(
            self.settings, form.password, staff["username"], staff["email"]
        )
        if problem:
            errors["password"] = problem
        problem = confirm_password_problem(form.password, form.confirm_password)
        if problem:
            errors["confirm_password"] = problem
        step = totp.matching_step(staff["totp_secret"], form.code, None)
        if not form.code:
            errors["code"] = _("Enter the 6-digit code your authenticator app shows")
        elif step is None:
            errors["code"] = _(
                "That code is not right. Enter the 6-digit code your authenticator app shows now"
            )
        if errors:
            return Result.invalid(errors)
        password_hash = await hash_password(form.password)
        codes = totp.new_recovery_codes()
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE staff SET password_hash = ?, totp_last_step = ?, enrolled_at = ?,"
                " enrol_hash = NULL WHERE id = ? AND enrolled_at IS NULL",
                (password_hash, step, utcnow(), staff["id"]),
            )
            if cursor.rowcount != 1:  # two tabs sent the form at once: the first one won
                return Result("expired")
            await conn.executemany(
                "INSERT INTO staff_recovery_codes (staff_id, code_hash) VALUES (?, ?)",
                [(staff["id"], totp.recovery_hash(code)) for code in codes],
            )
            await audit.record(
                conn, "staff_enrolled", username=audit_name(staff["username"]), client=client
            )
        return Result(value=codes)

    async def sign_in(self, form: StaffSignInForm, client: str) -> Result:
        """Outcome 'ok' (value: new session id), 'missing', 'throttled' (value: minutes
        to wait) or 'failed' (which part was wrong is in the audit log, not the page)."""
        try:
            return await self._sign_in(form, client)
        except _Spent:
            return await self._failed(form.username[:64], client, "code already used")

    async def _sign_in(self, form: StaffSignInForm, client: str) -> Result:
        username = form.username[:64]
        if not username or not form.password or not form.code:
            return Result("missing")
        key = username.casefold()
        since = ago(WINDOW)
        async with self.db.write() as conn:
            # Each try is counted as a failure before the password is checked (and given
            # back if it all succeeds), so parallel tries cannot slip past the limits.
            cursor = await conn.execute(
                "SELECT count(*) FROM staff_login_failures WHERE username_key = ? AND at > ?",
                (key, since),
            )
            by_user = (await cursor.fetchone())[0]
            cursor = await conn.execute(
                "SELECT count(*) FROM staff_login_failures WHERE client = ? AND at > ?",
                (client, since),
            )
            by_client = (await cursor.fetchone())[0]
            throttled = by_user >= USERNAME_FAILURES_MAX or by_client >= CLIENT_FAILURES_MAX
            if throttled:
                await audit.record(
                    conn, "staff_sign_in_throttled", username=audit_name(username), client=client
                )
            else:
                cursor = await conn.execute(
                    "INSERT INTO staff_login_failures (username_key, client, at) VALUES (?, ?, ?)",
                    (key, client, utcnow()),
                )
                reservation = cursor.lastrowid
                await conn.execute(
                    "DELETE FROM staff_login_failures WHERE at < ?", (ago(FAILURE_MEMORY),)
                )
        if throttled:
            return Result("throttled", value=int(WINDOW.total_seconds() // 60))
        staff = await self.db.fetchone(
            "SELECT id, username, password_hash, totp_secret, totp_last_step, enrolled_at,"
            " disabled_at FROM staff WHERE username_key = ?",
            (key,),
        )
        usable = staff is not None and staff["enrolled_at"] and not staff["disabled_at"]
        ok = await verify_password(staff["password_hash"] if usable else None, form.password)
        if not ok:
            reason = (
                "password"
                if usable
                else ("disabled" if staff and staff["disabled_at"] else "unknown or not enrolled")
            )
            return await self._failed(username, client, reason)
        step = totp.matching_step(staff["totp_secret"], form.code, staff["totp_last_step"])
        recovery_id = None
        if step is None and totp.looks_like_recovery_code(form.code):
            recovery_id = await self.db.fetchval(
                "SELECT id FROM staff_recovery_codes WHERE staff_id = ? AND code_hash = ?"
                " AND used_at IS NULL",
                (staff["id"], totp.recovery_hash(form.code)),
            )
        if step is None and recovery_id is None:
            return await self._failed(username, client, "code")
        async with self.db.write() as conn:
            if recovery_id is not None:
                cursor = await conn.execute(
                    "UPDATE staff_recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL",
                    (utcnow(), recovery_id),
                )
                if cursor.rowcount != 1:  # spent a moment ago by another sign-in
                    raise _Spent()
                left = await (
                    await conn.execute(
                        "SELECT count(*) FROM staff_recovery_codes WHERE staff_id = ? AND used_at IS NULL",
                        (staff["id"],),
                    )
                ).fetchone()
                await audit.record(
                    conn,
                    "staff_recovery_code_used",
                    username=audit_name(staff["username"]),
                    client=client,
                    detail=f"left={left[0]}",
                )
            else:
                cursor = await conn.execute(
                    "UPDATE staff SET totp_last_step = ? WHERE id = ?"
                    " AND (totp_last_step IS NULL OR totp_last_step < ?)",
                    (step, staff["id"], step),
                )
                if cursor.rowcount != 1:  # the same code used by a concurrent sign-in
                    raise _Spent()
            await conn.execute("DELETE FROM staff_login_failures WHERE id = ?", (reservation,))
            session_id = await sessions.start(conn, staff["id"])
            await audit.record(
                conn, "staff_sign_in", username=audit_name(staff["username"]), client=client
            )
        return Result(value=session_id)

    async def _failed(self, username: str, client: str, reason: str) -> Result:
        """The try was counted already (reserved); say what was wrong in the audit log."""
        await audit.write(
            self.db,
            "staff_sign_in_failed",
            username=audit_name(username),
            client=client,
            detail=reason,
        )
        return Result("failed")

    async def sign_out(self, session_id: str | None, username: str | None, client: str) -> None:
        async with self.db.write() as conn:
            await sessions.end(conn, session_id)
            if username:
                await audit.record(
                    conn, "staff_sign_out", username=audit_name(username), client=client
                )

    async def team(self) -> list[Any]:
        return await self.db.fetchall(
            "SELECT st.username, st.role, st.email, st.created_at, st.enrolled_at, st.disabled_at,"
            " (SELECT max(at) FROM staff_actions a WHERE a.staff_id = st.id) AS last_action,"
            " (SELECT count(*) FROM staff_recovery_codes r WHERE r.staff_id = st.id"
            "   AND r.used_at IS NULL) AS codes_left"
            " FROM staff st ORDER BY st.username_key"
        )


class _Spent(Exception):
    """A code or recovery code was used by a concurrent sign-in between check and write."""
