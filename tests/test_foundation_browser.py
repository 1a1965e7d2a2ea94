"""The landing page and style guide in a real Chromium, found the way a screen reader
finds things: by role, accessible name and label. At 320 px and at desktop width, with
JavaScript on and off."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from litestar import MediaType, get
from playwright.sync_api import expect

from conftest import LiveServer
from helpers import DESKTOP, PHONE, assert_accessible

pytestmark = pytest.mark.browser

VIEWPORTS = pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["320px", "desktop"])
JS = pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])


def scripts_blocked(new_page, viewport, url):
    """The page as a browser without JavaScript renders it, but with axe able to run.

    axe-core cannot run in a context whose JavaScript is off (its promise never
    settles), so we load the page where JavaScript works and refuse the page's own
    script files: the DOM is then the one a no-JavaScript browser gets.
    """
    page = new_page(viewport, js=True)
    page.route("**/*.js*", lambda route: route.abort())
    page.goto(url)
    assert page.evaluate("typeof window.htmx") == "undefined"
    return page


@VIEWPORTS
@JS
def test_landing_page_shows_what_the_city_guide_describes(live_server, new_page, viewport, js):
    page = new_page(viewport, js=js)
    response = page.goto(live_server.url + "/")
    assert response.status == 200

    login = page.get_by_role("region", name="Login to My Account")
    expect(login.get_by_role("heading", name="Login to My Account")).to_be_visible()
    expect(login.get_by_label("Username", exact=True)).to_be_visible()
    expect(login.get_by_label("Password", exact=True)).to_be_visible()
    expect(login.get_by_label("Password", exact=True)).to_have_attribute("type", "password")
    expect(login.get_by_role("checkbox", name="Remember me")).to_be_visible()
    expect(login.get_by_role("button", name="Login", exact=True)).to_be_visible()
    expect(login.get_by_role("link", name="Forgot Username")).to_be_visible()
    expect(login.get_by_role("link", name="Forgot Password")).to_be_visible()

    register = page.get_by_role("region", name="Register Now")
    expect(register.get_by_role("heading", name="Register Now")).to_be_visible()
    expect(register.get_by_text("Get 24/7 Online Access Anywhere, Anytime")).to_be_visible()
    expect(register.get_by_role("link", name="Register Now")).to_be_visible()

    pay = page.get_by_role("region", name="Pay My Bill")
    expect(pay.get_by_role("heading", name="Pay My Bill")).to_be_visible()
    expect(pay.get_by_text("Quickly Pay Your Bill Without Registering")).to_be_visible()
    expect(pay.get_by_role("link", name="Pay Now")).to_be_visible()

    quick = page.get_by_role("region", name="Quick Links")
    expect(quick.get_by_role("heading", name="Quick Links")).to_be_visible()
    expect(quick.get_by_role("link", name="Pay My Bill")).to_be_visible()
    expect(quick.get_by_role("link", name="Contact Us")).to_be_visible()

    contact = page.get_by_role("region", name="Contact Us")
    expect(contact.get_by_role("heading", name="Contact Us")).to_be_visible()
    phone = contact.get_by_role("link", name="(909) 395-2050")
    expect(phone).to_be_visible()
    expect(phone).to_have_attribute("href", "tel:9093952050")

    # The show-password button is an enhancement: only there when JavaScript runs.
    show = login.get_by_role("button", name="Show password")
    if js:
        expect(show).to_be_visible()
    else:
        expect(show).to_be_hidden()

    if js:
        assert_accessible(page, f"at {viewport['width']}px with JavaScript")
    else:
        assert_accessible(scripts_blocked(new_page, viewport, page.url), "without page scripts")

    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page scrolls sideways: {width}px wide"


@VIEWPORTS
@JS
def test_skip_link_moves_focus_to_main(live_server, new_page, viewport, js):
    page = new_page(viewport, js=js)
    page.goto(live_server.url + "/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()  # visible when focused, for sighted keyboard users
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()
    # The next Tab continues inside main, not back at the top of the page.
    page.keyboard.press("Tab")
    inside = page.evaluate("document.getElementById('main').contains(document.activeElement)")
    assert inside


def test_show_password_reveals_and_hides(live_server, new_page):
    page = new_page(PHONE)
    page.goto(live_server.url + "/")
    password = page.get_by_label("Password", exact=True)
    password.fill("correct horse battery")
    show = page.get_by_role("button", name="Show password")
    show.click()
    expect(password).to_have_attribute("type", "text")
    expect(show).to_have_attribute("aria-pressed", "true")
    show.click()
    expect(password).to_have_attribute("type", "password")
    expect(password).to_have_value("correct horse battery")


def test_every_link_on_the_landing_page_answers_200(live_server, new_page):
    page = new_page(DESKTOP)
    page.goto(live_server.url + "/")
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
    assert len(hrefs) >= 10
    checked = set()
    for href in hrefs:
        url = urljoin(page.url, href)
        parts = urlsplit(url)
        if parts.scheme == "tel":
            continue
        assert parts.scheme == "http" and parts.netloc == urlsplit(live_server.url).netloc, href
        target = url.split("#")[0]
        if target in checked:
            continue
        checked.add(target)
        response = page.request.get(target)
        assert response.status == 200, f"{href} answered {response.status}"
    assert len(checked) >= 7


@VIEWPORTS
def test_style_guide_passes_axe(live_server, new_page, viewport):
    page = new_page(viewport)
    page.goto(live_server.url + "/dev/styleguide")
    expect(page.get_by_role("heading", name="Style guide", level=1)).to_be_visible()
    assert_accessible(page, f"style guide at {viewport['width']}px")


def test_the_axe_check_can_fail(new_page):
    page = new_page(DESKTOP)
    page.set_content(
        "<!doctype html><html lang='en'><head><title>Broken</title></head>"
        "<body><main><h1>Broken</h1><input type='text' name='q'>"
        "<img src='data:image/gif;base64,R0lGODlhAQABAAAAACw=' width='10' height='10'>"
        "</main></body></html>"
    )
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_accessible(page, "deliberately broken")
    message = str(failed.value)
    assert "image-alt" in message
    assert "label" in message


@get("/_test/unlabelled", media_type=MediaType.HTML)
async def unlabelled() -> str:
    """A test-only page with a text box that has no label."""
    return (
        "<!doctype html><html lang='en'><head><title>Broken</title></head>"
        "<body><main><h1>Broken</h1><input type='text' name='q'></main></body></html>"
    )


def test_the_axe_check_of_a_page_without_javascript_judges_each_page_shown(settings, new_page):
    """The no-JavaScript check shows each page again in one kept JavaScript-on page: it
    must judge the page shown now, not one before (first load, then in place)."""
    server = LiveServer(settings, extra_routes=(unlabelled,)).start()
    try:
        page = new_page(PHONE, js=False)
        page.goto(server.url + "/")
        assert_accessible(page, "landing page")
        page.goto(server.url + "/_test/unlabelled")
        with pytest.raises(pytest.fail.Exception) as failed:
            assert_accessible(page, "deliberately broken")
        assert "label" in str(failed.value) and "JavaScript off" in str(failed.value)
        page.goto(server.url + "/")
        assert_accessible(page, "landing page again")
    finally:
        server.stop()
