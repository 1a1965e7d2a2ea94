"""Email: the outbox (written in the caller's transaction), the background SMTP sender,
and the development mailbox pages (`/dev/mailbox`, only without PORTAL_SMTP_HOST)."""

from portal.mail.outbox import Mailer, MailError
from portal.mail.sender import OutboxSender

__all__ = ["MailError", "Mailer", "OutboxSender"]
