"""Several service accounts under one sign-in: link another account, unlink one.

Linking uses the same validators and messages as registration. A service account is
linked to one sign-in at a time (user_accounts.account_id is the table's key).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from portal.accounts import audit
from portal.accounts.ownership import (
    alert_owner,
    bill_amount_problem,
    check_claim,
    release_stale_registrations,
)
from portal.accounts.sessions import SignedIn
from portal.accounts.validation import number_pair_problems
from portal.billing.numbers import number_key
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.settings import Settings


class NumbersForm(Form):
    """The two numbers from a bill (Pay My Bill)."""

    fields = ("customer_number", "account_number")


class ClaimForm(Form):
    """Add another account: the two numbers, and the bill amount when that proof is asked."""

    fields = ("customer_number", "account_number", "bill_amount")


class LinkingService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer

    async def link(self, user: SignedIn, form: ClaimForm, client: str) -> Result:
        errors = number_pair_problems(form.customer_number, form.account_number)
        if self.settings.account_proof == "bill_amount":
            problem = bill_amount_problem(form.bill_amount)
            if problem:
                errors["bill_amount"] = problem
        if not errors:
            claim = await check_claim(
                self.db, self.settings, form.customer_number, form.account_number, form.bill_amount
            )
            if claim.problem:
                errors[claim.problem[0]] = claim.problem[1]
            if claim.owner is not None and claim.owner["user_id"] != user.user_id:
                async with self.db.write() as conn:
                    await alert_owner(conn, self.mailer, claim.owner, "link", client)
        if errors:
            return Result.invalid(errors)
        try:
            async with self.db.write() as conn:
                await release_stale_registrations(conn, client)
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
            claim = await check_claim(
                self.db, self.settings, form.customer_number, form.account_number, form.bill_amount
            )
            return Result.invalid({"account_number": claim.problem[1] if claim.problem else ""})
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
