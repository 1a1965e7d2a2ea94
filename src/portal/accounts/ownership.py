"""Claiming a service account with what is printed on its bill: registration and
"Add another account" ask the same question, with the same messages.

Two numbers printed on every bill are weak proof: with PORTAL_ACCOUNT_PROOF=bill_amount
(the default) the resident also gives the amount of one of the account's two latest
bills, and a wrong amount reads exactly like a wrong account number. A registration
left unverified for 24 hours releases its account, so an address nobody reads cannot
hold it. When someone proves the numbers of an account that is already registered, its
owner gets an email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.accounts import audit
from portal.accounts.links import ago, may_mail
from portal.accounts.validation import account_not_found
from portal.billing.money import parse_cents
from portal.billing.numbers import number_key
from portal.db import Database
from portal.i18n import _
from portal.settings import Settings

UNVERIFIED_FOR = timedelta(hours=24)


def bill_amount_problem(value: str) -> str | None:
    if not value:
        return _("Enter the amount of your latest bill, as printed next to Amount due")
    cents = parse_cents(value.replace("$", "").replace(",", ""))
    if cents is None or len(value) > 20:
        return _("Enter the amount in dollars and cents, like 84.10")
    return None


@dataclass(frozen=True)
class Claim:
    """What a claim found: `problem` by field name (None when the account may be
    claimed), the service account's id, and its owner's login when it has one."""

    problem: tuple[str, str] | None
    account_id: int | None = None
    owner: Any = None


async def check_claim(
    db: Database,
    settings: Settings,
    customer_number: str,
    account_number: str,
    bill_amount: str = "",
) -> Claim:
    """Do these numbers (and, with the bill-amount proof, this amount) name an active
    service account with no online account yet?"""
    row = await db.fetchone(
        "SELECT sa.id, sa.status, sa.service_address, u.id AS user_id, u.username, u.email,"
        " u.locale, u.verified_at, u.created_at FROM service_accounts sa"
        " LEFT JOIN user_accounts ua ON ua.account_id = sa.id"
        " LEFT JOIN users u ON u.id = ua.user_id"
        " WHERE sa.customer_key = ? AND sa.account_key = ?",
        (number_key(customer_number), number_key(account_number)),
    )
    not_found = Claim(("account_number", account_not_found()))
    if row is None:
        return not_found
    if settings.account_proof == "bill_amount" and not await _amount_matches(
        db, row["id"], bill_amount
    ):
        return not_found
    if row["status"] != "active":
        problem = _(
            "This account is closed, so it cannot be registered. Call the Utilities "
            "Customer Services Center at %(phone)s",
            phone=settings.support_phone,
        )
        return Claim(("account_number", problem), row["id"])
    stale = row["verified_at"] is None and (row["created_at"] or "") < ago(UNVERIFIED_FOR)
    if row["user_id"] is not None and not stale:
        problem = _(
            "This account is already registered for online access. If it is yours, "
            "use Forgot Username to find your username"
        )
        return Claim(("account_number", problem), row["id"], owner=row)
    return Claim(None, row["id"])


async def _amount_matches(db: Database, account_id: int, bill_amount: str) -> bool:
    if bill_amount_problem(bill_amount):
        return False
    cents = parse_cents(bill_amount.replace("$", "").replace(",", ""))
    latest = await db.fetchall(
        "SELECT amount_due_cents FROM bills WHERE account_id = ?"
        " ORDER BY bill_date DESC, id DESC LIMIT 2",
        (account_id,),
    )
    return any(row[0] == cents for row in latest)


async def release_stale_registrations(conn, client: str = "-", now: datetime | None = None) -> int:
    """Remove registrations never verified within UNVERIFIED_FOR (before `now`): their
    login (it never signed in) and its hold on the service account. Returns how many."""
    cutoff = (
        ago(UNVERIFIED_FOR)
        if now is None
        else (now - UNVERIFIED_FOR).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    cursor = await conn.execute(
        "SELECT id, username FROM users WHERE verified_at IS NULL AND created_at < ?",
        (cutoff,),
    )
    stale = list(await cursor.fetchall())
    for user in stale:
        for table in (
            "tokens",
            "sessions",
            "known_devices",
            "user_accounts",
            "recovery_codes",
            "pending_sign_ins",
        ):
            await conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user["id"],))
        await conn.execute("DELETE FROM users WHERE id = ?", (user["id"],))
        await audit.record(conn, "registration_released", username=user["username"], client=client)
    return len(stale)


async def alert_owner(conn, mailer: Any, owner: Any, attempt: str, client: str) -> None:
    """Tell an account's owner that someone proved its numbers (attempt: 'register' or
    'link'), at most as often as the per-address mail limit allows."""
    if not await may_mail(conn, owner["email"]):
        return
    await mailer.enqueue(
        conn,
        to=owner["email"],
        template="account_claim_attempt",
        context={
            "username": owner["username"],
            "service_address": owner["service_address"],
            "service_addresses": [owner["service_address"]],
            "attempt": attempt,
        },
        locale=owner["locale"],
    )
    await audit.record(
        conn, "claim_attempt_alerted", username=owner["username"], client=client, detail=attempt
    )
