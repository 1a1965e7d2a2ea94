"""Progress of long commands: a bar on a terminal (a real pseudo-terminal), one summary
line through a pipe, nothing with --quiet; Ctrl-C in the middle of an import says what
was written (nothing while checking; the committed batches while writing) and importing
the file again completes it.

The commands run as real subprocesses (`python -m portal.cli`) on a real SQLite file.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from portal import db as portal_db
from portal.billing.importer import ImportInterrupted, Pace, import_rows, import_text
from portal.progress import Meter

HEADER = "customer_number,account_number,name,service_address,status\n"
FIRST = HEADER + "0012345,0067890,Maria Garcia,101 Euclid Ave,active\n"


def accounts_file(path: Path, rows: int) -> Path:
    """`rows` accounts; the first one changes Maria Garcia's name (so a partial write
    would show)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(HEADER + "0012345,0067890,Maria G. Changed,101 Euclid Ave,active\n")
        for i in range(rows - 1):
            out.write(f'{1_000_000 + i},{2_000_000 + i},Name {i},"{i} Main St",active\n')
    return path


def env_for(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env |= {"PORTAL_DATABASE": str(database), "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
    env.pop("NO_COLOR", None)
    return env


class OnTerminal:
    """`portal ...` with stdin, stdout and stderr on a pseudo-terminal 120 columns wide."""

    def __init__(self, database: Path, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.master = master
        # A command run at a terminal gets Ctrl-C (SIGINT) with its default action. When
        # the tests themselves run in the background (`make test &` in a script), the
        # shell ignores SIGINT for them, and an ignored signal stays ignored in every
        # command they start. A signal with a handler is reset to its default when a
        # command starts, so one is set while this one starts.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portal.cli", *args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env_for(database),
                close_fds=True,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        os.close(slave)
        self.output = b""

    def read_until(self, text: str, timeout: float = 60) -> bool:
        """Read the terminal until `text` shows or the command ends; True if it showed."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the command ended and closed the terminal
                    return text.encode() in self.output
                if not chunk:
                    break
                self.output += chunk
        return text.encode() in self.output

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        self.read_until("\0never\0", timeout)
        code = self.proc.wait(timeout=timeout)
        os.close(self.master)
        return code, self.output.decode("utf-8", "replace")


def piped(database: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", *args],
        env=env_for(database),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "portal.sqlite3"
    portal_db.upgrade(path)
    conn = portal_db.connect_sync(path)
    import_text(conn, "accounts", FIRST)
    conn.close()
    return path


def accounts(database: Path) -> list[tuple]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute("SELECT * FROM service_accounts ORDER BY id").fetchall()
    finally:
        conn.close()


# --- a terminal, a pipe, --quiet ---------------------------------------------------------


def test_import_on_a_terminal_shows_a_progress_bar_then_the_summary(database, tmp_path):
    path = accounts_file(tmp_path / "accounts.csv", 20_000)
    code, out = OnTerminal(database, "import", "accounts", str(path)).finish()
    assert code == 0, out
    # Both stages with their counts, rate and time, drawn in place with terminal codes.
    assert "checking rows" in out and "20,001/20,001" in out and "lines/s" in out
    assert "writing rows" in out and "20,000/20,000" in out and "rows/s" in out
    assert "in 0:00:" in out
    assert "\x1b[" in out and "━" in out
    assert f"{path}: accounts: 20000 rows read, 20000 added or updated" in out
    assert len(accounts(database)) == 20_000


def test_import_through_a_pipe_prints_one_summary_line_and_nothing_else(database, tmp_path):
    path = accounts_file(tmp_path / "accounts.csv", 20_000)
    done = piped(database, "import", "accounts", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith(f"{path}: accounts: 20000 rows read, 20000 added or updated")
    assert "\x1b" not in done.stdout


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_quiet_prints_nothing_but_still_imports(database, tmp_path, where):
    path = accounts_file(tmp_path / "accounts.csv", 5_000)
    args = ("import", "accounts", str(path), "--quiet")
    if where == "terminal":
        code, out = OnTerminal(database, *args).finish()
        assert (code, out) == (0, "")
    else:
        done = piped(database, *args)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert len(accounts(database)) == 5_000


def test_quiet_still_reports_bad_rows(database, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1,2,Name,Street,maybe\n")
    done = piped(database, "import", "accounts", str(path), "--quiet")
    assert done.returncode == 1 and done.stdout == ""
    assert "line 2: status 'maybe' must be active or closed" in done.stderr


def test_backup_on_a_terminal_shows_pages_and_through_a_pipe_one_line(database, tmp_path):
    code, out = OnTerminal(database, "db", "backup", str(tmp_path / "a.sqlite3")).finish()
    assert code == 0, out
    assert "copying the database" in out and "pages/s" in out and "\x1b[" in out
    assert f"{tmp_path / 'a.sqlite3'}: ok," in out
    done = piped(database, "db", "backup", str(tmp_path / "b.sqlite3"))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and done.stdout.startswith(f"{tmp_path / 'b.sqlite3'}: ok,")
    quiet = piped(database, "db", "backup", str(tmp_path / "c.sqlite3"), "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert (tmp_path / "c.sqlite3").is_file()


def test_export_on_a_terminal_shows_progress_and_through_a_pipe_one_line(database, tmp_path):
    out_file = tmp_path / "batch.csv"
    args = ("export", "payments", "--date", "2026-11-20", "--output", str(out_file))
    code, out = OnTerminal(database, *args).finish()
    assert code == 0, out
    assert "exporting payments" in out and "\x1b[" in out
    done = piped(database, "export", "payments", "--date", "2026-11-20")
    assert done.returncode == 0
    assert done.stdout.startswith("batch_date,confirmation_number")  # the CSV, untouched
    assert (
        done.stderr
        == "batch 2026-11-20: 0 TEST payment(s) (test gateway or key) written to standard output\n"
    )
    quiet = piped(database, "export", "payments", "--date", "2026-11-20", "--quiet")
    assert quiet.stderr == "" and quiet.stdout == done.stdout


def test_restore_on_a_terminal_shows_pages_and_through_a_pipe_says_what_it_did(database, tmp_path):
    backup = tmp_path / "copy.sqlite3"
    assert piped(database, "db", "backup", str(backup)).returncode == 0
    target = tmp_path / "restored" / "portal.sqlite3"
    code, out = OnTerminal(target, "db", "restore", str(backup)).finish()
    assert code == 0, out
    assert "restoring the database" in out and "pages" in out and "\x1b[" in out
    assert accounts(target) == accounts(database)
    again = piped(target, "db", "restore", str(backup), "--force")
    assert again.returncode == 0 and again.stderr == "" and "\x1b[" not in again.stdout
    assert again.stdout.startswith(f"{target}: restored from {backup}")
    quiet = piped(target, "db", "restore", str(backup), "--force", "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_jobs_run_on_a_terminal_shows_its_steps_and_through_a_pipe_one_line(database):
    code, out = OnTerminal(database, "jobs", "run").finish()
    assert code == 0, out
    assert "running the jobs" in out and "7/7" in out and "\x1b[" in out
    done = piped(database, "jobs", "run", "--now", "2026-12-01T09:00:00Z")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("jobs at 2026-12-01T09:00:00")
    quiet = piped(database, "jobs", "run", "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


# --- Ctrl-C ------------------------------------------------------------------------------


def test_ctrl_c_during_an_import_says_nothing_was_imported_and_changes_nothing(database, tmp_path):
    before = accounts(database)
    path = accounts_file(tmp_path / "big.csv", 300_000)
    run = OnTerminal(database, "import", "accounts", str(path))
    assert run.read_until("checking rows"), run.output
    run.proc.send_signal(signal.SIGINT)
    code, out = run.finish()
    assert code == 130, out
    assert "interrupted while checking rows" in out
    assert "nothing was imported" in out
    assert "Traceback" not in out
    assert accounts(database) == before  # Maria Garcia's name is not changed


def test_interrupt_while_writing_keeps_the_committed_batches_and_a_rerun_completes(tmp_path):
    """Ctrl-C after 20,000 of 50,000 rows, in batches of 5,000: three batches are in,
    the fourth is rolled back, and importing the same rows again adds the rest."""
    database = tmp_path / "portal.sqlite3"
    portal_db.upgrade(database)
    conn = portal_db.connect_sync(database)
    import_text(conn, "accounts", FIRST)

    class CtrlCWhileWriting(Meter):
        def stage(self, description, total=None, unit="rows"):
            self.description = description

        def update(self, done, total=None):
            if self.description == "writing rows" and done >= 20_000:
                raise KeyboardInterrupt

    lines = accounts_file(tmp_path / "big.csv", 50_000).read_text().splitlines()
    rows = [
        (n, dict(zip(lines[0].split(","), line.replace('"', "").split(","), strict=True)))
        for n, line in enumerate(lines[1:], start=2)
    ]
    in_batches_of_5000 = Pace(rows=5_000, seconds=0, pause=0)
    with pytest.raises(ImportInterrupted) as stopped:
        import_rows(conn, "accounts", rows, meter=CtrlCWhileWriting(), pace=in_batches_of_5000)
    assert stopped.value.stage == "writing rows"
    assert (stopped.value.done, stopped.value.total) == (20_000, 50_000)
    assert stopped.value.written == 15_000
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM service_accounts").fetchone()[0] == 15_000
    assert (
        conn.execute("SELECT name FROM service_accounts WHERE customer_key = '12345'").fetchone()[0]
        == "Maria G. Changed"
    )

    again = import_rows(conn, "accounts", rows, pace=in_batches_of_5000)
    assert (again.rows, again.changed, again.batches) == (50_000, 35_000, 10)
    assert conn.execute("SELECT count(*) FROM service_accounts").fetchone()[0] == 50_000
    conn.close()


def test_the_cli_says_how_far_an_interrupted_import_got():
    from portal.cli import _interrupted_import

    def stop(stage, done, total, written):
        return _interrupted_import(ImportInterrupted(stage, done, total, written))

    assert stop("checking rows", 279, 300_001, 0) == (
        "interrupted while checking rows (279 of 300,001); nothing was imported."
        " Import the file again."
    )
    assert stop("writing rows", 20_000, 50_000, 15_000) == (
        "interrupted while writing rows; 15,000 of 50,000 rows are imported, the rest are"
        " not. Import the same file again to complete it: the rows already in are left as"
        " they are."
    )
    assert stop("writing rows", 50_000, 50_000, 50_000) == (
        "interrupted after the last batch was committed; the whole file is imported"
    )
