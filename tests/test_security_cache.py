"""`Cache-Control: no-store` on every public page that can show personal data (issue 11,
item 16): the pay flow, receipts, one-time links and the development mailbox."""

from __future__ import annotations

import re

import pytest

from portal import db as portal_db
from portal.billing.importer import import_text
from portal.security.headers import needs_no_store

from resident_steps import post_form, registration
from sample_data import load_billing

CARD = {
    "card_number": "4242 4242 4242 4242",
    "expiry": "12/39",
    "security_code": "737",
    "name_on_card": "Maria Garcia",
    "action": "pay",
}


def hidden(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


@pytest.fixture
async def paid(settings, client):
    """A guest payment made: returns every response of the flow, by name."""
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "bills",
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        "0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n",
    )
    conn.close()
    seen = {}
    seen["POST /pay"] = amount = await post_form(
        client, "/pay", {"customer_number": "12345", "account_number": "67890"}
    )
    assert "M. G." in amount.text  # personal data (masked for a guest) on the page
    form = {
        "account_token": hidden(amount.text, "account_token"),
        "idempotency_key": hidden(amount.text, "idempotency_key"),
        "method": "card",
        "receipt_email": "payer@example.com",
    }
    seen["POST /pay/confirm (error)"] = await post_form(
        client, "/pay/confirm", {**form, "amount": "abc"}
    )
    assert seen["POST /pay/confirm (error)"].status_code == 422
    start = await post_form(
        client, "/pay/confirm", {**form, "amount": "84.10"}, follow_redirects=False
    )
    checkout = start.headers["location"]
    await client.get(checkout)
    done = await post_form(client, checkout, CARD, follow_redirects=False)
    seen["GET /pay/return"] = back = await client.get(
        done.headers["location"], follow_redirects=False
    )
    receipt_url = back.headers["location"]
    seen["GET /pay/receipt"] = await client.get(receipt_url)
    assert "Payment confirmation" in seen["GET /pay/receipt"].text
    seen["GET /pay/again"] = await client.get(receipt_url.replace("/receipt/", "/again/"))
    return seen


async def test_the_pay_flow_is_never_stored_by_a_cache(paid):
    amount_form = paid.pop("POST /pay")
    assert len(paid) == 4
    for name, response in paid.items():
        assert response.headers.get("cache-control") == "no-store", name
    # The amount form stays reachable with Back (its idempotency key is what makes a
    # second click the same payment; tests/test_payments_browser.py walks it), but no
    # shared cache keeps it and the browser never reuses it without asking.
    assert amount_form.headers.get("cache-control") == "private, no-cache"


async def test_a_refused_pay_lookup_is_never_stored(client, settings):
    load_billing(settings.database)
    refused = await post_form(client, "/pay", {"customer_number": "12345", "account_number": "1"})
    assert refused.status_code == 422
    assert refused.headers.get("cache-control") == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "/reset-password?token=abc",
        "/verify?username=maria1&verificationcode=abc",
        "/profile/email/confirm?token=abc",
        "/dev/mailbox",
        "/verify/resend",
        "/forgot-password",
        "/login",
        "/pay",
    ],
)
async def test_one_time_link_pages_are_never_stored(client, settings, path):
    load_billing(settings.database)
    response = await client.get(path, follow_redirects=False)
    assert response.status_code < 500
    assert response.headers.get("cache-control") == "no-store", path


async def test_the_dev_mailbox_message_is_never_stored(client, settings):
    load_billing(settings.database)
    await post_form(client, "/register", registration())
    for path in ["/dev/mailbox/1", "/dev/mailbox/1/html"]:
        response = await client.get(path)
        assert response.status_code == 200 and "/verify?" in response.text
        assert response.headers.get("cache-control") == "no-store", path


async def test_public_pages_without_personal_data_and_static_files_stay_cacheable(client):
    home = await client.get("/")
    assert home.headers.get("cache-control") != "no-store"
    css = await client.get("/static/css/site.css")
    assert "max-age=31536000" in css.headers["cache-control"]


async def test_pages_are_kept_out_of_shared_caches(client):
    """A public page still carries the visitor's own CSRF token (and on a first visit a
    new token cookie) and their language: a proxy or CDN must not hand one visitor's copy
    to the next. `private` lets the browser keep it, and nobody else."""
    for first_visit in (True, False):
        if first_visit:
            client.cookies.clear()
        for path in ("/", "/contact", "/accessibility", "/no-such-page"):
            response = await client.get(path)
            assert response.headers["cache-control"] == "private", (path, first_visit)
    assert (await client.get("/login")).headers["cache-control"] == "no-store"
    assert "public" in (await client.get("/robots.txt")).headers["cache-control"]


def test_prefixes_match_whole_path_segments():
    assert needs_no_store("/pay") and needs_no_store("/pay/receipt/x")
    assert needs_no_store("/accounts/1/usage.csv") and needs_no_store("/account")
    assert not needs_no_store("/payments/webhook") and not needs_no_store("/paying")
    assert not needs_no_store("/") and not needs_no_store("/static/css/site.css")
