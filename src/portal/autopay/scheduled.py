"""Scheduled one-time payments: an amount, a date up to 60 days ahead, a saved method.
The runner charges them like AutoPay (autopay/charges.py); until it starts, the
resident can cancel. A date after the bill's due date needs the resident's say-so."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import aiosqlite

from portal.accounts import audit
from portal.autopay.methods import chosen_method
from portal.autopay.service import local_today
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _
from portal.payments.service import payment_amount
from portal.settings import Settings
from portal.templating import long_date

MAX_DAYS_AHEAD = 60


class ScheduleForm(Form):
    fields = ("amount", "run_on", "method_id", "idempotency_key")
    checkboxes = ("late_ok",)


class ScheduledService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def list(self, account_id: int) -> list[Any]:
        return await self.db.fetchall(
            "SELECT s.*, m.nickname, m.brand, m.last4 FROM schedules s"
            " LEFT JOIN saved_methods m ON m.id = s.method_id"
            " WHERE s.account_id = ? AND s.kind = 'scheduled' ORDER BY s.run_on DESC, s.id DESC",
            (account_id,),
            bounded=True,
        )

    async def failed(self, account_id: int) -> Any:
        """The latest scheduled payment whose charge failed (for good, or once with its
        retry still to come) while the resident has not acted: no payment since, no new
        scheduled payment, notice not dismissed. None if there is none."""
        return await self.db.fetchone(
            "SELECT s.*, m.nickname, m.brand, m.last4 FROM schedules s"
            " LEFT JOIN saved_methods m ON m.id = s.method_id"
            " WHERE s.account_id = :account AND s.kind = 'scheduled' AND s.dismissed_at IS NULL"
            " AND (s.status = 'failed' OR (s.status = 'scheduled' AND s.attempt > 1))"
            " AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.account_id = :account"
            "  AND p.status = 'succeeded'"
            "  AND p.id > (SELECT max(f.id) FROM payments f WHERE f.schedule_id = s.id))"
            " AND NOT EXISTS (SELECT 1 FROM schedules n WHERE n.account_id = :account"
            "  AND n.kind = 'scheduled' AND n.id > s.id"
            "  AND n.status IN ('scheduled', 'charging', 'succeeded'))"
            " ORDER BY s.id DESC LIMIT 1",
            {"account": account_id},
        )

    async def due_date(self, account_id: int) -> str | None:
        return await self.db.fetchval(
            "SELECT due_date FROM bills WHERE account_id = ? ORDER BY bill_date DESC, id DESC"
            " LIMIT 1",
            (account_id,),
        )

    async def check(self, form: ScheduleForm, account_id: int, methods: list[Any]):
        errors = form.errors
        cents, problem = payment_amount(form.amount, self.settings)
        if problem:
            errors["amount"] = problem
        today = local_today(self.settings)
        run_on = None
        try:
            run_on = date.fromisoformat(form.run_on) if len(form.run_on) == 10 else None
        except ValueError:
            run_on = None
        last = today + timedelta(days=MAX_DAYS_AHEAD)
        if run_on is None:
            errors["run_on"] = _(
                "Enter the date to pay as year-month-day, like %(example)s",
                example=(today + timedelta(days=7)).isoformat(),
            )
        elif not today < run_on <= last:
            errors["run_on"] = _("Choose a date from tomorrow to %(last)s", last=long_date(last))
        else:
            due = await self.due_date(account_id)
            if due and run_on.isoformat() > due and not form.late_ok:
                errors["run_on"] = _(
                    "This date is after your due date, %(due)s, so the payment may be late. Choose an earlier date, or tick Pay after the due date anyway",
                    due=long_date(due),
                )
        method = chosen_method(form, methods)
        method_id = method["id"] if method else None
        if not 20 <= len(form.idempotency_key) <= 64:
            errors["form"] = _("This form had expired. Check the details and continue again")
        return cents, run_on, method_id

    async def schedule(
        self, user: Any, account: Any, form: ScheduleForm, methods: list[Any], client: str
    ) -> Result:
        cents, run_on, method_id = await self.check(form, account["id"], methods)
        if form.errors:
            return Result.invalid(form.errors)
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO schedules (kind, account_id, user_id, method_id, amount_cents, run_on,"
                " status, form_key, created_at, updated_at)"
                " VALUES ('scheduled', ?, ?, ?, ?, ?, 'scheduled', ?, ?, ?)"
                " ON CONFLICT (form_key) DO NOTHING",
                (
                    account["id"],
                    user.user_id,
                    method_id,
                    cents,
                    run_on.isoformat(),
                    form.idempotency_key,
                    utcnow(),
                    utcnow(),
                ),
            )
            if cursor.rowcount == 1:
                await audit.record(
                    conn,
                    "payment_scheduled",
                    username=user.username,
                    client=client,
                    detail=f"account={account['account_number']} amount={cents} on={run_on}",
                )
        return Result()

    async def cancel_in(self, conn: aiosqlite.Connection, account_id: int, schedule_id: int) -> Any:
        """Cancel a scheduled payment the runner has not started, in the caller's
        transaction (the resident's own cancel and Customer Services'). Returns the row
        (user_id, method_id, amount_cents, run_on), or None when it has started or ended."""
        cursor = await conn.execute(
            "UPDATE schedules SET status = 'canceled', updated_at = ? WHERE id = ?"
            " AND account_id = ? AND kind = 'scheduled' AND status = 'scheduled'"
            " RETURNING user_id, method_id, amount_cents, run_on",
            (utcnow(), schedule_id, account_id),
        )
        return next(iter(await cursor.fetchall()), None)  # all: the statement ends
