"""Several service accounts under one sign-in: link another account, unlink one.

Linking uses the same validators and messages as registration. A service account is
linked to one sign-in at a time (user_accounts.account_id is the table's key).
"""

from __future__ import annotations

import sqlite3

from portal.accounts import audit
from portal.accounts.ownership import account_problem
from portal.accounts.sessions import SignedIn
from portal.accounts.validation import number_pair_problems
from portal.billing.numbers import number_key
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.settings import Settings


class NumbersForm(Form):
    """The two numbers from a bill (Add another account, Pay My Bill)."""

    fields = ("customer_number", "account_number")


class LinkingService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def link(self, user: SignedIn, form: NumbersForm, client: str) -> Result:
        errors = number_pair_problems(form.customer_number, form.account_number)
        if not errors:
            problem = await account_problem(
                self.db, self.settings, form.customer_number, form.account_number
            )
            if problem:
                errors["account_number"] = problem
        if errors:
            return Result.invalid(errors)
        try:
            async with self.db.write() as conn:
                cursor = await conn.execute(
                    "INSERT INTO user_accounts (account_id, user_id, linked_at)"
                    " SELECT id, ?, ? FROM service_accounts"
                    " WHERE customer_key = ? AND account_key = ? AND status = 'active'",
                    (
                        user.user_id,
                        utcnow(),
                        number_key(form.customer_number),
                        number_key(form.account_number),
                    ),
                )
                if cursor.rowcount != 1:
                    raise sqlite3.IntegrityError("account no longer qualifies")
                await audit.record(
                    conn,
                    "account_linked",
                    username=user.username,
                    client=client,
                    detail=f"account={number_key(form.account_number)}",
                )
        except sqlite3.IntegrityError:
            problem = await account_problem(
                self.db, self.settings, form.customer_number, form.account_number
            )
            return Result.invalid({"account_number": problem or ""})
        return Result()

    async def unlink(self, user: SignedIn, account_id: int, client: str) -> bool:
        async with self.db.write() as conn:
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
