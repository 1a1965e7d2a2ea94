"""Keeps the accounts' trigram search index up to date with the billing imports.

Every imported row carries the import's time in updated_at; rows newer than the index's
stamp are re-indexed in one transaction. `portal import accounts` does it right after
the import (so the first search after a big import is fast); a staff search does it too
when it finds the index behind (demo data, or an import by other means)."""

from __future__ import annotations

import sqlite3

from portal.db import Database

STAMP = "SELECT indexed_up_to FROM search_index_state WHERE name = 'accounts'"
NEWEST = "SELECT max(updated_at) FROM service_accounts"
REFRESH = (
    "DELETE FROM account_search WHERE rowid IN"
    " (SELECT id FROM service_accounts WHERE updated_at > :since)",
    "INSERT INTO account_search (rowid, customer_number, account_number, name, service_address)"
    " SELECT id, customer_number, account_number, name, service_address FROM service_accounts"
    " WHERE updated_at > :since",
    "INSERT INTO search_index_state (name, indexed_up_to) VALUES ('accounts', :newest)"
    " ON CONFLICT (name) DO UPDATE SET indexed_up_to = excluded.indexed_up_to",
)


def _behind(stamp: str | None, newest: str | None) -> bool:
    return newest is not None and (stamp is None or newest > stamp)


async def refresh(db: Database) -> None:
    if not _behind(await db.fetchval(STAMP), await db.fetchval(NEWEST)):
        return
    async with db.write() as conn:
        stamp = (await (await conn.execute(STAMP)).fetchone() or [None])[0]
        newest = (await (await conn.execute(NEWEST)).fetchone())[0]
        if _behind(stamp, newest):
            for sql in REFRESH:
                await conn.execute(sql, {"since": stamp or "", "newest": newest})


def refresh_sync(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        stamp = (conn.execute(STAMP).fetchone() or [None])[0]
        newest = conn.execute(NEWEST).fetchone()[0]
        if _behind(stamp, newest):
            for sql in REFRESH:
                conn.execute(sql, {"since": stamp or "", "newest": newest})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
