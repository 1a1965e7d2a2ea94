"""Friendly error pages: the resident gets plain words and a way on, never a trace."""

from __future__ import annotations

import logging
import sqlite3
from urllib.parse import urlencode

from litestar import Response
from litestar.background_tasks import BackgroundTask
from litestar.enums import MediaType
from litestar.exceptions import HTTPException
from litestar.plugins.htmx import ClientRedirect
from litestar.response import Redirect, Template

from portal import i18n
from portal.head_requests import allowed_methods
from portal.observe.logs import current_request_id
from portal.security import cookies
from portal.security.refusals import refusal_log
from portal.security.throttle import Throttled
from portal.web import PortalRequest, client_address

log = logging.getLogger("portal.errors")

# status -> template variant; the words live in templates/pages/error.html
KNOWN = {400, 403, 404, 405, 413, 429}


def http_error(request: PortalRequest, exc: HTTPException) -> Response:
    if exc.status_code == 401:
        return sign_in_first(request)
    status = exc.status_code if exc.status_code in KNOWN else 400
    if exc.status_code >= 500:
        return server_error(request, exc)
    if status == 403 and "csrf" in str(exc.detail).lower():
        request.state.csrf_refused = True
        page = _page(request, status)
        page.background = BackgroundTask(_audit_csrf, request)
        return page
    if isinstance(exc, Throttled):
        page = _page(request, 429, wait_minutes=exc.wait_minutes)
        page.headers.update(exc.headers)
        return page
    page = _page(request, status)
    if status == 405 and exc.headers and "allow" in exc.headers:
        # RFC 9110: a 405 says which methods the address takes (Litestar gives the list).
        page.headers["Allow"] = allowed_methods(exc.headers["allow"])
    return page


async def _audit_csrf(request: PortalRequest) -> None:
    """Count the refusal in the audit log, with the signed-in resident if there is one:
    one row per client per minute (security/refusals.py)."""
    user = request.user
    await refusal_log(request.app.state).refused(
        client_address(request), request.url.path, user.username if user else None
    )


def sign_in_first(request: PortalRequest) -> Response:
    """A signed-in page asked for without a session: go to the login page and back
    (the staff sign-in for a staff page)."""
    if request.url.path.startswith("/staff/"):
        target = "/staff?notice=session-ended"
        return ClientRedirect(target) if request.htmx else Redirect(target, status_code=303)
    target = "/login?" + urlencode({"notice": "session-ended", "next": request.url.path})
    if request.htmx:
        return ClientRedirect(target)
    return Redirect(target, status_code=303)


def server_error(request: PortalRequest, exc: Exception) -> Response:
    if _database_busy(exc):
        # Another program held the database longer than the busy timeout (imports
        # commit in short batches, so this should not happen): the change was rolled
        # back, and the resident is told to try again, not that something broke.
        log.warning("database busy on %s %s: %s", request.method, request.url.path, exc)
        page = _page(request, 503)
        page.headers["Retry-After"] = "60"
        return page
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _page(request, 500)


def _database_busy(exc: Exception) -> bool:
    return (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
    )


def _page(request: PortalRequest, status: int, wait_minutes: int | None = None) -> Template:
    csrf = bool(getattr(request.state, "csrf_refused", False))
    # A path no route matches never runs before_request: choose the language here too.
    # (No middleware ran either, so in production the cookie still has its __Host- name.)
    wanted = request.cookies.get(i18n.LOCALE_COOKIE) or request.cookies.get(
        cookies.wire_name(i18n.LOCALE_COOKIE, production=True)
    )
    i18n.current_locale.set(i18n.request_locale(wanted, request.headers.get("accept-language")))
    return Template(
        template_name="pages/error.html",
        media_type=MediaType.HTML,
        context={
            "status": status,
            "csrf": csrf,
            "user": request.scope.get("user"),
            "wait_minutes": wait_minutes,
            "request_id": current_request_id(),
        },
        status_code=status,
    )
