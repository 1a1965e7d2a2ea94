"""Several service accounts under one sign-in: link another account, unlink one.

Linking uses the same validators and messages as registration. A service account is
linked to one sign-in at a time (user_accounts.account_id is the table's key).
"""

from __future__ import annotations

import sqlite3

from portal.accounts import audit
from portal.accounts.service import AccountsService, FormResult
from portal.accounts.sessions import SignedIn
from portal.accounts.validation import number_pair_problems
from portal.billing.numbers import number_key
from portal.db import utcnow


async def link_account(
    accounts: AccountsService,
    user: SignedIn,
    customer_number: str,
    account_number: str,
    client: str,
) -> FormResult:
    errors = number_pair_problems(customer_number, account_number)
    if not errors:
        problem = await accounts.account_problem(customer_number, account_number)
        if problem:
            errors["account_number"] = problem
    if errors:
        return FormResult(errors)
    try:
        async with accounts.db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO user_accounts (account_id, user_id, linked_at)"
                " SELECT id, ?, ? FROM service_accounts"
                " WHERE customer_key = ? AND account_key = ? AND status = 'active'",
                (user.user_id, utcnow(), number_key(customer_number), number_key(account_number)),
            )
            if cursor.rowcount != 1:
                raise sqlite3.IntegrityError("account no longer qualifies")
            await audit.record(
                conn,
                "account_linked",
                username=user.username,
                client=client,
                detail=f"account={number_key(account_number)}",
            )
    except sqlite3.IntegrityError:
        problem = await accounts.account_problem(customer_number, account_number)
        return FormResult({"account_number": problem or ""})
    return FormResult()


async def unlink_account(
    accounts: AccountsService, user: SignedIn, account_id: int, client: str
) -> bool:
    async with accounts.db.write() as conn:
        cursor = await conn.execute(
            "DELETE FROM user_accounts WHERE account_id = ? AND user_id = ?",
            (account_id, user.user_id),
        )
        if cursor.rowcount:
            await audit.record(
                conn,
                "account_unlinked",
                username=user.username,
                client=client,
                detail=f"account_id={account_id}",
            )
    return bool(cursor.rowcount)
