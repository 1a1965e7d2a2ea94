"""The background sender: delivers the outbox over SMTP, with retries, at most once.

Each due row is first *claimed* in a short write transaction (its next_attempt_at moves
one lease ahead), then sent with no transaction open, then marked sent in its own short
transaction right after the SMTP server accepted it. A claimed row is invisible to any
other send_due() call, in this process or another, so concurrent senders never send a
row twice. If the process dies between "accepted" and "marked", the row comes due again
when the lease ends (the one case where a duplicate is possible; the Message-ID stays
the same, so mail systems can drop it).

A failed try records attempts, a short last_error and the next try with exponential
backoff (30 s, 1 min, 2 min, ... at most 1 h). Nothing is ever deleted.

Never logged: the SMTP password, addresses, message bodies.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import sqlite3
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from portal.db import Database
from portal.mail.headers import from_address, reply_to_address
from portal.observe import metrics
from portal.security.sealing import unseal
from portal.settings import Settings

log = logging.getLogger("portal.mail")

# Errors that mean "the server is not reachable": stop this round, try again later.
CONNECTION_ERRORS = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    TimeoutError,
    OSError,
)


def stamp(moment: datetime) -> str:
    """The database's time format (see portal.db.utcnow)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def short_error(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:200]


def tls_options(settings: Settings) -> dict[str, bool | None]:
    """aiosmtplib's TLS arguments for PORTAL_SMTP_TLS.

    auto      STARTTLS if the server offers it (start_tls=None); required (start_tls=True:
              no STARTTLS, no login, nothing sent) when a username or password is set
    starttls  always required
    implicit  TLS from the first byte (port 465)
    off       never; production refuses it together with a login
    An internal certificate authority is trusted through the usual SSL_CERT_FILE."""
    mode = settings.smtp_tls
    if mode == "implicit":
        return {"use_tls": True, "start_tls": False}
    if mode == "off":
        return {"use_tls": False, "start_tls": False}
    credentials = bool(settings.smtp_username or settings.smtp_password)
    required = mode == "starttls" or credentials
    return {"use_tls": False, "start_tls": True if required else None}


class OutboxSender:
    """Sends due outbox rows. `run()` is the background loop; `wake()` nudges it."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        poll_interval: float = 2.0,
        backoff_base: float = 30.0,
        backoff_cap: float = 3600.0,
        timeout: float = 10.0,
        lease: float = 600.0,
        batch_limit: int = 100,
    ) -> None:
        self.settings = settings
        self.db = db
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout
        self.lease = lease
        self.batch_limit = batch_limit
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        _, address = parseaddr(settings.mail_from)
        self._envelope_from = address or settings.mail_from
        self._msgid_domain = address.rpartition("@")[2] or "localhost"

    # --- background loop ----------------------------------------------------------

    def wake(self) -> None:
        """Ask the loop to look at the outbox now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Until stopped: send what is due, then sleep until woken or poll_interval."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.send_due()
                metrics.record_background_run("outbox")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox sender round failed; trying again shortly")
                metrics.record_background_run("outbox", ok=False)
            if self._stopping:
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    def start(self) -> asyncio.Task:
        """Start run() as a task on the running loop (once)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="outbox-sender")
        return self._task

    async def stop(self, grace: float | None = None) -> None:
        """Let the current message finish (up to `grace` seconds), then cancel."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self.wake()
        done, _ = await asyncio.wait({task}, timeout=self.timeout + 1 if grace is None else grace)
        if not done:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    # --- one round ----------------------------------------------------------------

    async def send_due(self) -> int:
        """Send every due row, oldest first; return how many the server accepted."""
        sent = 0
        last_id = 0
        smtp: aiosmtplib.SMTP | None = None
        try:
            for _ in range(self.batch_limit):
                if self._stopping:
                    break
                row = await self._claim_next(last_id)
                if row is None:
                    break
                last_id = row["id"]
                if smtp is None:
                    try:
                        smtp = self._client()
                        await smtp.connect()
                    except Exception as exc:
                        # Server away or refusing us: leave the rest for the next round.
                        smtp = await self._drop(smtp)
                        await self._failed(row, exc)
                        break
                try:
                    message = self.build_message(row)
                    if message["List-Unsubscribe"]:
                        # aiosmtplib folds at 78 characters, which turns a long URL into
                        # an encoded word that mail programs do not read as a URL.
                        await smtp.sendmail(
                            self._envelope_from,
                            [row["to_addr"]],
                            message.as_bytes(policy=message.policy),
                        )
                    else:
                        await smtp.send_message(
                            message, sender=self._envelope_from, recipients=[row["to_addr"]]
                        )
                except Exception as exc:
                    smtp = await self._drop(smtp)
                    await self._failed(row, exc)
                    if isinstance(exc, CONNECTION_ERRORS):
                        break
                    continue
                await self._mark_sent(row["id"])
                sent += 1
        except BaseException:
            await self._drop(smtp)
            raise
        await self._drop(smtp, polite=True)
        return sent

    def build_message(self, row: sqlite3.Row) -> EmailMessage:
        created = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
        message = EmailMessage()
        message["From"] = from_address(self.settings)
        reply_to = reply_to_address(self.settings)
        if reply_to is not None:
            message["Reply-To"] = reply_to
        message["To"] = row["to_addr"]
        message["Subject"] = " ".join(row["subject"].split())
        message["Date"] = format_datetime(created)
        # The same id on every retry, so a duplicate after a crash can be recognised.
        digits = "".join(ch for ch in row["created_at"] if ch.isdigit())
        message["Message-ID"] = f"<portal.{row['id']}.{digits}@{self._msgid_domain}>"
        message["Auto-Submitted"] = "auto-generated"
        # sqlite3.Row: "in" looks at values, so ask its keys.
        if "unsubscribe_url" in row.keys() and row["unsubscribe_url"]:  # noqa: SIM118
            # RFC 2369 and RFC 8058: mail programs show "Unsubscribe" and POST to it.
            message["List-Unsubscribe"] = f"<{row['unsubscribe_url']}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            # A URL has no space to fold at: with the 78-character default it would be
            # written as an encoded word, which mail programs do not read as a URL.
            message.policy = email.policy.SMTP.clone(max_line_length=998)
        message.set_content(unseal(self.settings, row["body_text"]))
        message.add_alternative(unseal(self.settings, row["body_html"]), subtype="html")
        return message

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password or None,
            **tls_options(s),
            validate_certs=True,  # the server's certificate is always checked
            timeout=self.timeout,
        )

    @staticmethod
    async def _drop(smtp: aiosmtplib.SMTP | None, polite: bool = False) -> None:
        if smtp is None or not smtp.is_connected:
            return None
        try:
            if polite:
                await smtp.quit()
            else:
                smtp.close()
        except Exception:
            smtp.close()
        return None

    async def _claim_next(self, after_id: int) -> sqlite3.Row | None:
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            async with conn.execute(
                "SELECT id FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ?"
                " AND id > ? ORDER BY id LIMIT 1",
                (stamp(now), after_id),
            ) as cursor:
                found = await cursor.fetchone()
            if found is None:
                return None
            await conn.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                (stamp(now + timedelta(seconds=self.lease)), found["id"]),
            )
            async with conn.execute(
                "SELECT id, to_addr, subject, body_text, body_html, created_at, attempts,"
                " unsubscribe_url FROM outbox WHERE id = ?",
                (found["id"],),
            ) as cursor:
                return await cursor.fetchone()

    async def _mark_sent(self, outbox_id: int) -> None:
        try:
            async with self.db.write() as conn:
                # Once delivered, the bodies go: they hold one-time links (verification,
                # reset) that the tokens table only keeps as hashes.
                await conn.execute(
                    "UPDATE outbox SET sent_at = ?, last_error = NULL, body_text = '',"
                    " body_html = '' WHERE id = ?",
                    (stamp(datetime.now(UTC)), outbox_id),
                )
        except Exception:
            log.exception("outbox %s was accepted by SMTP but not marked sent", outbox_id)
            raise

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failure: base, 2x base, ... capped."""
        return min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))

    async def _failed(self, row: sqlite3.Row, exc: BaseException) -> None:
        attempts = row["attempts"] + 1
        delay = self.backoff(attempts)
        error = short_error(exc)
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ?"
                " WHERE id = ? AND sent_at IS NULL",
                (attempts, error, stamp(datetime.now(UTC) + timedelta(seconds=delay)), row["id"]),
            )
        # The log names the error class and SMTP code only: server replies can quote
        # the recipient's address.
        code = getattr(exc, "code", "")
        log.warning(
            "outbox %s not sent (attempt %d, next in %.0f s): %s %s",
            row["id"],
            attempts,
            delay,
            type(exc).__name__,
            code,
        )
