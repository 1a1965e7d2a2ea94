"""Synthetic demo data: a few hundred accounts with two years of bills and usage.

Deterministic (seeded), so `portal demo` run twice changes nothing, and the numbers it
prints stay valid. Goes through the same importer as real CSV files.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date

from portal.billing.importer import import_rows

STREETS = [
    "Euclid Ave",
    "Holt Blvd",
    "Mountain Ave",
    "Vineyard Ave",
    "Francis St",
    "Grove Ave",
    "Philadelphia St",
    "Riverside Dr",
    "Campus Ave",
    "Fourth St",
]
FIRST = [
    "Maria",
    "José",
    "Linda",
    "James",
    "Guadalupe",
    "Wei",
    "Aisha",
    "Robert",
    "Ana",
    "David",
    "Nguyen",
    "Carmen",
    "Luis",
    "Patricia",
    "Michael",
    "Rosa",
]
LAST = [
    "Garcia",
    "Hernandez",
    "Smith",
    "Lopez",
    "Martinez",
    "Nguyen",
    "Johnson",
    "Rodriguez",
    "Kim",
    "Perez",
    "Brown",
    "Sanchez",
    "Davis",
    "Flores",
]

MONTHS = 24


def _month(start: date, offset: int) -> date:
    index = start.year * 12 + start.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def demo_rows(count: int = 300, today: date | None = None, seed: int = 2026):
    """(accounts, bills, usage) row dicts for `count` accounts ending at `today`'s month."""
    rng = random.Random(seed)
    today = today or date.today()
    first_month = _month(today.replace(day=1), -MONTHS)
    accounts, bills, usage = [], [], []
    for n in range(count):
        customer = f"{100000 + n * 7:07d}"
        account = f"{200000 + n * 13:07d}"
        status = "closed" if n % 50 == 49 else "active"
        accounts.append(
            {
                "customer_number": customer,
                "account_number": account,
                "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "service_address": f"{rng.randint(100, 2999)} {rng.choice(STREETS)}, Ontario, CA 9176{rng.randint(1, 4)}",
                "status": status,
            }
        )
        base = rng.uniform(8, 22)
        balance = 0
        for m in range(MONTHS):
            start, end = _month(first_month, m), _month(first_month, m + 1)
            summer = 1.35 if start.month in (6, 7, 8, 9) else 1.0
            hcf = round(base * summer * rng.uniform(0.85, 1.15), 1)
            if n % 40 == 3 and m == MONTHS - 1:
                hcf = round(hcf * 2.6, 1)  # a few leaks to notice
            usage.append(
                {
                    "customer_number": customer,
                    "account_number": account,
                    "read_date": end.isoformat(),
                    "consumption": f"{hcf}",
                    "unit": "HCF",
                }
            )
            charges = 2850 + int(hcf * 412)
            paid = balance if rng.random() > 0.1 else 0
            amount = balance - paid + charges
            bills.append(
                {
                    "customer_number": customer,
                    "account_number": account,
                    "bill_number": f"B{n:05d}{end:%Y%m}",
                    "bill_date": end.isoformat(),
                    "due_date": _month(end, 0).replace(day=21).isoformat(),
                    "amount_due": f"{amount / 100:.2f}",
                    "period_start": start.isoformat(),
                    "period_end": end.isoformat(),
                    "previous_balance": f"{balance / 100:.2f}",
                    "payments": f"{paid / 100:.2f}",
                    "current_charges": f"{charges / 100:.2f}",
                    "consumption": f"{hcf}",
                }
            )
            balance = amount
    return accounts, bills, usage


def load_demo(conn: sqlite3.Connection, count: int = 300) -> list[dict[str, str]]:
    """Load the demo data; returns three active accounts' numbers to try."""
    accounts, bills, usage = demo_rows(count)
    for kind, rows in (("accounts", accounts), ("bills", bills), ("usage", usage)):
        import_rows(conn, kind, enumerate(rows, start=2))
    return [a for a in accounts if a["status"] == "active"][:3]
