"""Email notices over HTTP.

URL map:
  GET  /profile/notices          (signed in, no-store) which notices to get by email
  POST /profile/notices          save the choice
  GET  /notices/unsubscribe?u=&k=&t=   the signed link from a notice: a page with one
                                 button (mail scanners open links; a GET changes nothing)
  POST /notices/unsubscribe?u=&k=&t=   stop that kind of notice. No CSRF token: the
                                 signed link is the proof, and mail programs POST here
                                 for List-Unsubscribe-Post (RFC 8058) without cookies
"""

from __future__ import annotations

from litestar import Router, get, post
from litestar.response import Redirect, Template

from portal.i18n import _
from portal.notices.service import NoticesForm, NoticesService
from portal.security.auth import requires_resident
from portal.security.headers import NO_STORE
from portal.services import AppServices
from portal.settings import Settings
from portal.web import PortalRequest, client_address, render


@get("/profile/notices")
async def notices_page(request: PortalRequest, services: AppServices) -> Template:
    saved = request.query_params.get("notice") == "saved"
    return render(
        request,
        "pages/notices.html",
        chosen=await services.notices.chosen(request.user.user_id),
        alert={"kind": "success", "title": _("Your email notices were saved."), "body": None}
        if saved
        else None,
    )


@post("/profile/notices")
async def notices_save(request: PortalRequest, services: AppServices) -> Redirect:
    form = await NoticesForm.read(request)
    await services.notices.save(request.user, form, client_address(request))
    return Redirect("/profile/notices?notice=saved", status_code=303)


def _link(request: PortalRequest, notices: NoticesService) -> tuple[int | None, str]:
    q = request.query_params
    kind = q.get("k", "")
    return notices.check_link(q.get("u", ""), kind, q.get("t", "")), kind


def _unsubscribe_page(
    request: PortalRequest, user_id: int | None, kind: str, *, done: bool
) -> Template:
    """The button that unsubscribes (done=False) or the answer; 400 for a bad link."""
    return render(
        request,
        "pages/unsubscribe.html",
        status_code=200 if user_id else 400,
        kind=kind if user_id else None,
        done=done,
        action="" if done else f"/notices/unsubscribe?{request.url.query}",
    )


@get("/notices/unsubscribe", cache_control=NO_STORE)
async def unsubscribe_page(request: PortalRequest, services: AppServices) -> Template:
    user_id, kind = _link(request, services.notices)
    return _unsubscribe_page(request, user_id, kind, done=False)


@post("/notices/unsubscribe", exclude_from_csrf=True, cache_control=NO_STORE)
async def unsubscribe(request: PortalRequest, services: AppServices) -> Template:
    user_id, kind = _link(request, services.notices)
    if user_id:
        await services.notices.unsubscribe(user_id, kind, client_address(request))
    return _unsubscribe_page(request, user_id, kind, done=True)


def handlers(settings: Settings) -> list:
    return [
        unsubscribe_page,
        unsubscribe,
        Router(
            path="/",
            guards=[requires_resident],
            cache_control=NO_STORE,
            route_handlers=[notices_page, notices_save],
        ),
    ]
