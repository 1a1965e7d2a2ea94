"""Housekeeping: the runner deletes what the portal no longer needs, and nothing else.

Real parts: residents registered, confirmed and signed in over HTTP; a staff member
enrolled and signed in with a real authenticator code; a real SQLite file; the runner as
the `portal` command in a subprocess, and `housekeeping.clean` with the clock moved.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from portal import housekeeping
from portal.db import Database, utc_text
from staff_helpers import staff_client
from test_autopay import jobs
from test_billing_http import GOOD_PASSWORD, sign_up_and_in

from resident_steps import post_form, query
from sample_data import load_billing

RECORDS = ("users", "user_accounts", "audit_log", "payments", "staff", "staff_actions")


def count(path, table: str) -> int:
    return query(path, f"SELECT count(*) FROM {table}")[0][0]


def counts(path, tables) -> dict[str, int]:
    return {table: count(path, table) for table in tables}


async def clean(path, now: datetime, db_class=Database) -> dict[str, int]:
    db = db_class(path)
    await db.open()
    try:
        return await housekeeping.clean(db, now)
    finally:
        await db.close()


@pytest.fixture
async def maria(settings, client):
    """Maria registered, confirmed and signed in on two devices: one without Remember me,
    then one with it (the client keeps the second)."""
    load_billing(settings.database)
    await sign_up_and_in(client, settings.database, "maria1")
    client.cookies.clear()
    response = await post_form(
        client,
        "/login",
        {"username": "maria1", "password": GOOD_PASSWORD, "remember": "on"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    # The sender is not what is tested here: mark her emails sent an hour ago.
    sent = utc_text(datetime.now(UTC) - timedelta(hours=1))
    with sqlite3.connect(settings.database) as conn:
        conn.execute("UPDATE outbox SET sent_at = ?", (sent,))
    return client


async def test_the_runner_deletes_what_has_ended_by_its_clock_and_keeps_the_records(
    settings, maria
):
    path = settings.database
    assert count(path, "sessions") == 2
    assert count(path, "tokens") >= 1 and count(path, "outbox") >= 1
    assert count(path, "known_devices") == 2
    records = counts(path, RECORDS)
    now = datetime.now(UTC)

    result = await asyncio.to_thread(jobs, settings, now.isoformat())
    assert result.returncode == 0, result.stderr
    assert "deleted 0" in result.stdout
    assert count(path, "sessions") == 2

    # 31 idle minutes end the session without Remember me; the remembered one stays.
    idle = utc_text(now - timedelta(minutes=31))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sessions SET last_seen_at = ?", (idle,))
    result = await asyncio.to_thread(jobs, settings, now.isoformat())
    assert "deleted 1" in result.stdout
    assert [r["remember"] for r in query(path, "SELECT remember FROM sessions")] == [1]

    # A --now ahead of the real clock (a rehearsal of due dates) deletes nothing.
    later = (now + timedelta(days=400)).isoformat()
    result = await asyncio.to_thread(jobs, settings, later)
    assert result.returncode == 0 and "deleted 0" in result.stdout, result.stdout

    # 30 days: the remembered session has expired; the emailed link was used (or
    # expired) over 30 days ago.
    await clean(path, now + timedelta(days=31))
    assert count(path, "sessions") == 0
    assert count(path, "tokens") == 0
    assert count(path, "outbox") >= 1  # sent mail is kept 90 days
    assert count(path, "known_devices") == 2

    await clean(path, now + timedelta(days=91))
    assert count(path, "outbox") == 0
    assert count(path, "known_devices") == 2
    await clean(path, now + timedelta(days=366))
    assert count(path, "known_devices") == 0

    # Her login, her account, the audit trail: all still there.
    assert counts(path, RECORDS) == records


async def test_unsent_mail_is_never_deleted(settings, maria):
    path = settings.database
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE outbox SET sent_at = NULL")
    waiting = count(path, "outbox")
    await clean(path, datetime.now(UTC) + timedelta(days=400))
    assert count(path, "outbox") == waiting


async def test_a_session_used_between_the_read_and_the_delete_is_kept(settings, maria):
    """The delete checks the rule again: a page visit that lands after housekeeping read
    the ended sessions, but before it deleted them, keeps its session."""
    path = settings.database
    later = datetime.now(UTC) + timedelta(minutes=31)

    class VisitFirst(Database):
        @asynccontextmanager
        async def write(self):
            async with super().write() as conn:
                await conn.execute("UPDATE sessions SET last_seen_at = ?", (utc_text(later),))
                yield conn

    deleted = await clean(path, later, VisitFirst)
    assert deleted["sessions"] == 0
    assert count(path, "sessions") == 2


async def test_large_deletes_go_in_batches_of_short_transactions(settings, maria):
    path = settings.database
    user_id = query(path, "SELECT id FROM users")[0][0]
    old = utc_text(datetime.now(UTC) - timedelta(days=40))
    many = 2 * housekeeping.BATCH + 7
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO sessions (id_hash, user_id, remember, created_at, last_seen_at,"
            " expires_at) VALUES (?, ?, 1, ?, ?, ?)",
            [(f"old{i}", user_id, old, old, old) for i in range(many)],
        )
    transactions = []

    class Counted(Database):
        @asynccontextmanager
        async def write(self):
            async with super().write() as conn:
                transactions.append(conn.total_changes)
                yield conn

    deleted = await clean(path, datetime.now(UTC), Counted)
    assert deleted["sessions"] == many
    assert count(path, "sessions") == 2  # hers, still live
    assert len(transactions) == 3  # 500 + 500 + 7


async def test_staff_sessions_end_by_the_staff_limits(settings, client):
    await staff_client(client, settings)
    path = settings.database
    assert count(path, "staff_sessions") == 1
    now = datetime.now(UTC)
    await clean(path, now + timedelta(minutes=10))
    assert count(path, "staff_sessions") == 1
    deleted = await clean(path, now + timedelta(minutes=16))  # 15 idle minutes
    assert deleted["staff_sessions"] == 1
    assert count(path, "staff_sessions") == 0
    assert count(path, "staff") == 1


async def test_a_login_never_given_its_two_step_code_is_deleted(settings, maria):
    path = settings.database
    user_id = query(path, "SELECT id FROM users")[0][0]
    now = datetime.now(UTC)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO pending_sign_ins (id_hash, user_id, created_at, expires_at)"
            " VALUES (?, ?, ?, ?)",
            [
                ("gone", user_id, utc_text(now), utc_text(now - timedelta(seconds=1))),
                ("waiting", user_id, utc_text(now), utc_text(now + timedelta(minutes=4))),
            ],
        )
    deleted = await clean(path, now)
    assert deleted["pending_sign_ins"] == 1
    assert [r[0] for r in query(path, "SELECT id_hash FROM pending_sign_ins")] == ["waiting"]


async def test_the_audit_log_goes_only_by_the_utilitys_schedule(settings, maria):
    path = settings.database
    now = datetime.now(UTC)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO audit_log (at, event, username, client) VALUES (?, 'sign_in', 'x', '-')",
            [(utc_text(now - timedelta(days=800 + i)),) for i in range(housekeeping.BATCH + 3)],
        )
    before = count(path, "audit_log")
    far = now + timedelta(days=4000)
    assert (await clean(path, far))["sign_in_failures"] >= 0  # no schedule: nothing of it
    assert count(path, "audit_log") == before
    db = Database(path)
    await db.open()
    try:
        deleted = await housekeeping.clean(db, now, audit_keep_days=730)
    finally:
        await db.close()
    assert deleted["audit_log"] == housekeeping.BATCH + 3
    assert count(path, "audit_log") == before - housekeeping.BATCH - 3  # this week's stay
    assert query(path, "SELECT min(at) FROM audit_log")[0][0] > utc_text(now - timedelta(days=1))


def test_the_runner_passes_the_audit_schedule(settings, maria):
    old = utc_text(datetime.now(UTC) - timedelta(days=1000))
    with sqlite3.connect(settings.database) as conn:
        conn.execute(
            "INSERT INTO audit_log (at, event, username) VALUES (?, 'sign_in', 'x')", (old,)
        )
    kept = jobs(settings, datetime.now(UTC).isoformat())
    assert kept.returncode == 0 and "deleted 0" in kept.stdout
    gone = jobs(settings, datetime.now(UTC).isoformat(), PORTAL_AUDIT_KEEP_DAYS="730")
    assert gone.returncode == 0 and "deleted 1" in gone.stdout, gone.stdout + gone.stderr


async def test_failed_sign_ins_are_forgotten_after_a_day(settings, client):
    load_billing(settings.database)
    await sign_up_and_in(client, settings.database, "maria1")
    client.cookies.clear()
    response = await post_form(client, "/login", {"username": "maria1", "password": "wrong one"})
    assert response.status_code == 422
    path = settings.database
    assert count(path, "login_failures") == 1
    now = datetime.now(UTC)
    await clean(path, now + timedelta(hours=23))
    assert count(path, "login_failures") == 1
    await clean(path, now + timedelta(hours=25))
    assert count(path, "login_failures") == 0


async def test_the_privacy_page_says_how_long_each_thing_is_kept(client):
    page = (await client.get("/privacy")).text
    assert "How long we keep it" in page
    assert "deleted 30 days after they are used or expire" in page
    assert "The address and subject are deleted after 90 days" in page
    await client.get("/language?lang=es")
    page = (await client.get("/privacy")).text
    assert "Cuánto tiempo lo guardamos" in page and "se borran después de 90 días" in page
