"""Money that moves on its own: AutoPay charges for imported bills, their reminders,
retries and emails. Called by the runner (autopay/jobs.py) with "now" as a parameter.

Never twice. Each charge is a payments row whose idempotency key names the account,
the schedule and the attempt ("autopay-<account>-<schedule>-<attempt>"; the pair
schedule/attempt is UNIQUE too). The row is committed, pending, BEFORE the gateway is
called, and the gateway gets the same key, so:
  - two runners at once: a lease on the schedule row lets one call the gateway; if the
    lease had lapsed both would send the same key and get the same one charge;
  - a runner killed mid-charge: the schedule stays 'charging'; when its lease lapses the
    next run asks again with the same key and settles from the gateway's answer;
  - a timeout: the same, at the next run.
The payment is settled only from the gateway's answer, through PaymentsService.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.accounts import audit
from portal.autopay.service import local_today
from portal.billing.service import LATEST_BILL, PAID_SINCE_IMPORT
from portal.db import Database
from portal.payments.gateway import GatewayResult, GatewayUnavailable
from portal.payments.service import PaymentsService
from portal.settings import Settings

log = logging.getLogger("portal.autopay")
LEASE = timedelta(minutes=10)  # longer than any gateway call may take
CHARGE_TIMEOUT = 60.0  # seconds; a slower gateway answer is treated as unavailable


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def runner_audit(conn, event: str, user: Any, detail: str) -> None:
    """An audit row for what the runner did on a resident's behalf."""
    await audit.record(conn, event, username=user["username"], client="runner", detail=detail)


async def ask_gateway(
    payments: PaymentsService, payment: Any, method: Any, timeout: float = CHARGE_TIMEOUT
) -> GatewayResult | None:
    """Charge a saved method for a payment row already committed as pending, with the
    row's own key as the gateway's idempotency key. None when the gateway did not answer
    in time: nothing is known, and asking again with the same key is safe."""
    try:
        return await asyncio.wait_for(
            payments.gateway.charge_saved(
                idempotency_key=payment["idempotency_key"],
                customer=method["customer"],
                token=method["token"],
                method=method["method"],
                amount_cents=payment["amount_cents"],
                reference=f"payment-{payment['id']}",
            ),
            timeout,
        )
    except (GatewayUnavailable, TimeoutError):
        log.warning("charge for payment %s: no answer from the gateway", payment["id"])
        async with payments.db.write() as conn:
            await payments._event(
                conn, payment["id"], "pending", "no answer from the gateway; will ask again"
            )
        return None


async def settle_charge(
    payments: PaymentsService, conn, payment: Any, result: GatewayResult, source: str
) -> Any:
    """Settle a saved-method charge from the gateway's answer (in the caller's write):
    the payment row as it is now."""
    await conn.execute(
        "UPDATE payments SET gateway_ref = ? WHERE id = ? AND gateway_ref IS NULL",
        (result.ref or f"none-{payment['idempotency_key']}", payment["id"]),
    )
    cursor = await conn.execute("SELECT gateway_ref FROM payments WHERE id = ?", (payment["id"],))
    ref = (await cursor.fetchone())[0]
    settled, _changed = await payments.settle_in(conn, replace(result, ref=ref), source)
    return settled


class Charger:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        mailer: Any,
        payments: PaymentsService,
        *,
        timeout: float = CHARGE_TIMEOUT,
    ) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer
        self.payments = payments
        self.gateway = payments.gateway
        self.timeout = timeout

    # --- scheduling --------------------------------------------------------------------

    async def schedule_bills(self, now: datetime) -> int:
        """An AutoPay charge for each enrolled account's newest bill not yet scheduled and
        not yet due, on the due date less PORTAL_AUTOPAY_DAYS_BEFORE (today at the
        earliest). An older bill's charge that has not started is replaced."""
        today = local_today(self.settings, now)
        rows = await self.db.fetchall(
            "SELECT a.account_id, a.user_id, b.id AS bill_id, b.due_date FROM autopay a"
            f" JOIN bills b ON b.id = {LATEST_BILL.format(account='a.account_id')}"
            " WHERE b.due_date >= ? AND NOT EXISTS"
            " (SELECT 1 FROM schedules s WHERE s.bill_id = b.id AND s.kind = 'autopay')",
            (today.isoformat(),),
        )
        made = 0
        for row in rows:
            due = datetime.strptime(row["due_date"], "%Y-%m-%d").date()
            run_on = max(today, due - timedelta(days=self.settings.autopay_days_before))
            async with self.db.write() as conn:
                await conn.execute(
                    "UPDATE schedules SET status = 'canceled', updated_at = ? WHERE account_id = ?"
                    " AND kind = 'autopay' AND status = 'scheduled'",
                    (stamp(now), row["account_id"]),
                )
                cursor = await conn.execute(
                    "INSERT INTO schedules (kind, account_id, user_id, bill_id, run_on, status,"
                    " created_at, updated_at) VALUES ('autopay', ?, ?, ?, ?, 'scheduled', ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (
                        row["account_id"],
                        row["user_id"],
                        row["bill_id"],
                        run_on.isoformat(),
                        stamp(now),
                        stamp(now),
                    ),
                )
                made += cursor.rowcount
        return made

    async def amount_for(self, conn, schedule: Any) -> int:
        """What an AutoPay charge takes: the bill's amount due less portal payments (and
        plus reversals) since it was imported."""
        cursor = await conn.execute(
            f"SELECT b.amount_due_cents - {PAID_SINCE_IMPORT} FROM bills b WHERE b.id = ?",
            (schedule["bill_id"],),
        )
        return (await cursor.fetchone())[0]

    # --- reminders ---------------------------------------------------------------------

    async def remind(self, now: datetime) -> int:
        """One reminder per charge, PORTAL_AUTOPAY_REMINDER_DAYS before it runs."""
        today = local_today(self.settings, now)
        horizon = today + timedelta(days=self.settings.autopay_reminder_days)
        rows = await self.db.fetchall(
            "SELECT id FROM schedules WHERE status = 'scheduled' AND reminded_at IS NULL"
            " AND run_on > ? AND run_on <= ?",
            (today.isoformat(), horizon.isoformat()),
        )
        sent = 0
        for row in rows:
            async with self.db.write() as conn:
                cursor = await conn.execute(
                    "UPDATE schedules SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL"
                    " AND status = 'scheduled'",
                    (stamp(now), row["id"]),
                )
                if cursor.rowcount != 1:
                    continue
                schedule, method, account, user = await self._parts(conn, row["id"])
                if method is None:
                    continue
                amount = (
                    schedule["amount_cents"]
                    if schedule["kind"] == "scheduled"
                    else await self.amount_for(conn, schedule)
                )
                await self._mail(
                    conn,
                    user,
                    account,
                    "autopay_reminder",
                    kind=schedule["kind"],
                    schedule=dict(schedule),
                    method=dict(method),
                    amount_cents=amount,
                )
                sent += 1
        return sent

    # --- charging ----------------------------------------------------------------------

    async def charge_due(self, now: datetime) -> dict[str, int]:
        today = local_today(self.settings, now)
        rows = await self.db.fetchall(
            "SELECT id FROM schedules WHERE (status = 'scheduled' AND run_on <= ?)"
            " OR (status = 'charging' AND lease_until < ?) ORDER BY run_on, id",
            (today.isoformat(), stamp(now)),
        )
        counts = {"charged": 0, "declined": 0, "unavailable": 0, "not_charged": 0}
        for row in rows:
            outcome = await self.charge(row["id"], now)
            if outcome in counts:
                counts[outcome] += 1
        return counts

    async def _parts(self, conn, schedule_id: int) -> tuple[Any, Any, Any, Any]:
        """The schedule, the method it charges now (AutoPay: the enrolment's current
        method; None if AutoPay was stopped), its account and its resident."""
        schedule = await (
            await conn.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
        ).fetchone()
        if schedule["kind"] == "autopay":
            method_sql = (
                "SELECT m.*, a.max_cents FROM autopay a JOIN saved_methods m ON m.id = a.method_id"
                " WHERE a.account_id = ? AND m.removed_at IS NULL"
            )
            method = await (await conn.execute(method_sql, (schedule["account_id"],))).fetchone()
        else:
            method = await (
                await conn.execute(
                    "SELECT *, NULL AS max_cents FROM saved_methods WHERE id = ?"
                    " AND removed_at IS NULL",
                    (schedule["method_id"],),
                )
            ).fetchone()
        account = await (
            await conn.execute(
                "SELECT * FROM service_accounts WHERE id = ?", (schedule["account_id"],)
            )
        ).fetchone()
        user = await (
            await conn.execute("SELECT * FROM users WHERE id = ?", (schedule["user_id"],))
        ).fetchone()
        return schedule, method, account, user

    async def charge(self, schedule_id: int, now: datetime) -> str:
        """Start (or resume) one charge: 'charged', 'declined', 'unavailable',
        'not_charged' (nothing due, above the maximum, AutoPay stopped) or 'busy'
        (another runner holds it)."""
        started = await self._start(schedule_id, now)
        if isinstance(started, str):
            return started
        payment, method = started
        result = await ask_gateway(self.payments, payment, method, self.timeout)
        if result is None:
            return "unavailable"
        async with self.db.write() as conn:
            settled = await settle_charge(self.payments, conn, payment, result, "runner")
            schedule = await (
                await conn.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
            ).fetchone()
            return await self._after(conn, schedule, settled, now)

    async def _start(self, schedule_id: int, now: datetime) -> str | tuple[Any, Any]:
        """Claim the schedule and write its payment row (pending) before any gateway call."""
        async with self.db.write() as conn:
            schedule, method, account, user = await self._parts(conn, schedule_id)
            resuming = schedule["status"] == "charging"
            if not (
                schedule["status"] == "scheduled"
                or (resuming and (schedule["lease_until"] or "") < stamp(now))
            ):
                return "busy"
            key = f"{schedule['kind']}-{schedule['account_id']}-{schedule['id']}-{schedule['attempt']}"
            payment = await (
                await conn.execute("SELECT * FROM payments WHERE idempotency_key = ?", (key,))
            ).fetchone()
            if payment is None:
                stop = None
                if method is None:
                    stop = "canceled"  # AutoPay stopped, or the method is gone
                    amount = 0
                elif schedule["kind"] == "autopay":
                    amount = await self.amount_for(conn, schedule)
                    if amount <= 0:
                        stop = "nothing_due"
                    elif method["max_cents"] is not None and amount > method["max_cents"]:
                        stop = "over_max"
                else:
                    amount = schedule["amount_cents"]
                if stop is not None:
                    await conn.execute(
                        "UPDATE schedules SET status = ?, amount_cents = ?, updated_at = ?"
                        " WHERE id = ?",
                        (stop, amount, stamp(now), schedule_id),
                    )
                    if stop == "over_max":
                        await self._mail(
                            conn,
                            user,
                            account,
                            "autopay_over_max",
                            amount_cents=amount,
                            max_cents=method["max_cents"],
                        )
                    await runner_audit(
                        conn, f"autopay_{stop}", user, f"schedule={schedule_id} amount={amount}"
                    )
                    return "not_charged"
                await conn.execute(
                    "INSERT INTO payments (idempotency_key, account_id, user_id, amount_cents,"
                    " status, gateway, method, brand, last4, receipt_email, receipt_token,"
                    " created_at, locale, origin, schedule_id, attempt)"
                    " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        schedule["account_id"],
                        schedule["user_id"],
                        amount,
                        self.gateway.name,
                        method["method"],
                        method["brand"],
                        method["last4"],
                        user["email"],
                        secrets.token_urlsafe(24),
                        stamp(now),
                        user["locale"],
                        schedule["kind"],
                        schedule_id,
                        schedule["attempt"],
                    ),
                )
                payment = await (
                    await conn.execute("SELECT * FROM payments WHERE idempotency_key = ?", (key,))
                ).fetchone()
                await self.payments._event(
                    conn, payment["id"], "pending", f"{schedule['kind']} charge started"
                )
                await runner_audit(
                    conn,
                    f"{schedule['kind']}_charge_started",
                    user,
                    f"payment={payment['id']} amount={amount}",
                )
            elif payment["status"] != "pending":  # settled, but the schedule was not moved
                return await self._after(conn, schedule, payment, now)
            else:
                # The same key must go with the same method: the one the charge started on.
                method = await (
                    await conn.execute(
                        "SELECT * FROM saved_methods WHERE id = ?", (schedule["method_id"],)
                    )
                ).fetchone()
                await self.payments._event(
                    conn, payment["id"], "pending", "asking the gateway again (same key)"
                )
            await conn.execute(
                "UPDATE schedules SET status = 'charging', lease_until = ?, amount_cents = ?,"
                " method_id = ?, updated_at = ? WHERE id = ?",
                (
                    stamp(now + LEASE),
                    payment["amount_cents"],
                    method["id"],
                    stamp(now),
                    schedule_id,
                ),
            )
        return payment, method

    async def _after(self, conn, schedule: Any, payment: Any, now: datetime) -> str:
        """Move the schedule on from its payment's settled state (in the caller's write)."""
        if payment["status"] == "pending":
            return "unavailable"
        _schedule, method, account, user = await self._parts(conn, schedule["id"])
        if payment["status"] == "succeeded":
            await conn.execute(
                "UPDATE schedules SET status = 'succeeded', lease_until = NULL, updated_at = ?"
                " WHERE id = ?",
                (stamp(now), schedule["id"]),
            )
            return "charged"
        retry = schedule["attempt"] == 1
        next_day = local_today(self.settings, now) + timedelta(days=1)
        await conn.execute(
            "UPDATE schedules SET status = ?, attempt = attempt + ?, run_on = ?,"
            " lease_until = NULL, reminded_at = coalesce(reminded_at, ?), updated_at = ?"
            " WHERE id = ?",
            (
                "scheduled" if retry else "failed",
                1 if retry else 0,
                next_day.isoformat() if retry else schedule["run_on"],
                stamp(now),
                stamp(now),
                schedule["id"],
            ),
        )
        await self._mail(
            conn,
            user,
            account,
            "autopay_failed",
            kind=schedule["kind"],
            amount_cents=payment["amount_cents"],
            retry_on=next_day.isoformat() if retry else None,
            method={"brand": payment["brand"], "last4": payment["last4"]},
        )
        await runner_audit(
            conn, "autopay_declined", user, f"payment={payment['id']} attempt={schedule['attempt']}"
        )
        return "declined"

    async def _mail(
        self, conn, user: Any, account: Any, template: str, kind: str = "autopay", **context: Any
    ) -> None:
        """An email about one of the account's schedules; its link goes to the AutoPay page,
        or to the scheduled payments page for a scheduled one (kind)."""
        page = "scheduled" if kind == "scheduled" else "autopay"
        await self.mailer.enqueue(
            conn,
            to=user["email"],
            template=template,
            context={
                "username": user["username"],
                "service_address": account["service_address"],
                "account_number": account["account_number"],
                "link": f"{self.settings.base_url}/accounts/{account['id']}/{page}",
                "kind": kind,
                **context,
            },
            locale=user["locale"],
        )
