"""A verified demo sign-in for `portal demo` (development only), linked to the first
demo account, so a newcomer sees My Account, bills and usage without registering.

Each run gives the login a new random password (printed once): the same command on a
shared staging box never leaves a password that others could read in the code.
"""

from __future__ import annotations

import secrets
import sqlite3

from portal.accounts.passwords import HASHER, normalize
from portal.billing.numbers import number_key
from portal.db import utcnow

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo@example.com"
WORDS = ["river", "meter", "valve", "canal", "basin", "spring", "pump", "well", "brook"]


def new_password() -> str:
    """Four random words and a number: long, easy to type, not in a common list."""
    picked = [secrets.choice(WORDS) for _ in range(4)]
    return "-".join(picked) + f"-{secrets.randbelow(9000) + 1000}"


def create_demo_login(
    conn: sqlite3.Connection, customer_number: str, account_number: str
) -> tuple[str, str]:
    """Create or refresh the demo sign-in; returns (username, password)."""
    password = new_password()
    password_hash = HASHER.hash(normalize(password))
    now = utcnow()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO users (username, username_key, email, email_key, password_hash,"
            " paperless, printed, locale, created_at, verified_at)"
            " VALUES (?, ?, ?, ?, ?, 1, 0, 'en', ?, ?)"
            " ON CONFLICT (username_key) DO UPDATE SET password_hash = excluded.password_hash,"
            " verified_at = coalesce(users.verified_at, excluded.verified_at),"
            " failed_logins = 0, locked_until = NULL",
            (DEMO_USERNAME, DEMO_USERNAME, DEMO_EMAIL, DEMO_EMAIL, password_hash, now, now),
        )
        user_id = conn.execute(
            "SELECT id FROM users WHERE username_key = ?", (DEMO_USERNAME,)
        ).fetchone()[0]
        account = conn.execute(
            "SELECT id FROM service_accounts WHERE customer_key = ? AND account_key = ?",
            (number_key(customer_number), number_key(account_number)),
        ).fetchone()
        conn.execute(
            "INSERT INTO user_accounts (account_id, user_id, linked_at) VALUES (?, ?, ?)"
            " ON CONFLICT (account_id) DO NOTHING",
            (account[0], user_id, now),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return DEMO_USERNAME, password
