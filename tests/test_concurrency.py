"""Real concurrency against a real server: requests that truly overlap (the in-process
test client runs one request at a time, so these go through uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from portal import db as portal_db
from portal.billing.importer import import_text

from resident_steps import query, registration
from sample_data import load_billing


@pytest.fixture
def live_settings(settings):
    load_billing(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(
        conn,
        "bills",
        "customer_number,account_number,bill_number,bill_date,due_date,amount_due\n"
        "0012345,0067890,B1,2026-10-01,2026-10-21,84.10\n",
    )
    conn.close()
    return settings


async def _client(base: str) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False)
    await client.get("/")
    return client, client.cookies["portal_csrf"]


async def test_twenty_concurrent_identical_payment_posts_make_one_payment(live_server, settings):
    client, token = await _client(live_server.url)
    try:
        form = await client.post(
            "/pay",
            data={"customer_number": "12345", "account_number": "67890", "_csrf_token": token},
        )
        assert form.status_code == 200
        data = {
            "account_token": re.search(r'name="account_token" value="([^"]+)"', form.text).group(1),
            "idempotency_key": re.search(
                r'name="idempotency_key" value="([^"]+)"', form.text
            ).group(1),
            "amount": "84.10",
            "method": "card",
            "_csrf_token": token,
        }
        responses = await asyncio.gather(
            *(client.post("/pay/confirm", data=data) for _ in range(20))
        )
    finally:
        await client.aclose()
    assert [r.status_code for r in responses] == [303] * 20
    assert len({r.headers["location"] for r in responses}) == 1
    assert query(settings.database, "SELECT count(*) FROM payments")[0][0] == 1
    assert query(settings.database, "SELECT count(*) FROM sandbox_sessions")[0][0] == 1
    assert query(settings.database, "SELECT count(*) FROM payment_events")[0][0] == 1


async def test_racing_registrations_for_one_username_or_one_account(live_server, settings):
    forms = [
        registration(),  # maria1 on 12345/67890
        registration(
            username="MARIA1",
            customer_number="22222",
            account_number="33333",
            email="j@example.com",
            confirm_email="j@example.com",
        ),  # same username, other account
        registration(username="another1"),  # other username, same account
    ]
    clients = [await _client(live_server.url) for _ in range(6)]
    try:
        posts = [
            client.post("/register", data={**forms[i % 3], "_csrf_token": token})
            for i, (client, token) in enumerate(clients)
        ]
        responses = await asyncio.gather(*posts)
    finally:
        for client, _ in clients:
            await client.aclose()
    codes = [r.status_code for r in responses]
    assert 500 not in codes and set(codes) <= {200, 422}
    users = query(settings.database, "SELECT username_key FROM users")
    links = query(settings.database, "SELECT account_id FROM user_accounts")
    # each username at most once, each account at most once, no user without its account
    assert (
        len(users) == len({u[0] for u in users}) == len(links) == len({link[0] for link in links})
    )
    assert 1 <= len(users) <= 2 and codes.count(200) == len(users)
    for response in responses:
        if response.status_code == 422:
            assert (
                "That username is taken" in response.text or "already registered" in response.text
            )


async def test_forgot_password_answers_before_the_work_is_done(live_server, settings):
    """The answer never waits on looking the name up or writing the link (security
    review, item 12): with the database's write lock held elsewhere, the page still
    comes back at once, the same for a known and an unknown name, and the link is
    written when the lock is free."""
    client, token = await _client(live_server.url)
    done = await client.post("/register", data={**registration(), "_csrf_token": token})
    assert done.status_code == 200
    await client.aclose()
    holder = portal_db.connect_sync(settings.database)
    holder.execute("BEGIN IMMEDIATE")  # another writer (an import) holds the lock
    client, token = await _client(live_server.url)
    try:
        answers = []
        for name in ("maria1", "nobody7"):
            started = asyncio.get_running_loop().time()
            response = await client.post(
                "/forgot-password", data={"identifier": name, "_csrf_token": token}
            )
            answers.append((response, asyncio.get_running_loop().time() - started))
        for response, seconds in answers:
            assert response.status_code == 200 and "Check your email" in response.text
            assert seconds < 3, seconds  # the write waits for the lock; the answer does not
        assert answers[0][0].text.replace("maria1", "X") == answers[1][0].text.replace(
            "nobody7", "X"
        )
    finally:
        holder.rollback()
        holder.close()
        await client.aclose()
    for _ in range(100):
        if query(settings.database, "SELECT count(*) FROM tokens WHERE purpose = 'reset'")[0][0]:
            break
        await asyncio.sleep(0.05)
    assert (
        query(settings.database, "SELECT count(*) FROM tokens WHERE purpose = 'reset'")[0][0] == 1
    )
