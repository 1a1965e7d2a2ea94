"""How each account's bills should be delivered, and whether AutoPay pays them, as CSV for
the billing system.

Residents choose paperless bills, printed bills or both when they register and on My
Profile. The portal sends the "Your bill is ready" emails itself, but only the billing
system prints and mails paper: without this file, a resident who chose paperless bills
still gets paper, and one who asked for printed bills as well may not.

The file is a whole snapshot, not a list of changes: every service account linked to an
online account whose email address is confirmed, with that login's choice. An account
not in the file (never registered, unlinked since, or its login not yet confirmed) keeps
the billing system's own default, printed bills. So the billing system can load each
day's file over the last one, and a missed day loses nothing.

`autopay` says the portal's AutoPay pays the account's bills from the resident's saved
method, so a printed bill can say so instead of asking for a payment that would be made
twice (AutoPay skips a bill above the resident's maximum and emails them).

`linked_at` says since when the account has been in this online account (UTC). Whoever
holds a bill can open an online account for it (SECURITY.md, Known gaps), so before it
stops mailing paper to an account for the first time, the billing system should tell
the service address on the last paper bill.
"""

from __future__ import annotations

import csv
import sqlite3
from typing import TextIO

from portal.progress import Meter

COLUMNS = ["customer_number", "account_number", "paperless", "printed", "autopay", "linked_at"]
REPORT_EVERY = 1000


def export_delivery(conn: sqlite3.Connection, out: TextIO, meter: Meter | None = None) -> int:
    """Write every linked account's choices to `out` as CSV, in customer and account
    number order (so two days' files compare line by line); returns the number of rows.
    Rows go out as they are read, in one read transaction (one consistent snapshot while
    residents keep writing): a million accounts take a few seconds and little memory."""
    meter = meter or Meter()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    conn.execute("BEGIN")
    try:
        total = conn.execute(f"SELECT count(*) {_LINKED}").fetchone()[0]
        meter.stage("exporting bill delivery", total=total, unit="rows")
        count = 0
        for customer, account, paperless, printed, autopay, linked in conn.execute(
            "SELECT sa.customer_number, sa.account_number, u.paperless, u.printed,"
            f" ap.account_id IS NOT NULL, ua.linked_at {_LINKED}"
            " ORDER BY sa.customer_number, sa.account_number"
        ):
            writer.writerow(
                [customer, account, _flag(paperless), _flag(printed), _flag(autopay), linked]
            )
            count += 1
            if count % REPORT_EVERY == 0:
                meter.update(count)
    finally:
        conn.execute("COMMIT")
    meter.update(count)
    return count


_LINKED = (
    "FROM user_accounts ua JOIN users u ON u.id = ua.user_id"
    " JOIN service_accounts sa ON sa.id = ua.account_id"
    " LEFT JOIN autopay ap ON ap.account_id = ua.account_id AND ap.user_id = ua.user_id"
    " WHERE u.verified_at IS NOT NULL"
)


def _flag(value: int) -> str:
    return "true" if value else "false"
