"""Undelivered mail does not keep live one-time links in clear (issue 11, "also
noticed"): in production the outbox bodies are sealed with a key derived from
PORTAL_SECRET_KEY, and the sender opens them for the real SMTP server."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest

from portal.db import Database
from portal.mail import Mailer, OutboxSender
from portal.security.sealing import UnsealError, seal, unseal
from portal.templating import make_environment

TOKEN = "one-time-token-Zx81Qm"
LINK = f"https://portal.example/reset-password?token={TOKEN}"
SECRET = "q8Zr-3vKw_T1mXy7LpD4nH0sBcJ9eUfA2gQ6tVoR5iW"


@pytest.fixture
def production(settings):
    return replace(settings, env="production", secret_key=SECRET, base_url="https://portal.example")


@pytest.fixture
async def db(settings):
    database = Database(settings.database)
    await database.open()
    yield database
    await database.close()


async def write_reset_mail(settings, db) -> None:
    async with db.write() as conn:
        await Mailer(settings, make_environment(settings)).enqueue(
            conn,
            to="resident@example.com",
            template="test_message",
            context={"name": "Ana", "link": LINK},
        )


def database_bytes(path) -> bytes:
    """Every byte of the database as a backup would copy it (main file and WAL)."""
    data = b""
    for suffix in ("", "-wal"):
        try:
            with open(f"{path}{suffix}", "rb") as file:
                data += file.read()
        except FileNotFoundError:
            pass
    return data


async def test_production_outbox_keeps_no_link_in_clear(production, db):
    await write_reset_mail(production, db)
    row = await db.fetchone("SELECT to_addr, subject, body_text, body_html FROM outbox")
    assert row["to_addr"] == "resident@example.com"  # the sender still needs these
    for body in (row["body_text"], row["body_html"]):
        assert body.startswith("sealed1:") and TOKEN not in body
    assert TOKEN.encode() not in database_bytes(production.database)
    # whoever has the secret key (the sender) reads the original
    assert LINK in unseal(production, row["body_text"])


async def test_a_copy_of_the_database_without_the_key_opens_nothing(production, db):
    await write_reset_mail(production, db)
    row = await db.fetchone("SELECT body_text FROM outbox")
    thief = replace(production, secret_key="another-key-Lw0kP3nZ-x_Q7rT2vB9mC4sD8fG")
    with pytest.raises(UnsealError):
        unseal(thief, row["body_text"])
    tampered = (
        row["body_text"][:-6]
        + ("A" if row["body_text"][-6] != "A" else "B")
        + row["body_text"][-5:]
    )
    with pytest.raises(UnsealError):
        unseal(production, tampered)


async def test_the_sender_delivers_the_opened_message_and_then_forgets_it(
    production, db, smtp_server
):
    await write_reset_mail(production, db)
    configured = replace(production, smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    assert await OutboxSender(configured, db).send_due() == 1
    await asyncio.sleep(0.05)
    [message] = smtp_server.wait_for(1)
    texts = [
        part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_maintype() == "text"
    ]
    assert len(texts) == 2 and all(LINK in t for t in texts)
    row = await db.fetchone("SELECT sent_at, body_text, body_html FROM outbox")
    assert row["sent_at"] and row["body_text"] == "" and row["body_html"] == ""


async def test_development_keeps_the_outbox_readable_for_the_mailbox(settings, db):
    """The development key is public: sealing with it would protect nothing."""
    await write_reset_mail(settings, db)
    row = await db.fetchone("SELECT body_text FROM outbox")
    assert LINK in row["body_text"]
    assert seal(settings, "x") == "x" and unseal(settings, "x") == "x"


def test_rows_written_before_sealing_still_send(production, sync_db):
    sync_db.execute(
        "INSERT INTO outbox (to_addr, subject, body_text, body_html, created_at,"
        " next_attempt_at) VALUES ('a@b.gov', 's', 'plain', '<p>plain</p>', 'x', 'x')"
    )
    sync_db.commit()
    row = sync_db.execute("SELECT body_text FROM outbox").fetchone()
    assert unseal(production, row[0]) == "plain"
    assert isinstance(sync_db, sqlite3.Connection)
