"""Housekeeping at scale: how long deleting a large backlog takes, how long a resident's
write waits behind it, and what a round with nothing to delete costs (`portal serve`
runs one every PORTAL_JOBS_EVERY_SECONDS).

Builds a fresh database with one resident, `--ended` sessions that ended 40 days ago,
`--live` sessions in use, `--devices` remembered devices used this month, `--mail`
records of email sent 100 days ago and `--audit` audit rows three years old beside as many
from this month. Then runs `housekeeping.clean` in this process (with
PORTAL_AUDIT_KEEP_DAYS at 730) while
the resident changes their profile every 50 ms through the same Database (the same write
lock, as inside `portal serve`), and runs it again with nothing left to delete.

    .venv/bin/python scripts/bench_housekeeping.py [--ended 1000000] [--live 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_pages import write_every  # noqa: E402

from portal import housekeeping  # noqa: E402
from portal.db import Database, utc_text  # noqa: E402


def fill(path: Path, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    ended, recent = utc_text(now - timedelta(days=40)), utc_text(now - timedelta(minutes=1))
    live = (recent, recent, utc_text(now + timedelta(days=20)))
    sent = utc_text(now - timedelta(days=100))
    conn = sqlite3.connect(path)
    with conn:
        user_id = conn.execute(
            "INSERT INTO users (username, username_key, email, email_key, password_hash, created_at,"
            " verified_at) VALUES ('bench', 'bench', 'bench@example.org', 'bench@example.org', 'x',"
            " ?, ?)",
            (recent, recent),
        ).lastrowid
        # Ended and live sessions interleaved, as they are in a real table.
        conn.executemany(
            "INSERT INTO sessions (id_hash, user_id, remember, created_at, last_seen_at,"
            " expires_at) VALUES (?, ?, 1, ?, ?, ?)",
            (
                (f"s{i}", user_id, *(live if i % every == 0 else (ended,) * 3))
                for every in [max(1, (args.ended + args.live) // max(1, args.live))]
                for i in range(args.ended + args.live)
            ),
        )
        conn.executemany(
            "INSERT INTO known_devices (token_hash, user_id, created_at, last_used_at)"
            " VALUES (?, ?, ?, ?)",
            ((f"d{i}", user_id, recent, recent) for i in range(args.devices)),
        )
        conn.executemany(
            "INSERT INTO outbox (to_addr, subject, body_text, body_html, created_at,"
            " next_attempt_at, sent_at) VALUES ('r@example.org', 'Your bill', '', '', ?, ?, ?)",
            ((sent, sent, sent) for _ in range(args.mail)),
        )
        old_audit = utc_text(now - timedelta(days=1100))
        conn.executemany(
            "INSERT INTO audit_log (at, event, username, client) VALUES (?, 'sign_in', ?, '-')",
            ((old_audit if i % 2 == 0 else recent, f"r{i % 5000}") for i in range(2 * args.audit)),
        )
    conn.close()
    return user_id


async def run(path: Path, user_id: int) -> None:
    db = Database(path)
    await db.open()
    for label in ("the backlog", "nothing left to delete"):
        stop = asyncio.Event()
        writes = asyncio.create_task(write_every(db, user_id, stop, 0.05))
        started = time.perf_counter()
        deleted = await housekeeping.clean(db, audit_keep_days=730)
        seconds = time.perf_counter() - started
        stop.set()
        waits, whole, failures = await writes
        shown = ", ".join(f"{name} {count:,}" for name, count in deleted.items() if count)
        print(f"{label}: {seconds:.2f} s, deleted {shown or 'nothing'}")
        waits = sorted(t * 1000 for t in waits)
        print(
            f"  resident writes beside it: {len(waits)}, failed {len(failures)};"
            f" waiting for the write lock: worst {waits[-1]:.1f} ms,"
            f" p50 {statistics.median(waits):.2f} ms",
            flush=True,
        )
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ended", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--mail", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "housekeeping.sqlite3"

        async def prepare() -> None:
            db = Database(path)  # creates the file and runs the migrations
            await db.open()
            await db.close()

        asyncio.run(prepare())
        started = time.perf_counter()
        user_id = fill(path, args)
        size = path.stat().st_size / 1e6
        print(
            f"database: {args.ended:,} ended and {args.live:,} live sessions, {args.devices:,}"
            f" devices, {args.mail:,} sent mail, 2 x {args.audit:,} audit rows ({size:,.0f} MB, built in"
            f" {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        asyncio.run(run(path, user_id))


if __name__ == "__main__":
    main()
