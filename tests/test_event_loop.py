"""No request waits on a worker thread it does not need.

Litestar runs a sync guard, dependency or handler in a worker thread unless told not
to: a hop to the thread and back, an extra turn of the event loop and a wake-up through
a socket, for code that takes microseconds. Every signed-in page paid one for its
`requires_resident` guard (145 µs of CPU per request, more than the rest of Litestar's
work on it). Work that does wait (a write, a long read) goes to the database's own
threads (db.py), never through these.
"""

from __future__ import annotations

import gc
import inspect

from litestar.testing import AsyncTestClient
from litestar.utils.sync import AsyncCallable

from portal.app import create_app
from portal.settings import Settings

from resident_steps import post_form, query
from sample_data import GOOD_PASSWORD, add_resident, bills_csv, load, load_billing, usage_csv


def test_no_guard_dependency_or_handler_runs_in_a_worker_thread(tmp_path):
    app = create_app(Settings(database=tmp_path / "portal.sqlite3"))
    threaded = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            name = f"{route.path} {handler.fn.__name__}"
            for guard in handler.resolve_guards():
                if isinstance(guard, AsyncCallable) or not inspect.iscoroutinefunction(guard):
                    threaded.append(f"{name}: guard {getattr(guard, 'func', guard).__name__}")
            if handler.has_sync_callable and handler.sync_to_thread:
                threaded.append(f"{name}: handler")
            for key, provide in handler.resolve_dependencies().items():
                if provide.has_sync_callable and provide.sync_to_thread:
                    threaded.append(f"{name}: dependency {key}")
    assert not threaded, "make these async (or sync_to_thread=False): " + ", ".join(threaded)


async def test_pages_leave_nothing_for_the_cycle_collector(settings):
    """A request's objects (its scope, request, form, template context, send wrappers)
    are freed when its answer is sent, not left in reference cycles for Python's cycle
    collector. litestar-htmx's request and its `htmx` details held each other, and a
    macro defined in an included template held the page's context: each pass of the
    collector over that garbage took CPU from every request, and its full passes paused
    the server for tens of milliseconds (the p99 in BENCHMARKS.md)."""
    path = settings.database
    load_billing(path)
    load(path, "bills", bills_csv("0012345", "0067890", [("80.00", "0", "0", "80.00")] * 3))
    load(path, "usage", usage_csv("0012345", "0067890", [10.0] * 23 + [31.0]))
    add_resident(path, "maria1", "0067890", "maria@example.com")
    app = create_app(settings)
    async with AsyncTestClient(app=app, base_url="http://portal.test") as client:
        signed_in = await post_form(
            client, "/login", {"username": "maria1", "password": GOOD_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        token = client.cookies["portal_csrf"]
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        account = query(path, "SELECT id FROM service_accounts WHERE account_number = '0067890'")
        check = b"username=river42&password=&email="
        requests = [
            ("GET", "/", b"", []),
            ("GET", "/account", b"", [(b"cookie", cookie.encode())]),
            ("GET", f"/accounts/{account[0]['id']}/bills", b"", [(b"cookie", cookie.encode())]),
            ("GET", f"/accounts/{account[0]['id']}/usage", b"", [(b"cookie", cookie.encode())]),
            ("GET", "/no-such-page", b"", []),
            (
                "POST",
                "/register/check/username",
                check,
                [
                    (b"cookie", f"portal_csrf={token}".encode()),
                    (b"x-csrftoken", token.encode()),
                    (b"hx-request", b"true"),
                    (b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", str(len(check)).encode()),
                ],
            ),
        ]

        async def answer(method: str, path: str, body: bytes, headers: list) -> int:
            """The app called as the server calls it: no test client in between."""
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": method,
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "root_path": "",
                "headers": [(b"host", b"portal.test"), (b"accept-encoding", b"gzip"), *headers],
                "client": ("127.0.0.1", 5000),
                "server": ("portal.test", 80),
                "state": {},
            }
            statuses = []

            async def receive():
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message):
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(scope, receive, send)
            return statuses[0]

        for request in requests:  # first answers fill caches and compile templates
            await answer(*request)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            statuses = [await answer(*request) for request in requests]
            gc.collect()
            left = sorted({type(thing).__qualname__ for thing in gc.garbage})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert statuses == [200, 200, 200, 200, 404, 200]
    assert left == []
