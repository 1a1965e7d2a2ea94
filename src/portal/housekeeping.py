"""Housekeeping: delete what the portal no longer needs, as the Privacy page says.

One step of the runner (`portal.autopay.jobs.run_once`: `portal jobs run`, and every
PORTAL_JOBS_EVERY_SECONDS inside `portal serve`). Each rule below names a table, the rows
it no longer needs, and why; nothing else is ever deleted here. Kept on purpose:
payments and their events, the audit log, staff actions and notes (the utility's
records), bills and usage (the billing system's), logins and their linked accounts. The
audit log is kept too, unless PORTAL_AUDIT_KEEP_DAYS sets the utility's schedule.

How: each rule reads the row ids to delete on a read connection (WAL: no lock, no
waiting for writers), a batch at a time in rowid order, then deletes that batch by id in
its own short write transaction, which checks the rule again. So a resident's write
never waits behind more than one batch, and a session used between the read and the
delete is not deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from portal.accounts import sessions as resident_sessions
from portal.accounts.signin import DEVICE_FOR, FAILURE_MEMORY
from portal.db import Database, utc_text
from portal.staff import sessions as staff_sessions
from portal.staff.accounts import FAILURE_MEMORY as STAFF_FAILURE_MEMORY

log = logging.getLogger("portal.housekeeping")

BATCH = 500  # rows per write transaction: a few milliseconds of the write lock

LINKS_KEPT = timedelta(days=30)  # an emailed link, after it expired or was used
SENT_MAIL_KEPT = timedelta(days=90)  # the record of a sent email (its body is gone once sent)
SETUP_KEPT = timedelta(days=30)  # a "save a payment method" visit to the processor's page


@dataclass(frozen=True)
class Rule:
    name: str  # for the runner's summary and the log
    table: str
    where: str  # SQL over the table's columns, with named cut-off times below
    by_index: bool = False  # `where` is a range of an index: read it from its start

    @property
    def select(self) -> str:
        if self.by_index:  # the deleted rows are gone: each batch starts at the index's start
            return f"SELECT rowid FROM {self.table} WHERE {self.where} LIMIT {BATCH}"
        return (
            f"SELECT rowid FROM {self.table} WHERE rowid > :after AND ({self.where})"
            f" ORDER BY rowid LIMIT {BATCH}"
        )

    @property
    def delete(self) -> str:
        return f"DELETE FROM {self.table} WHERE rowid = :rowid AND ({self.where})"


RULES = (
    # Signing out deletes a session at once; these ended by time (their cookie is useless).
    Rule(
        "sessions",
        "sessions",
        "expires_at < :now OR (remember = 0 AND last_seen_at < :resident_idle)",
    ),
    Rule("staff_sessions", "staff_sessions", "expires_at < :now OR last_seen_at < :staff_idle"),
    # Logins whose code step (two-step verification) was never finished.
    Rule("pending_sign_ins", "pending_sign_ins", "expires_at < :now"),
    # Confirmation, password-reset and email-change links (hashes, and a new address).
    Rule("links", "tokens", "expires_at < :links OR used_at < :links"),
    Rule("sent_mail", "outbox", "sent_at IS NOT NULL AND sent_at < :sent_mail"),
    # A device's cookie lasts DEVICE_FOR from the sign-in that set or last used it.
    Rule("devices", "known_devices", "last_used_at < :devices"),
    Rule("sign_in_failures", "login_failures", "at < :failures"),
    Rule("staff_sign_in_failures", "staff_login_failures", "at < :staff_failures"),
    Rule("method_setups", "method_setups", "created_at < :setups"),
)

# Only when PORTAL_AUDIT_KEEP_DAYS is set (two years or more): the utility's schedule.
AUDIT_RULE = Rule("audit_log", "audit_log", "at < :audit", by_index=True)


def cut_offs(now: datetime, audit_keep_days: int = 0) -> dict[str, str]:
    """Each rule's times, as the database stores them, for a run at `now`."""
    now = now.astimezone(UTC)
    return {
        "audit": utc_text(now - timedelta(days=audit_keep_days)),
        "now": utc_text(now),
        "resident_idle": utc_text(now - resident_sessions.IDLE),
        "staff_idle": utc_text(now - staff_sessions.IDLE),
        "links": utc_text(now - LINKS_KEPT),
        "sent_mail": utc_text(now - SENT_MAIL_KEPT),
        "devices": utc_text(now - DEVICE_FOR),
        "failures": utc_text(now - FAILURE_MEMORY),
        "staff_failures": utc_text(now - STAFF_FAILURE_MEMORY),
        "setups": utc_text(now - SETUP_KEPT),
    }


async def clean(
    db: Database, now: datetime | None = None, audit_keep_days: int = 0
) -> dict[str, int]:
    """Apply every rule at `now` (and, with `audit_keep_days`, delete the audit log's
    rows older than that); returns how many rows each deleted."""
    times = cut_offs(now or datetime.now(UTC), audit_keep_days)
    deleted: dict[str, int] = {}
    for rule in (*RULES, AUDIT_RULE) if audit_keep_days else RULES:
        deleted[rule.name] = await _apply(db, rule, times)
    if any(deleted.values()):
        log.info(
            "housekeeping deleted %s",
            " ".join(f"{name}={count}" for name, count in deleted.items() if count),
        )
    return deleted


async def _apply(db: Database, rule: Rule, times: dict[str, str]) -> int:
    after, total = 0, 0
    while True:
        async with db.read() as conn, conn.execute(rule.select, {**times, "after": after}) as cur:
            batch = [row[0] for row in await cur.fetchall()]
        if not batch:
            return total
        async with db.write() as conn:
            cursor = await conn.executemany(
                rule.delete, [{**times, "rowid": rowid} for rowid in batch]
            )
            total += cursor.rowcount
        if len(batch) < BATCH or (rule.by_index and cursor.rowcount == 0):
            return total  # (by index, a batch that all changed meanwhile would come again)
        after = batch[-1]
