"""Litestar's CSRF middleware, refusing odd tokens with a 403 instead of crashing.

Litestar 2.25 compares tokens with `secrets.compare_digest`, which raises TypeError for
text with non-ASCII characters, and takes `len()` of whatever the form carries as
`_csrf_token`, an uploaded file included; and a form body it cannot parse (a broken
multipart upload) made it answer 400 before any token was seen. Each is a forged or
broken form: it is refused like any other wrong token, so the resident sees "This form
could not be sent".
"""

from __future__ import annotations

from secrets import compare_digest
from typing import Any

from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

PASSED = "portal.csrf_passed"  # set on the scope once the check let the request through


class CSRFGuard(CSRFMiddleware):
    def __init__(self, app: ASGIApp, config: Any) -> None:
        async def passed(scope: Scope, receive: Receive, send: Send) -> None:
            scope[PASSED] = True  # type: ignore[literal-required]
            await app(scope, receive, send)

        super().__init__(passed, config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ClientException:
            if scope.get(PASSED):
                raise  # the handler's own answer
            raise PermissionDeniedException("CSRF token verification failed") from None

    def _csrf_tokens_match(self, request_csrf_token: Any, cookie_csrf_token: Any) -> bool:
        tokens = (request_csrf_token, cookie_csrf_token)
        if not all(isinstance(token, str) and token.isascii() for token in tokens):
            return False
        if compare_digest(request_csrf_token, cookie_csrf_token):
            # The same token twice (what our forms and htmx send): one HMAC to check,
            # not the same one computed twice.
            return self._decode_csrf_token(request_csrf_token) is not None
        return super()._csrf_tokens_match(request_csrf_token, cookie_csrf_token)
