"""Security events: who, what, when, from where. Never a password, token or card data.

Values are made newline-safe (control characters escaped) so one event is one line in
the log and nobody can forge an entry by putting a line break in a username.
"""

from __future__ import annotations

import logging
import sqlite3

import aiosqlite

from portal.db import Database, utcnow

log = logging.getLogger("portal.audit")


def clean(value: str | None, limit: int = 200) -> str | None:
    if value is None:
        return None
    escaped = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in value)
    return escaped[:limit]


INSERT = "INSERT INTO audit_log (at, event, username, client, detail) VALUES (?, ?, ?, ?, ?)"


async def record(
    conn: aiosqlite.Connection,
    event: str,
    *,
    username: str | None = None,
    client: str | None = None,
    detail: str | None = None,
) -> None:
    """Write one audit row in the caller's transaction, and a log line."""
    row = (utcnow(), event, clean(username, 64), clean(client, 64), clean(detail))
    await conn.execute(INSERT, row)
    log.info("audit event=%s username=%s client=%s detail=%s", *row[1:])


def record_sync(
    conn: sqlite3.Connection,
    event: str,
    *,
    username: str | None = None,
    detail: str | None = None,
    detail_limit: int = 200,
) -> None:
    """`record` for the `portal` command's synchronous connection, in its transaction;
    the client is "command line"."""
    row = (utcnow(), event, clean(username, 64), "command line", clean(detail, detail_limit))
    conn.execute(INSERT, row)
    log.info("audit event=%s username=%s client=%s detail=%s", *row[1:])


async def write(db: Database, event: str, **fields: str | None) -> None:
    """One audit row in a transaction of its own (for events nothing else is writing)."""
    async with db.write() as conn:
        await record(conn, event, **fields)
