"""Development mailbox: the outbox as web pages, so a newcomer without an SMTP server
can read the email the portal wrote and click its links.

URL map (registered only when settings.dev_mailbox: development without PORTAL_SMTP_HOST)
          GET /dev/mailbox                 every outbox message, newest first
          GET /dev/mailbox/{id}            one message: headers and the text part, with
                                           its links clickable
          GET /dev/mailbox/{id}/html       the HTML part as the resident's mail program
                                           shows it, in a CSP sandbox (no scripts, no
                                           same-origin rights)
"""

from __future__ import annotations

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from portal.db import Database
from portal.mail import outbox
from portal.services import AppServices
from portal.settings import Settings
from portal.web import PortalRequest, render

MAILBOX_LIMIT = 200

# The HTML part is ours (autoescaped templates), but it is shown as a document of its
# own anyway, sandboxed, so nothing in an email can act on the portal's origin.
HTML_PART_CSP = (
    "sandbox; default-src 'none'; img-src 'self' data: https:; style-src 'unsafe-inline'"
)


async def _message(db: Database, message_id: int):
    row = await outbox.message(db, message_id)
    if row is None:
        raise NotFoundException()
    return row


@get("/dev/mailbox", name="dev-mailbox")
async def mailbox(request: PortalRequest, services: AppServices) -> Template:
    messages = await outbox.recent(services.db, MAILBOX_LIMIT)
    return render(request, "pages/dev_mailbox.html", messages=messages)


@get("/dev/mailbox/{message_id:int}", name="dev-mailbox-message")
async def mailbox_message(
    request: PortalRequest, services: AppServices, message_id: FromPath[int]
) -> Template:
    message = await _message(services.db, message_id)
    return render(
        request, "pages/dev_message.html", message=message, mail_from=services.settings.mail_from
    )


@get("/dev/mailbox/{message_id:int}/html", name="dev-mailbox-html")
async def mailbox_message_html(services: AppServices, message_id: FromPath[int]) -> Response:
    message = await _message(services.db, message_id)
    return Response(
        content=message["body_html"],
        media_type="text/html",
        headers={"Content-Security-Policy": HTML_PART_CSP},
    )


def handlers(settings: Settings) -> list:
    if not settings.dev_mailbox:
        return []
    return [mailbox, mailbox_message, mailbox_message_html]
