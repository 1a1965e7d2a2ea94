"""Time `portal import` on a fresh database: 100,000 accounts (and, with --bills, one
bill per account). Not part of the test suite; run it by hand:

    .venv/bin/python scripts/bench_import.py [--accounts 100000] [--bills]

It writes the CSV files and the database in a temporary directory, runs the real
`portal import` command in a subprocess (as an operator would), prints the seconds each
import took, then runs the same import again to time the "nothing changed" case.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORTAL = Path(sys.executable).with_name("portal")


def write_accounts(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_number", "account_number", "name", "service_address", "status"])
        for n in range(count):
            writer.writerow(
                [
                    f"{1_000_000 + n:07d}",
                    f"{5_000_000 + n:07d}",
                    f"Resident {n}",
                    f"{100 + n % 2900} Euclid Ave, Ontario, CA 91762",
                    "closed" if n % 50 == 49 else "active",
                ]
            )


def write_bills(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["customer_number", "account_number", "bill_number", "bill_date", "due_date"]
            + ["amount_due"]
        )
        for n in range(count):
            writer.writerow(
                [
                    f"{1_000_000 + n:07d}",
                    f"{5_000_000 + n:07d}",
                    f"B{n:07d}-202605",
                    "2026-05-01",
                    "2026-05-21",
                    f"{20 + n % 180}.{n % 100:02d}",
                ]
            )


def run_import(kind: str, csv_path: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [str(PORTAL), "import", kind, str(csv_path)], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"portal import {kind} failed:\n{done.stderr}")
    print(f"  {done.stdout.strip()}")
    return seconds


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--accounts", type=int, default=100_000)
    args.add_argument("--bills", action="store_true", help="also import one bill per account")
    options = args.parse_args()

    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        tmp_path = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env["PORTAL_DATABASE"] = str(tmp_path / "bench.sqlite3")
        subprocess.run([str(PORTAL), "db", "upgrade"], env=env, check=True, capture_output=True)

        jobs = [("accounts", tmp_path / "accounts.csv", write_accounts)]
        if options.bills:
            jobs.append(("bills", tmp_path / "bills.csv", write_bills))
        for kind, path, write in jobs:
            write(path, options.accounts)
            size = path.stat().st_size / 1_000_000
            print(f"{kind}: {options.accounts:,} rows, {size:.1f} MB")
            first = run_import(kind, path, env)
            again = run_import(kind, path, env)
            print(f"  portal import {kind}: {first:.2f} s into a fresh database")
            print(f"  portal import {kind}: {again:.2f} s again (nothing changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
