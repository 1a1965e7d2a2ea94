"""Scale benchmark: 100,000 (or a million) accounts with two years of bills and usage.

Builds a fresh database (the history through the real importer, or with --history sql
through bulk SQL), then runs the next month's bills file, one bill per account, through
`portal import bills` as an operator would, while this process changes a resident's
profile every 50 ms through the portal's own Database.write() and records how long each
write waited. Then it measures the signed-in pages (dashboard, bill history, one bill,
usage) as server time: requests go through the whole Litestar app in-process (routing,
session look-up, SQL, templates), no network.

    .venv/bin/python scripts/bench_pages.py [--accounts 100000] [--months 24] [--requests 200]
    .venv/bin/python scripts/bench_pages.py --accounts 1000000 --history sql --keep /tmp/scale/bench.sqlite3
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from litestar.testing import AsyncTestClient

from portal import db as portal_db
from portal.accounts import sessions
from portal.accounts.passwords import HASHER
from portal.accounts.tokens import code_hash
from portal.app import create_app
from portal.billing.importer import import_rows
from portal.db import Database
from portal.settings import Settings
from portal.staff.search_index import refresh_sync


def month(start: date, offset: int) -> date:
    index = start.year * 12 + start.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def accounts(count: int):
    for n in range(count):
        yield (
            n + 2,
            {
                "customer_number": f"{1_000_000 + n}",
                "account_number": f"{5_000_000 + n}",
                "name": f"Resident {n}",
                "service_address": f"{n % 9000 + 100} Euclid Ave",
                "status": "active",
            },
        )


def bills(count: int, months: int, first: date):
    line = 2
    for n in range(count):
        for m in range(months):
            end = month(first, m + 1)
            yield (
                line,
                {
                    "customer_number": f"{1_000_000 + n}",
                    "account_number": f"{5_000_000 + n}",
                    "bill_number": f"B{n}-{m}",
                    "bill_date": end.isoformat(),
                    "due_date": end.replace(day=21).isoformat(),
                    "amount_due": f"{50 + (n + m) % 90}.25",
                    "period_start": month(first, m).isoformat(),
                    "period_end": end.isoformat(),
                    "previous_balance": "60.00",
                    "payments": "60.00",
                    "current_charges": "70.25",
                    "consumption": f"{10 + (n * 7 + m) % 15}",
                },
            )
            line += 1


def usage(count: int, months: int, first: date):
    line = 2
    for n in range(count):
        for m in range(months):
            yield (
                line,
                {
                    "customer_number": f"{1_000_000 + n}",
                    "account_number": f"{5_000_000 + n}",
                    "read_date": month(first, m + 1).isoformat(),
                    "consumption": f"{10 + (n * 7 + m) % 15}",
                    "unit": "HCF",
                },
            )
            line += 1


def build(path: Path, count: int, months: int) -> dict[str, float]:
    """The history through the real importer, one file per kind."""
    portal_db.upgrade(path)
    conn = portal_db.connect_sync(path)
    first = month(date.today().replace(day=1), -months)
    timings = {}
    for kind, rows in (
        ("accounts", accounts(count)),
        ("bills", bills(count, months, first)),
        ("usage", usage(count, months, first)),
    ):
        started = time.perf_counter()
        result = import_rows(conn, kind, rows)
        timings[kind] = time.perf_counter() - started
        print(f"import {kind}: {result.rows:,} rows in {timings[kind]:.1f} s", flush=True)
    conn.close()
    return timings


def build_sql(path: Path, count: int, months: int) -> dict[str, float]:
    """The same history written with bulk SQL (the importer would take minutes at a
    million accounts): rows in account order, as the billing system sends them. The
    accounts' staff search index is refreshed as `portal import accounts` does."""
    portal_db.upgrade(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")  # a generated file: no crash safety needed
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    first = month(date.today().replace(day=1), -months)
    conn.execute(
        "CREATE TEMP TABLE months (m INTEGER PRIMARY KEY, bill_date, due_date, period_start)"
    )
    for m in range(months):
        end = month(first, m + 1)
        conn.execute(
            "INSERT INTO months VALUES (?, ?, ?, ?)",
            (m, end.isoformat(), end.replace(day=21).isoformat(), month(first, m).isoformat()),
        )
    now = portal_db.utcnow()
    steps = {
        "accounts": (
            "INSERT INTO service_accounts (id, customer_number, account_number, customer_key,"
            " account_key, name, service_address, status, updated_at)"
            " WITH RECURSIVE n(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM n WHERE n < ? - 1)"
            " SELECT n + 1, 1000000 + n, 5000000 + n, 1000000 + n, 5000000 + n,"
            " 'Resident ' || n, (n % 9000 + 100) || ' Euclid Ave', 'active', ? FROM n",
            (count, now),
        ),
        "bills": (
            "INSERT INTO bills (account_id, bill_number, bill_date, due_date, amount_due_cents,"
            " period_start, period_end, previous_balance_cents, payments_cents,"
            " current_charges_cents, consumption, imported_at)"
            " SELECT a.id, 'B' || (a.id - 1) || '-' || m.m, m.bill_date, m.due_date,"
            " (50 + (a.id - 1 + m.m) % 90) * 100 + 25, m.period_start, m.bill_date, 6000, 6000,"
            " 7025, 10 + ((a.id - 1) * 7 + m.m) % 15, ?"
            " FROM service_accounts a, months m ORDER BY a.id, m.m",
            (now,),
        ),
        "usage": (
            "INSERT INTO usage_reads (account_id, read_date, consumption, unit, imported_at)"
            " SELECT a.id, m.bill_date, 10 + ((a.id - 1) * 7 + m.m) % 15, 'HCF', ?"
            " FROM service_accounts a, months m ORDER BY a.id, m.m",
            (now,),
        ),
    }
    timings = {}
    for kind, (sql, params) in steps.items():
        started = time.perf_counter()
        conn.execute("BEGIN")
        rows = conn.execute(sql, params).rowcount
        conn.execute("COMMIT")
        if kind == "accounts":
            refresh_sync(conn)
        timings[kind] = time.perf_counter() - started
        print(f"bulk SQL {kind}: {rows:,} rows in {timings[kind]:.1f} s", flush=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return timings


def month_file(path: Path, count: int, bill_date: date) -> None:
    """The billing system's file for one month: a new bill for every account."""
    period_start = month(bill_date, -1)
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["customer_number", "account_number", "bill_number", "bill_date", "due_date"]
            + ["amount_due", "period_start", "period_end", "consumption"]
        )
        for n in range(count):
            writer.writerow(
                [
                    1_000_000 + n,
                    5_000_000 + n,
                    f"B{n}-{bill_date:%Y%m}",
                    bill_date.isoformat(),
                    bill_date.replace(day=21).isoformat(),
                    f"{50 + n % 90}.25",
                    period_start.isoformat(),
                    bill_date.isoformat(),
                    10 + (n * 7) % 15,
                ]
            )


async def write_every(db: Database, user_id: int, stop: asyncio.Event, seconds: float):
    """A resident changing the language of their profile every `seconds` until `stop`:
    how long each write waited for the write lock, how long it took in all (its commit's
    fsync included), and the errors."""
    waits, writes, failures = [], [], []
    while not stop.is_set():
        started = time.perf_counter()
        try:
            async with db.write() as conn:
                waits.append(time.perf_counter() - started)  # the write lock is ours
                await conn.execute(
                    "UPDATE users SET locale = ? WHERE id = ?",
                    ("es" if len(waits) % 2 else "en", user_id),
                )
        except sqlite3.Error as exc:
            failures.append(repr(exc))
        writes.append(time.perf_counter() - started)
        await asyncio.sleep(seconds)
    return waits, writes, failures


async def monthly_import(path: Path, count: int) -> dict[str, float]:
    """`portal import bills` of the month after the newest bill, timed, with a
    resident's write every 50 ms beside it."""
    conn = sqlite3.connect(path)
    newest, user_id = conn.execute(
        "SELECT max(bill_date), (SELECT id FROM users WHERE username = 'bench') FROM bills"
    ).fetchone()
    conn.close()
    bill_date = month(date.fromisoformat(newest), 1)
    csv_path = path.with_name(f"bills-{bill_date:%Y-%m}.csv")
    started = time.perf_counter()
    month_file(csv_path, count, bill_date)
    print(f"monthly file: {count:,} bills in {time.perf_counter() - started:.1f} s", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_DATABASE"] = str(path)
    db = Database(path)
    await db.open()
    stop = asyncio.Event()
    writes = asyncio.create_task(write_every(db, user_id, stop, 0.05))
    started = time.perf_counter()
    command = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("portal"),
        *("import", "bills", str(csv_path)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await command.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    waits, whole, failures = await writes
    await db.close()
    csv_path.unlink()
    if command.returncode != 0:
        sys.exit(f"portal import bills failed:\n{err.decode()}")
    print(f"{out.decode().strip()}\nmonthly import through the CLI: {seconds:.1f} s", flush=True)
    print(f"resident writes during it: {len(whole)}, failed {len(failures)} {failures[:3]}")
    for name, times in (("waiting for the write lock", waits), ("whole write", whole)):
        times = sorted(t * 1000 for t in times)
        print(
            f"  {name}: worst {times[-1]:.0f} ms, p99 {times[int(len(times) * 0.99) - 1]:.0f} ms,"
            f" p50 {statistics.median(times):.1f} ms",
            flush=True,
        )
    return {"import": seconds, "worst wait": max(waits), "failed": len(failures)}


def sign_in_resident(path: Path, account_number: str) -> str:
    conn = sqlite3.connect(path)
    now = portal_db.utcnow()
    cursor = conn.execute(
        "INSERT INTO users (username, username_key, email, email_key, password_hash, paperless,"
        " created_at, verified_at) VALUES ('bench', 'bench', 'b@example.com', 'b@example.com', ?, 1, ?, ?)",
        (HASHER.hash("bench password that is long"), now, now),
    )
    user_id = cursor.lastrowid
    for number in (account_number, str(int(account_number) + 1)):
        conn.execute(
            "INSERT INTO user_accounts (account_id, user_id, linked_at)"
            " SELECT id, ?, ? FROM service_accounts WHERE account_number = ?",
            (user_id, now, number),
        )
    session_id = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, remember, created_at, last_seen_at, expires_at)"
        " VALUES (?, ?, 1, ?, ?, '9999-01-01T00:00:00.000000Z')",
        (code_hash(session_id), user_id, now, now),
    )
    conn.commit()
    conn.close()
    return session_id


async def query_plans(db: Database, client: AsyncTestClient, pages: dict[str, str]) -> None:
    """Every SQL statement each page runs, traced on the portal's own connections, and
    the steps of their query plans: SEARCH is an index look-up, SCAN reads a whole table."""
    threaded = [db._writer, *db._all_readers]
    for name, url in pages.items():
        statements: list[str] = []
        db._quick.set_trace_callback(statements.append)  # the event loop's own reader
        for conn in threaded:
            await conn.set_trace_callback(statements.append)
        assert (await client.get(url)).status_code == 200
        db._quick.set_trace_callback(None)
        for conn in threaded:
            await conn.set_trace_callback(None)
        steps = set()
        async with db.read() as conn:
            for sql in statements:
                if (
                    sql.lstrip()
                    .upper()
                    .startswith(("SELECT", "WITH", "INSERT", "UPDATE", "DELETE"))
                ):
                    async with conn.execute("EXPLAIN QUERY PLAN " + sql) as cursor:
                        steps.update(row[3] for row in await cursor.fetchall())
        scans = sorted(step for step in steps if step.startswith("SCAN"))
        print(
            f"{name}: {len(statements)} statements, {len(steps)} plan steps,"
            f" scans: {', '.join(scans) or 'none'}",
            flush=True,
        )
        for step in sorted(steps):
            print(f"    {step}")


async def measure(path: Path, session_id: str, requests: int) -> dict[str, dict[str, float]]:
    settings = Settings(database=path)
    conn = sqlite3.connect(path)
    account_id, bill_id = conn.execute(
        "SELECT ua.account_id, (SELECT id FROM bills WHERE account_id = ua.account_id ORDER BY bill_date DESC LIMIT 1)"
        " FROM user_accounts ua LIMIT 1"
    ).fetchone()
    conn.close()
    pages = {
        "dashboard": "/account",
        "bill history": f"/accounts/{account_id}/bills",
        "one bill": f"/accounts/{account_id}/bills/{bill_id}",
        "usage": f"/accounts/{account_id}/usage",
    }
    results = {}
    app = create_app(settings)
    async with AsyncTestClient(app=app, base_url="http://bench.local") as client:
        client.cookies[sessions.COOKIE] = session_id
        await query_plans(app.state.services.db, client, pages)
        for name, url in pages.items():
            for _ in range(20):  # warm up
                assert (await client.get(url)).status_code == 200
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            times.sort()
            results[name] = {
                "p50": statistics.median(times),
                "p99": times[int(len(times) * 0.99) - 1],
            }
            print(
                f"{name:13s} p50 {results[name]['p50']:.2f} ms  p99 {results[name]['p99']:.2f} ms",
                flush=True,
            )
    return results


def main() -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--history",
        choices=("importer", "sql"),
        default="importer",
        help="write the history through the importer (default) or with bulk SQL (faster)",
    )
    parser.add_argument("--keep", help="keep the database at this path (a new file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or Path(tmp) / "bench.sqlite3")
        if path.exists():
            sys.exit(f"{path} exists; give a new path")
        started = time.perf_counter()
        (build_sql if args.history == "sql" else build)(path, args.accounts, args.months)
        print(f"history: {time.perf_counter() - started:.1f} s", flush=True)
        print(f"database: {path.stat().st_size / 1e6:,.0f} MB", flush=True)
        session_id = sign_in_resident(path, f"{5_000_000 + args.accounts // 2}")
        asyncio.run(monthly_import(path, args.accounts))
        print(f"database after the month: {path.stat().st_size / 1e6:,.0f} MB", flush=True)
        asyncio.run(measure(path, session_id, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
