"""Who an email is from and where answers go, as residents' mail programs show them.

`From:` carries the utility's name: "Ontario Municipal Utilities Company
<no-reply@…>", not a bare address that looks like spam. A name with non-ASCII letters
("Compañía de Agua") is written as an RFC 2047 encoded word by the email package's
header registry; PORTAL_MAIL_FROM may also carry its own name ("Billing <b@city.example>"),
which then wins.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr

from portal.settings import Settings


def from_address(settings: Settings) -> Address:
    name, address = parseaddr(settings.mail_from)
    return Address(display_name=_one_line(name or settings.utility_name), addr_spec=address)


def reply_to_address(settings: Settings) -> Address | None:
    """The mailbox people may answer (PORTAL_MAIL_REPLY_TO), or None."""
    if not settings.mail_reply_to:
        return None
    return Address(display_name=_one_line(settings.utility_name), addr_spec=settings.mail_reply_to)


def _one_line(name: str) -> str:
    return " ".join(name.split())
