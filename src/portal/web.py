"""Helpers shared by every routes module: one handler, two renderings.

`render()` returns the full page for a plain request and the named partial for an htmx
request, from the same context, with `Vary: HX-Request` so caches keep them apart.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import FormMultiDict
from litestar.exceptions import ClientException
from litestar.response import Template


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    page: str,
    *,
    partial: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> Template:
    name = partial if partial and is_htmx(request) else page
    context.setdefault("user", getattr(request.state, "user", None))
    context.setdefault("is_fragment", name == partial)
    return Template(
        template_name=name,
        context=context,
        status_code=status_code,
        headers={"Vary": "HX-Request"},
    )


class PortalRequest(Request):
    """The app's request class (CSRF middleware included): a multipart part that is not
    text in its declared charset is a 400, not a crash in Litestar's parser."""

    async def form(self) -> FormMultiDict:
        try:
            return await super().form()
        except (UnicodeDecodeError, LookupError) as exc:
            raise ClientException("the form is not text in its declared charset") from exc


async def form_data(request: Request) -> dict[str, str]:
    """The posted form as plain strings: a repeated field keeps its first value."""
    form = await request.form()
    data: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in data:
            data[key] = value
    return data


def client_address(request: Request) -> str:
    """The resident's network address, for throttling and the audit log.

    The socket's peer, unless that peer is one of PORTAL_TRUSTED_PROXIES: then the
    address that proxy says it received the request from (the last X-Forwarded-For
    entry that is not itself a trusted proxy). A header from anyone else is ignored,
    so nobody can pick their own address to dodge the sign-in throttle."""
    peer = request.client.host if request.client else "-"
    trusted = request.app.state.settings.trusted_proxies
    if peer not in trusted:
        return peer
    hops = [
        hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()
    ]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return peer
