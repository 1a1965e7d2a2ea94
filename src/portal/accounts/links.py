"""Emailed one-time links (verify a registration, reset a password, confirm a new
email address): each kind described once (Link), one helper issues them, one decides
whether another may be sent.

The link carries a random code; the tokens table keeps only its SHA-256. The email is
queued in the caller's transaction, with an audit row, so all three happen or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiosqlite

from portal.accounts import audit
from portal.accounts.tokens import code_hash, new_code, utc_in
from portal.db import utcnow
from portal.i18n import current_locale
from portal.settings import Settings

RESEND_EVERY = timedelta(minutes=2)
LINKS_PER_DAY = 5
PENDING_MAX = 3  # live links of one kind per resident
MAILS_PER_ADDRESS_HOUR = 5  # anything the portal sends on request, to one address
MAILS_PER_ADDRESS_DAY = 10


@dataclass(frozen=True)
class Link:
    """One kind of emailed link: what its code is for, how long it lives, the email that
    carries it and the page it opens."""

    purpose: str  # tokens.purpose
    lifetime: timedelta
    template: str
    path: str
    code_param: str = "token"
    names_user: bool = False  # the link also carries ?username= (the page asks for it)
    keeps_address: bool = False  # the token keeps the address the link was sent to


# The verification email says "open this link within 24 hours".
VERIFY = Link(
    "verify", timedelta(hours=24), "verify_email", "/verify", "verificationcode", names_user=True
)
RESET = Link("reset", timedelta(hours=1), "password_reset", "/reset-password")
EMAIL_CHANGE = Link(
    "email",
    timedelta(hours=24),
    "confirm_email_change",
    "/profile/email/confirm",
    keeps_address=True,
)


def ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def issue_link(
    conn: aiosqlite.Connection,
    mailer: Any,
    settings: Settings,
    link: Link,
    *,
    user_id: int,
    username: str,
    to: str,
    audit_event: str | None,
    client: str,
    lifetime: timedelta | None = None,
) -> None:
    """Insert a token, queue the email with its link to `to`, and write the audit row
    (unless the caller records the event itself); `lifetime` overrides the kind's."""
    code = new_code()
    await conn.execute(
        "INSERT INTO tokens (user_id, purpose, token_hash, data, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            user_id,
            link.purpose,
            code_hash(code),
            to if link.keeps_address else None,
            utcnow(),
            utc_in(lifetime or link.lifetime),
        ),
    )
    query = {"username": username} if link.names_user else {}
    url = f"{settings.base_url}{link.path}?{urlencode({**query, link.code_param: code})}"
    await mailer.enqueue(
        conn,
        to=to,
        template=link.template,
        context={"username": username, "link": url},
        locale=current_locale.get(),
        accounts_of=[user_id],
    )
    if audit_event:
        await audit.record(conn, audit_event, username=username, client=client)


async def may_send_link(
    conn: aiosqlite.Connection, user_id: int, purpose: str, to: str | None = None
) -> bool:
    """Whether a mail asked for on a web form may go out now: per resident, at most
    LINKS_PER_DAY links of a kind a day, none within RESEND_EVERY of the last, at most
    PENDING_MAX still live; and per destination address (`to`), at most
    MAILS_PER_ADDRESS_HOUR / _DAY of everything the portal sends on request."""
    cursor = await conn.execute(
        "SELECT count(*), max(created_at),"
        " coalesce(sum(used_at IS NULL AND expires_at > ?), 0) FROM tokens"
        " WHERE user_id = ? AND purpose = ? AND created_at > ?",
        (utcnow(), user_id, purpose, ago(timedelta(days=1))),
    )
    count, newest, pending = await cursor.fetchone()
    if count >= LINKS_PER_DAY or pending >= PENDING_MAX:
        return False
    if newest is not None and newest >= ago(RESEND_EVERY):
        return False
    return to is None or await may_mail(conn, to)


async def may_mail(conn: aiosqlite.Connection, to: str) -> bool:
    """Per destination address: a victim's inbox is not a target for floods."""
    cursor = await conn.execute(
        "SELECT coalesce(sum(created_at > ?), 0), count(*) FROM outbox"
        " WHERE to_addr = ? COLLATE NOCASE AND created_at > ?",
        (ago(timedelta(hours=1)), to, ago(timedelta(days=1))),
    )
    hour, day = await cursor.fetchone()
    return hour < MAILS_PER_ADDRESS_HOUR and day < MAILS_PER_ADDRESS_DAY
