"""Site pages that belong to no feature: the front door, Contact Us, the style guide.

URL map:  GET /            landing page (login, register, pay, quick links);
                           a signed-in resident goes straight to My Account
          GET /language?lang=es&next=/path   switch English / Español
          GET /contact     Contact Us
          GET /dev/styleguide   every partial in every state (development only)
          GET /accessibility   accessibility statement
          GET /privacy         what the portal keeps
"""

from __future__ import annotations

from litestar import get
from litestar.response import Redirect, Template

from portal.i18n import LOCALES, locale_cookie
from portal.pages.styleguide import styleguide_context
from portal.services import AppServices
from portal.settings import Settings
from portal.web import PortalRequest, local_path, render


@get("/", name="home")
async def home(request: PortalRequest) -> Template | Redirect:
    if request.user:
        return Redirect("/account", status_code=303)
    return render(request, "pages/index.html")


@get("/contact")
async def contact(request: PortalRequest) -> Template:
    return render(request, "pages/contact.html")


@get("/language")
async def language(request: PortalRequest, services: AppServices) -> Redirect:
    """Switch between English and Español; the choice is kept in a cookie (and, when
    signed in, on the resident's account so emails follow it). Until a visitor chooses,
    pages follow their browser's language (Accept-Language), never their location."""
    wanted = request.query_params.get("lang", "")
    response = Redirect(local_path(request.query_params.get("next"), "/"), status_code=303)
    if wanted in LOCALES:
        response.set_cookie(locale_cookie(wanted, services.settings.production))
        if request.user:
            await services.profiles.set_locale(request.user, wanted)
    return response


@get("/dev/styleguide")
async def styleguide(request: PortalRequest) -> Template:
    return render(request, "pages/styleguide.html", **styleguide_context())


@get("/accessibility")
async def accessibility(request: PortalRequest) -> Template:
    return render(request, "pages/accessibility.html")


@get("/privacy")
async def privacy(request: PortalRequest) -> Template:
    return render(request, "pages/privacy.html")


def handlers(settings: Settings) -> list:
    found = [home, contact, language, accessibility, privacy]
    if not settings.production:
        found.append(styleguide)
    return found
