"""Claiming a service account with the numbers printed on its bill: registration and
"Add another account" ask the same question, with the same messages."""

from __future__ import annotations

from portal.accounts.validation import account_not_found
from portal.billing.numbers import number_key
from portal.db import Database
from portal.i18n import _
from portal.settings import Settings


async def account_problem(
    db: Database, settings: Settings, customer_number: str, account_number: str
) -> str | None:
    """Do these numbers name an active service account with no online account yet?"""
    row = await db.fetchone(
        "SELECT sa.status, ua.user_id FROM service_accounts sa"
        " LEFT JOIN user_accounts ua ON ua.account_id = sa.id"
        " WHERE sa.customer_key = ? AND sa.account_key = ?",
        (number_key(customer_number), number_key(account_number)),
    )
    if row is None:
        return account_not_found()
    if row["status"] != "active":
        return _(
            "This account is closed, so it cannot be registered. Call the Utilities "
            "Customer Services Center at %(phone)s",
            phone=settings.support_phone,
        )
    if row["user_id"] is not None:
        return _(
            "This account is already registered for online access. If it is yours, "
            "use Forgot Username to find your username"
        )
    return None
