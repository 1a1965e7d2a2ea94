"""The mail outbox: written in the caller's transaction, sent by the background sender
to a real SMTP server (aiosmtpd on loopback), retried when SMTP is down, never twice;
and the development mailbox pages."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes

import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from portal import i18n
from portal.app import create_app
from portal.db import Database
from portal.mail import Mailer, MailError, OutboxSender
from portal.services import AppServices
from portal.settings import Settings
from portal.templating import make_environment

from helpers import DESKTOP, PHONE, assert_accessible

TO = "resident@example.com"
LINK = "http://portal.test/verify?code=abc123&x=1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def db(settings: Settings):
    database = Database(settings.database)
    await database.open()
    yield database
    await database.close()


def make_mailer(settings: Settings) -> Mailer:
    return Mailer(settings, make_environment(settings))


async def enqueue(db: Database, mailer: Mailer, **overrides) -> int:
    args = {
        "to": TO,
        "template": "test_message",
        "context": {"name": "Ana", "link": LINK},
    } | overrides
    async with db.write() as conn:
        return await mailer.enqueue(conn, **args)


def parts(message) -> dict[str, str]:
    found = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found[part.get_content_subtype()] = part.get_payload(decode=True).decode(
                part.get_content_charset() or "utf-8"
            )
    return found


async def outbox_row(db: Database, outbox_id: int) -> sqlite3.Row:
    return await db.fetchone("SELECT * FROM outbox WHERE id = ?", (outbox_id,))


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# --- enqueue and send --------------------------------------------------------------


async def test_enqueued_message_arrives_with_headers_and_both_parts(mail_settings, db, smtp_server):
    mail_settings = replace(mail_settings, mail_from="Ontario Utilities <no-reply@ontario.test>")
    mailer = make_mailer(mail_settings)
    outbox_id = await enqueue(db, mailer)

    row = await outbox_row(db, outbox_id)
    assert row["sent_at"] is None and row["attempts"] == 0
    assert smtp_server.messages == []  # nothing is sent at enqueue time

    sent = await OutboxSender(mail_settings, db).send_due()
    assert sent == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == TO
    assert message["From"] == "Ontario Utilities <no-reply@ontario.test>"
    assert message["Subject"] == "Test message for Ana"
    assert message.get_content_type() == "multipart/alternative"
    assert re.fullmatch(r"<portal\.\d+\.\d+@ontario\.test>", message["Message-ID"])
    assert message["Date"]
    assert smtp_server.envelopes[0].mail_from == "no-reply@ontario.test"
    assert smtp_server.envelopes[0].rcpt_tos == [TO]

    body = parts(message)
    assert set(body) == {"plain", "html"}
    assert "Hello Ana," in body["plain"]
    assert LINK in body["plain"]  # not HTML-escaped in the text part
    assert '<html lang="en">' in body["html"]
    assert 'href="http://portal.test/verify?code=abc123&amp;x=1"' in body["html"]
    assert "Ontario Municipal Utilities Company" in body["plain"]  # `site` is available

    row = await outbox_row(db, outbox_id)
    assert row["sent_at"] is not None
    assert await OutboxSender(mail_settings, db).send_due() == 0
    assert len(smtp_server.messages) == 1


async def test_html_part_escapes_context_and_text_part_does_not(settings, db):
    mailer = make_mailer(settings)
    outbox_id = await enqueue(
        db, mailer, context={"name": "<b>Ana & Bob</b>", "link": "http://x.test/?a=1&b=2"}
    )
    row = await outbox_row(db, outbox_id)
    assert "&lt;b&gt;Ana &amp; Bob&lt;/b&gt;" in row["body_html"]
    assert "<b>Ana" not in row["body_html"]
    assert "Hello <b>Ana & Bob</b>," in row["body_text"]
    assert "http://x.test/?a=1&b=2" in row["body_text"]
    assert row["subject"] == "Test message for <b>Ana & Bob</b>"


async def test_email_is_rendered_in_the_residents_language(settings, db):
    mailer = make_mailer(settings)
    outbox_id = await enqueue(db, mailer, locale="es")
    row = await outbox_row(db, outbox_id)
    assert '<html lang="es">' in row["body_html"]
    assert i18n.current_locale.get() == "en"  # the caller's locale is restored
    other = await enqueue(db, mailer, locale="xx")  # unknown: the default language
    assert '<html lang="en">' in (await outbox_row(db, other))["body_html"]


async def test_rolled_back_transaction_sends_nothing(mail_settings, db, smtp_server):
    mailer = make_mailer(mail_settings)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.write() as conn:
            await mailer.enqueue(
                conn, to=TO, template="test_message", context={"name": "A", "link": LINK}
            )
            raise Boom

    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    assert await OutboxSender(mail_settings, db).send_due() == 0  # a round found nothing
    assert smtp_server.messages == []


async def test_enqueue_outside_a_write_transaction_is_refused(settings, db):
    mailer = make_mailer(settings)
    async with db.read() as conn:
        with pytest.raises(RuntimeError, match="db.write"):
            await mailer.enqueue(conn, to=TO, template="test_message", context={"name": "A"})
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize(
    "address", ["a@example.com\r\nBcc: evil@example.com", "a@example.com\nX: y", "", "  "]
)
async def test_recipient_with_line_break_or_empty_is_refused(settings, db, address):
    mailer = make_mailer(settings)
    with pytest.raises(MailError):
        await enqueue(db, mailer, to=address)
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_line_breaks_in_the_subject_cannot_inject_headers(mail_settings, db, smtp_server):
    mailer = make_mailer(mail_settings)
    name = "Ana\r\nBcc: evil@example.com\r\nX-Injected: yes\n\nbody"
    outbox_id = await enqueue(db, mailer, context={"name": name, "link": LINK})
    row = await outbox_row(db, outbox_id)
    assert "\r" not in row["subject"] and "\n" not in row["subject"]

    assert await OutboxSender(mail_settings, db).send_due() == 1
    [message] = smtp_server.wait_for(1)
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert smtp_server.envelopes[0].rcpt_tos == [TO]
    assert message["Subject"] == "Test message for Ana Bcc: evil@example.com X-Injected: yes body"


# --- SMTP down, retries, exactly once -------------------------------------------------


class Collect:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def make_due(db: Database) -> None:
    """Move every unsent row's next attempt to the past, as waiting out a backoff would."""
    async with db.write() as conn:
        await conn.execute(
            "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00.000000Z'"
            " WHERE sent_at IS NULL"
        )


async def test_smtp_down_keeps_the_message_then_delivers_it_exactly_once(settings, db, caplog):
    from aiosmtpd.controller import Controller

    port = free_port()  # nothing listens here yet
    down = replace(
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_username="portal",
        smtp_password="hunter2-very-secret",
    )
    mailer = make_mailer(down)
    ids = [await enqueue(db, mailer, context={"name": f"R{i}", "link": LINK}) for i in range(3)]
    sender = OutboxSender(down, db, backoff_base=0.2, timeout=2)

    caplog.set_level(logging.INFO, logger="portal.mail")
    before = datetime.now(UTC)
    assert await sender.send_due() == 0
    after = datetime.now(UTC)
    first = await outbox_row(db, ids[0])
    assert first["sent_at"] is None
    assert first["attempts"] == 1
    assert first["last_error"]
    assert "hunter2" not in first["last_error"]
    # Retried one backoff (0.2 s) after the failure, which happened between before
    # and after: exact bounds, however slow the machine is.
    assert before + timedelta(seconds=0.2) <= at(first["next_attempt_at"])
    assert at(first["next_attempt_at"]) <= after + timedelta(seconds=0.2)
    # The server is away: the round stops instead of trying every row.
    assert (await outbox_row(db, ids[1]))["attempts"] == 0

    # Not due yet: an immediate second round leaves it alone.
    assert await sender.send_due() == 0
    assert (await outbox_row(db, ids[0]))["attempts"] == 1

    await make_due(db)  # time passes (the clock in the rows, not a sleep)
    before = datetime.now(UTC)
    assert await sender.send_due() == 0
    after = datetime.now(UTC)
    second = await outbox_row(db, ids[0])
    assert second["attempts"] == 2
    # Doubled: 0.2 s, then 0.4 s.
    assert before + timedelta(seconds=0.4) <= at(second["next_attempt_at"])
    assert at(second["next_attempt_at"]) <= after + timedelta(seconds=0.4)

    log_text = caplog.text
    assert "hunter2" not in log_text
    assert TO not in log_text and LINK not in log_text

    # The server comes up on that port.
    handler = Collect()
    up = replace(down, smtp_username="", smtp_password="")
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await make_due(db)
        senders = [OutboxSender(up, db, backoff_base=0.2, timeout=2) for _ in range(4)]
        counts = await asyncio.gather(*(s.send_due() for s in senders))
        assert sum(counts) == 3
        counts = await asyncio.gather(*(s.send_due() for s in senders))
        assert sum(counts) == 0
        # Each send returned after the server's "250 OK", so every message is in.
        assert sorted(m["Subject"] for m in handler.messages) == [
            "Test message for R0",
            "Test message for R1",
            "Test message for R2",
        ]
        assert len({m["Message-ID"] for m in handler.messages}) == 3
        rows = await db.fetchall("SELECT sent_at, last_error FROM outbox ORDER BY id")
        assert all(row["sent_at"] for row in rows)
        assert all(row["last_error"] is None for row in rows)
    finally:
        controller.stop()


async def test_concurrent_rounds_never_send_a_row_twice(mail_settings, db, smtp_server):
    mailer = make_mailer(mail_settings)
    for i in range(10):
        await enqueue(db, mailer, context={"name": f"R{i}", "link": LINK})
    senders = [OutboxSender(mail_settings, db) for _ in range(5)]
    counts = await asyncio.gather(*(s.send_due() for s in senders for _ in range(2)))
    assert sum(counts) == 10
    # Each send returned after the server's "250 OK": the messages are all in.
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert sorted(subjects) == sorted(f"Test message for R{i}" for i in range(10))


def test_backoff_doubles_from_30_seconds_up_to_an_hour(settings):
    sender = OutboxSender(settings, Database(settings.database))
    assert [sender.backoff(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert sender.backoff(8) == 3600
    assert sender.backoff(50) == 3600


async def test_stop_ends_the_loop_cleanly(mail_settings, db):
    sender = OutboxSender(mail_settings, db, poll_interval=30)
    task = sender.start()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await sender.stop()
    assert task.done() and not task.cancelled()
    assert time.monotonic() - started < 1  # woken, not waiting out the 30 s poll


# --- wiring: the app's lifespan runs the sender ------------------------------------


@get("/test/enqueue")
async def enqueue_route(services: AppServices) -> dict:
    """What a feature's route handler does: the mailer and db come with `services`."""
    async with services.db.write() as conn:
        outbox_id = await services.mailer.enqueue(
            conn, to=TO, template="test_message", context={"name": "Route", "link": LINK}
        )
    return {"id": outbox_id}


async def test_request_that_enqueues_wakes_the_background_sender(mail_settings, smtp_server):
    app = create_app(mail_settings)
    app.register(enqueue_route)
    sender = app.state.services.sender
    sender.poll_interval = 60  # only a wake-up can deliver within the test's wait
    async with AsyncTestClient(app=app, base_url="http://portal.test") as client:
        await asyncio.sleep(0.2)  # the first round at start-up has found nothing
        response = await client.get("/test/enqueue")
        assert response.status_code == 200
        [message] = smtp_server.wait_for(1, timeout=5)
        assert message["Subject"] == "Test message for Route"
    assert sender._task is None  # stopped at shutdown
    conn = sqlite3.connect(mail_settings.database)
    try:
        assert conn.execute("SELECT sent_at IS NOT NULL FROM outbox").fetchall() == [(1,)]
    finally:
        conn.close()


async def test_background_sender_delivers_mail_written_elsewhere(mail_settings, smtp_server):
    app = create_app(mail_settings)
    app.state.services.sender.poll_interval = 0.2
    async with AsyncTestClient(app=app, base_url="http://portal.test"):
        # Another process (no wake-up) writes into the same database.
        other = Database(mail_settings.database)
        await other.open()
        try:
            await enqueue(other, make_mailer(mail_settings))
        finally:
            await other.close()
        [message] = smtp_server.wait_for(1, timeout=5)
        assert message["To"] == TO


async def test_no_sender_runs_without_smtp_host(settings, client):
    sender = client.app.state.services.sender
    assert settings.smtp_host == ""
    assert sender._task is None


# --- development mailbox -------------------------------------------------------------


async def test_dev_mailbox_lists_and_shows_messages(settings, client):
    db = Database(settings.database)
    await db.open()
    try:
        first = await enqueue(db, make_mailer(settings))
        second = await enqueue(
            db, make_mailer(settings), context={"name": "<script>alert(1)</script>", "link": LINK}
        )
    finally:
        await db.close()

    response = await client.get("/dev/mailbox")
    assert response.status_code == 200
    page = response.text
    assert "Test message for Ana" in page
    assert TO in page
    assert "<caption" in page and '<th scope="col">' in page
    assert page.index(f'href="/dev/mailbox/{second}"') < page.index(f'href="/dev/mailbox/{first}"')
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Not sent" in page

    response = await client.get(f"/dev/mailbox/{first}")
    assert response.status_code == 200
    assert "<pre" in response.text
    assert 'href="http://portal.test/verify?code=abc123&amp;x=1"' in response.text
    assert "<h1" in response.text

    response = await client.get(f"/dev/mailbox/{first}/html")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "sandbox" in response.headers["content-security-policy"]
    assert "script-src 'self'" not in response.headers["content-security-policy"]
    assert '<html lang="en">' in response.text

    assert (await client.get("/dev/mailbox/999999")).status_code == 404


async def test_dev_mailbox_with_no_mail_says_so(client):
    response = await client.get("/dev/mailbox")
    assert response.status_code == 200
    assert "No email yet." in response.text


@pytest.mark.parametrize("kind", ["production", "smtp"])
async def test_dev_mailbox_is_not_there_in_production_or_with_smtp(settings, kind):
    if kind == "production":
        changed = replace(settings, env="production", secret_key="x" * 40)
    else:
        changed = replace(settings, smtp_host="127.0.0.1", smtp_port=free_port())
    assert not changed.dev_mailbox
    app = create_app(changed)
    async with AsyncTestClient(app=app, base_url="http://portal.test") as client:
        for path in ("/dev/mailbox", "/dev/mailbox/1", "/dev/mailbox/1/html"):
            assert (await client.get(path)).status_code == 404, path


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["320px", "desktop"])
def test_dev_mailbox_in_the_browser(live_server, new_page, viewport):
    """A newcomer opens the mailbox, opens the message and clicks the link in it."""
    settings = live_server.settings
    link = f"{live_server.url}/contact"

    async def write() -> None:
        db = Database(settings.database)
        await db.open()
        try:
            await enqueue(db, make_mailer(settings), context={"name": "Ana", "link": link})
        finally:
            await db.close()

    # Playwright's sync API runs a loop in this thread: write from another one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, write()).result()
    page = new_page(viewport)
    page.goto(live_server.url + "/dev/mailbox")
    assert_accessible(page, f"mailbox at {viewport['width']}px")
    page.get_by_role("link", name="Test message for Ana").click()
    page.get_by_role("heading", level=1, name="Test message for Ana").wait_for()
    assert_accessible(page, f"message at {viewport['width']}px")
    page.get_by_role("link", name=link).click()
    page.wait_for_url(link)
    page.get_by_role("heading", level=1, name="Contact Us").wait_for()


async def test_delivered_bodies_are_removed_from_the_outbox(mail_settings, smtp_server):
    """The outbox must not keep one-time links once the message has gone out."""
    from portal.db import Database
    from portal.mail import Mailer, OutboxSender
    from portal.templating import make_environment

    db = Database(mail_settings.database)
    await db.open()
    try:
        mailer = Mailer(mail_settings, make_environment(mail_settings))
        async with db.write() as conn:
            await mailer.enqueue(
                conn,
                to="a@example.com",
                template="verify_email",
                context={
                    "username": "maria1",
                    "link": "http://x/verify?verificationcode=SECRET123",
                },
            )
        assert await OutboxSender(mail_settings, db).send_due() == 1
        [message] = smtp_server.wait_for(1)
        assert "SECRET123" in message.as_string()
        row = await db.fetchone("SELECT sent_at, body_text, body_html FROM outbox")
        assert row["sent_at"] and row["body_text"] == "" and row["body_html"] == ""
    finally:
        await db.close()
