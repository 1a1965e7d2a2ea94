"""Staff sessions: a cookie of their own (portal_staff, path /staff), the id's hash in
staff_sessions, 15 minutes idle and 8 hours in all, a new id at every sign-in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite
from litestar.datastructures import Cookie

from portal.accounts.sessions import SessionTimeout, live_session, seconds_left
from portal.accounts.tokens import code_hash, new_code
from portal.db import Database, utc_text
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

    @property
    def timeout(self) -> SessionTimeout:
        """The warning before an idle sign-out (accounts/sessions.py)."""
        return TIMEOUT


TIMEOUT = SessionTimeout.of(
    IDLE, TOUCH_EVERY, PATH + "/session", PATH + "?notice=session-ended", PATH + "/sign-out"
)


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


# A session and its owner by the id's hash.
SESSION_ROW = (
    "SELECT s.id_hash, s.staff_id, s.last_seen_at, s.expires_at, st.username, st.role,"
    " st.disabled_at FROM staff_sessions s JOIN staff st ON st.id = s.staff_id"
    " WHERE s.id_hash = ?"
)


def _idle_limit(row: Any) -> timedelta:
    """15 idle minutes; none left once the member is disabled."""
    return timedelta(0) if row["disabled_at"] else IDLE


def _ended(row: Any, idle: timedelta) -> bool:
    """Before its expires_at: after 15 idle minutes, or once the member is disabled."""
    return idle > IDLE or bool(row["disabled_at"])


async def load(db: Database, session_id: str | None) -> StaffMember | None:
    """The signed-in staff member for a cookie value, or None (over, disabled, unknown)."""
    row = await live_session(db, session_id, SESSION_ROW, "staff_sessions", _ended, TOUCH_EVERY)
    if row is None:
        return None
    return StaffMember(row["staff_id"], row["username"], row["role"], row["id_hash"])


async def time_left(db: Database, session_id: str | None) -> int:
    """Seconds before this staff session ends if nothing more happens (0: over)."""
    return await seconds_left(db, session_id, SESSION_ROW, _idle_limit)


async def keep_alive(db: Database, session_id: str | None) -> int:
    """Note a visit now ("Stay signed in"); the seconds left after it (0: already over)."""
    return await seconds_left(db, session_id, SESSION_ROW, _idle_limit, "staff_sessions")


def cookie(session_id: str, settings: Settings) -> Cookie:
    """A browser-session cookie, sent only to /staff pages."""
    return cookies.session_cookie(COOKIE, session_id, settings, samesite="strict", path=PATH)


def clear_cookie(settings: Settings) -> Cookie:
    return cookies.session_cookie(COOKIE, "", settings, samesite="strict", path=PATH, max_age=0)
