"""The database layer: migrations, pragmas, and a writer that heals after a cancel."""

from __future__ import annotations

import asyncio

from portal.db import Database, connect_sync, migrations, upgrade


async def test_pragmas_and_migrations(settings):
    db = Database(settings.database)
    await db.open()
    try:
        assert (await db.fetchval("PRAGMA journal_mode")) == "wal"
        assert (await db.fetchval("PRAGMA foreign_keys")) == 1
        assert (await db.fetchval("PRAGMA synchronous")) == 2  # FULL
        applied = await db.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in applied] == [version for version, _, _ in migrations()]
    finally:
        await db.close()
    assert upgrade(settings.database) == []  # nothing left to apply


async def test_a_write_left_open_by_a_cancelled_task_does_not_block_the_next(settings):
    db = Database(settings.database)
    await db.open()
    try:
        await db._writer.execute("BEGIN IMMEDIATE")  # what a cancel mid-BEGIN leaves behind
        async with db.write() as conn:
            await conn.execute("INSERT INTO audit_log (at, event) VALUES ('2026', 'after-cancel')")
        assert await db.fetchval("SELECT count(*) FROM audit_log") == 1

        async def slow_write():
            async with db.write() as conn:
                await conn.execute("INSERT INTO audit_log (at, event) VALUES ('2026', 'cancelled')")
                await asyncio.sleep(10)

        task = asyncio.create_task(slow_write())
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        async with db.write() as conn:
            await conn.execute("INSERT INTO audit_log (at, event) VALUES ('2026', 'next')")
        events = [row[0] for row in await db.fetchall("SELECT event FROM audit_log ORDER BY id")]
        assert events == ["after-cancel", "next"]  # the cancelled write was rolled back
    finally:
        await db.close()
    conn = connect_sync(settings.database)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
