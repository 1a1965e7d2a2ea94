"""Settings come from PORTAL_* variables: safe laptop defaults, loud refusal in production."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portal.cli import main
from portal.settings import DEV_SECRET_KEY, Settings, SettingsError

PORTAL = Path(sys.executable).with_name("portal")
GOOD_SECRET = "q8Zr-3vKw_T1mXy7LpD4nH0sBcJ9eUfA2gQ6tVoR5iW"
# A production configuration that passes every check (a real gateway, live keys).
STRIPE_LIVE_KEY = "sk_live_51Hq8ZrK3vKwT1mXy7LpD4nH0sBcJ9eUfA2gQ6tVo"
STRIPE_WEBHOOK_SECRET = "whsec_Yt5uN8cR2eW7qA0zX4vB1mK9pL3sD6fG"
PRODUCTION = {
    "PORTAL_ENV": "production",
    "PORTAL_SECRET_KEY": GOOD_SECRET,
    "PORTAL_BASE_URL": "https://portal.example",
    "PORTAL_GATEWAY": "stripe",
    "PORTAL_STRIPE_SECRET_KEY": STRIPE_LIVE_KEY,
    "PORTAL_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
    "PORTAL_MAIL_FROM": "billing@ontarioca.gov",
}


def refused(environ: dict[str, str]) -> str:
    """The one-line reason Settings.from_env gives for refusing these variables."""
    with pytest.raises(SettingsError) as error:
        Settings.from_env(environ)
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_defaults_suit_a_laptop():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.env == "development" and not settings.production
    assert settings.utility_name == "Ontario Municipal Utilities Company"
    assert settings.support_phone == "(909) 395-2050"
    assert settings.database == Path("var/portal.sqlite3")
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.secret_key == DEV_SECRET_KEY
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_tls) == ("", 25, "auto")
    assert settings.mail_from == "no-reply@localhost"
    assert settings.timezone == "America/Los_Angeles"
    assert settings.password_min_length == 15
    assert settings.max_body_bytes == 1_000_000
    assert settings.dev_mailbox  # no SMTP host in development: the local mailbox page


def test_every_variable_is_read():
    environ = {
        **PRODUCTION,
        "PORTAL_DATABASE": "/srv/portal/portal.sqlite3",
        "PORTAL_BASE_URL": "https://portal.example/",
        "PORTAL_SMTP_HOST": "smtp.example",
        "PORTAL_SMTP_PORT": "587",
        "PORTAL_SMTP_USERNAME": "portal",
        "PORTAL_SMTP_PASSWORD": "hunter2-but-longer",
        "PORTAL_SMTP_STARTTLS": "yes",
        "PORTAL_MAIL_FROM": "billing@ontarioca.gov",
        "PORTAL_UTILITY_NAME": "Springfield Water",
        "PORTAL_SUPPORT_PHONE": "(555) 010-0000",
        "PORTAL_TIMEZONE": "America/Chicago",
        "PORTAL_PASSWORD_MIN_LENGTH": "12",
        "PORTAL_MAX_BODY_BYTES": "2048",
    }
    settings = Settings.from_env(environ)
    assert settings == Settings(
        env="production",
        database=Path("/srv/portal/portal.sqlite3"),
        base_url="https://portal.example",  # trailing slash dropped
        secret_key=GOOD_SECRET,
        smtp_host="smtp.example",
        smtp_port=587,
        smtp_username="portal",
        smtp_password="hunter2-but-longer",
        smtp_tls="starttls",
        mail_from="billing@ontarioca.gov",
        utility_name="Springfield Water",
        support_phone="(555) 010-0000",
        timezone="America/Chicago",
        password_min_length=12,
        max_body_bytes=2048,
        gateway="stripe",
        stripe_secret_key=STRIPE_LIVE_KEY,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
    )
    assert settings.production and not settings.dev_mailbox


def test_the_audit_log_is_kept_unless_a_schedule_of_two_years_or_more_is_set():
    assert Settings.from_env({}).audit_keep_days == 0
    assert Settings.from_env({"PORTAL_AUDIT_KEEP_DAYS": "2555"}).audit_keep_days == 2555
    message = refused({"PORTAL_AUDIT_KEEP_DAYS": "90"})
    assert "PORTAL_AUDIT_KEEP_DAYS must be 0" in message and "730 days or more" in message
    assert "whole number" in refused({"PORTAL_AUDIT_KEEP_DAYS": "two years"})


def test_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("PORTAL_UTILITY_NAME", "Springfield Water")
    monkeypatch.setenv("PORTAL_SUPPORT_PHONE", "(555) 010-0000")
    settings = Settings.from_env()
    assert (settings.utility_name, settings.support_phone) == (
        "Springfield Water",
        "(555) 010-0000",
    )


def test_secrets_stay_out_of_repr():
    text = repr(Settings.from_env({**PRODUCTION, "PORTAL_SMTP_PASSWORD": "smtp-pass-123"}))
    assert GOOD_SECRET not in text
    assert "smtp-pass-123" not in text


def test_production_without_a_secret_key_is_refused():
    message = refused({"PORTAL_ENV": "production", "PORTAL_BASE_URL": "https://portal.example"})
    assert "PORTAL_SECRET_KEY" in message


@pytest.mark.parametrize("secret", ["short", "x" * 31, DEV_SECRET_KEY])
def test_production_refuses_a_weak_secret_key(secret):
    message = refused({**PRODUCTION, "PORTAL_SECRET_KEY": secret})
    assert message == "PORTAL_SECRET_KEY must be at least 32 random characters"


def test_production_refuses_a_plain_http_base_url():
    message = refused({**PRODUCTION, "PORTAL_BASE_URL": "http://portal.example"})
    assert "PORTAL_BASE_URL" in message and "https://" in message


def test_production_accepts_safe_settings():
    settings = Settings.from_env(PRODUCTION)
    assert settings.production and settings.secret_key == GOOD_SECRET


def test_development_ignores_a_missing_secret_but_keeps_a_given_one():
    assert Settings.from_env({"PORTAL_SECRET_KEY": "dev-key"}).secret_key == "dev-key"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORTAL_SMTP_PORT", "smtp", "PORTAL_SMTP_PORT must be a whole number, not 'smtp'"),
        ("PORTAL_SMTP_PORT", "", "PORTAL_SMTP_PORT must be a whole number, not ''"),
        ("PORTAL_SMTP_PORT", "70000", "PORTAL_SMTP_PORT must be 1 to 65535, not '70000'"),
        ("PORTAL_SMTP_PORT", "0", "PORTAL_SMTP_PORT must be 1 to 65535, not '0'"),
        (
            "PORTAL_SMTP_STARTTLS",
            "maybe",
            "PORTAL_SMTP_STARTTLS must be true or false, not 'maybe'",
        ),
        ("PORTAL_MAX_BODY_BYTES", "1MB", "PORTAL_MAX_BODY_BYTES must be a whole number, not '1MB'"),
        ("PORTAL_MAX_BODY_BYTES", "-1", "PORTAL_MAX_BODY_BYTES must be 1 or more, not '-1'"),
        (
            "PORTAL_PASSWORD_MIN_LENGTH",
            "0",
            "PORTAL_PASSWORD_MIN_LENGTH must be 1 or more, not '0'",
        ),
        ("PORTAL_ENV", "prod", "PORTAL_ENV must be development or production, not 'prod'"),
        (
            "PORTAL_TIMEZONE",
            "Pacific Time",
            "PORTAL_TIMEZONE must be a time zone name like America/Los_Angeles, not 'Pacific Time'",
        ),
    ],
)
def test_a_bad_value_gives_a_clear_one_line_error(name, value, expected):
    assert refused({name: value}) == expected


@pytest.mark.parametrize("value", ["true", "1", "YES", "on"])
def test_starttls_accepts_the_usual_spellings_of_true(value):
    assert Settings.from_env({"PORTAL_SMTP_STARTTLS": value}).smtp_tls == "starttls"


def test_cli_exits_2_with_a_one_line_reason(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.delenv("PORTAL_SECRET_KEY", raising=False)
    monkeypatch.setenv("PORTAL_DATABASE", str(tmp_path / "portal.sqlite3"))
    with pytest.raises(SystemExit) as exited:
        main(["db", "upgrade"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "portal: PORTAL_SECRET_KEY must be set when PORTAL_ENV=production\n"
    assert not (tmp_path / "portal.sqlite3").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_in_production_without_a_secret_refuses_to_start(tmp_path):
    assert PORTAL.exists(), f"the portal command is not installed at {PORTAL}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(PORTAL_ENV="production", PORTAL_DATABASE=str(tmp_path / "portal.sqlite3"))
    port = _free_port()
    # A server that started anyway would never exit; the timeout turns that into a failure.
    done = subprocess.run(
        [str(PORTAL), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "portal: PORTAL_SECRET_KEY must be set when PORTAL_ENV=production"
    ]
    assert not (tmp_path / "portal.sqlite3").exists()


def test_readme_documents_every_setting_with_its_default():
    from dataclasses import fields

    from portal.settings import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`PORTAL_"):
            rows[cells[0].strip("`")] = cells[1]
    names = {f"PORTAL_{field.name.upper()}" for field in fields(Settings)}
    assert set(rows) == names
    defaults = Settings.from_env({})
    for field in fields(Settings):
        documented = rows[f"PORTAL_{field.name.upper()}"]
        value = getattr(defaults, field.name)
        if documented == "*(empty)*":
            assert value in ("", ()), field.name
        elif documented.startswith("`"):
            expected = str(value).lower() if isinstance(value, bool) else str(value)
            assert documented.strip("`") == expected, field.name
