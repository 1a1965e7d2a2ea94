"""SMTP over TLS (issue 11, item 9) against a real aiosmtpd server on loopback with a
certificate from a throw-away certificate authority (trustme): STARTTLS whenever offered,
required with a login, implicit TLS on 465, and the certificate always checked."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field, replace

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from portal.db import Database
from portal.mail import Mailer, OutboxSender
from portal.settings import Settings
from portal.templating import make_environment

LINK = "http://portal.test/reset-password?token=secret-one-time-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Seen:
    """What the server saw: one entry per message, True when it arrived over TLS."""

    tls: list[bool] = field(default_factory=list)
    logins: list[tuple[bool, str]] = field(default_factory=list)  # (over TLS, username)

    async def handle_DATA(self, server, session, envelope):
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        self.tls.append(session.ssl is not None or ssl_object is not None)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        over_tls = session.ssl is not None or ssl_object is not None
        self.logins.append((over_tls, auth_data.login.decode()))
        return AuthResult(success=auth_data.password == b"smtp-password-123")


@pytest.fixture
def ca(tmp_path, monkeypatch) -> trustme.CA:
    """A certificate authority this process trusts (SSL_CERT_FILE, as an operator with an
    internal CA would set it), and nothing else does."""
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return authority


def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def start_server():
    controllers = []

    def start(seen: Seen, **options) -> int:
        port = free_port()
        controller = Controller(
            seen, hostname="127.0.0.1", port=port, authenticator=seen.authenticate, **options
        )
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
async def db(settings: Settings):
    database = Database(settings.database)
    await database.open()
    yield database
    await database.close()


async def send_one(settings: Settings, db: Database) -> tuple[int, str | None]:
    """Write one reset email into the outbox and run one sender round: (sent, last_error)."""
    async with db.write() as conn:
        await Mailer(settings, make_environment(settings)).enqueue(
            conn,
            to="resident@example.com",
            template="test_message",
            context={"name": "Ana", "link": LINK},
        )
    sent = await OutboxSender(settings, db, timeout=5).send_due()
    await asyncio.sleep(0.05)
    row = await db.fetchone("SELECT last_error FROM outbox ORDER BY id DESC LIMIT 1")
    return sent, row["last_error"]


def smtp(settings: Settings, port: int, **changes) -> Settings:
    return replace(settings, smtp_host="127.0.0.1", smtp_port=port, **changes)


async def test_auto_upgrades_with_starttls_when_the_server_offers_it(
    settings, db, ca, start_server
):
    seen = Seen()
    port = start_server(seen, tls_context=server_context(ca))
    assert await send_one(smtp(settings, port), db) == (1, None)
    assert seen.tls == [True]


async def test_auto_without_a_login_still_sends_to_a_server_without_starttls(
    settings, db, start_server
):
    seen = Seen()
    port = start_server(seen)  # a development relay that speaks no TLS
    assert await send_one(smtp(settings, port), db) == (1, None)
    assert seen.tls == [False]


async def test_a_login_is_never_sent_in_clear(settings, db, start_server):
    seen = Seen()
    port = start_server(seen, auth_require_tls=False)  # this server would take it in clear
    configured = smtp(settings, port, smtp_username="portal", smtp_password="smtp-password-123")
    sent, error = await send_one(configured, db)
    assert sent == 0 and seen.tls == [] and seen.logins == []
    assert error and "STARTTLS" in error.upper()


async def test_a_login_goes_over_starttls(settings, db, ca, start_server):
    seen = Seen()
    port = start_server(seen, tls_context=server_context(ca), require_starttls=True)
    configured = smtp(settings, port, smtp_username="portal", smtp_password="smtp-password-123")
    assert await send_one(configured, db) == (1, None)
    assert seen.logins == [(True, "portal")] and seen.tls == [True]


async def test_implicit_tls(settings, db, ca, start_server):
    seen = Seen()
    # aiosmtpd only counts STARTTLS as TLS for AUTH; the whole connection is TLS here
    port = start_server(seen, ssl_context=server_context(ca), auth_require_tls=False)
    configured = smtp(
        settings,
        port,
        smtp_tls="implicit",
        smtp_username="portal",
        smtp_password="smtp-password-123",
    )
    assert await send_one(configured, db) == (1, None)
    assert seen.tls == [True] and seen.logins == [(True, "portal")]


async def test_an_untrusted_certificate_is_refused(settings, db, start_server, tmp_path):
    seen = Seen()
    stranger = trustme.CA()  # the portal does not trust this authority
    port = start_server(seen, tls_context=server_context(stranger))
    sent, error = await send_one(smtp(settings, port, smtp_tls="starttls"), db)
    assert sent == 0 and seen.tls == []
    assert error and "certificate" in error.lower()


async def test_starttls_required_refuses_a_server_without_it(settings, db, start_server):
    seen = Seen()
    port = start_server(seen)
    sent, error = await send_one(smtp(settings, port, smtp_tls="starttls"), db)
    assert sent == 0 and seen.tls == [] and error
