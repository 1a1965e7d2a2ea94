"""Who is signed in, decided once per request, and the guards that routers declare.

`SessionAuth` loads the resident's session from its cookie and sets `request.user`
(None for a visitor). Routers that group signed-in pages carry `guards=[requires_resident]`,
so the rule sits where the URL is declared; a refused visitor goes to the login page
and comes back after signing in (security/errors.py turns the 401 into that redirect).
Staff roles get guards of their own beside this one; a resident never passes them.

On /staff paths `request.user` is the staff member from the staff cookie (a
`StaffMember`), never the resident: the two sign-ins never meet in one request.
`requires_staff` and `requires_supervisor` answer anybody else with 404 and an audit
row, so the console's pages do not even say they exist; a staff browser whose session
ended (it still sends the staff cookie) goes to the staff sign-in instead.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from portal import i18n
from portal.accounts import audit, sessions
from portal.security import cookies
from portal.staff import sessions as staff_sessions
from portal.staff.accounts import audit_name
from portal.staff.sessions import StaffMember
from portal.templating import first_visit
from portal.web import client_address


class SessionAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        i18n.current_locale.set(
            i18n.request_locale(
                connection.cookies.get(i18n.LOCALE_COOKIE),
                connection.headers.get("accept-language"),
            )
        )
        first_visit.set(cookies.CSRF not in connection.cookies)  # site.css inline or linked
        db = connection.app.state.services.db
        if is_staff_path(connection.scope["path"]):
            user = await staff_sessions.load(db, connection.cookies.get(staff_sessions.COOKIE))
        else:
            user = await sessions.load(db, connection.cookies.get(sessions.COOKIE))
        return AuthenticationResult(user=user, auth=None)


def is_staff_path(path: str) -> bool:
    return path == staff_sessions.PATH or path.startswith(staff_sessions.PATH + "/")


async def requires_resident(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A signed-in resident, or a 401 that becomes the login page with `next`. (A staff
    member is never a resident, wherever a route is mounted.)"""
    if not isinstance(connection.scope.get("user"), sessions.SignedIn):
        raise NotAuthorizedException()


async def requires_staff(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A signed-in staff member (either role); anybody else gets 404, audited."""
    if not isinstance(connection.scope.get("user"), StaffMember):
        await _refuse(connection)


async def requires_supervisor(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A signed-in supervisor; a representative, resident or visitor gets 404, audited."""
    user = connection.scope.get("user")
    if not (isinstance(user, StaffMember) and user.supervisor):
        await _refuse(connection)


async def _refuse(connection: ASGIConnection) -> None:
    db = connection.app.state.services.db
    user = connection.scope.get("user")
    if isinstance(user, StaffMember):
        who = audit_name(user.username)
    else:  # a resident's own cookie still names them, for the record
        resident = await sessions.load(db, connection.cookies.get(sessions.COOKIE))
        who = resident.username if resident else None
    await audit.write(
        db,
        "staff_page_refused",
        username=who,
        client=client_address(connection),
        detail=f"path={connection.scope['path']}",
    )
    if user is None and connection.cookies.get(staff_sessions.COOKIE):
        raise NotAuthorizedException()  # a staff session that ended: the staff sign-in
    raise NotFoundException()
