"""Sample data for tests, the one builder of it: service accounts, monthly bills, meter
reads and verified residents, written into a test's SQLite file through the real CSV
importer (residents straight into their tables).

Dates are relative to today (`month(0)` is the first of this month), so "past due"
and "last 24 months" mean the same whenever the suite runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, timedelta

from portal import db as portal_db
from portal.accounts.passwords import HASHER
from portal.billing.importer import import_text
from portal.db import utcnow

TODAY = date.today()
GOOD_PASSWORD = "rain barrel garden hose"

ACCOUNTS_CSV = """customer_number,account_number,name,service_address,status
0012345,0067890,Maria Garcia,123 Euclid Ave,active
0022222,0033333,James Smith,456 Holt Blvd,active
0044444,0055555,Closed Person,789 Mountain Ave,closed
0066666,0077777,Ana Lopez,12 Vineyard Ave,active
"""
BILLS_HEADER = (
    "customer_number,account_number,bill_number,bill_date,due_date,amount_due,period_start,"
    "period_end,previous_balance,payments,current_charges,consumption"
)
USAGE_HEADER = "customer_number,account_number,read_date,consumption,unit"

_PASSWORD_HASH: list[str] = []  # argon2 is slow on purpose: hash once per run


def month(offset: int) -> date:
    """The first day of the month `offset` months from this one."""
    index = TODAY.year * 12 + TODAY.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def bills_csv(
    customer: str,
    account: str,
    bills: Sequence[str | tuple[str, str, str, str]] = ("84.10", "84.10", "84.10"),
    *,
    newest_due_in: int | None = None,
) -> str:
    """One bill a month up to this month, oldest first, 14.5 HCF each.

    Each entry is the amount due, or (amount due, previous balance, payments, current
    charges); an amount alone has a previous balance and payments of 70.00 and charges
    equal to it. A bill is due 20 days after its date; with newest_due_in, the newest is
    due that many days from today instead (so it is not past due)."""
    lines = [BILLS_HEADER]
    for n, entry in enumerate(bills):
        due, previous, paid, charges = (
            (entry, "70.00", "70.00", entry) if isinstance(entry, str) else entry
        )
        offset = n - len(bills) + 1
        bill_date = month(offset)
        due_date = bill_date + timedelta(days=20)
        if offset == 0 and newest_due_in is not None:
            due_date = TODAY + timedelta(days=newest_due_in)
        lines.append(
            f"{customer},{account},B{account}-{bill_date:%Y%m},{bill_date},{due_date},{due},"
            f"{month(offset - 1)},{bill_date},{previous},{paid},{charges},14.5"
        )
    return "\n".join(lines) + "\n"


def usage_csv(customer: str, account: str, values: Sequence[float], unit: str = "HCF") -> str:
    """One meter read a month, on the 1st, the last one this month."""
    lines = [USAGE_HEADER]
    for n, value in enumerate(values):
        lines.append(f"{customer},{account},{month(n - len(values) + 1)},{value},{unit}")
    return "\n".join(lines) + "\n"


def load(path, kind: str, text: str) -> None:
    """Import one CSV text ("accounts", "bills" or "usage") into the database at path."""
    conn = portal_db.connect_sync(path)
    import_text(conn, kind, text)
    conn.close()


def load_billing(path) -> None:
    """A migrated database with the four service accounts of ACCOUNTS_CSV."""
    portal_db.upgrade(path)
    load(path, "accounts", ACCOUNTS_CSV)


def add_resident(path, username: str, account_number: str, email: str) -> None:
    """A verified, paperless online account (password GOOD_PASSWORD) linked to one
    service account."""
    if not _PASSWORD_HASH:
        _PASSWORD_HASH.append(HASHER.hash(GOOD_PASSWORD))
    now = utcnow()
    conn = sqlite3.connect(path)
    with conn:
        user_id = conn.execute(
            "INSERT INTO users (username, username_key, email, email_key, password_hash,"
            " paperless, printed, locale, created_at, verified_at)"
            " VALUES (?, ?, ?, ?, ?, 1, 0, 'en', ?, ?)",
            (username, username.casefold(), email, email.casefold(), _PASSWORD_HASH[0], now, now),
        ).lastrowid
        conn.execute(
            "INSERT INTO user_accounts (account_id, user_id, linked_at)"
            " SELECT id, ?, ? FROM service_accounts WHERE account_number = ?",
            (user_id, now, account_number),
        )
    conn.close()
