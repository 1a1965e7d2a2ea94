"""'Your bill is ready' emails for residents who chose paperless bills.

Runs inside the bills import's transaction that adds the bills (a batch holds all of an
account's rows, and a re-run adds no bill twice, so each bill is announced once): one
email per account for its newest new bill (a history import does not send two years of
emails), only to verified sign-ins that chose paperless. No attachment: the email links to the bill in the portal.
"""

from __future__ import annotations

import sqlite3

from portal.billing.service import LATEST_BILL
from portal.mail.outbox import Mailer
from portal.settings import Settings
from portal.templating import make_environment


def bill_notifier(settings: Settings):
    mailer = Mailer(settings, make_environment(settings))

    def notify(conn: sqlite3.Connection, bill_ids: list[int]) -> None:
        # The newest-bill test names ua, so it runs only for bills of linked accounts: a
        # batch of thousands of new bills, most of them with no sign-in, costs milliseconds.
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS new_bill_ids (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM new_bill_ids")
        conn.executemany("INSERT INTO new_bill_ids VALUES (?)", [(i,) for i in bill_ids])
        rows = conn.execute(
            f"""
            SELECT b.id, b.account_id, b.amount_due_cents, b.due_date, b.bill_date,
                   sa.service_address, u.email, u.username, u.locale
              FROM bills b
              JOIN service_accounts sa ON sa.id = b.account_id
              JOIN user_accounts ua ON ua.account_id = b.account_id
              JOIN users u ON u.id = ua.user_id
             WHERE b.id IN (SELECT id FROM new_bill_ids)
               AND u.paperless = 1 AND u.verified_at IS NOT NULL
               AND b.id = {LATEST_BILL.format(account="ua.account_id")}
            """
        ).fetchall()
        for row in rows:
            mailer.enqueue_sync(
                conn,
                to=row["email"],
                template="bill_ready",
                context={
                    "username": row["username"],
                    "amount_cents": row["amount_due_cents"],
                    "due_date": row["due_date"],
                    "service_address": row["service_address"],
                    "service_addresses": [row["service_address"]],
                    "link": f"{settings.base_url}/accounts/{row['account_id']}/bills/{row['id']}",
                },
                locale=row["locale"],
            )

    return notify
