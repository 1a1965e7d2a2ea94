"""A verified demo sign-in for `portal demo` (development only), linked to the first
demo account, so a newcomer sees My Account, bills and usage without registering.

Its password is derived from PORTAL_SECRET_KEY, so running `portal demo` again changes
nothing and prints the same words, while a staging box with its own secret key gets a
password that cannot be read from the code. `portal demo` never creates it in production.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3

from argon2.exceptions import InvalidHashError, VerificationError

from portal.accounts.passwords import HASHER, normalize
from portal.billing.numbers import number_key
from portal.db import utcnow

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo@example.com"
WORDS = ["river", "meter", "valve", "canal", "basin", "spring", "pump", "well", "brook"]


def demo_password(secret_key: str) -> str:
    """Four words and a number: long and easy to type."""
    digest = hmac.new(secret_key.encode(), b"portal demo login", hashlib.sha256).digest()
    words = [WORDS[byte % len(WORDS)] for byte in digest[:4]]
    return "-".join(words) + f"-{1000 + int.from_bytes(digest[4:6], 'big') % 9000}"


def _works(stored: sqlite3.Row | None, password: str) -> bool:
    if stored is None or stored["verified_at"] is None or stored["locked_until"]:
        return False
    try:
        return HASHER.verify(stored["password_hash"], normalize(password))
    except (VerificationError, InvalidHashError):
        return False


def create_demo_login(
    conn: sqlite3.Connection, secret_key: str, customer_number: str, account_number: str
) -> tuple[str, str]:
    """Create the demo sign-in, or set its password back; returns (username, password)."""
    password = demo_password(secret_key)
    stored = conn.execute(
        "SELECT password_hash, verified_at, locked_until FROM users WHERE username_key = ?",
        (DEMO_USERNAME,),
    ).fetchone()
    write_user = not _works(stored, password)
    password_hash = HASHER.hash(normalize(password)) if write_user else ""
    now = utcnow()
    conn.execute("BEGIN IMMEDIATE")
    try:
        if write_user:
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
