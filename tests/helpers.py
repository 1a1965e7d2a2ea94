"""Helpers for tests: CSRF tokens, axe-core, htmx waits, viewport sizes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from litestar import get
from litestar.testing import AsyncTestClient

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
PHONE = {"width": 320, "height": 640}
DESKTOP = {"width": 1280, "height": 900}


@get("/_test/boom")
async def boom() -> str:
    """A test-only route that crashes, for the 500 page (register it on a test's app)."""
    raise RuntimeError("secret-detail from the database layer")


async def csrf_token(client: AsyncTestClient, path: str = "/") -> str:
    """GET a page (the CSRF cookie is only set on safe methods) and return the token."""
    names = ("portal_csrf", "__Host-portal_csrf")  # the second in production
    if not any(name in client.cookies for name in names):
        await client.get(path)
    return next(client.cookies[name] for name in names if name in client.cookies)


def _axe_script() -> str:
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


AXE_SOURCE: list[str] = []


def assert_accessible(page, context: str = "") -> None:
    """Run axe-core (WCAG 2.2 AA tags) in the page; fail listing every violation.

    axe needs JavaScript. For a page with JavaScript off, the HTML it shows is shown
    again, at the same address, by a JavaScript-on page whose own scripts are blocked,
    so axe judges exactly what the resident without JavaScript sees, styles included."""
    if not getattr(page, "portal_js", True):
        _run_axe(_no_js_copy(page), context + " (JavaScript off)")
        return
    _run_axe(page, context)


# One JavaScript-on "copy" page per browser and window size, kept for the whole run: a
# new context, page and axe for every check took about 0.4 s of a no-JS walk's checks.
_COPIES: dict[tuple, tuple] = {}


def _no_js_copy(page):
    """A JavaScript-on page showing what `page` (JavaScript off) shows, with the site's
    scripts blocked. The first time for a server: loaded from the page's address (served
    the HTML as it is now). Then the document is replaced in place (the stylesheets still
    come from the server), and axe, already loaded in that window, stays."""
    html, url = page.content(), page.url
    viewport = page.portal_viewport
    key = (id(page.portal_browser), viewport["width"], viewport["height"])
    if key not in _COPIES:
        context = page.portal_browser.new_context(viewport=viewport)
        context.route("**/static/js/**", lambda route: route.abort())
        served: dict[str, str] = {}
        context.route(
            lambda u: u == served.get("url"),
            lambda route: route.fulfill(body=served["html"], content_type="text/html"),
        )
        _COPIES[key] = (context.new_page(), served)
    copy, served = _COPIES[key]
    if urlsplit(copy.url)[:2] == urlsplit(url)[:2]:
        copy.set_content(html)
    else:  # another test's server
        served.update(url=url, html=html)
        copy.goto(url)
    return copy


def _run_axe(page, context: str) -> None:
    if not AXE_SOURCE:
        AXE_SOURCE.append(_axe_script())
    if not page.evaluate("() => Boolean(window.axe)"):
        page.evaluate(AXE_SOURCE[0])
    results = page.evaluate(
        "options => axe.run(document, options)",
        {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]},
    )
    violations = results["violations"]
    if violations:
        lines = [f"axe-core found {len(violations)} violation(s) on {page.url} {context}"]
        for violation in violations:
            lines.append(f"- {violation['id']}: {violation['help']}")
            for node in violation["nodes"][:5]:
                lines.append(f"    {node['target']}: {node['failureSummary']}")
        pytest.fail("\n".join(lines), pytrace=False)


# htmx marks an element with these classes from the request until the new content has
# settled (its afterSettle handlers, such as moving focus, run before the last goes).
HTMX_BUSY = ".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added"


def wait_for_htmx(page) -> None:
    """Wait, by polling the page, until htmx has nothing in flight: no request, swap or
    settle under way (JavaScript-on pages only). No fixed sleep."""
    page.wait_for_function(
        f"() => window.htmx && !document.querySelector({HTMX_BUSY!r})", timeout=10_000
    )
