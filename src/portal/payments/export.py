"""The day's settled payments, as CSV, for posting to the billing system.

A batch is named by its date (in the utility's time zone). The first export of a date
takes every succeeded payment settled up to the end of that day that is in no batch
yet, and freezes it: asking for the same date again gives the same file, and a payment
that settles after its day's batch was cut goes into the next day's batch. So each
payment is exported in exactly one batch.

Money taken back after a payment was accepted (a bank payment that failed, a refund, a
dispute) is a reversal row in the batch of the day it happened: a negative amount, the
processor's reason code, and the confirmation number of the payment it reverses. A
batch already written is never changed by a later reversal.

Test payments never reach the billing system as real ones. Every line says `LIVE` or
`TEST` in its `mode` column. While the portal runs a test gateway (the sandbox, or Stripe
with a test-mode key), a batch is a test batch: every line says `TEST` and `portal
export` names the file `TEST-…`. With a real gateway, a batch takes live payments (and
their reversals) only, so a sandbox payment left in the database from a trial never
enters a real batch.

The last column says where a payment came from: `one_time` (a resident's form),
`autopay` or `scheduled` (made by the runner from a saved method).
"""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from portal.db import utcnow
from portal.progress import Meter
from portal.settings import TEST_GATEWAYS

COLUMNS = [
    "batch_date",
    "confirmation_number",
    "customer_number",
    "account_number",
    "amount",
    "settled_at",
    "method",
    "brand",
    "last4",
    "gateway",
    "gateway_ref",
    "type",
    "reason_code",
    "original_confirmation_number",
    "origin",
    "mode",
]


def _end_of_day_utc(batch: date, zone: ZoneInfo) -> str:
    end = datetime.combine(batch + timedelta(days=1), time.min, tzinfo=zone)
    return end.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


REPORT_EVERY = 1000


def export_batch(
    conn: sqlite3.Connection,
    batch: date,
    zone: ZoneInfo,
    meter: Meter | None = None,
    *,
    test_mode: bool = False,
) -> tuple[str, int]:
    """The CSV text of the batch for `batch`, creating it on first request.

    Outside test mode, payments taken by a test gateway (and their reversals) are left
    out of the batch."""
    meter = meter or Meter()
    name = batch.isoformat()
    tests = sorted(TEST_GATEWAYS)
    marks = ", ".join("?" * len(tests))
    live_only = "" if test_mode else f" AND p.gateway NOT IN ({marks})"
    live_reversals = (
        ""
        if test_mode
        else f" AND payment_id NOT IN (SELECT id FROM payments WHERE gateway IN ({marks}))"
    )
    live = () if test_mode else tuple(tests)
    conn.execute("BEGIN IMMEDIATE")
    try:
        exists = conn.execute(
            "SELECT 1 FROM payment_batches WHERE batch_date = ?", (name,)
        ).fetchone()
        if not exists:
            conn.execute(
                "INSERT INTO payment_batches (batch_date, created_at) VALUES (?, ?)",
                (name, utcnow()),
            )
            end = _end_of_day_utc(batch, zone)
            conn.execute(
                "UPDATE payments AS p SET export_batch = ? WHERE status = 'succeeded'"
                " AND export_batch IS NULL AND settled_at < ?" + live_only,
                (name, end, *live),
            )
            conn.execute(
                "UPDATE payment_reversals SET export_batch = ? WHERE export_batch IS NULL AND at < ?"
                + live_reversals,
                (name, end, *live),
            )
        rows = conn.execute(
            "SELECT p.export_batch, p.confirmation_number, sa.customer_number, sa.account_number,"
            " p.amount_cents, p.settled_at, p.method, p.brand, p.last4, p.gateway, p.gateway_ref,"
            " 'payment', '', '', coalesce(p.origin, 'one_time'), p.settled_at AS at, 0 AS kind,"
            " p.id"
            " FROM payments p JOIN service_accounts sa ON sa.id = p.account_id"
            " WHERE p.export_batch = ?" + live_only + " UNION ALL"
            " SELECT r.export_batch, '', sa.customer_number, sa.account_number, -r.amount_cents,"
            " r.at, p.method, p.brand, p.last4, p.gateway, r.gateway_ref, 'reversal',"
            " r.reason_code, p.confirmation_number, coalesce(p.origin, 'one_time'), r.at, 1, r.id"
            " FROM payment_reversals r JOIN payments p ON p.id = r.payment_id"
            " JOIN service_accounts sa ON sa.id = p.account_id WHERE r.export_batch = ?"
            + live_only
            + " ORDER BY at, kind, 18",
            (name, *live, name, *live),
        ).fetchall()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    meter.stage("exporting payments", total=len(rows), unit="rows")
    for count, row in enumerate(rows, start=1):
        values = list(row)[: len(COLUMNS) - 1]
        sign, cents = ("-" if row[4] < 0 else ""), abs(row[4])
        values[4] = f"{sign}{cents // 100}.{cents % 100:02d}"
        values.append("TEST" if test_mode or row[9] in TEST_GATEWAYS else "LIVE")
        writer.writerow(["" if v is None else v for v in values])
        if count % REPORT_EVERY == 0:
            meter.update(count)
    meter.update(len(rows))
    return out.getvalue(), len(rows)
