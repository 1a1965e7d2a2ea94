import pytest

from helpers import DESKTOP, PHONE, assert_accessible


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["320px", "desktop"])
@pytest.mark.parametrize("path", ["/", "/dev/styleguide", "/contact", "/nope"])
def test_pages_pass_axe(live_server, new_page, viewport, path):
    page = new_page(viewport)
    page.goto(live_server.url + path)
    assert_accessible(page, f"at {viewport['width']}px")
