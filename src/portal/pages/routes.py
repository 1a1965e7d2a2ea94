"""Site pages that belong to no feature: the front door, Contact Us, the style guide.

URL map:  GET /            landing page (login, register, pay, quick links)
          GET /contact     Contact Us
          GET /dev/styleguide   every partial in every state (development only)
          GET /accessibility, /privacy   plain "not available yet" pages
"""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Template

from portal.i18n import N_, _
from portal.pages.styleguide import styleguide_context
from portal.settings import Settings
from portal.web import render


@get("/", name="home")
async def home(request: Request) -> Template:
    return render(request, "pages/index.html")


@get("/contact")
async def contact(request: Request) -> Template:
    return render(request, "pages/contact.html")


@get("/dev/styleguide")
async def styleguide(request: Request) -> Template:
    return render(request, "pages/styleguide.html", **styleguide_context())


def _not_ready(path: str, heading: str):
    @get(path, name=f"not-ready{path.replace('/', '-')}")
    async def handler(request: Request) -> Template:
        return render(request, "pages/not_ready.html", heading=_(heading))

    return handler


NOT_READY = {
    "/accessibility": N_("Accessibility"),
    "/privacy": N_("Privacy"),
}


def handlers(settings: Settings) -> list:
    found = [home, contact]
    found += [_not_ready(path, heading) for path, heading in NOT_READY.items()]
    if not settings.production:
        found.append(styleguide)
    return found
