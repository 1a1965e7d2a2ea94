"""Checking, restoring and rotating database backups (`portal db verify-backup`,
`portal db restore`, `portal db backup --keep N DIR`). Copies are made by the CLI's
`_backup` (SQLite's online backup API); this module never touches a running portal's
database except to ask whether one is using it."""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from portal import db as portal_db
from portal.progress import Meter

DAILY_NAME = re.compile(r"^portal-(\d{4}-\d{2}-\d{2})\.sqlite3$")


@dataclass
class Verdict:
    ok: bool
    detail: str
    version: int | None = None


def verify(path: Path) -> Verdict:
    """Is `path` a whole, readable portal database? Opened read-only, never changed."""
    if not path.is_file():
        return Verdict(False, f"{path} is not a file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return Verdict(False, f"cannot open: {exc}")
    try:
        result = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        if result != "ok":
            return Verdict(False, f"integrity check failed: {result[:300]}")
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not has_table:
            return Verdict(False, "not a portal database (no schema_migrations table)")
        version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
    except sqlite3.Error as exc:  # not a database at all, or truncated
        return Verdict(False, f"not a readable SQLite database: {exc}")
    finally:
        conn.close()
    latest = portal_db.migrations()[-1][0]
    if version > latest:
        return Verdict(
            False, f"made by a newer portal (migration {version:04d}; this one knows {latest:04d})"
        )
    return Verdict(
        True,
        f"integrity ok, migration {version:04d} of {latest:04d}, {path.stat().st_size:,} bytes",
        version,
    )


def in_use(path: Path) -> bool:
    """True if another process (a running portal) has the database open. Taking an
    exclusive lock fails while any other connection is open in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.2)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(live: Path, suffix: str) -> Path:
    """Fold the live database's WAL into it and rename it to `<live>.<suffix>`."""
    conn = sqlite3.connect(live, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    kept = live.with_name(f"{live.name}.{suffix}")
    os.replace(live, kept)
    for extra in ("-wal", "-shm", "-journal"):
        Path(f"{live}{extra}").unlink(missing_ok=True)
    return kept


def restore(backup: Path, live: Path, meter: Meter | None = None) -> int:
    """Copy `backup` into place as `live` (which must not exist now); returns its size.
    Written as `<live>.partial`, checked, then renamed: never a half database. `meter`
    shows the pages copied (portal.progress)."""
    meter = meter or Meter()
    partial = Path(f"{live}.partial")
    for extra in ("", "-journal", "-wal", "-shm"):
        Path(f"{partial}{extra}").unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(partial)
        meter.stage("restoring the database", unit="pages")
        try:
            source.backup(
                target,
                pages=1024,
                progress=lambda _status, left, total: meter.update(total - left, total),
            )
        finally:
            target.close()
    finally:
        source.close()
    check = verify(partial)
    if not check.ok:
        partial.unlink(missing_ok=True)
        raise OSError(f"the copy failed its check: {check.detail}")
    _fsync(partial)
    os.replace(partial, live)
    _fsync(live.parent)
    return live.stat().st_size


def daily_name(day: date) -> str:
    return f"portal-{day.isoformat()}.sqlite3"


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` daily copies in `folder`; return the deleted."""
    copies = sorted(p for p in folder.iterdir() if DAILY_NAME.match(p.name))
    doomed = copies[:-keep] if keep > 0 else copies
    for path in doomed:
        path.unlink()
    return doomed
