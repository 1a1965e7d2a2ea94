"""A big import shares the database with the portal: it writes in short batches, so a
resident's write waits a fraction of a second at most (never the 30 s busy timeout and a
500), and an import stopped part-way is completed by running it again, with each bill's
email and AutoPay charge made once.

Real SQLite file, `portal import` and `portal jobs run` as real subprocesses."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from portal import db as portal_db
from portal.app import create_app
from portal.billing.importer import ImportInterrupted, Pace, import_text
from portal.billing.notify import bill_notifier
from portal.db import Database, utcnow
from portal.progress import Meter
from portal.staff.search_index import refresh_sync

from resident_steps import post_form, query
from sample_data import add_resident, bills_csv, load, load_billing, month

ACCOUNTS = 5_000
MONTHS = 12


def env_for(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    return env | {"PORTAL_DATABASE": str(database)}


def maria_among(database: Path, accounts_rows: str) -> int:
    """A migrated database with these accounts (CSV rows without the header) and maria1
    linked to account 500007; returns her user id."""
    portal_db.upgrade(database)
    load(
        database,
        "accounts",
        "customer_number,account_number,name,service_address,status\n" + accounts_rows,
    )
    add_resident(database, "maria1", "500007", "maria@example.com")
    return query(database, "SELECT id FROM users")[0]["id"]


def big_bills_file(path: Path) -> Path:
    """A year of bills for ACCOUNTS accounts: 60,000 rows, several hundred milliseconds
    of writing, which one transaction would hold the write lock for."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("customer_number,account_number,bill_number,bill_date,due_date,amount_due\n")
        for n in range(ACCOUNTS):
            for m in range(MONTHS):
                bill_date = month(m - MONTHS + 1)
                out.write(
                    f"{100_000 + n},{500_000 + n},B{n}-{m},{bill_date},"
                    f"{bill_date.replace(day=21)},{40 + m}.50\n"
                )
    return path


async def test_a_resident_write_never_waits_long_behind_a_big_import(settings, tmp_path):
    user_id = maria_among(
        settings.database,
        "".join(f"{100_000 + n},{500_000 + n},R {n},{n} Main St,active\n" for n in range(ACCOUNTS)),
    )
    path = big_bills_file(tmp_path / "bills.csv")

    waits, during_writing, out = await write_beside(
        settings.database,
        user_id,
        ["import", "bills", str(path)],
        "SELECT count(*) FROM bills",
        ACCOUNTS * MONTHS,
    )
    assert f"{ACCOUNTS * MONTHS} rows read, {ACCOUNTS * MONTHS} added" in out
    # No write waited long for the import...
    assert max(waits) < 0.25, sorted(waits)[-5:]
    # ...which went in batch by batch while they kept going (one transaction would show
    # no bills, then all of them).
    assert during_writing >= 5, (during_writing, len(waits))


async def write_beside(
    database: Path, user_id: int, command_args: list[str], count_sql: str, total: int
):
    """Run `portal <command_args>` as a subprocess while a resident changes the language
    of their profile every 20 ms, through the portal's own write path, until it is done.
    Returns each write's wait for the write lock, how many times `count_sql` found the
    work part-done (0 < count < total) between writes, and the command's output."""
    db = Database(database)
    await db.open()
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "portal.cli", *command_args),
        env=env_for(database),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    waits, part_done = [], 0
    try:
        while command.returncode is None:
            started = time.perf_counter()
            async with db.write() as write:
                # The wait behind the command: until the write lock is ours (BEGIN
                # IMMEDIATE done). The commit's own fsync is the resident's cost.
                waits.append(time.perf_counter() - started)
                await write.execute(
                    "UPDATE users SET locale = ? WHERE id = ?",
                    ("es" if len(waits) % 2 else "en", user_id),
                )
            part_done += 0 < await db.fetchval(count_sql) < total
            await asyncio.sleep(0.02)
        out, err = await command.communicate()
    finally:
        await db.close()
    assert command.returncode == 0, err.decode()
    return waits, part_done, out.decode()


INDEXED = 40_000
COUNT_ACCOUNTS = "SELECT count(*) FROM service_accounts"


def euclid_accounts_file(path: Path) -> Path:
    """INDEXED accounts, all on Euclid Ave."""
    path.write_text(
        "customer_number,account_number,name,service_address,status\n"
        + "".join(
            f"{100_000 + n},{600_000 + n},Resident {n},{n} Euclid Ave,active\n"
            for n in range(INDEXED)
        ),
        encoding="utf-8",
    )
    return path


def found_on_euclid(database: Path) -> int:
    """How many accounts a staff search for "Euclid" can find."""
    match = "SELECT count(*) AS n FROM account_search WHERE account_search MATCH '\"Euclid\"'"
    return query(database, match)[0]["n"]


async def test_a_resident_write_never_waits_long_behind_the_search_index_refresh(
    settings, tmp_path
):
    """`portal import accounts` re-indexes the accounts it changed for the staff search.
    In one transaction, a first load of a million accounts held the write lock for 16 s;
    in batches, a resident's write waits one batch at most. Here 40,000 accounts (about
    0.2 s in one transaction): the index is seen to fill batch by batch between the
    resident's writes, and is whole at the end."""
    user_id = maria_among(settings.database, "7,500007,M G,1 Elm St,active\n")
    path = euclid_accounts_file(tmp_path / "accounts.csv")
    waits, part_indexed, _ = await write_beside(
        settings.database,
        user_id,
        ["import", "accounts", str(path)],
        "SELECT count(*) FROM account_search",
        INDEXED + 1,
    )
    assert max(waits) < 0.25, sorted(waits)[-5:]
    assert part_indexed >= 3, (part_indexed, len(waits))
    assert found_on_euclid(settings.database) == INDEXED


# --- interrupted, then run again: every bill, email and AutoPay charge once -------------

RESIDENTS = {"0067890": "maria@example.com", "0033333": "james@example.com"}
RESIDENTS |= {"0077777": "ana@example.com"}
ON_AUTOPAY = ("0067890", "0077777")


def three_months_for_every_account() -> str:
    """Three bills for each of the four sample accounts, the newest due in 10 days."""
    files = [
        bills_csv(customer, account, newest_due_in=10)
        for customer, account in (
            ("0012345", "0067890"),
            ("0022222", "0033333"),
            ("0044444", "0055555"),
            ("0066666", "0077777"),
        )
    ]
    header = files[0].splitlines()[0]
    return "\n".join([header, *(line for f in files for line in f.splitlines()[1:])]) + "\n"


def enrol_in_autopay(path: Path, account_number: str) -> None:
    """A saved card and AutoPay for the resident linked to the account (written directly:
    the enrolment pages have their own tests)."""
    now = utcnow()
    conn = portal_db.connect_sync(path)
    with conn:
        conn.execute("BEGIN")
        account_id, user_id = conn.execute(
            "SELECT ua.account_id, ua.user_id FROM user_accounts ua JOIN service_accounts sa"
            " ON sa.id = ua.account_id WHERE sa.account_number = ?",
            (account_number,),
        ).fetchone()
        method_id = conn.execute(
            "INSERT INTO saved_methods (user_id, gateway, token, method, brand, last4,"
            " setup_ref, created_at) VALUES (?, 'sandbox', ?, 'card', 'Visa', '4242', ?, ?)",
            (user_id, f"pm_test_{account_id}", f"seti_test_{account_id}", now),
        ).lastrowid
        conn.execute(
            "INSERT INTO autopay (account_id, user_id, method_id, enrolled_at) VALUES (?, ?, ?, ?)",
            (account_id, user_id, method_id, now),
        )
    conn.close()


def run_jobs(settings) -> None:
    """`portal jobs run` (AutoPay scheduling among its steps), today, as cron runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "portal.cli", "jobs", "run", "--quiet"],
        env=env_for(settings.database) | {"PORTAL_BASE_URL": settings.base_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


class CtrlCInSecondBatch(Meter):
    """Ctrl-C once the second account's bills are written, before their batch commits."""

    def stage(self, description, total=None, unit="rows"):
        self.description = description

    def update(self, done, total=None):
        if self.description == "writing rows" and done >= 6:
            raise KeyboardInterrupt


def test_an_interrupted_import_run_again_sends_each_bill_email_and_autopay_once(settings):
    load_billing(settings.database)
    for account, email in RESIDENTS.items():
        add_resident(settings.database, email.split("@")[0], account, email)
    for account in ON_AUTOPAY:
        enrol_in_autopay(settings.database, account)
    text = three_months_for_every_account()
    one_account_per_batch = Pace(rows=1, seconds=0, pause=0)
    notify = bill_notifier(settings)

    conn = portal_db.connect_sync(settings.database)
    with pytest.raises(ImportInterrupted) as stopped:
        import_text(conn, "bills", text, notify, CtrlCInSecondBatch(), one_account_per_batch)
    assert (stopped.value.written, stopped.value.total) == (3, 12)
    run_jobs(settings)  # the runner comes round between the two runs
    again = import_text(conn, "bills", text, notify, pace=one_account_per_batch)
    assert (again.rows, again.changed, again.batches) == (12, 9, 4)
    run_jobs(settings)
    third = import_text(conn, "bills", text, notify, pace=one_account_per_batch)
    assert (third.changed, third.new_bills) == (0, [])
    run_jobs(settings)
    conn.close()

    newest = {
        row["account_number"]: row["id"]
        for row in query(
            settings.database,
            "SELECT sa.account_number, b.id FROM bills b JOIN service_accounts sa"
            " ON sa.id = b.account_id WHERE b.bill_date = ?",
            (month(0).isoformat(),),
        )
    }
    assert query(settings.database, "SELECT count(*) FROM bills")[0][0] == 12
    emails = query(
        settings.database,
        "SELECT to_addr, body_text FROM outbox WHERE subject LIKE 'Your bill is ready%'",
    )
    assert sorted(e["to_addr"] for e in emails) == sorted(RESIDENTS.values())
    for email in emails:
        account = next(a for a, address in RESIDENTS.items() if address == email["to_addr"])
        assert re.search(rf"/bills/{newest[account]}\b", email["body_text"]), email["body_text"]
    charges = query(
        settings.database,
        "SELECT s.bill_id, s.status FROM schedules s WHERE s.kind = 'autopay' ORDER BY s.bill_id",
    )
    assert [(c["bill_id"], c["status"]) for c in charges] == sorted(
        (newest[account], "scheduled") for account in ON_AUTOPAY
    )


# --- and if the database is still busy: "try again", not a 500 ----------------------------


async def test_a_write_that_still_finds_the_database_busy_gets_a_try_again_page(
    settings, monkeypatch
):
    """Another program holds the write lock past the busy timeout (shortened here from
    30 s to 0.2 s): the resident's sign-in attempt, which writes, is told to try again."""
    short = ["PRAGMA busy_timeout=200" if "busy_timeout" in p else p for p in portal_db.PRAGMAS]
    monkeypatch.setattr(portal_db, "PRAGMAS", tuple(short))
    load_billing(settings.database)
    sign_in = {"username": "nobody", "password": "not the right password"}
    async with AsyncTestClient(app=create_app(settings), base_url="http://portal.test") as client:
        holder = portal_db.connect_sync(settings.database)
        holder.execute("BEGIN IMMEDIATE")
        try:
            busy = await post_form(client, "/login", sign_in)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "60"
        assert "The portal is busy right now" in busy.text
        assert "What you sent was not saved" in busy.text
        assert "Traceback" not in busy.text
        again = await post_form(client, "/login", sign_in)
        assert again.status_code == 422, again.text


def test_a_staff_search_during_an_accounts_import_leaves_no_account_out_of_the_index(
    settings, tmp_path
):
    """A staff search refreshes the index when it finds it behind, also while `portal
    import accounts` is still writing its batches: the accounts written after that
    refresh must still be indexed (by the import's own refresh at the end)."""
    portal_db.upgrade(settings.database)
    path = euclid_accounts_file(tmp_path / "accounts.csv")
    command = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "import", "accounts", str(path)],
        env=env_for(settings.database),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    searches, mid_import = portal_db.connect_sync(settings.database), 0
    try:
        while command.poll() is None:  # what each staff search does first
            written = searches.execute(COUNT_ACCOUNTS).fetchone()[0]
            refresh_sync(searches, Pace(pause=0.01))
            mid_import += 0 < written < INDEXED
            time.sleep(0.01)
    finally:
        searches.close()
    out, err = command.communicate()
    assert command.returncode == 0, err.decode()
    assert mid_import >= 1, mid_import  # a search did refresh between the batches
    assert found_on_euclid(settings.database) == INDEXED
