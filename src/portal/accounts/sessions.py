"""Server-side sessions in the database.

The cookie carries a random id; the table keeps its hash, so a copy of the database
cannot be used to sign in. A new id is issued at every sign-in (rotation). Without
"Remember me" the cookie lasts until the browser closes and the session ends after 30
idle minutes (and 12 hours at most); with it, the device stays signed in for 30 days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite
from litestar.datastructures import Cookie

from portal.accounts.tokens import code_hash, new_code
from portal.db import Database, utc_text, utcnow
from portal.security import cookies
from portal.settings import Settings

COOKIE = cookies.SESSION  # __Host-portal_session in production (security/cookies.py)
IDLE = timedelta(minutes=30)
BROWSER_MAX = timedelta(hours=12)
REMEMBER = timedelta(days=30)
TOUCH_EVERY = timedelta(seconds=60)
WARN_BEFORE = timedelta(minutes=2)  # the warning opens this long before an idle sign-out

# When this process last noted a visit of each session (id hash -> time). A page and the
# requests it starts arrive together: each would see the same old last_seen_at and write
# the same UPDATE, one after another behind the write lock.
_noted: dict[str, datetime] = {}
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SessionTimeout:
    """What a page's warning before an idle sign-out needs (partials/session_timeout.html):
    the idle limit in minutes, when the page first asks how long is left (seconds after
    it loads: a visit is noted only every `touch_every`, so the limit may have started
    that long before the page), where to ask, where to go once the session is over, and
    where its Sign out button posts. Nothing of one visitor's: the warning's markup is
    made once per language and kind of session (templating.session_warning)."""

    idle_minutes: int
    first_check: int
    url: str
    ended_url: str
    sign_out_url: str

    @classmethod
    def of(cls, idle: timedelta, touch_every: timedelta, url: str, ended: str, sign_out: str):
        first = int((idle - touch_every - WARN_BEFORE).total_seconds())
        return cls(int(idle.total_seconds()) // 60, first, url, ended, sign_out)


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    username: str
    email: str
    locale: str
    session_hash: str
    remember: bool = False

    @property
    def timeout(self) -> SessionTimeout | None:
        """The warning before an idle sign-out; none with Remember me (no idle limit)."""
        return None if self.remember else RESIDENT_TIMEOUT


RESIDENT_TIMEOUT = SessionTimeout.of(
    IDLE, TOUCH_EVERY, "/session", "/login?notice=timed-out", "/logout"
)


async def start(conn: aiosqlite.Connection, user_id: int, remember: bool) -> str:
    """Create a session in the caller's transaction; returns the id for the cookie."""
    session_id = new_code()
    now = datetime.now(UTC)
    expires = now + (REMEMBER if remember else BROWSER_MAX)
    await conn.execute(
        "INSERT INTO sessions (id_hash, user_id, remember, created_at, last_seen_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            code_hash(session_id),
            user_id,
            int(remember),
            utc_text(now),
            utc_text(now),
            utc_text(expires),
        ),
    )
    return session_id


async def end(conn: aiosqlite.Connection, session_id: str | None) -> None:
    if session_id:
        await conn.execute("DELETE FROM sessions WHERE id_hash = ?", (code_hash(session_id),))


async def end_all(conn: aiosqlite.Connection, user_id: int, keep_hash: str | None = None) -> None:
    """End every session of a user (sign out everywhere, password reset)."""
    await conn.execute(
        "DELETE FROM sessions WHERE user_id = ? AND id_hash IS NOT ?", (user_id, keep_hash)
    )


# A session and its owner by the id's hash.
SESSION_ROW = (
    "SELECT s.id_hash, s.user_id, s.remember, s.last_seen_at, s.expires_at,"
    " u.username, u.email, u.locale FROM sessions s JOIN users u ON u.id = s.user_id"
    " WHERE s.id_hash = ?"
)


def _idle_limit(row: Any) -> timedelta | None:
    """Without Remember me, 30 idle minutes; with it, none (only its expires_at)."""
    return None if row["remember"] else IDLE


def _ended(row: Any, idle: timedelta) -> bool:
    """Before its expires_at: without Remember me, after 30 idle minutes."""
    limit = _idle_limit(row)
    return limit is not None and idle > limit


async def load(db: Database, session_id: str | None) -> SignedIn | None:
    """The signed-in resident for a cookie value, or None if the session is over."""
    row = await live_session(db, session_id, SESSION_ROW, "sessions", _ended, TOUCH_EVERY)
    if row is None:
        return None
    return SignedIn(
        row["user_id"],
        row["username"],
        row["email"],
        row["locale"],
        row["id_hash"],
        bool(row["remember"]),
    )


async def time_left(db: Database, session_id: str | None) -> int:
    """Seconds before this resident's session ends if nothing more happens (0: over)."""
    return await seconds_left(db, session_id, SESSION_ROW, _idle_limit)


async def keep_alive(db: Database, session_id: str | None) -> int:
    """Note a visit now ("Stay signed in"); the seconds left after it (0: already over)."""
    return await seconds_left(db, session_id, SESSION_ROW, _idle_limit, "sessions")


async def live_session(
    db: Database,
    session_id: str | None,
    query: str,
    table: str,
    ended: Callable[[Any, timedelta], bool],
    touch_every: timedelta,
) -> Any:
    """The row `query` finds for a cookie's session id (by its hash), or None: no such
    session, or it is past its expires_at or `ended(row, idle time)` (then it is deleted).
    A visit is noted once `touch_every` has passed, not at every request (a write per
    page), and once, not by each of the requests that arrive together (a page and its
    htmx requests). Residents' and staff sessions alike; `table` is ours, never from
    input."""
    if not session_id or len(session_id) > 100:
        return None
    id_hash = code_hash(session_id)
    row = await db.fetchone(query, (id_hash,))
    if row is None:
        return None
    now = datetime.now(UTC)
    idle = now - datetime.fromisoformat(row["last_seen_at"])
    if utc_text(now) >= row["expires_at"] or ended(row, idle):
        async with db.write() as conn:
            await conn.execute(f"DELETE FROM {table} WHERE id_hash = ?", (id_hash,))
        return None
    if idle > touch_every and now - _noted.get(id_hash, _NEVER) > touch_every:
        if len(_noted) > 10_000:  # forget visits too old to matter
            for key in [k for k, at in _noted.items() if now - at > touch_every]:
                del _noted[key]
        _noted[id_hash] = now
        async with db.write() as conn:
            await conn.execute(
                f"UPDATE {table} SET last_seen_at = ? WHERE id_hash = ?", (utcnow(), id_hash)
            )
    return row


def _ends(row: Any, idle_limit: Callable[[Any], timedelta | None], seen: datetime) -> datetime:
    """When the session ends if its last visit was `seen`: at its expires_at, or
    `idle_limit(row)` after that visit."""
    ends = datetime.fromisoformat(row["expires_at"])
    limit = idle_limit(row)
    return ends if limit is None else min(ends, seen + limit)


async def seconds_left(
    db: Database,
    session_id: str | None,
    query: str,
    idle_limit: Callable[[Any], timedelta | None],
    note_visit_in: str | None = None,
) -> int:
    """Seconds before the session `query` finds ends if nothing more happens (0: no such
    session, or it is over). Only reads, so a page left open asking does not keep its
    session alive; with `note_visit_in` (our table's name, never input) a visit is
    noted now first, whatever `touch_every` says ("Stay signed in"), and an ended
    session stays ended."""
    if not session_id or len(session_id) > 100:
        return 0
    id_hash = code_hash(session_id)
    row = await db.fetchone(query, (id_hash,))
    if row is None:
        return 0
    now = datetime.now(UTC)
    left = _ends(row, idle_limit, datetime.fromisoformat(row["last_seen_at"])) - now
    if left.total_seconds() <= 0:
        return 0
    if note_visit_in:
        _noted[id_hash] = now
        async with db.write() as conn:
            await conn.execute(
                f"UPDATE {note_visit_in} SET last_seen_at = ? WHERE id_hash = ?",
                (utc_text(now), id_hash),
            )
        left = _ends(row, idle_limit, now) - now
    return int(left.total_seconds())


def cookie(session_id: str, remember: bool, settings: Settings) -> Cookie:
    max_age = int(REMEMBER.total_seconds()) if remember else None
    return cookies.session_cookie(COOKIE, session_id, settings, samesite="lax", max_age=max_age)


def clear_cookie(settings: Settings) -> Cookie:
    return cookies.session_cookie(COOKIE, "", settings, samesite="lax", max_age=0)
