"""Keeps the accounts' trigram search index up to date with the billing imports.

Every imported account carries the time of its import batch in updated_at (taken
inside the batch's write lock, so it grows from one committed batch to the next); rows
newer than the index's stamp are re-indexed, and the stamp becomes the newest time seen
before they were read, so accounts a running import writes later are indexed next time.
`portal import accounts` refreshes right after the import (so the first search after a
big import is fast); a staff search does too when it finds the index behind (demo
data, or an import by other means).

Re-indexing goes in short transactions paced like the import's (billing/importer.py
Pace: steps of STEP_ROWS accounts until a transaction has taken 50 ms, then a pause
longer than SQLite's longest busy sleep), so a resident's write waits one batch at most.
In one transaction, the first load of a million accounts held the write lock for 16 s.
The stamp moves only when every batch is in, so a refresh stopped part-way is done
again in full the next time (each batch replaces its accounts' entries)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from array import array

from portal import db as portal_db
from portal.billing.importer import PACE, Pace
from portal.db import Database

STEP_ROWS = 500  # accounts re-indexed per step: about 9 ms at a million accounts

STAMP = "SELECT indexed_up_to FROM search_index_state WHERE name = 'accounts'"
NEWEST = "SELECT max(updated_at) FROM service_accounts"
TO_INDEX = "SELECT id FROM service_accounts WHERE updated_at > ? ORDER BY id"
# One batch: the accounts with ids lo..hi changed since the stamp.
REINDEX = (
    "DELETE FROM account_search WHERE rowid IN (SELECT id FROM service_accounts"
    " WHERE id BETWEEN :lo AND :hi AND updated_at > :since)",
    "INSERT INTO account_search (rowid, customer_number, account_number, name, service_address)"
    " SELECT id, customer_number, account_number, name, service_address FROM service_accounts"
    " WHERE id BETWEEN :lo AND :hi AND updated_at > :since",
)
SET_STAMP = (
    "INSERT INTO search_index_state (name, indexed_up_to) VALUES ('accounts', :newest)"
    " ON CONFLICT (name) DO UPDATE"
    " SET indexed_up_to = max(coalesce(indexed_up_to, ''), excluded.indexed_up_to)"
)


def _behind(stamp: str | None, newest: str | None) -> bool:
    return newest is not None and (stamp is None or newest > stamp)


async def refresh(db: Database) -> None:
    """For a staff search: nothing to do in the usual case (two indexed reads); else
    the batched refresh on its own connection, off the event loop."""
    if _behind(await db.fetchval(STAMP), await db.fetchval(NEWEST)):
        await asyncio.to_thread(_refresh_file, db.path)


def _refresh_file(path) -> None:
    conn = portal_db.connect_sync(path)
    try:
        refresh_sync(conn)
    finally:
        conn.close()


def refresh_sync(conn: sqlite3.Connection, pace: Pace = PACE) -> None:
    stamp = (conn.execute(STAMP).fetchone() or [None])[0]
    newest = conn.execute(NEWEST).fetchone()[0]
    if not _behind(stamp, newest):
        return
    since = stamp or ""
    ids = array("q", (row[0] for row in conn.execute(TO_INDEX, (since,))))
    start = 0
    while start < len(ids):
        if start:
            time.sleep(pace.pause)  # a resident's write waiting for the lock gets in
        conn.execute("BEGIN IMMEDIATE")
        try:
            began = time.perf_counter()
            while start < len(ids) and time.perf_counter() - began < pace.seconds:
                lo, hi = ids[start], ids[min(start + STEP_ROWS, len(ids)) - 1]
                for sql in REINDEX:
                    conn.execute(sql, {"lo": lo, "hi": hi, "since": since})
                start += STEP_ROWS
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    conn.execute(SET_STAMP, {"newest": newest})  # its own transaction (autocommit)
