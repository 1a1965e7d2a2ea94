"""What a signed-in resident sees of the billing data: dashboard, bills, usage.

Every look-up takes the resident's user id and answers only for accounts linked to it,
so a changed URL can never show somebody else's bill.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from portal.accounts import audit
from portal.billing.units import gallons_per_day
from portal.db import Database, is_row_id
from portal.settings import Settings

HISTORY_MONTHS = 24
LEAK_FACTOR = 1.5  # latest read this many times the account's usual use
LEAK_MIN_HISTORY = 6


# What a resident owes: the latest balance from the billing data, less what was paid in
# the portal since that balance was imported. The dashboard and Pay My Bill both use it.
# Money taken back since then (a bank that did not pay, a refund, a dispute) is due again.
PAID_SINCE_IMPORT = """((SELECT coalesce(sum(p.amount_cents), 0) FROM payments p
                        WHERE p.account_id = b.account_id AND p.status = 'succeeded'
                          AND p.created_at > b.imported_at)
                      - (SELECT coalesce(sum(r.amount_cents), 0) FROM payment_reversals r
                         JOIN payments p ON p.id = r.payment_id
                        WHERE p.account_id = b.account_id AND r.at > b.imported_at))"""
LATEST_BILL = (
    "(SELECT id FROM bills WHERE account_id = {account} ORDER BY bill_date DESC, id DESC LIMIT 1)"
)


async def amount_due(db: Database, account_id: int) -> int | None:
    """The amount due now, or None when the account has no bill yet."""
    return await db.fetchval(
        f"SELECT b.amount_due_cents - {PAID_SINCE_IMPORT} FROM bills b"
        f" WHERE b.id = {LATEST_BILL.format(account='?')}",
        (account_id,),
    )


@dataclass
class AccountSummary:
    account: Any
    latest_bill: Any
    amount_due_cents: int | None
    as_of: str | None
    past_due: bool
    last_payment: dict | None


@dataclass
class UsageMonth:
    read_date: str
    month: str
    value: float
    unit: str
    last_year: float | None
    gallons_per_day: int | None = None  # since the read before it

    @property
    def change_percent(self) -> int | None:
        if not self.last_year:
            return None
        return round((self.value - self.last_year) / self.last_year * 100)


class BillingService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)

    def today(self) -> str:
        return datetime.now(self.zone).date().isoformat()

    async def linked_account(self, user_id: int, account_id: int) -> Any:
        """The service account if it is linked to this sign-in, else None."""
        if not is_row_id(account_id):
            return None
        return await self.db.fetchone(
            "SELECT sa.* FROM service_accounts sa JOIN user_accounts ua ON ua.account_id = sa.id"
            " WHERE sa.id = ? AND ua.user_id = ?",
            (account_id, user_id),
        )

    async def own_account(self, user: Any, account_id: int, client: str, path: str) -> Any:
        """The resident's own account, or None with an audit row (anybody else's)."""
        account = await self.linked_account(user.user_id, account_id)
        if account is None:
            await audit.write(
                self.db,
                "account_denied",
                username=user.username,
                client=client,
                detail=f"path={path}",
            )
        return account

    async def dashboard(self, user_id: int) -> list[AccountSummary]:
        rows = await self.db.fetchall(
            f"""
            SELECT sa.id, sa.customer_number, sa.account_number, sa.name, sa.service_address,
                   sa.status, b.id AS bill_id, b.bill_date, b.due_date, b.amount_due_cents,
                   b.payments_cents, b.imported_at, {PAID_SINCE_IMPORT} AS paid_since,
                   (SELECT json_object('amount', p.amount_cents, 'at', p.created_at)
                      FROM payments p WHERE p.account_id = sa.id AND p.status = 'succeeded'
                     ORDER BY p.created_at DESC LIMIT 1) AS last_portal_payment
              FROM user_accounts ua
              JOIN service_accounts sa ON sa.id = ua.account_id
              LEFT JOIN bills b ON b.id = {LATEST_BILL.format(account="sa.id")}
             WHERE ua.user_id = ?
             ORDER BY sa.service_address
            """,
            (user_id,),
            bounded=True,
        )
        today = self.today()
        summaries = []
        for row in rows:
            due = None
            if row["bill_id"] is not None:
                due = row["amount_due_cents"] - row["paid_since"]
            last_payment = None
            if row["last_portal_payment"]:
                portal = json.loads(row["last_portal_payment"])
                last_payment = {
                    "amount_cents": portal["amount"],
                    "at": portal["at"],
                    "in_portal": True,
                }
            elif row["payments_cents"]:
                last_payment = {
                    "amount_cents": row["payments_cents"],
                    "at": row["bill_date"],
                    "in_portal": False,
                }
            summaries.append(
                AccountSummary(
                    account=row,
                    latest_bill=row if row["bill_id"] is not None else None,
                    amount_due_cents=due,
                    as_of=row["imported_at"],
                    past_due=bool(due and due > 0 and row["due_date"] < today),
                    last_payment=last_payment,
                )
            )
        return summaries

    async def bills(self, account_id: int) -> list[Any]:
        return await self.db.fetchall(
            "SELECT id, bill_number, bill_date, due_date, amount_due_cents, period_start,"
            " period_end FROM bills WHERE account_id = ? ORDER BY bill_date DESC, id DESC",
            (account_id,),
            bounded=True,
        )

    async def payments(self, account_id: int) -> list[Any]:
        """Payments made in the portal for this account, and money taken back from them
        (reversal: its kind), newest first (not pending ones)."""
        return await self.db.fetchall(
            "SELECT created_at, settled_at, amount_cents, status, processing, confirmation_number,"
            " brand, last4, NULL AS reversal FROM payments WHERE account_id = ? AND status != 'pending'"
            " UNION ALL SELECT r.at, r.at, -r.amount_cents, p.status, 0, p.confirmation_number,"
            " p.brand, p.last4, r.kind FROM payment_reversals r JOIN payments p ON p.id = r.payment_id"
            " WHERE p.account_id = ? ORDER BY 2 DESC, 1 DESC LIMIT 50",
            (account_id, account_id),
            bounded=True,
        )

    async def bill(self, account_id: int, bill_id: int) -> Any:
        if not (is_row_id(account_id) and is_row_id(bill_id)):
            return None
        return await self.db.fetchone(
            "SELECT * FROM bills WHERE account_id = ? AND id = ?", (account_id, bill_id)
        )

    async def unit(self, account_id: int) -> str:
        """The unit the account's meter reads are in (HCF unless the data says gallons)."""
        found = await self.db.fetchval(
            "SELECT unit FROM usage_reads WHERE account_id = ? ORDER BY read_date DESC LIMIT 1",
            (account_id,),
        )
        return found or "HCF"

    async def usage(self, account_id: int) -> list[UsageMonth]:
        """The last 24 months of reads, oldest first, each with the same month a year before."""
        rows = await self.db.fetchall(
            "SELECT read_date, consumption, unit FROM usage_reads WHERE account_id = ?"
            " ORDER BY read_date DESC LIMIT ?",
            (account_id, HISTORY_MONTHS + 12),
            bounded=True,
        )
        by_month = {row["read_date"][:7]: row["consumption"] for row in rows}
        months = []
        for index in reversed(range(min(len(rows), HISTORY_MONTHS))):
            row = rows[index]
            previous = rows[index + 1]["read_date"] if index + 1 < len(rows) else None
            day = date.fromisoformat(row["read_date"])
            year_before = f"{day.year - 1:04d}-{day.month:02d}"
            months.append(
                UsageMonth(
                    row["read_date"],
                    row["read_date"][:7],
                    row["consumption"],
                    row["unit"],
                    by_month.get(year_before),
                    gallons_per_day(row["consumption"], row["unit"], previous, row["read_date"]),
                )
            )
        return months

    @staticmethod
    def possible_leak(months: list[UsageMonth]) -> dict | None:
        """The latest month far above the account's own usual use, or None."""
        if len(months) < LEAK_MIN_HISTORY + 1:
            return None
        latest, history = months[-1], [m.value for m in months[-13:-1]]
        usual = statistics.median(history)
        if usual > 0 and latest.value >= usual * LEAK_FACTOR:
            return {"latest": latest, "usual": usual, "times": round(latest.value / usual, 1)}
        return None
