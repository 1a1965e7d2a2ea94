"""Shared steps for the accounts tests: billing data, registration, reading the outbox."""

from __future__ import annotations

import re
import sqlite3
from urllib.parse import parse_qs, urlparse

from litestar.testing import AsyncTestClient

from portal import db as portal_db
from portal.billing.importer import import_text

from helpers import csrf_token

ACCOUNTS_CSV = """customer_number,account_number,name,service_address,status
0012345,0067890,Maria Garcia,123 Euclid Ave,active
0022222,0033333,James Smith,456 Holt Blvd,active
0044444,0055555,Closed Person,789 Mountain Ave,closed
0066666,0077777,Ana Lopez,12 Vineyard Ave,active
"""
GOOD_PASSWORD = "rain barrel garden hose"


def load_billing(path) -> None:
    portal_db.upgrade(path)
    conn = portal_db.connect_sync(path)
    import_text(conn, "accounts", ACCOUNTS_CSV)
    conn.close()


def registration(**overrides: str) -> dict[str, str]:
    form = {
        "username": "maria1",
        "password": GOOD_PASSWORD,
        "confirm_password": GOOD_PASSWORD,
        "customer_number": "12345",
        "account_number": "67890",
        "paperless": "yes",
        "email": "maria@example.com",
        "confirm_email": "maria@example.com",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


async def post_form(client: AsyncTestClient, path: str, data: dict, **kwargs):
    data = {**data, "_csrf_token": await csrf_token(client)}
    return await client.post(path, data=data, **kwargs)


def outbox(path) -> list[sqlite3.Row]:
    conn = portal_db.connect_sync(path)
    rows = conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
    conn.close()
    return rows


def query(path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = portal_db.connect_sync(path)
    rows = conn.execute(sql, params).fetchall()
    conn.close()
    return rows


def link_in(text: str, path: str) -> str:
    match = re.search(r"https?://\S*" + re.escape(path) + r"\?\S+", text)
    assert match, f"no {path} link in:\n{text}"
    return match.group(0)


def link_params(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}


def local(link: str) -> str:
    parsed = urlparse(link)
    return f"{parsed.path}?{parsed.query}"
