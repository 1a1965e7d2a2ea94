"""Backups you can trust: taken under write load, verified, restored, rotated."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from portal import cli
from portal import db as portal_db
from portal.billing.demo import load_demo
from portal.observe import backups


@pytest.fixture
def live(settings, monkeypatch):
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    for name in ("PORTAL_ENV", "PORTAL_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    portal_db.upgrade(settings.database)
    conn = portal_db.connect_sync(settings.database)
    load_demo(conn, count=150)  # a few MB, so the copy takes many steps
    conn.close()
    return settings.database


class Writer(threading.Thread):
    """Writes rows through the portal's own writer (BEGIN IMMEDIATE, synchronous=FULL)
    and records each one only after its COMMIT returned: an acknowledged write."""

    def __init__(self, path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.acked: list[int] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._write())
        except BaseException as exc:
            self.error = exc

    async def _write(self) -> None:
        db = portal_db.Database(self.path)
        await db.open()
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                async with db.write() as conn:
                    await conn.execute(
                        "INSERT INTO audit_log (at, event, detail) VALUES (?, 'load', ?)",
                        (portal_db.utcnow(), str(n)),
                    )
                self.acked.append(n)
                await asyncio.sleep(0)
        finally:
            await db.close()


def loaded(path) -> list[int]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT detail FROM audit_log WHERE event = 'load' ORDER BY id").fetchall()
    conn.close()
    return [int(row[0]) for row in rows]


def test_restore_of_a_backup_taken_under_write_load_keeps_every_acknowledged_write(
    live, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(backups, "BACKUP_PAGES", 64)  # many small steps while writes go on
    writer = Writer(live)
    writer.start()
    deadline = time.monotonic() + 20
    while len(writer.acked) < 50:
        assert writer.error is None and time.monotonic() < deadline, writer.error
        time.sleep(0.01)
    acked_before = len(writer.acked)
    copy = tmp_path / "copy.sqlite3"
    assert cli.main(["db", "backup", str(copy)]) == 0
    during = len(writer.acked) - acked_before
    time.sleep(0.1)
    writer.stop.set()
    writer.join(timeout=20)
    assert writer.error is None, writer.error
    assert during > 0, "no write happened while the backup ran"

    assert cli.main(["db", "verify-backup", str(copy)]) == 0
    latest = portal_db.migrations()[-1][0]
    assert f"ok, integrity ok, migration {latest:04d} of {latest:04d}" in capsys.readouterr().out

    # The portal has stopped; the live database has writes the copy does not.
    assert cli.main(["db", "restore", str(copy)]) == 2
    assert "use --force" in capsys.readouterr().err
    holder = sqlite3.connect(live)  # a running portal keeps the file open
    holder.execute("SELECT 1 FROM audit_log").fetchone()
    assert cli.main(["db", "restore", "--force", str(copy)]) == 2
    assert "is in use; stop the portal" in capsys.readouterr().err
    holder.close()
    assert cli.main(["db", "restore", "--force", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "restored from" in out and "The previous database is kept as" in out

    restored = loaded(live)
    assert restored[:acked_before] == writer.acked[:acked_before]  # every acknowledged write
    assert restored == writer.acked[: len(restored)]  # one consistent moment, no holes
    (kept,) = live.parent.glob(f"{live.name}.before-restore-*")
    assert loaded(kept) == writer.acked  # nothing of the replaced database was lost
    assert not any(live.parent.glob("*.partial"))


def test_verify_backup_refuses_damaged_and_foreign_files(live, tmp_path, capsys):
    copy = tmp_path / "copy.sqlite3"
    assert cli.main(["db", "backup", str(copy)]) == 0
    truncated = tmp_path / "truncated.sqlite3"
    truncated.write_bytes(copy.read_bytes()[: copy.stat().st_size // 2])
    text = tmp_path / "notes.sqlite3"
    text.write_text("not a database")
    foreign = tmp_path / "foreign.sqlite3"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    capsys.readouterr()
    for bad in (truncated, text, foreign, tmp_path / "missing.sqlite3"):
        assert cli.main(["db", "verify-backup", str(bad)]) == 1
        assert "NOT USABLE" in capsys.readouterr().out
        before = live.read_bytes()
        assert cli.main(["db", "restore", "--force", str(bad)]) in (1, 2)
        assert live.read_bytes() == before  # the live database is untouched


def test_restore_into_an_empty_place_needs_no_force(live, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "copy.sqlite3"
    assert cli.main(["db", "backup", str(copy)]) == 0
    fresh = tmp_path / "new" / "portal.sqlite3"
    monkeypatch.setenv("PORTAL_DATABASE", str(fresh))
    assert cli.main(["db", "restore", str(copy)]) == 0
    conn = sqlite3.connect(fresh)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM service_accounts").fetchone()[0] == 150
    conn.close()


def test_daily_backups_keep_the_newest_n(live, tmp_path, capsys):
    folder = tmp_path / "backups"
    folder.mkdir()
    for day in ("2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"):
        (folder / f"portal-{day}.sqlite3").write_text("old copy")
    (folder / "notes.txt").write_text("not a copy: left alone")
    assert cli.main(["db", "backup", "--keep", "3", str(folder)]) == 0
    assert cli.main(["db", "backup", "--keep", "3", str(folder)]) == 0  # same day: replaced
    names = sorted(p.name for p in folder.iterdir())
    today = [n for n in names if n.startswith("portal-") and not n.startswith("portal-2020")]
    assert len(today) == 1 and today[0] > "portal-2021"
    assert names == sorted(
        ["notes.txt", "portal-2020-01-03.sqlite3", "portal-2020-01-04.sqlite3", *today]
    )
    assert cli.main(["db", "verify-backup", str(folder / today[0])]) == 0
    assert cli.main(["db", "backup", "--keep", "0", str(folder)]) == 2
