"""'Your bill is ready' emails for residents who chose paperless bills.

Runs inside the bills import's transaction: one email per account for its newest new
bill (a history import does not send two years of emails), only to verified sign-ins
that chose paperless. No attachment: the email links to the bill in the portal.
"""

from __future__ import annotations

import sqlite3

from portal.db import utcnow
from portal.mail.outbox import Mailer
from portal.settings import Settings
from portal.templating import make_environment


def bill_notifier(settings: Settings):
    mailer = Mailer(settings, make_environment(settings))

    def notify(conn: sqlite3.Connection, bill_ids: list[int]) -> None:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS new_bill_ids (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM new_bill_ids")
        conn.executemany("INSERT INTO new_bill_ids VALUES (?)", [(i,) for i in bill_ids])
        rows = conn.execute(
            """
            SELECT b.id, b.account_id, b.amount_due_cents, b.due_date, b.bill_date,
                   sa.service_address, u.email, u.username, u.locale
              FROM bills b
              JOIN service_accounts sa ON sa.id = b.account_id
              JOIN user_accounts ua ON ua.account_id = b.account_id
              JOIN users u ON u.id = ua.user_id
             WHERE b.id IN (SELECT id FROM new_bill_ids)
               AND u.paperless = 1 AND u.verified_at IS NOT NULL
               AND b.id = (SELECT id FROM bills WHERE account_id = b.account_id
                            ORDER BY bill_date DESC, id DESC LIMIT 1)
            """
        ).fetchall()
        now = utcnow()
        for row in rows:
            link = f"{settings.base_url}/accounts/{row['account_id']}/bills/{row['id']}"
            subject, text, html = mailer.render(
                "bill_ready",
                {
                    "username": row["username"],
                    "amount_cents": row["amount_due_cents"],
                    "due_date": row["due_date"],
                    "service_address": row["service_address"],
                    "link": link,
                },
                row["locale"],
            )
            conn.execute(
                "INSERT INTO outbox (to_addr, subject, body_text, body_html, created_at,"
                " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
                (row["email"], subject, text, html, now, now),
            )

    return notify
