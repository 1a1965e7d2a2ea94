"""Production refuses unsafe settings (issue 11, items 1 and 10), the sandbox gateway's
pages do not exist there, and a test payment is never exported as a real one."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient

from portal import db as portal_db
from portal.app import create_app
from portal.billing.importer import import_text
from portal.cli import main
from portal.payments.export import export_batch
from portal.settings import Settings, SettingsError, looks_weak

PORTAL = Path(sys.executable).with_name("portal")
GOOD_SECRET = "q8Zr-3vKw_T1mXy7LpD4nH0sBcJ9eUfA2gQ6tVoR5iW"
REAL_GATEWAY = "stripe"
SAFE = {
    "PORTAL_ENV": "production",
    "PORTAL_SECRET_KEY": GOOD_SECRET,
    "PORTAL_BASE_URL": "https://portal.example",
    "PORTAL_GATEWAY": REAL_GATEWAY,
    "PORTAL_STRIPE_SECRET_KEY": "sk_live_51Hq8ZrK3vKwT1mXy7LpD4nH0sBcJ9eUfA2gQ6tVo",
    "PORTAL_STRIPE_WEBHOOK_SECRET": "whsec_Yt5uN8cR2eW7qA0zX4vB1mK9pL3sD6fG",
    "PORTAL_MAIL_FROM": "Ontario Utilities <no-reply@ontarioca.gov>",
}


def refused(**changes: str) -> str:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**SAFE, **changes})
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_the_safe_production_settings_pass():
    settings = Settings.from_env(SAFE)
    assert settings.production and settings.gateway == REAL_GATEWAY


def test_production_refuses_the_sandbox_gateway():
    assert refused(PORTAL_GATEWAY="sandbox").startswith("PORTAL_GATEWAY=sandbox is the test")
    # ... and the sandbox is the default, so leaving the variable out is refused too
    environ = {k: v for k, v in SAFE.items() if k != "PORTAL_GATEWAY"}
    with pytest.raises(SettingsError, match="^PORTAL_GATEWAY="):
        Settings.from_env(environ)


def test_development_still_runs_the_sandbox():
    assert Settings.from_env({}).gateway == "sandbox"


def test_serve_in_production_with_the_sandbox_exits_2_naming_the_variable(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update({**SAFE, "PORTAL_GATEWAY": "sandbox"})
    environ["PORTAL_DATABASE"] = str(tmp_path / "portal.sqlite3")
    done = subprocess.run(
        [str(PORTAL), "serve", "--port", "1"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("portal: PORTAL_GATEWAY=sandbox is the test gateway")
    assert not (tmp_path / "portal.sqlite3").exists()


@pytest.mark.parametrize(
    "secret",
    [
        "a" * 32,
        "a" * 64,
        "abcdefghijklmnopqrstuvwxyz012345",  # a run, not random
        "abababababababababababababababab" * 2,
        "0123456789" * 4,
        "passwordpasswordpasswordpassword",  # 7 different characters
    ],
)
def test_production_refuses_a_secret_key_with_little_variety(secret):
    assert looks_weak(secret)
    assert refused(PORTAL_SECRET_KEY=secret) == (
        "PORTAL_SECRET_KEY must be at least 32 random characters"
    )


@pytest.mark.parametrize(
    "secret",
    [
        GOOD_SECRET,
        "3f9a1c07e25b48d6a0f1e2c3b4d5a6f7",  # secrets.token_hex(16)
        "Lw0kP3nZ-x_Q7rT2vB9mC4sD8fG1hJ6k",
    ],
)
def test_random_secrets_pass_the_variety_check(secret):
    assert not looks_weak(secret)


def test_production_refuses_a_weak_gateway_secret():
    assert refused(PORTAL_GATEWAY_SECRET="s") == (
        "PORTAL_GATEWAY_SECRET must be at least 32 random characters"
    )
    assert refused(PORTAL_GATEWAY_SECRET="b" * 40).startswith("PORTAL_GATEWAY_SECRET")
    strong = "Yt5-uN8cR2eW7qA0zX4vB1mK9pL3sD6fG"
    assert Settings.from_env({**SAFE, "PORTAL_GATEWAY_SECRET": strong}).gateway_secret == strong


@pytest.mark.parametrize(
    "key", ["sk_test_51Hq8ZrK3vKwT1mXy7LpD4nH0sBcJ9eUf", "rk_test_51Hq8ZrK3vKwT1"]
)
def test_production_refuses_a_stripe_test_mode_key(key):
    assert refused(PORTAL_STRIPE_SECRET_KEY=key).startswith(
        "PORTAL_STRIPE_SECRET_KEY is a Stripe test-mode key"
    )
    assert Settings.from_env({**SAFE, "PORTAL_ENV": "development", "PORTAL_STRIPE_SECRET_KEY": key})


@pytest.mark.parametrize("secret", ["whsec_y", "whsec_portal_fake", "whsec_" + "a" * 32])
def test_production_refuses_a_weak_stripe_webhook_secret(secret):
    assert refused(PORTAL_STRIPE_WEBHOOK_SECRET=secret).startswith(
        "PORTAL_STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret"
    )


@pytest.mark.parametrize("length", ["1", "7"])
def test_production_refuses_a_password_minimum_below_eight(length):
    assert refused(PORTAL_PASSWORD_MIN_LENGTH=length) == (
        f"PORTAL_PASSWORD_MIN_LENGTH must be at least 8 in production, not {length}"
    )


def test_password_minimum_of_eight_is_allowed_and_development_keeps_its_own():
    assert Settings.from_env({**SAFE, "PORTAL_PASSWORD_MIN_LENGTH": "8"}).password_min_length == 8
    assert Settings.from_env({"PORTAL_PASSWORD_MIN_LENGTH": "4"}).password_min_length == 4


@pytest.mark.parametrize(
    "address",
    [
        "no-reply@localhost",
        "no-reply@example.com",
        "Billing <billing@mail.example.org>",
        "portal@city.test",
        "portal@box.local",
        "portal@server.localdomain",
        "not an address",
        "",
    ],
)
def test_production_refuses_a_placeholder_mail_from(address):
    message = refused(PORTAL_MAIL_FROM=address)
    assert message.startswith("PORTAL_MAIL_FROM must be a real address")


def test_production_refuses_cleartext_smtp_with_a_password():
    message = refused(
        PORTAL_SMTP_HOST="smtp.ontarioca.gov",
        PORTAL_SMTP_USERNAME="portal",
        PORTAL_SMTP_PASSWORD="smtp-password-here",
        PORTAL_SMTP_TLS="off",
    )
    assert message.startswith("PORTAL_SMTP_TLS=off would send the SMTP password in clear")
    # without a login a local relay may be cleartext; with TLS the login is fine
    assert Settings.from_env({**SAFE, "PORTAL_SMTP_TLS": "off"}).smtp_tls == "off"
    settings = Settings.from_env(
        {**SAFE, "PORTAL_SMTP_USERNAME": "portal", "PORTAL_SMTP_PASSWORD": "pw-long-enough"}
    )
    assert settings.smtp_tls == "auto"


def test_smtp_tls_modes_are_read():
    assert Settings.from_env({}).smtp_tls == "auto"
    assert Settings.from_env({"PORTAL_SMTP_PORT": "465"}).smtp_tls == "implicit"
    assert Settings.from_env({"PORTAL_SMTP_TLS": "STARTTLS"}).smtp_tls == "starttls"
    assert Settings.from_env({"PORTAL_SMTP_STARTTLS": "true"}).smtp_tls == "starttls"
    with pytest.raises(SettingsError, match="^PORTAL_SMTP_TLS must be one of auto, starttls"):
        Settings.from_env({"PORTAL_SMTP_TLS": "maybe"})


# --- the sandbox's pages -------------------------------------------------------------


async def test_sandbox_pages_do_not_exist_in_production(settings):
    production = replace(
        settings, env="production", secret_key=GOOD_SECRET, base_url="https://portal.example"
    )
    paths = {route.path for route in create_app(production).routes}
    assert not [path for path in paths if path.startswith("/sandbox-gateway")]
    async with AsyncTestClient(create_app(production), base_url="https://portal.example") as c:
        response = await c.get("/sandbox-gateway/checkout/abc")
        assert response.status_code == 404
    # the development app has them (so the check above can fail)
    assert any(
        p.startswith("/sandbox-gateway") for p in (r.path for r in create_app(settings).routes)
    )


# --- export ----------------------------------------------------------------------------

ACCOUNTS = """customer_number,account_number,name,service_address,status
0012345,0067890,Maria Garcia,123 Euclid Ave,active
"""


def _paid(conn: sqlite3.Connection, gateway: str, cents: int, number: str) -> None:
    conn.execute(
        "INSERT INTO payments (idempotency_key, account_id, amount_cents, status, gateway,"
        " gateway_ref, method, confirmation_number, receipt_token, created_at, settled_at)"
        " VALUES (?, 1, ?, 'succeeded', ?, ?, 'card', ?, ?, ?, ?)",
        (
            f"key-{number}",
            cents,
            gateway,
            f"ref-{number}",
            number,
            f"receipt-{number}",
            "2026-11-20T18:00:00.000000Z",
            "2026-11-20T18:00:00.000000Z",
        ),
    )
    conn.commit()


@pytest.fixture
def ledger(settings):
    portal_db.upgrade(settings.database)
    conn = portal_db.connect_sync(settings.database)
    import_text(conn, "accounts", ACCOUNTS)
    _paid(conn, "sandbox", 999_900, "TESTPAY1")
    _paid(conn, REAL_GATEWAY, 8_410, "LIVEPAY1")
    yield conn
    conn.close()


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_live_batch_never_takes_a_sandbox_payment(ledger):
    zone = ZoneInfo("America/Los_Angeles")
    text, count = export_batch(ledger, date(2026, 11, 20), zone, test_mode=False)
    rows = _rows(text)
    assert count == 1 and [r["confirmation_number"] for r in rows] == ["LIVEPAY1"]
    assert rows[0]["mode"] == "LIVE" and rows[0]["amount"] == "84.10"
    # the sandbox payment stays out of every later live batch as well
    later, _ = export_batch(ledger, date(2026, 11, 21), zone, test_mode=False)
    assert "TESTPAY1" not in later


def test_a_sandbox_batch_says_test_on_every_line_and_in_its_file_name(
    ledger, settings, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    for name in [k for k in os.environ if k.startswith("PORTAL_") and k != "PORTAL_DATABASE"]:
        monkeypatch.delenv(name)
    out = tmp_path / "payments-2026-11-20.csv"
    assert main(["export", "payments", "--date", "2026-11-20", "--output", str(out)]) == 0
    assert not out.exists()
    marked = tmp_path / "TEST-payments-2026-11-20.csv"
    rows = _rows(marked.read_text())
    assert len(rows) == 2 and {r["mode"] for r in rows} == {"TEST"}  # a test batch, all of it
    assert "TEST payment(s) (test gateway or key)" in capsys.readouterr().err


def test_stripe_with_a_test_mode_key_exports_a_test_batch(ledger, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_DATABASE", str(settings.database))
    monkeypatch.setenv("PORTAL_GATEWAY", "stripe")
    monkeypatch.setenv("PORTAL_STRIPE_SECRET_KEY", "sk_test_51Hq8ZrK3vKwT1mXy7")
    monkeypatch.setenv("PORTAL_STRIPE_WEBHOOK_SECRET", "whsec_x")
    out = tmp_path / "payments.csv"
    assert main(["export", "payments", "--date", "2026-11-20", "--output", str(out)]) == 0
    rows = _rows((tmp_path / "TEST-payments.csv").read_text())
    assert [(r["confirmation_number"], r["mode"]) for r in rows] == [
        ("TESTPAY1", "TEST"),
        ("LIVEPAY1", "TEST"),
    ]


# --- portal serve in development -------------------------------------------------------


def _serve(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(PORTAL_DATABASE=str(tmp_path / "portal.sqlite3"), **env)
    return subprocess.run(
        [str(PORTAL), "serve", *args], env=environ, capture_output=True, text=True, timeout=20
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "portal.lan"])
def test_development_serve_refuses_a_public_host(tmp_path, host):
    # a server that started anyway would not exit: the timeout turns that into a failure
    done = _serve(tmp_path, "--host", host, "--port", "1")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"portal: --host {host} would let other machines reach")
    assert "/dev/mailbox" in line and "--unsafe-public-dev" in line


def test_serve_host_rule():
    from portal.cli import serve_host_problem

    development = Settings()
    for host in ["127.0.0.1", "127.0.0.2", "::1", "localhost"]:
        assert serve_host_problem(development, host, False) is None
    assert serve_host_problem(development, "0.0.0.0", False)
    assert serve_host_problem(development, "0.0.0.0", True) is None  # the operator insisted
    production = Settings(env="production", secret_key=GOOD_SECRET, gateway=REAL_GATEWAY)
    assert serve_host_problem(production, "0.0.0.0", False) is None
