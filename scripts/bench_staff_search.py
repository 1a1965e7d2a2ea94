"""Time the staff console's customer search at 100,000 accounts. Not part of the test
suite; run it by hand:

    .venv/bin/python scripts/bench_staff_search.py [--accounts 100000] [--logins 30000]

It imports the accounts with the real `portal import accounts` (the same generated file
as bench_import.py; the trigram search index is kept by triggers, so this also times the
import with them), adds online logins linked to some of the accounts, then runs
ConsoleService.search (the code behind /staff/search) for each kind of query and prints
the median and worst of 20 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_import import run_import, write_accounts  # noqa: E402

from portal import db as portal_db  # noqa: E402
from portal.services import Services  # noqa: E402
from portal.settings import Settings  # noqa: E402
from portal.templating import make_environment  # noqa: E402

QUERIES = {
    "whole customer number": "1054321",
    "account number with dashes": "50-54321",
    "part of a number": "54321",
    "part of a name": "dent 9876",
    "part of an address, common (many matches)": "euclid",
    "part of an address, rare": "2899 Euclid",
    "part of a username": "user12345",
    "part of an email": "345@example",
    "no match": "zzzz-nothing",
}


def add_logins(path: Path, count: int) -> None:
    conn = portal_db.connect_sync(path)
    conn.execute("BEGIN IMMEDIATE")
    for n in range(count):
        user_id = conn.execute(
            "INSERT INTO users (username, username_key, email, email_key, password_hash,"
            " created_at, verified_at) VALUES (?, ?, ?, ?, 'x', '2026-01-01', '2026-01-01')",
            (f"user{n}", f"user{n}", f"user{n}@example.com", f"user{n}@example.com"),
        ).lastrowid
        conn.execute(
            "INSERT INTO user_accounts (account_id, user_id, linked_at) VALUES (?, ?, '2026-01-01')",
            (n * 3 + 1, user_id),
        )
    conn.execute("COMMIT")
    conn.close()


async def time_searches(path: Path) -> None:
    settings = Settings(database=path)
    services = Services.build(settings, make_environment(settings))
    await services.db.open()
    try:
        for label, query in QUERIES.items():
            runs = []
            for _ in range(20):
                started = time.perf_counter()
                accounts, logins = await services.console.search(query)
                runs.append((time.perf_counter() - started) * 1000)
            print(
                f"  {label:45} {query!r:16} {len(accounts) + len(logins):3} found"
                f"  median {statistics.median(runs):6.1f} ms  worst {max(runs):6.1f} ms"
            )
    finally:
        await services.db.close()


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--accounts", type=int, default=100_000)
    args.add_argument("--logins", type=int, default=30_000)
    options = args.parse_args()
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        tmp_path = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env["PORTAL_DATABASE"] = str(tmp_path / "bench.sqlite3")
        portal = Path(sys.executable).with_name("portal")
        subprocess.run([str(portal), "db", "upgrade"], env=env, check=True, capture_output=True)
        csv_path = tmp_path / "accounts.csv"
        write_accounts(csv_path, options.accounts)
        seconds = run_import("accounts", csv_path, env)
        print(
            f"  portal import accounts: {seconds:.2f} s into a fresh database (with the search index)"
        )
        add_logins(Path(env["PORTAL_DATABASE"]), options.logins)
        print(f"{options.accounts:,} accounts, {options.logins:,} logins; /staff/search:")
        asyncio.run(time_searches(Path(env["PORTAL_DATABASE"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
