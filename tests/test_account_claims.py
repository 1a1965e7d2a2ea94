"""Proof of ownership beyond the two numbers on a bill (security review, item 2),
masking for owners only (item 3), look-up budgets, and the payment key's binding.

These run with the product's default PORTAL_ACCOUNT_PROOF=bill_amount.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from portal import db as portal_db
from portal.app import create_app
from portal.billing.importer import import_text
from portal.settings import Settings

from resident_steps import outbox, post_form, query
from resident_steps import registration as two_numbers_registration
from sample_data import GOOD_PASSWORD, load_billing

NOT_FOUND = "We could not find an account with this customer number and account number"
BILLS = (
    "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
    "0012345,0067890,B1,2026-08-01,2026-08-21,61.00\n"
    "0012345,0067890,B2,2026-09-01,2026-09-21,72.50\n"
    "0012345,0067890,B3,2026-10-01,2026-10-21,84.10\n"
    "0022222,0033333,J1,2026-10-01,2026-10-21,19.99\n"
)


def registration(**overrides: str) -> dict[str, str]:
    """Maria's registration, with the amount of her latest bill."""
    return two_numbers_registration(**{"bill_amount": "84.10", **overrides})


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def execute(path, sql: str, params=()) -> None:
    conn = portal_db.connect_sync(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


@pytest.fixture
def proof_settings(settings):
    return replace(settings, account_proof="bill_amount", lookups_per_address=20)


@pytest.fixture
async def portal(proof_settings):
    load_billing(proof_settings.database)
    conn = portal_db.connect_sync(proof_settings.database)
    import_text(conn, "bills", BILLS)
    conn.close()
    async with AsyncTestClient(app=create_app(proof_settings), base_url="http://portal.test") as c:
        yield c


def verify_all(settings) -> None:
    execute(settings.database, "UPDATE users SET verified_at = ?", (ago(seconds=1),))


async def sign_in(client, username: str) -> None:
    done = await post_form(
        client, "/login", {"username": username, "password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert done.status_code == 303, done.text


async def test_registration_asks_for_the_bill_amount_and_shows_where_it_is(portal):
    page = (await portal.get("/register")).text
    assert "Amount of your latest bill" in page
    assert "Amount due" in page  # the sample bill's caption points at it


@pytest.mark.parametrize("amount", ["84.10", "$72.50", "72.5"])
async def test_either_of_the_two_latest_bills_proves_the_account(proof_settings, portal, amount):
    done = await post_form(portal, "/register", registration(bill_amount=amount))
    assert done.status_code == 200, re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]+)', done.text)
    assert query(proof_settings.database, "SELECT count(*) FROM user_accounts")[0][0] == 1


@pytest.mark.parametrize("amount", ["61.00", "84.11", "0"])
async def test_a_wrong_amount_reads_like_a_wrong_account_number(proof_settings, portal, amount):
    wrong_amount = await post_form(portal, "/register", registration(bill_amount=amount))
    wrong_number = await post_form(
        portal, "/register", registration(account_number="67891", bill_amount="84.10")
    )
    assert wrong_amount.status_code == wrong_number.status_code == 422
    assert NOT_FOUND in wrong_amount.text and NOT_FOUND in wrong_number.text
    import difflib

    a = wrong_amount.text.replace(f'value="{amount}"', "X").splitlines()
    b = wrong_number.text.replace("67891", "67890").replace('value="84.10"', "X").splitlines()
    assert a == b, "\n".join(difflib.unified_diff(a, b, lineterm=""))
    assert query(proof_settings.database, "SELECT count(*) FROM users")[0][0] == 0


async def test_the_bill_amount_is_asked_for_in_its_own_words(portal):
    missing = await post_form(portal, "/register", registration(bill_amount=""))
    assert "Enter the amount of your latest bill" in missing.text
    odd = await post_form(portal, "/register", registration(bill_amount="lots"))
    assert "Enter the amount in dollars and cents, like 84.10" in odd.text


async def test_the_per_field_check_of_the_numbers_alone_reveals_nothing(portal):
    """Only with the amount does a field check look the account up."""
    real = await post_form(
        portal, "/register/check/account_number", registration(), headers={"HX-Request": "true"}
    )
    fake = await post_form(
        portal,
        "/register/check/account_number",
        registration(account_number="99999"),
        headers={"HX-Request": "true"},
    )
    assert real.text == fake.text
    wrong = await post_form(
        portal,
        "/register/check/bill_amount",
        registration(bill_amount="10.00"),
        headers={"HX-Request": "true"},
    )
    assert NOT_FOUND in wrong.text


async def test_a_stranger_with_the_numbers_cannot_add_someone_elses_account(proof_settings, portal):
    # James registers his own account, then tries to add Maria's with only her numbers.
    james = registration(
        username="james2",
        customer_number="22222",
        account_number="33333",
        bill_amount="19.99",
        email="james@example.com",
        confirm_email="james@example.com",
    )
    assert (await post_form(portal, "/register", james)).status_code == 200
    verify_all(proof_settings)
    await sign_in(portal, "james2")
    guess = {"customer_number": "12345", "account_number": "67890", "bill_amount": "50.00"}
    refused = await post_form(portal, "/account/link", guess)
    assert refused.status_code == 422 and NOT_FOUND in refused.text
    assert "Amount of your latest bill" in (await portal.get("/account/link")).text
    linked = query(proof_settings.database, "SELECT count(*) FROM user_accounts")[0][0]
    assert linked == 1
    added = await post_form(
        portal, "/account/link", {**guess, "bill_amount": "84.10"}, follow_redirects=False
    )
    assert added.status_code == 303  # with the amount from her bill, the claim is proven


async def test_the_owner_hears_when_someone_proves_their_numbers(proof_settings, portal):
    assert (await post_form(portal, "/register", registration())).status_code == 200
    verify_all(proof_settings)
    again = await post_form(
        portal,
        "/register",
        registration(username="squatter1", email="sq@example.net", confirm_email="sq@example.net"),
    )
    assert again.status_code == 422 and "already registered" in again.text
    [alert] = [m for m in outbox(proof_settings.database) if "tried to" in m["subject"]]
    assert alert["to_addr"] == "maria@example.com"
    assert "123 Euclid Ave" in alert["body_text"] and "0067890" not in alert["body_text"]
    assert "(909) 395-2050" in alert["body_text"]


async def test_an_unverified_registration_releases_the_account_after_a_day(proof_settings, portal):
    squat = registration(username="squatter1", email="nobody@example.net")
    squat["confirm_email"] = "nobody@example.net"
    assert (await post_form(portal, "/register", squat)).status_code == 200
    mine = registration()
    held = await post_form(portal, "/register", mine)
    assert held.status_code == 422 and "already registered" in held.text
    execute(proof_settings.database, "UPDATE users SET created_at = ?", (ago(hours=25),))
    assert (await post_form(portal, "/register", mine)).status_code == 200
    names = [r[0] for r in query(proof_settings.database, "SELECT username FROM users")]
    assert names == ["maria1"]
    released = query(
        proof_settings.database, "SELECT * FROM audit_log WHERE event = 'registration_released'"
    )
    assert [r["username"] for r in released] == ["squatter1"]


async def test_number_look_ups_have_a_budget_per_network(proof_settings, portal):
    """60 look-ups on /pay in a row used to find valid pairs; now the network waits."""
    codes = []
    for n in range(25):
        response = await post_form(
            portal, "/pay", {"customer_number": "12345", "account_number": str(10000 + n)}
        )
        codes.append(response.status_code)
    assert codes[:20] == [422] * 20 and set(codes[20:]) == {429}
    assert "Wait 10 minutes, then try again" in response.text
    assert "(909) 395-2050" in response.text
    assert int(response.headers["retry-after"]) > 500
    # every look-up form shares the budget, and one audit row marks the refusal
    assert (await post_form(portal, "/register", registration())).status_code == 429
    rows = query(proof_settings.database, "SELECT * FROM audit_log WHERE event = 'throttled'")
    assert len(rows) == 1 and "budget=lookups" in rows[0]["detail"]


async def test_the_look_up_budget_has_an_overall_limit_too(proof_settings):
    load_billing(proof_settings.database)
    settings = replace(proof_settings, lookups_per_address=100, lookups_overall=5)
    app = create_app(replace(settings, trusted_proxies=("testclient",)))
    async with AsyncTestClient(app=app, base_url="http://portal.test") as client:
        for n in range(5):
            headers = {"x-forwarded-for": f"198.51.100.{n}"}
            data = {"customer_number": "1", "account_number": "2"}
            assert (await post_form(client, "/pay", data, headers=headers)).status_code == 422
        late = await post_form(client, "/pay", data, headers={"x-forwarded-for": "192.0.2.1"})
        assert late.status_code == 429


async def test_field_checks_while_typing_are_limited_without_a_full_error_page(portal):
    for _ in range(120):
        await post_form(portal, "/register/check/username", {"username": "x"})
    limited = await post_form(
        portal, "/register/check/password", registration(), headers={"HX-Request": "true"}
    )
    assert limited.status_code == 200 and "<html" not in limited.text
    assert "Too many checks from your network" in limited.text


async def test_the_field_check_budget_is_the_operators_to_set(proof_settings, monkeypatch):
    """PORTAL_CHECKS_PER_ADDRESS and PORTAL_CHECKS_OVERALL (where many residents share
    one address): three checks a minute per network and five overall, here."""
    monkeypatch.setenv("PORTAL_DATABASE", str(proof_settings.database))
    monkeypatch.setenv("PORTAL_CHECKS_PER_ADDRESS", "3")
    monkeypatch.setenv("PORTAL_CHECKS_OVERALL", "5")
    settings = Settings.from_env()
    assert (settings.checks_per_address, settings.checks_overall) == (3, 5)
    settings = replace(settings, trusted_proxies=("testclient",))
    async with AsyncTestClient(app=create_app(settings), base_url="http://portal.test") as client:

        async def check(address: str) -> bool:
            answer = await post_form(
                client,
                "/register/check/username",
                {"username": "x"},
                headers={"HX-Request": "true", "x-forwarded-for": address},
            )
            return "Too many checks" not in answer.text

        assert [await check("198.51.100.1") for _ in range(4)] == [True, True, True, False]
        assert [await check("198.51.100.2"), await check("198.51.100.3")] == [True, True]
        assert not await check("198.51.100.4")  # five answered in this minute, overall


async def test_another_resident_sees_a_bill_holders_details_masked(proof_settings, portal):
    """Masking depends on ownership, not on being signed in."""
    james = registration(
        username="james2",
        customer_number="22222",
        account_number="33333",
        bill_amount="19.99",
        email="james@example.com",
        confirm_email="james@example.com",
    )
    assert (await post_form(portal, "/register", james)).status_code == 200
    verify_all(proof_settings)
    await sign_in(portal, "james2")
    page = await post_form(portal, "/pay", {"customer_number": "12345", "account_number": "67890"})
    assert page.status_code == 200
    assert "123 Euclid Ave" not in page.text and "Maria Garcia" not in page.text
    assert "M. G." in page.text
    own = await post_form(portal, "/pay", {"customer_number": "22222", "account_number": "33333"})
    assert "456 Holt Blvd" in own.text and "James Smith" in own.text


def _hidden(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


async def test_a_payment_key_reused_for_another_account_or_amount_is_refused(
    proof_settings, portal
):
    first = (
        await post_form(portal, "/pay", {"customer_number": "12345", "account_number": "67890"})
    ).text
    other = (
        await post_form(portal, "/pay", {"customer_number": "22222", "account_number": "33333"})
    ).text
    key = _hidden(first, "idempotency_key")
    data = {
        "account_token": _hidden(first, "account_token"),
        "idempotency_key": key,
        "amount": "84.10",
        "method": "card",
    }
    started = await post_form(portal, "/pay/confirm", data, follow_redirects=False)
    assert started.status_code == 303
    reused = await post_form(
        portal,
        "/pay/confirm",
        {**data, "account_token": _hidden(other, "account_token")},
        follow_redirects=False,
    )
    assert reused.status_code == 422 and "already used for a different payment" in reused.text
    assert started.headers["location"] not in reused.text
    bigger = await post_form(portal, "/pay/confirm", {**data, "amount": "90.00"})
    assert bigger.status_code == 422 and "already used for a different payment" in bigger.text
    assert query(proof_settings.database, "SELECT count(*) FROM payments")[0][0] == 1
