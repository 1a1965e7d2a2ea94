"""Making, checking, restoring and rotating database backups (`portal db backup`,
`portal db verify-backup`, `portal db restore`, `portal db backup --keep N DIR`) with
SQLite's online backup API. Both directions write `<file>.partial`, check it, then
rename it into place: never a half database. A backup only reads the running portal's
database; a restore never touches one that is in use."""

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
BACKUP_PAGES = 1024  # pages copied per step (4 MiB with 4 KiB pages)


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


def remove_partial(final: Path) -> None:
    """Delete a half-written `<final>.partial` and any journal SQLite left beside it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{final}.partial{suffix}").unlink(missing_ok=True)


def _copy_pages(
    source: sqlite3.Connection, partial: Path, meter: Meter, stage: str, sleep: float = 0.25
) -> None:
    """Copy `source` into the file `partial`, BACKUP_PAGES at a time, shown on `meter`;
    `sleep`: seconds to wait when a step finds the source busy (sqlite3's default)."""
    target = sqlite3.connect(partial)
    meter.stage(stage, unit="pages")
    try:
        source.backup(
            target,
            pages=BACKUP_PAGES,
            sleep=sleep,
            progress=lambda _status, left, total: meter.update(total - left, total),
        )
    finally:
        target.close()


def _put_in_place(partial: Path, final: Path) -> None:
    """Rename a checked copy to its final name, durably (its bytes, then the folder's)."""
    _fsync(partial)
    os.replace(partial, final)
    _fsync(final.parent)


def backup(live: Path, target: Path, meter: Meter) -> tuple[str, int]:
    """Copy the live database to `target` page by page; return (integrity, bytes).

    The source keeps one read transaction open for the whole copy: in WAL mode that
    does not block the portal's writers, and it gives every step the same snapshot, so
    the backup never restarts however busy the portal is."""
    remove_partial(target)
    partial = Path(f"{target}.partial")
    source = sqlite3.connect(live, isolation_level=None, timeout=10.0)
    try:
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # start the snapshot
        _copy_pages(source, partial, meter, "copying the database", sleep=0.05)
    finally:
        source.close()
    copy = sqlite3.connect(partial, isolation_level=None)
    try:
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
        result = "; ".join(row[0] for row in copy.execute("PRAGMA integrity_check"))
    finally:
        copy.close()
    if result != "ok":
        return result, 0
    _put_in_place(partial, target)
    return result, target.stat().st_size


def restore(backup: Path, live: Path, meter: Meter | None = None) -> int:
    """Copy `backup` into place as `live` (which must not exist now); returns its size.
    `meter` shows the pages copied (portal.progress)."""
    remove_partial(live)
    partial = Path(f"{live}.partial")
    source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        _copy_pages(source, partial, meter or Meter(), "restoring the database")
    finally:
        source.close()
    check = verify(partial)
    if not check.ok:
        partial.unlink(missing_ok=True)
        raise OSError(f"the copy failed its check: {check.detail}")
    _put_in_place(partial, live)
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
