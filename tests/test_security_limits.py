"""Cheap requests stay cheap (issue 11, item 15): forms are capped at 64 KB and 200
fields before anything parses them, and repeated CSRF refusals write one audit row per
client per minute with a count."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from litestar import Request, post
from litestar.testing import AsyncTestClient

from portal.app import create_app
from portal.db import Database
from portal.security.limits import FORM_MAX_BYTES, FORM_MAX_FIELDS
from portal.security.refusals import RefusalLog

from helpers import csrf_token
from resident_steps import query

BASE = "http://portal.test"


@post("/_test/form")
async def form_echo(request: Request) -> str:
    form = await request.form()
    return f"{len(list(form.multi_items()))} fields"


@post("/_test/raw")
async def raw_echo(request: Request) -> str:
    return f"{len(await request.body())} bytes"


@pytest.fixture
async def probe(settings):
    app = create_app(settings)
    app.register(form_echo)
    app.register(raw_echo)
    async with AsyncTestClient(app=app, base_url=BASE) as client:
        yield client


async def test_a_form_over_64_kb_gets_the_friendly_413_page(probe):
    token = await csrf_token(probe)
    fits = await probe.post("/_test/form", data={"_csrf_token": token, "a": "x" * 60_000})
    assert (fits.status_code, fits.text) == (201, "2 fields")
    big = await probe.post("/_test/form", data={"_csrf_token": token, "a": "x" * FORM_MAX_BYTES})
    assert big.status_code == 413
    assert "What you sent is too large" in big.text and "(909) 395-2050" in big.text


def test_a_chunked_form_without_a_length_is_capped_too(live_server):
    """Over a real socket (uvicorn): chunked transfer, so no Content-Length to check."""
    import httpx

    with httpx.Client(base_url=live_server.url) as client:
        client.get("/")
        token = client.cookies["portal_csrf"]

        def chunks(count: int):
            yield f"_csrf_token={token}&email=".encode()
            for _ in range(count):
                yield b"x" * 8192

        form = {"content-type": "application/x-www-form-urlencoded"}
        big = client.post("/forgot-username", content=chunks(20), headers=form)
        assert big.status_code == 413 and "What you sent is too large" in big.text
        assert big.request.headers.get("transfer-encoding") == "chunked"
        small = client.post("/forgot-username", content=chunks(1), headers=form)
        assert small.status_code != 413


async def test_a_form_with_too_many_fields_is_refused_before_parsing(probe):
    token = await csrf_token(probe)
    body = f"_csrf_token={token}&" + "&".join(f"f{i}=1" for i in range(FORM_MAX_FIELDS - 1))
    ok = await probe.post(
        "/_test/form", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert (ok.status_code, ok.text) == (201, f"{FORM_MAX_FIELDS} fields")
    many = await probe.post(
        "/_test/form",
        content=body + "&one=more",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert many.status_code == 413 and "What you sent is too large" in many.text
    # the 110,000-field form of the review (1 MB), without even a CSRF token
    huge = await probe.post(
        "/_test/form",
        content=b"a&" * 55_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413


async def test_multipart_forms_are_counted_too(probe):
    token = await csrf_token(probe)
    fields = {"_csrf_token": token, **{f"f{i}": "1" for i in range(FORM_MAX_FIELDS)}}
    response = await probe.post("/_test/form", files={"x": ("a.txt", b"1")}, data=fields)
    assert response.status_code == 413


async def test_other_bodies_keep_the_general_limit(probe):
    token = await csrf_token(probe)
    body = b"{" + b" " * 200_000 + b"}"
    response = await probe.post(
        "/_test/raw",
        content=body,
        headers={"content-type": "application/json", "x-csrftoken": token},
    )
    assert (response.status_code, response.text) == (201, f"{len(body)} bytes")


async def test_a_smaller_general_limit_also_caps_forms(settings):
    app = create_app(replace(settings, max_body_bytes=1000))
    app.register(form_echo)
    async with AsyncTestClient(app=app, base_url=BASE) as client:
        token = await csrf_token(client)
        response = await client.post("/_test/form", data={"_csrf_token": token, "a": "x" * 2000})
        assert response.status_code == 413


# --- CSRF refusals in the audit log ----------------------------------------------------


def refusal_rows(settings):
    return query(
        settings.database,
        "SELECT client, detail FROM audit_log WHERE event = 'csrf_refused' ORDER BY id",
    )


async def test_a_hundred_token_less_posts_write_one_audit_row_with_their_count(settings):
    app = create_app(settings)
    async with AsyncTestClient(app=app, base_url=BASE) as client:
        await client.get("/")
        for _ in range(100):
            response = await client.post("/forgot-username", data={"email": "a@example.com"})
            assert response.status_code == 403
        await asyncio.sleep(0.05)  # the last background task
        rows = refusal_rows(settings)
        assert len(rows) == 1 and rows[0]["detail"] == "path=/forgot-username count=1"
    # the app stopped: the count of that minute is written into the same row
    [row] = refusal_rows(settings)
    assert row["detail"] == "path=/forgot-username count=100"


async def test_a_new_minute_starts_a_new_row_and_closes_the_last(settings):
    from portal import db as portal_db

    portal_db.upgrade(settings.database)
    database = Database(settings.database)
    await database.open()
    try:
        log = RefusalLog(database, window=0.2)
        for _ in range(3):
            await log.refused("203.0.113.9", "/login")
        await log.refused("198.51.100.7", "/pay")  # another client: its own row
        await asyncio.sleep(0.25)
        await log.refused("203.0.113.9", "/login")
        rows = [(r["client"], r["detail"]) for r in refusal_rows(settings)]
        assert rows == [
            ("203.0.113.9", "path=/login count=3"),
            ("198.51.100.7", "path=/pay count=1"),
            ("203.0.113.9", "path=/login count=1"),
        ]
    finally:
        await database.close()
