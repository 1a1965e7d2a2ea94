"""Litestar's CSRF middleware, refusing odd tokens with a 403 instead of crashing.

Litestar 2.25 compares tokens with `secrets.compare_digest`, which raises TypeError for
text with non-ASCII characters, and takes `len()` of whatever the form carries as
`_csrf_token`, an uploaded file included. Either one is a forged or broken form: it is
refused like any other wrong token, so the resident sees "This form could not be sent".
"""

from __future__ import annotations

from typing import Any

from litestar.middleware.csrf import CSRFMiddleware


class CSRFGuard(CSRFMiddleware):
    def _csrf_tokens_match(self, request_csrf_token: Any, cookie_csrf_token: Any) -> bool:
        tokens = (request_csrf_token, cookie_csrf_token)
        if not all(isinstance(token, str) and token.isascii() for token in tokens):
            return False
        return super()._csrf_tokens_match(request_csrf_token, cookie_csrf_token)
