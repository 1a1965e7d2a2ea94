"""AutoPay per service account: enrol, change, cancel, skip one charge, and what the
dashboard says about the next charge. The charges themselves are the runner's
(autopay/charges.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite

from portal.accounts import audit
from portal.autopay.methods import chosen_method
from portal.billing.money import parse_cents
from portal.db import Database, utcnow
from portal.forms import Form, Result
from portal.i18n import _
from portal.settings import Settings

OPEN = ("scheduled", "charging")


class EnrolForm(Form):
    fields = ("method_id", "max_amount")
    checkboxes = ("terms",)


@dataclass
class AutoPayStatus:
    """What the account's card says: enrolled or not, with which method, and the next
    charge (schedule row, amount so far) or the latest one that did not happen."""

    enrolment: Any
    method: Any
    next: Any
    last: Any


def local_today(settings: Settings, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.timezone)).date()


class AutoPayService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer

    async def status(self, account_id: int) -> AutoPayStatus:
        enrolment = await self.db.fetchone(
            "SELECT * FROM autopay WHERE account_id = ?", (account_id,)
        )
        method = None
        if enrolment is not None:
            method = await self.db.fetchone(
                "SELECT * FROM saved_methods WHERE id = ?", (enrolment["method_id"],)
            )
        upcoming = await self.db.fetchone(
            "SELECT * FROM schedules WHERE account_id = ? AND kind = 'autopay'"
            " AND status IN ('scheduled', 'charging') ORDER BY run_on LIMIT 1",
            (account_id,),
        )
        last = await self.db.fetchone(
            "SELECT * FROM schedules WHERE account_id = ? AND kind = 'autopay'"
            " AND status NOT IN ('scheduled', 'charging') ORDER BY updated_at DESC, id DESC LIMIT 1",
            (account_id,),
        )
        return AutoPayStatus(enrolment, method, upcoming, last)

    async def statuses(self, account_ids: list[int]) -> dict[int, AutoPayStatus]:
        return {account_id: await self.status(account_id) for account_id in account_ids}

    def check(self, form: EnrolForm, methods: list[Any]) -> tuple[int | None, int | None]:
        method = chosen_method(form, methods)
        method_id = method["id"] if method else None
        max_cents = None
        raw = form.max_amount.replace("$", "").replace(",", "")
        if raw:
            max_cents = parse_cents(raw)
            if max_cents is None or max_cents < 100 or len(raw) > 12:
                form.errors["max_amount"] = _(
                    "Enter the largest amount to charge in dollars and cents, like 150.00, or leave it empty"
                )
        if not form.terms:
            form.errors["terms"] = _("Read the terms and tick the box to accept them")
        return method_id, max_cents

    async def enrol(
        self, user: Any, account: Any, form: EnrolForm, methods: list[Any], client: str
    ) -> Result:
        """Enrol or change (method, maximum). Takes effect for every charge not started."""
        method_id, max_cents = self.check(form, methods)
        if form.errors:
            return Result.invalid(form.errors)
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM autopay WHERE account_id = ?", (account["id"],)
            )
            changed = await cursor.fetchone() is not None
            await conn.execute(
                "INSERT INTO autopay (account_id, user_id, method_id, max_cents, enrolled_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET"
                " user_id = excluded.user_id, method_id = excluded.method_id,"
                " max_cents = excluded.max_cents",
                (account["id"], user.user_id, method_id, max_cents, utcnow()),
            )
            method = next(m for m in methods if m["id"] == method_id)
            await audit.record(
                conn,
                "autopay_changed" if changed else "autopay_enrolled",
                username=user.username,
                client=client,
                detail=f"account={account['account_number']} method={method['last4']}"
                f" max={max_cents}",
            )
            await self.mailer.enqueue(
                conn,
                to=user.email,
                template="autopay_enrolled",
                context={
                    "username": user.username,
                    "service_address": account["service_address"],
                    "method": dict(method),
                    "max_cents": max_cents,
                    "changed": changed,
                    "link": f"{self.settings.base_url}/accounts/{account['id']}/autopay",
                },
                locale=user.locale,
            )
        return Result("changed" if changed else "ok")

    async def stop_in(self, conn: aiosqlite.Connection, account_id: int) -> Any:
        """Stop AutoPay in the caller's transaction (the resident's own cancel and
        Customer Services'): no charge that has not started will happen. Returns the
        enrolment that ended (user_id, method_id), or None when AutoPay was off."""
        cursor = await conn.execute(
            "DELETE FROM autopay WHERE account_id = ? RETURNING user_id, method_id", (account_id,)
        )
        enrolment = next(iter(await cursor.fetchall()), None)  # all: the statement ends
        if enrolment is not None:
            await conn.execute(
                "UPDATE schedules SET status = 'canceled', updated_at = ? WHERE account_id = ?"
                " AND kind = 'autopay' AND status = 'scheduled'",
                (utcnow(), account_id),
            )
        return enrolment

    async def cancel(self, user: Any, account: Any, client: str) -> Result:
        """Stop AutoPay: no charge that has not started will happen."""
        async with self.db.write() as conn:
            if await self.stop_in(conn, account["id"]) is None:
                return Result("not_enrolled")
            await audit.record(
                conn,
                "autopay_canceled",
                username=user.username,
                client=client,
                detail=f"account={account['account_number']}",
            )
        return Result()


# What a resident may do to one of an account's schedules, and only while it is in the
# state named: (kind, SET clause, state, audit event). Fixed SQL, values as parameters.
MOVES = {
    "skip": (
        "autopay",
        "status = 'skipped', updated_at = :now",
        "status = 'scheduled'",
        "autopay_skipped",
    ),
    "cancel": (
        "scheduled",
        "status = 'canceled', updated_at = :now",
        "status = 'scheduled'",
        "scheduled_payment_canceled",
    ),
    "dismiss": (
        "scheduled",
        "dismissed_at = :now",
        "status = 'failed' AND dismissed_at IS NULL",
        "scheduled_failure_dismissed",
    ),
}


async def move_schedule(
    db: Database, move: str, user: Any, account: Any, schedule_id: int, client: str
) -> Result:
    """Skip, cancel or dismiss one schedule of the resident's account, audited; outcome
    'too_late' when it is not (or no longer) in the state that allows it."""
    kind, change, state, event = MOVES[move]
    async with db.write() as conn:
        cursor = await conn.execute(
            f"UPDATE schedules SET {change} WHERE id = :id AND account_id = :account"
            f" AND kind = :kind AND {state}",
            {"now": utcnow(), "id": schedule_id, "account": account["id"], "kind": kind},
        )
        if cursor.rowcount == 0:
            return Result("too_late")
        await audit.record(
            conn,
            event,
            username=user.username,
            client=client,
            detail=f"account={account['account_number']} schedule={schedule_id}",
        )
    return Result()
