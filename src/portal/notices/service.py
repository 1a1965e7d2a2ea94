"""Email notices a resident opts into (My Profile): a payment due in a few days (not
for AutoPay accounts: they get AutoPay's own reminder), a bill past due, and a possible
leak after a usage import. The runner sends each once (notices_sent), in the resident's
language, with a signed one-click link that stops that kind of notice, no sign-in needed
(and the List-Unsubscribe headers that mail programs show as "Unsubscribe")."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta
from typing import Any

from portal.accounts import audit
from portal.autopay.service import local_today
from portal.billing.service import LATEST_BILL, PAID_SINCE_IMPORT, BillingService
from portal.db import Database, utcnow
from portal.forms import Form
from portal.settings import Settings

KINDS = ("due_soon", "past_due", "leak")


class NoticesForm(Form):
    checkboxes = KINDS


class NoticesService:
    def __init__(self, db: Database, settings: Settings, mailer: Any) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer

    # --- choices and the unsubscribe link --------------------------------------------

    async def chosen(self, user_id: int) -> set[str]:
        rows = await self.db.fetchall("SELECT kind FROM notice_prefs WHERE user_id = ?", (user_id,))
        return {row["kind"] for row in rows}

    async def save(self, user: Any, form: NoticesForm, client: str) -> None:
        wanted = [kind for kind in KINDS if getattr(form, kind)]
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM notice_prefs WHERE user_id = ?", (user.user_id,))
            await conn.executemany(
                "INSERT INTO notice_prefs (user_id, kind) VALUES (?, ?)",
                [(user.user_id, kind) for kind in wanted],
            )
            await audit.record(
                conn,
                "notices_changed",
                username=user.username,
                client=client,
                detail=",".join(wanted) or "none",
            )

    def _mac(self, user_id: int, kind: str) -> str:
        message = f"unsubscribe:{user_id}:{kind}".encode()
        return hmac.new(self.settings.secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]

    def unsubscribe_url(self, user_id: int, kind: str) -> str:
        return (
            f"{self.settings.base_url}/notices/unsubscribe"
            f"?u={user_id}&k={kind}&t={self._mac(user_id, kind)}"
        )

    def check_link(self, user: str, kind: str, token: str) -> int | None:
        """The user id a genuine link names, else None (constant-time compare)."""
        if kind not in KINDS or not re.fullmatch(r"[0-9]{1,12}", user or ""):
            return None
        if not re.fullmatch(r"[0-9a-f]{32}", token or ""):
            return None
        user_id = int(user)
        return user_id if hmac.compare_digest(self._mac(user_id, kind), token) else None

    async def unsubscribe(self, user_id: int, kind: str, client: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                "DELETE FROM notice_prefs WHERE user_id = ? AND kind = ?", (user_id, kind)
            )
            cursor = await conn.execute("SELECT username FROM users WHERE id = ?", (user_id,))
            row = await cursor.fetchone()
            await audit.record(
                conn,
                "notices_unsubscribed",
                username=row["username"] if row else None,
                client=client,
                detail=kind,
            )

    # --- the runner's part -------------------------------------------------------------

    async def send_due(self, now: datetime) -> int:
        today = local_today(self.settings, now)
        soon = today + timedelta(days=self.settings.due_notice_days)
        bills = await self.db.fetchall(
            "SELECT b.id, b.account_id, b.due_date, sa.service_address, sa.account_number,"
            f" b.amount_due_cents - {PAID_SINCE_IMPORT} AS due_cents,"
            " u.id AS user_id, u.email, u.username, u.locale,"
            " (SELECT 1 FROM autopay a WHERE a.account_id = b.account_id) AS on_autopay"
            # From the linked accounts to their newest bills, not the other way: at a
            # million accounts, scanning every bill took minutes.
            f" FROM user_accounts ua JOIN bills b ON b.id = {LATEST_BILL.format(account='ua.account_id')}"
            " JOIN service_accounts sa ON sa.id = b.account_id"
            " JOIN users u ON u.id = ua.user_id AND u.verified_at IS NOT NULL",
        )
        sent = 0
        for bill in bills:
            if bill["due_cents"] is None or bill["due_cents"] <= 0:
                continue
            if bill["due_date"] < today.isoformat():
                kind = "past_due"
            elif bill["due_date"] <= soon.isoformat() and not bill["on_autopay"]:
                kind = "due_soon"
            else:
                continue
            sent += await self._send(
                bill,
                kind,
                str(bill["id"]),
                now,
                amount_cents=bill["due_cents"],
                due_date=bill["due_date"],
            )
        sent += await self._send_leaks(now)
        return sent

    async def _send_leaks(self, now: datetime) -> int:
        rows = await self.db.fetchall(
            "SELECT sa.id AS account_id, sa.service_address, sa.account_number,"
            " u.id AS user_id, u.email, u.username, u.locale FROM notice_prefs p"
            " JOIN users u ON u.id = p.user_id AND u.verified_at IS NOT NULL"
            " JOIN user_accounts ua ON ua.user_id = u.id"
            " JOIN service_accounts sa ON sa.id = ua.account_id WHERE p.kind = 'leak'"
        )
        billing = BillingService(self.db, self.settings)
        sent = 0
        for row in rows:
            months = await billing.usage(row["account_id"])
            leak = billing.possible_leak(months) if months else None
            if leak:
                sent += await self._send(row, "leak", months[-1].read_date, now, leak=leak)
        return sent

    async def _send(self, row: Any, kind: str, about: str, now: datetime, **context: Any) -> int:
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM notice_prefs WHERE user_id = ? AND kind = ?", (row["user_id"], kind)
            )
            if await cursor.fetchone() is None:
                return 0
            cursor = await conn.execute(
                "INSERT INTO notices_sent (account_id, kind, about, sent_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (row["account_id"], kind, about, utcnow()),
            )
            if cursor.rowcount != 1:
                return 0
            unsubscribe = self.unsubscribe_url(row["user_id"], kind)
            await self.mailer.enqueue(
                conn,
                to=row["email"],
                template=f"notice_{kind}",
                context={
                    "username": row["username"],
                    "service_address": row["service_address"],
                    "account_number": row["account_number"],
                    "link": f"{self.settings.base_url}/account",
                    "unsubscribe": unsubscribe,
                    **context,
                },
                locale=row["locale"],
                unsubscribe_url=unsubscribe,
            )
        return 1
