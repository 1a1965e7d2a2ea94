"""Saved cards about to expire. From 30 days before the end of its expiry month a card is
flagged on the dashboard, and the runner emails its owner once per card and expiry (in
the resident's language), saying whether AutoPay or a scheduled payment uses it."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any

from portal.autopay.charges import runner_audit
from portal.autopay.service import local_today
from portal.db import Database
from portal.settings import Settings

WARN_DAYS = 30


def expires_on(method: Any) -> date | None:
    """The last day a saved card works (the end of its expiry month), or None (a bank
    account, or no expiry known)."""
    month, year = method["exp_month"], method["exp_year"]
    if method["method"] != "card" or not month or not year or not 1 <= month <= 12:
        return None
    return date(year, month, calendar.monthrange(year, month)[1])


class ExpiryService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer

    async def _expiring(self, user_id: int | None, today: date) -> list[dict]:
        """Each saved card (of one resident, or everyone's) that expires within WARN_DAYS
        or has expired, with what uses it."""
        cards = "SELECT * FROM saved_methods WHERE removed_at IS NULL AND method = 'card'"
        if user_id is None:  # the runner, off the event loop: only cards whose expiry
            # month is no later than WARN_DAYS from now (expires_on decides exactly)
            horizon = today + timedelta(days=WARN_DAYS)
            rows = await self.db.fetchall(
                cards + " AND exp_year * 12 + exp_month <= ? ORDER BY user_id, id",
                (horizon.year * 12 + horizon.month,),
            )
        else:  # one resident's dashboard: their few cards, by the user_id index
            rows = await self.db.fetchall(
                cards + " AND user_id = ? ORDER BY id", (user_id,), bounded=True
            )
        found = []
        for method in rows:
            last_day = expires_on(method)
            if last_day is None or last_day - timedelta(days=WARN_DAYS) > today:
                continue
            found.append(
                {
                    "method": dict(method),
                    "expiry": f"{method['exp_month']:02d}/{method['exp_year']}",
                    "expired": last_day < today,
                    **await self.uses(method["id"]),
                }
            )
        return found

    async def uses(self, method_id: int) -> dict[str, list]:
        """The service addresses whose AutoPay charges this method, and the scheduled
        payments (date, address) still to be paid from it."""
        autopay = await self.db.fetchall(
            "SELECT sa.service_address FROM autopay a"
            " JOIN service_accounts sa ON sa.id = a.account_id WHERE a.method_id = ?"
            " ORDER BY sa.service_address",
            (method_id,),
            bounded=True,
        )
        scheduled = await self.db.fetchall(
            "SELECT s.run_on, s.amount_cents, sa.service_address FROM schedules s"
            " JOIN service_accounts sa ON sa.id = s.account_id WHERE s.method_id = ?"
            " AND s.kind = 'scheduled' AND s.status IN ('scheduled', 'charging') ORDER BY s.run_on",
            (method_id,),
            bounded=True,
        )
        return {
            "autopay": [row["service_address"] for row in autopay],
            "scheduled": [dict(row) for row in scheduled],
        }

    async def flags(self, user_id: int, now: datetime | None = None) -> list[dict]:
        """What the dashboard says about this resident's cards."""
        return await self._expiring(user_id, local_today(self.settings, now))

    async def send_due(self, now: datetime) -> int:
        """The runner's part: one email per card and expiry, never twice (the expiry it
        was sent for is written in the same transaction as the outbox row)."""
        sent = 0
        for flag in await self._expiring(None, local_today(self.settings, now)):
            method = flag["method"]
            async with self.db.write() as conn:
                cursor = await conn.execute(
                    "UPDATE saved_methods SET expiry_notice_for = ? WHERE id = ?"
                    " AND expiry_notice_for IS NOT ?",
                    (flag["expiry"], method["id"], flag["expiry"]),
                )
                if cursor.rowcount != 1:
                    continue
                user = await (
                    await conn.execute("SELECT * FROM users WHERE id = ?", (method["user_id"],))
                ).fetchone()
                cursor = await conn.execute(
                    "SELECT sa.service_address FROM user_accounts ua"
                    " JOIN service_accounts sa ON sa.id = ua.account_id WHERE ua.user_id = ?"
                    " ORDER BY sa.service_address",
                    (user["id"],),
                )
                linked = [row["service_address"] for row in await cursor.fetchall()]
                await self.mailer.enqueue(
                    conn,
                    to=user["email"],
                    template="card_expiring",
                    context={
                        "username": user["username"],
                        "service_addresses": flag["autopay"]
                        or [s["service_address"] for s in flag["scheduled"]]
                        or linked,
                        "link": f"{self.settings.base_url}/profile/payment-methods",
                        **flag,
                        "method": {k: method[k] for k in ("nickname", "brand", "last4")},
                    },
                    locale=user["locale"],
                )
                await runner_audit(
                    conn,
                    "card_expiring_emailed",
                    user,
                    f"card ending {method['last4']} expires {flag['expiry']}",
                )
            sent += 1
        return sent
