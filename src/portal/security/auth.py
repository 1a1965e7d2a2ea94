"""Who is signed in, decided once per request, and the guards that routers declare.

`SessionAuth` loads the resident's session from its cookie and sets `request.user`
(None for a visitor). Routers that group signed-in pages carry `guards=[requires_resident]`,
so the rule sits where the URL is declared; a refused visitor goes to the login page
and comes back after signing in (security/errors.py turns the 401 into that redirect).
Staff roles get guards of their own beside this one; a resident never passes them.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from portal import i18n
from portal.accounts import sessions


class SessionAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        wanted = connection.cookies.get(i18n.LOCALE_COOKIE, i18n.DEFAULT_LOCALE)
        i18n.current_locale.set(wanted if wanted in i18n.LOCALES else i18n.DEFAULT_LOCALE)
        db = connection.app.state.services.db
        user = await sessions.load(db, connection.cookies.get(sessions.COOKIE))
        return AuthenticationResult(user=user, auth=None)


def requires_resident(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A signed-in resident, or a 401 that becomes the login page with `next`."""
    if connection.scope.get("user") is None:
        raise NotAuthorizedException()
