"""Staff sessions: a cookie of their own (portal_staff, path /staff), the id's hash in
staff_sessions, 15 minutes idle and 8 hours in all, a new id at every sign-in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiosqlite
from litestar.datastructures import Cookie

from portal.accounts.tokens import code_hash, new_code
from portal.db import Database, utc_text, utcnow
from portal.security import cookies
from portal.settings import Settings

COOKIE = "portal_staff"
PATH = "/staff"
IDLE = timedelta(minutes=15)
ABSOLUTE = timedelta(hours=8)
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class StaffMember:
    """request.user on /staff pages. Never a resident: residents are SignedIn."""

    staff_id: int
    username: str
    role: str
    session_hash: str
    is_staff: bool = True

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"


async def start(conn: aiosqlite.Connection, staff_id: int) -> str:
    """A new session in the caller's transaction; returns the id for the cookie."""
    session_id = new_code()
    now = datetime.now(UTC)
    await conn.execute(
        "INSERT INTO staff_sessions (id_hash, staff_id, created_at, last_seen_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (code_hash(session_id), staff_id, utc_text(now), utc_text(now), utc_text(now + ABSOLUTE)),
    )
    return session_id


async def end(conn: aiosqlite.Connection, session_id: str | None) -> None:
    if session_id:
        await conn.execute("DELETE FROM staff_sessions WHERE id_hash = ?", (code_hash(session_id),))


async def load(db: Database, session_id: str | None) -> StaffMember | None:
    """The signed-in staff member for a cookie value, or None (over, disabled, unknown)."""
    if not session_id or len(session_id) > 100:
        return None
    id_hash = code_hash(session_id)
    row = await db.fetchone(
        "SELECT s.staff_id, s.last_seen_at, s.expires_at, st.username, st.role, st.disabled_at"
        " FROM staff_sessions s JOIN staff st ON st.id = s.staff_id WHERE s.id_hash = ?",
        (id_hash,),
    )
    if row is None:
        return None
    now = datetime.now(UTC)
    idle = now - datetime.fromisoformat(row["last_seen_at"])
    if utc_text(now) >= row["expires_at"] or idle > IDLE or row["disabled_at"]:
        async with db.write() as conn:
            await conn.execute("DELETE FROM staff_sessions WHERE id_hash = ?", (id_hash,))
        return None
    if idle > TOUCH_EVERY:
        async with db.write() as conn:
            await conn.execute(
                "UPDATE staff_sessions SET last_seen_at = ? WHERE id_hash = ?", (utcnow(), id_hash)
            )
    return StaffMember(row["staff_id"], row["username"], row["role"], id_hash)


def cookie(session_id: str, settings: Settings) -> Cookie:
    """A browser-session cookie, sent only to /staff pages."""
    return cookies.session_cookie(COOKIE, session_id, settings, samesite="strict", path=PATH)


def clear_cookie(settings: Settings) -> Cookie:
    return cookies.session_cookie(COOKIE, "", settings, samesite="strict", path=PATH, max_age=0)
