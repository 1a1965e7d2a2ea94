"""Shared fixtures: a fresh SQLite file per test, the app over HTTP, a live server for
the browser, a real SMTP server on loopback, and headless Chromium with axe-core.

Browser tests use Debian's chromium (`make test` installs it). They never skip: a
missing browser fails the run with a message saying how to install it.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
import uvicorn
from litestar.testing import AsyncTestClient

from portal import db as portal_db
from portal.app import create_app
from portal.settings import Settings

from helpers import DESKTOP

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database=tmp_path / "portal.sqlite3",
        base_url="http://portal.test",
        password_min_length=15,
        # The guide's two numbers alone; the bill-amount proof (the product's default) is
        # covered by tests/test_account_claims.py and the every-page walk.
        account_proof="none",
        # Tests send many look-ups from one address; test_account_claims.py tests the budget.
        lookups_per_address=100_000,
        lookups_overall=100_000,
        # As in production: templates and static files read once, signed-out pages
        # rendered once per language (shared_pages.py), so the whole suite runs that way.
        templates_reload=False,
    )


@pytest.fixture
def sync_db(settings: Settings):
    """A synchronous connection to the test's database, migrated."""
    portal_db.upgrade(settings.database)
    conn = portal_db.connect_sync(settings.database)
    yield conn
    conn.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    app = create_app(settings)
    async with AsyncTestClient(app=app, base_url="http://portal.test") as test_client:
        yield test_client


# --- SMTP ------------------------------------------------------------------------


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list = field(default_factory=list)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"expected {count} message(s), got {len(self.messages)}"
        return self.messages


class _Collect:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        self.mailbox.envelopes.append(envelope)
        self.mailbox.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    port = free_port()
    mailbox = Mailbox("127.0.0.1", port)
    controller = Controller(_Collect(mailbox), hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox
    controller.stop()


@pytest.fixture
def mail_settings(settings: Settings, smtp_server: Mailbox) -> Settings:
    return replace(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port)


# --- live server for the browser -------------------------------------------------


class LiveServer:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings, extra_routes: tuple = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = replace(settings, base_url=self.url)
        app = create_app(self.settings)
        for route in extra_routes:  # a test's own route (e.g. one that crashes)
            app.register(route)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    """Settings for a live server; a test may override this fixture (e.g. with SMTP)."""
    return settings


@pytest.fixture
def live_server(live_settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(live_settings).start()
    yield server
    server.stop()


# --- browser ---------------------------------------------------------------------


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail(
            "Chromium is not installed. Run `make test` (as root it installs Debian's "
            "chromium package) or `apt-get install chromium`.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


def pytest_collection_modifyitems(items):
    """Browser tests last: sync Playwright keeps its event loop running in the main
    thread from the first browser test on, which async tests cannot share."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))


@pytest.fixture
def new_page(browser):
    """new_page(viewport=PHONE|DESKTOP, js=True, locale="en-US") -> a Playwright page in
    a fresh context (`locale`: the browser's language, sent as Accept-Language).

    With js=False the page really has JavaScript off; helpers.assert_accessible then
    checks a copy of what that page shows (see there)."""
    contexts = []

    def make(viewport: dict | None = None, js: bool = True, locale: str = "en-US"):
        context = browser.new_context(
            viewport=viewport or DESKTOP, java_script_enabled=js, locale=locale
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.portal_js = js
        page.portal_browser = browser
        page.portal_viewport = viewport or DESKTOP
        return page

    yield make
    for context in contexts:
        context.close()
