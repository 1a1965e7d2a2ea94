"""One handler, two renderings, and hx-boost: an htmx request that targets a part of
the page gets the partial; a boosted link or form (hx-boost on <body>, header
HX-Boosted) is a page change and gets the whole page, like a plain request."""

from __future__ import annotations

from resident_steps import post_form, registration
from sample_data import load_billing

HTMX = {"HX-Request": "true"}
BOOSTED = {"HX-Request": "true", "HX-Boosted": "true"}


async def test_targeted_htmx_post_gets_the_form_alone(settings, client):
    load_billing(settings.database)
    response = await post_form(client, "/register", registration(username="a"), headers=HTMX)
    assert response.status_code == 422
    assert 'id="registration"' in response.text and "<h1" not in response.text


async def test_boosted_post_gets_the_whole_page(settings, client):
    load_billing(settings.database)
    response = await post_form(client, "/register", registration(username="a"), headers=BOOSTED)
    assert response.status_code == 422
    assert "<h1" in response.text and 'id="registration"' in response.text
    assert "<title>Error: New User Registration" in response.text
    assert "HX-Request" in response.headers["vary"]


async def test_every_page_says_boost_and_the_downloads_do_not(client):
    page = (await client.get("/")).text
    assert '<body hx-boost="true"' in page
    assert 'class="language-link" hx-boost="false"' in page
