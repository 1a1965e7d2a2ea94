"""Writing email into the outbox: render the templates, insert one row, send nothing.

A service that changes something and owes the resident an email calls `enqueue()` with
the connection of its own write transaction, so the email exists if and only if the
change does:

    async with db.write() as conn:
        user_id = await create_user(conn, ...)
        await mailer.enqueue(conn, to=email, template="verify_email",
                             context={"link": link}, locale=user_locale)

The background sender (portal.mail.sender) delivers it after the commit. The templates
are `templates/emails/<template>.subject.txt`, `<template>.txt` and `<template>.html`;
they see the context plus every global of the shared Jinja environment (`site`, `_`).

Every email names the resident's account by its service address, never by its account
number: `accounts_of=[user_id]` adds `service_addresses` (the addresses of the accounts
linked to those online accounts, read in the same transaction) to the context, and the
layouts (`emails/_layout.html`, `emails/_layout.txt`) show them at the top. A caller that
knows the address passes `service_addresses` itself (a Pay My Bill receipt passes it
masked, as the pay pages show it to whoever holds the two numbers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite
from jinja2 import Environment

from portal import i18n
from portal.db import Database, is_row_id, utcnow
from portal.security.sealing import seal
from portal.settings import Settings

SERVICE_ADDRESSES = (
    "SELECT sa.service_address FROM user_accounts ua"
    " JOIN service_accounts sa ON sa.id = ua.account_id"
    " WHERE ua.user_id = ? ORDER BY ua.linked_at, sa.id"
)

INSERT_OUTBOX = (
    "INSERT INTO outbox (to_addr, subject, body_text, body_html, created_at, next_attempt_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_OUTBOX_UNSUBSCRIBE = (
    "INSERT INTO outbox (to_addr, subject, body_text, body_html, created_at, next_attempt_at,"
    " unsubscribe_url) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class MailError(ValueError):
    """The email cannot be written as asked (for example a broken address)."""


def _check_address(to: str) -> str:
    if not to or not to.strip():
        raise MailError("the recipient address is empty")
    if any(ord(char) < 32 or ord(char) == 127 for char in to):
        # CR/LF would let the address add headers or recipients.
        raise MailError("the recipient address contains a line break or control character")
    return to.strip()


def one_line(text: str) -> str:
    """Collapse every run of whitespace (line breaks included) to one space."""
    return " ".join(text.split())


class Mailer:
    """Renders emails and writes them into the outbox table."""

    def __init__(
        self,
        settings: Settings,
        env: Environment,
        *,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.html_env = env
        # Text parts and subjects are not HTML: same loader, globals and gettext, no
        # escaping (and a cache of their own, so the two never share compiled templates).
        self.text_env = env.overlay(autoescape=False, cache_size=100)
        self.on_enqueue = on_enqueue

    def render(
        self, template: str, context: dict[str, Any], locale: str = i18n.DEFAULT_LOCALE
    ) -> tuple[str, str, str]:
        """(subject, text, html) of `templates/emails/<template>.*` in `locale`."""
        if locale not in i18n.LOCALES:
            locale = i18n.DEFAULT_LOCALE
        token = i18n.current_locale.set(locale)
        try:
            base = f"emails/{template}"
            subject = self.text_env.get_template(f"{base}.subject.txt").render(context)
            text = self.text_env.get_template(f"{base}.txt").render(context)
            html = self.html_env.get_template(f"{base}.html").render(context)
        finally:
            i18n.current_locale.reset(token)
        return one_line(subject), text, html

    def _row(self, to: str, template: str, context: dict, locale: str) -> tuple:
        to = _check_address(to)
        subject, text, html = self.render(template, context, locale)
        now = utcnow()
        # Bodies hold one-time links: sealed at rest in production (security/sealing.py).
        text, html = seal(self.settings, text), seal(self.settings, html)
        return (to, subject, text, html, now, now)

    def enqueue_sync(
        self, conn: sqlite3.Connection, *, to: str, template: str, context: dict, locale: str = "en"
    ) -> None:
        """enqueue() for a synchronous connection (the CLI's imports), same rules."""
        if not conn.in_transaction:
            raise RuntimeError("Mailer.enqueue_sync() must run inside an open transaction")
        conn.execute(INSERT_OUTBOX, self._row(to, template, context, locale))

    async def enqueue(
        self,
        conn: aiosqlite.Connection,
        *,
        to: str,
        template: str,
        context: dict,
        locale: str = "en",
        accounts_of: Iterable[int] = (),
        unsubscribe_url: str | None = None,
    ) -> int:
        """Write one email into the outbox inside the caller's open write transaction.
        With `unsubscribe_url` the email gets List-Unsubscribe headers (one click).

        `accounts_of`: ids of the users whose service addresses the email names.
        Returns the outbox row id. Raises MailError for an address with a line break.
        """
        if not conn.in_transaction:
            raise RuntimeError("Mailer.enqueue() must run inside `async with db.write()`")
        addresses: list[str] = []
        for user_id in accounts_of:
            async with conn.execute(SERVICE_ADDRESSES, (user_id,)) as rows:
                addresses += [row[0] async for row in rows if row[0] not in addresses]
        if addresses:
            context = {**context, "service_addresses": addresses}
        row = self._row(to, template, context, locale)
        if unsubscribe_url:
            cursor = await conn.execute(INSERT_OUTBOX_UNSUBSCRIBE, (*row, unsubscribe_url))
        else:
            cursor = await conn.execute(INSERT_OUTBOX, row)
        outbox_id = cursor.lastrowid
        await cursor.close()
        if self.on_enqueue is not None:
            # The sender then waits for the write lock, so it sees the row after COMMIT.
            self.on_enqueue()
        return outbox_id


async def recent(db: Database, limit: int) -> list:
    """The newest messages of the outbox (the development mailbox)."""
    return await db.fetchall(
        "SELECT id, to_addr, subject, created_at, sent_at, attempts FROM outbox"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    )


async def message(db: Database, message_id: int):
    """One outbox message with its bodies, or None."""
    if not is_row_id(message_id):
        return None
    return await db.fetchone(
        "SELECT id, to_addr, subject, body_text, body_html, created_at, attempts,"
        " next_attempt_at, sent_at, last_error FROM outbox WHERE id = ?",
        (message_id,),
    )
