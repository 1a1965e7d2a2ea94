"""Helpers shared by every routes module: the request class, the safe `next`, the
client address, the answer to a session-time question, and
"one handler, two renderings".

`render()` returns the full page for a plain request and the named partial for an htmx
request, from the same context, with `Vary: HX-Request` so caches keep them apart.
"""

from __future__ import annotations

import weakref
from typing import Any

from litestar.background_tasks import BackgroundTask
from litestar.connection.base import empty_receive, empty_send
from litestar.datastructures import FormMultiDict
from litestar.enums import MediaType
from litestar.exceptions import ClientException
from litestar.plugins.htmx import HTMXDetails, HTMXRequest
from litestar.response import Redirect, Response, Template
from litestar.types import Receive, Scope, Send

from portal.accounts.sessions import SignedIn
from portal.staff.sessions import StaffMember


class PortalRequest(HTMXRequest):
    """The app's request class: litestar-htmx's (so `request.htmx` says what kind of
    request it is), with `request.user` typed as the signed-in resident or None, and a
    multipart part that is not text in its declared charset answered 400, not a crash."""

    def __init__(self, scope: Scope, receive: Receive = empty_receive, send: Send = empty_send):
        super().__init__(scope, receive, send)
        # litestar-htmx's details hold their request, and the request holds them: a
        # cycle that kept every request's objects (scope, form, send wrappers) for the
        # cycle collector instead of freeing them when the answer is sent (BENCHMARKS.md;
        # tests/test_event_loop.py).
        self.htmx = HTMXDetails(weakref.proxy(self))

    @property
    def user(self) -> SignedIn | StaffMember | None:
        return self.scope.get("user")

    async def form(self) -> FormMultiDict:
        try:
            return await super().form()
        except (UnicodeDecodeError, LookupError) as exc:
            raise ClientException("the form is not text in its declared charset") from exc


def render(
    request: PortalRequest,
    page: str,
    *,
    partial: str | None = None,
    status_code: int = 200,
    background: BackgroundTask | None = None,
    **context: Any,
) -> Template:
    # A boosted link or form (hx-boost on <body>) is a page change: the whole page.
    name = partial if partial and request.htmx and not request.htmx.boosted else page
    context.setdefault("user", request.scope.get("user"))
    context.setdefault("is_fragment", name == partial)
    context.setdefault("values", {})
    context.setdefault("errors", {})
    # A visitor who never chose a language gets the browser's (i18n.request_locale).
    headers = {"Vary": "HX-Request, Accept-Language"}
    if request.htmx.boosted and request.method != "GET":
        # A boosted form answered with a page (a failed form, say) keeps the address it
        # was sent from: the POST's address would not reload. A redirect still moves it.
        headers["HX-Push-Url"] = "false"
    return Template(
        template_name=name,
        media_type=MediaType.HTML,  # not guessed from the name's suffix per request
        context=context,
        status_code=status_code,
        headers=headers,
        background=background,
    )


def local_path(target: str | None, fallback: str = "/account") -> str:
    """Only follow a 'next' that stays on this site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


def client_address(request: PortalRequest) -> str:
    """The resident's network address, for throttling and the audit log.

    The socket's peer, unless that peer is one of PORTAL_TRUSTED_PROXIES: then the
    address that proxy says it received the request from (the last X-Forwarded-For
    entry that is not itself a trusted proxy). A header from anyone else is ignored,
    so nobody can pick their own address to dodge the sign-in throttle."""
    peer = request.client.host if request.client else "-"
    trusted = request.app.state.services.settings.trusted_proxies
    if peer not in trusted:
        return peer
    hops = [
        hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()
    ]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return peer


def session_time(request: PortalRequest, left: int, home: str, ended_url: str) -> Response:
    """The answer to the idle-warning script's GET or POST of /session (/staff/session):
    `{"left": seconds}`. A plain form post ("Stay signed in" without the script) goes
    back to `home`, or to `ended_url` if the session was already over."""
    if request.method == "POST" and "application/json" not in request.headers.get("accept", ""):
        return Redirect(home if left else ended_url, status_code=303)
    return Response({"left": left}, media_type=MediaType.JSON, status_code=200)
