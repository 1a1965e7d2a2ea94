"""SQLite access: one writer connection, a few readers, numbered SQL migrations.

Writes go through `Database.write()`, which serializes writers on one connection and
opens `BEGIN IMMEDIATE` so concurrent writers queue on our lock instead of failing
with SQLITE_BUSY half-way through a transaction.

Reads of one row (`fetchone`, `fetchval`) and of a short, bounded list (`fetchall(...,
bounded=True)`: one account's months, a page with a LIMIT) run on the event loop's own
thread, on a connection of their own: an indexed look-up takes tens of microseconds,
less than handing it to a worker thread and back. In WAL mode a reader never waits for
a writer. Everything else (`fetchall` of lists that grow with the utility: the jobs'
work lists, exports) goes to the reader threads, so it never holds up other requests.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
READERS = 3

# synchronous=FULL: the payment ledger must survive a power cut after we said "paid".
# busy_timeout: how long a writer waits for another connection's write transaction. A
# CSV import commits in batches of tens of milliseconds (billing/importer.py Pace), so a
# resident's write waits far less; the margin is for a slow disk or a backup restore.
BUSY_TIMEOUT_SECONDS = 30
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=FULL",
)


def is_row_id(value: int) -> bool:
    """Could this int (from a URL) be a row id? SQLite integers are 64-bit, and binding a
    bigger Python int makes sqlite3 raise OverflowError."""
    return 0 < value <= 2**63 - 1


def utc_text(moment: datetime) -> str:
    """An aware moment as ISO-8601 UTC text, the only form time takes in the database."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> str:
    return utc_text(datetime.now(UTC))


def connect_sync(path: Path | str) -> sqlite3.Connection:
    """A configured synchronous connection, for the CLI, imports and migrations."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    conn.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for file in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        found.append((int(file.name[:4]), file.stem, file))
    return found


def upgrade(path: Path | str) -> list[str]:
    """Apply pending migrations in order; each one in its own transaction."""
    conn = connect_sync(path)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, file in migrations():
            if version in done:
                continue
            script = file.read_text(encoding="utf-8")
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\n"
                    f"INSERT INTO schema_migrations VALUES ({version}, '{name}', '{utcnow()}');\n"
                    "COMMIT;"
                )
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            applied.append(name)
        return applied
    finally:
        conn.close()


def _connect_quick(path: Path) -> sqlite3.Connection:
    """The event loop's read connection: read-only by its own promise (query_only), and
    a short busy wait, since waiting here would hold up every request."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0.25)
    conn.row_factory = sqlite3.Row
    for pragma in (*PRAGMAS, "PRAGMA busy_timeout=250", "PRAGMA query_only=ON"):
        conn.execute(pragma)
    return conn


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        await conn.execute(pragma)
    return conn


class Database:
    """The portal's SQLite file. Open once at start-up, close at shutdown."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._quick: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(upgrade, self.path)
        self._writer = await _connect(self.path)
        self._quick = _connect_quick(self.path)
        for _ in range(READERS):
            reader = await _connect(self.path)
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)

    async def close(self) -> None:
        for conn in [self._writer, *self._all_readers]:
            if conn is not None:
                await conn.close()
        if self._quick is not None:
            self._quick.close()
            self._quick = None
        self._writer = None
        self._all_readers.clear()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: commits on success, rolls back on any exception."""
        assert self._writer is not None, "Database.open() was not called"
        async with self._write_lock:
            conn = self._writer
            if conn.in_transaction:
                # A task cancelled while its BEGIN was still running left one open; with
                # the lock held, no other write is in progress, so it is safe to end it.
                await conn.execute("ROLLBACK")
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put_nowait(conn)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        assert self._quick is not None, "Database.open() was not called"
        return self._quick.execute(sql, params).fetchone()

    async def fetchall(
        self, sql: str, params: Sequence[Any] | dict = (), *, bounded: bool = False
    ) -> list[sqlite3.Row]:
        """All rows; `bounded`: the list is short by construction (see above)."""
        if bounded:
            assert self._quick is not None, "Database.open() was not called"
            return self._quick.execute(sql, params).fetchall()
        async with self.read() as conn, conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchval(self, sql: str, params: Sequence[Any] | dict = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]
