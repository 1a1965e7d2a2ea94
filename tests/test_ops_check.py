"""`portal check` against good and broken settings: one ✓/✗ line each, exit 1 on any ✗."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from portal import cli
from portal import db as portal_db
from portal.observe.check import check_proxy, check_stripe_key, run_checks

from conftest import free_port


@pytest.fixture
def portal_env(monkeypatch, settings):
    for name in ("PORTAL_SMTP_HOST", "PORTAL_SMTP_PORT", "PORTAL_ENV", "PORTAL_GATEWAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    return monkeypatch


def check_output(capsys) -> tuple[int, list[str]]:
    status = cli.main(["check"])
    return status, capsys.readouterr().out.splitlines()


def test_good_settings_pass_every_line(portal_env, settings, smtp_server, capsys):
    portal_db.upgrade(settings.database)
    portal_env.setenv("PORTAL_SMTP_HOST", smtp_server.host)
    portal_env.setenv("PORTAL_SMTP_PORT", str(smtp_server.port))
    status, lines = check_output(capsys)
    assert status == 0, lines
    assert all(line.startswith("✓ ") for line in lines), lines
    text = "\n".join(lines)
    for expected in (
        "database opens",
        "migrations: at the latest",
        "integrity_check: ok",
        "disk:",
        f"SMTP 127.0.0.1:{smtp_server.port} answers: connect, EHLO (no mail sent)",
        "payment gateway: sandbox",
        "base URL:",
        "trusted proxies:",
    ):
        assert expected in text
    assert smtp_server.messages == []  # nothing was sent


def test_wrong_smtp_port_is_a_cross_and_exit_1(portal_env, settings, capsys):
    portal_db.upgrade(settings.database)
    portal_env.setenv("PORTAL_SMTP_HOST", "127.0.0.1")
    portal_env.setenv("PORTAL_SMTP_PORT", str(free_port()))  # nothing listens there
    status, lines = check_output(capsys)
    assert status == 1
    (smtp,) = [line for line in lines if "SMTP" in line]
    assert smtp.startswith("✗ SMTP 127.0.0.1:") and "connect failed" in smtp
    assert [line for line in lines if line.startswith("✗")] == [smtp]


def test_database_at_an_old_migration_is_a_cross(portal_env, settings, capsys):
    conn = portal_db.connect_sync(settings.database)
    first = portal_db.migrations()[0]
    conn.executescript(first[2].read_text())
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)"
    )
    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, '2026-01-01')", first[:2])
    conn.close()
    status, lines = check_output(capsys)
    assert status == 1
    latest = portal_db.migrations()[-1][0]
    assert f"✗ migrations: at 0001, latest is {latest:04d}; run `portal db upgrade`" in lines


def test_missing_and_corrupt_databases_are_crosses(portal_env, settings, capsys):
    status, lines = check_output(capsys)
    assert status == 1 and lines[0].startswith("✗ database: none at")
    assert not settings.database.exists()  # check never creates it

    portal_db.upgrade(settings.database)
    conn = sqlite3.connect(settings.database)
    conn.execute("PRAGMA journal_mode=DELETE")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(settings.database, "r+b") as file:  # scribble over a table's page
        file.seek(page_size * 3)
        file.write(b"\xff" * 200)
    status, lines = check_output(capsys)
    assert status == 1
    assert any(line.startswith("✗ integrity_check") or "cannot be read" in line for line in lines)


def test_unusable_settings_are_one_cross(portal_env, capsys):
    portal_env.setenv("PORTAL_SMTP_PORT", "twenty-five")
    status, lines = check_output(capsys)
    assert status == 1 and lines == [
        "✗ settings: PORTAL_SMTP_PORT must be a whole number, not 'twenty-five'"
    ]


def test_production_wants_a_trusted_proxy(settings):
    production = replace(settings, env="production", base_url="https://water.example.gov")
    ok, line = check_proxy(production)
    assert not ok and "PORTAL_TRUSTED_PROXIES is empty" in line
    assert check_proxy(replace(production, trusted_proxies=("127.0.0.1",)))[0]
    lines = dict((text.split(":")[0], ok) for ok, text in run_checks(production))
    assert lines["SMTP"] is False  # production without an SMTP host cannot send mail


class _FakeStripe(BaseHTTPRequestHandler):
    def do_GET(self):
        good = self.headers.get("Authorization") == "Bearer sk_test_good"
        self.send_response(200 if good and self.path == "/v1/balance" else 401)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_stripe_key_is_asked_of_the_api(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _FakeStripe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert check_stripe_key("sk_test_good", base) == (
            True,
            "payment gateway: Stripe accepts the test secret key",
        )
        ok, line = check_stripe_key("sk_test_revoked", base)
        assert not ok and "refused the secret key (401)" in line
        assert not check_stripe_key("", base)[0]
    finally:
        server.shutdown()
