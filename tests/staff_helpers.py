"""Shared steps for the staff console tests: a staff member made by the real command-line
function, enrolled and signed in over HTTP with codes computed by pyotp."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pyotp

from portal import db as portal_db
from portal.staff.accounts import add_staff

from resident_steps import post_form, query

STAFF_PASSWORD = "kettle harbor violet lantern"


def add(settings, username: str = "carla", role: str = "csr") -> str:
    """The enrolment token, from the link `portal staff add` prints."""
    portal_db.upgrade(settings.database)
    conn = portal_db.connect_sync(settings.database)
    try:
        link = add_staff(conn, settings, username, role, f"{username}@utility.example")
    finally:
        conn.close()
    return parse_qs(urlparse(link).query)["token"][0]


def secret_of(settings, username: str) -> str:
    [row] = query(
        settings.database, "SELECT totp_secret FROM staff WHERE username = ?", (username,)
    )
    return row["totp_secret"]


def code(settings, username: str, offset: int = 0) -> str:
    """The authenticator app's code, `offset` time steps from now (a later step is
    needed right after one was used: each step is accepted once)."""
    return pyotp.TOTP(secret_of(settings, username)).at(time.time() + 30 * offset)


async def enrol(client, settings, username: str = "carla", role: str = "csr") -> list[str]:
    token = add(settings, username, role)
    page = await client.get(f"/staff/enrol?token={token}")
    assert page.status_code == 200, page.text
    response = await post_form(
        client,
        "/staff/enrol",
        {
            "token": token,
            "password": STAFF_PASSWORD,
            "confirm_password": STAFF_PASSWORD,
            "code": code(settings, username),
        },
    )
    assert response.status_code == 200, response.text
    return re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", response.text)


async def sign_in(client, settings, username: str = "carla", the_code: str | None = None):
    return await post_form(
        client,
        "/staff",
        {
            "username": username,
            "password": STAFF_PASSWORD,
            "code": the_code or code(settings, username, offset=1),
        },
        follow_redirects=False,
    )


async def staff_client(client, settings, username: str = "carla", role: str = "csr"):
    await enrol(client, settings, username, role)
    response = await sign_in(client, settings, username)
    assert response.status_code == 303, response.text
    return client
