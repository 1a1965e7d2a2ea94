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
