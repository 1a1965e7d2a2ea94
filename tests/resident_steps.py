"""Steps tests take as a resident and what they read back: a registration form,
posting a form with its CSRF token, the outbox, database rows, and emailed links."""

from __future__ import annotations

import re
import sqlite3
from urllib.parse import parse_qs, urlparse

from litestar.testing import AsyncTestClient

from portal import db as portal_db

from helpers import csrf_token
from sample_data import GOOD_PASSWORD


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
