"""Repeated CSRF refusals become one audit row per client per minute, with a count.

A refused form costs the portal a template render; it must not also cost a durable
database write each time (100 token-less POSTs used to write 80 audit rows in 0.4 s).
The first refusal from a client address writes its row (`csrf_refused`, detail
`path=/x count=1`) at once; further refusals from that address within the minute are
only counted in memory, and the count is written into that same row when the minute is
over (at the client's next refusal, at any refusal that finds old windows, or when the
portal stops). A crash loses at most the last minute's count, never the first row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from portal.accounts import audit
from portal.db import Database

log = logging.getLogger("portal.errors")

WINDOW = 60.0  # seconds
MAX_OPEN = 10_000  # open windows kept in memory; more are written out early


@dataclass
class _Window:
    started: float
    row_id: int
    path: str
    count: int = 1
    written: int = 1


class RefusalLog:
    def __init__(self, db: Database, window: float = WINDOW) -> None:
        self.db = db
        self.window = window
        self._open: dict[str, _Window] = {}

    async def refused(self, client: str, path: str, username: str | None = None) -> None:
        """Count one refusal from `client`; write a row if it opens a new minute."""
        now = time.monotonic()
        current = self._open.get(client)
        if current is not None and now - current.started < self.window:
            current.count += 1
            return
        log.warning("csrf refused path=%s client=%s", path, client)
        finished = [
            self._open.pop(key)
            for key, w in list(self._open.items())
            if w.row_id and (now - w.started >= self.window or len(self._open) > MAX_OPEN)
        ]
        window = self._open[client] = _Window(started=now, row_id=0, path=path)
        async with self.db.write() as conn:
            for old in finished:
                await self._write_count(conn, old)
            await audit.record(
                conn,
                "csrf_refused",
                username=username,
                client=client,
                detail=f"path={path} count=1",
            )
            async with conn.execute("SELECT last_insert_rowid()") as cursor:
                (window.row_id,) = await cursor.fetchone()

    async def flush(self) -> None:
        """Write every pending count (the app calls this when it stops)."""
        windows, self._open = list(self._open.values()), {}
        if not any(w.count != w.written for w in windows):
            return
        async with self.db.write() as conn:
            for window in windows:
                await self._write_count(conn, window)

    @staticmethod
    async def _write_count(conn, window: _Window) -> None:
        if window.count == window.written or not window.row_id:
            return
        await conn.execute(
            "UPDATE audit_log SET detail = ? WHERE id = ?",
            (audit.clean(f"path={window.path} count={window.count}"), window.row_id),
        )
        window.written = window.count


def refusal_log(state) -> RefusalLog:
    """The app's one RefusalLog (made on first use; pass `app.state`)."""
    found = getattr(state, "csrf_refusals", None)
    if found is None:
        found = state.csrf_refusals = RefusalLog(state.services.db)
    return found


async def flush_refusals(state) -> None:
    """Write pending counts; the app calls this when it stops."""
    found = getattr(state, "csrf_refusals", None)
    if found is not None:
        await found.flush()
