"""`portal check`: what an operator needs to know, one line each, before and after a
deployment. Never sends mail, never changes the database, never prints a secret."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import aiosmtplib

from portal import db as portal_db
from portal.mail.sender import tls_options
from portal.settings import Settings

Line = tuple[bool, str]
DISK_HEADROOM = 200 * 1024 * 1024  # besides room for one more copy of the database
SMTP_TIMEOUT = 10.0
STRIPE_API_BASE = "https://api.stripe.com"


def run_checks(settings: Settings) -> list[Line]:
    return [
        *check_database(settings.database),
        check_disk(settings.database),
        check_smtp(settings),
        check_gateway(settings),
        check_base_url(settings),
        check_proxy(settings),
    ]


def check_database(path: Path) -> list[Line]:
    if not path.is_file():
        return [(False, f"database: none at {path}; run `portal db upgrade` to create it")]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=5)
    except sqlite3.Error as exc:
        return [(False, f"database: {path} does not open for writing ({exc})")]
    lines: list[Line] = [(True, f"database opens: {path}")]
    try:
        latest = portal_db.migrations()[-1][0]
        try:
            current = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        except sqlite3.Error:
            current = None
        if current == latest:
            lines.append((True, f"migrations: at the latest, {latest:04d}"))
        else:
            at = "none applied" if current is None else f"at {current:04d}"
            lines.append(
                (False, f"migrations: {at}, latest is {latest:04d}; run `portal db upgrade`")
            )
        result = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        lines.append(
            (True, "integrity_check: ok")
            if result == "ok"
            else (False, f"integrity_check: {result[:200]}; restore the latest good backup")
        )
    except sqlite3.Error as exc:
        lines.append((False, f"database: cannot be read ({exc})"))
    finally:
        conn.close()
    return lines


def _size(number: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if number < 1024 or unit == "GB":
            return f"{number:,.0f} {unit}" if unit == "bytes" else f"{number:,.1f} {unit}"
        number /= 1024
    return ""


def check_disk(path: Path) -> Line:
    folder = path.parent if path.parent.is_dir() else Path(".")
    size = path.stat().st_size if path.is_file() else 0
    free = shutil.disk_usage(folder).free
    needed = 2 * size + DISK_HEADROOM
    ok = free >= needed
    return (
        ok,
        f"disk: {_size(free)} free beside the database (needs {_size(needed)}:"
        " twice the database and 200 MB)",
    )


def check_smtp(settings: Settings) -> Line:
    if not settings.smtp_host:
        if settings.production:
            return (False, "SMTP: PORTAL_SMTP_HOST is not set, so no email can be sent")
        return (True, "SMTP: none set; emails wait in the development mailbox (/dev/mailbox)")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        steps = asyncio.run(_smtp_steps(settings))
    except Exception as exc:  # what failed, not a trace; never the password
        return (False, f"SMTP {where}: {' '.join(str(exc).split())[:200] or type(exc).__name__}")
    return (True, f"SMTP {where} answers: {', '.join(steps)} (no mail sent)")


async def _smtp_steps(settings: Settings) -> list[str]:
    """The sender's own path (aiosmtplib, with its TLS options for PORTAL_SMTP_TLS):
    connect, EHLO, TLS, login; then QUIT."""
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        timeout=SMTP_TIMEOUT,
        **tls_options(settings),
    )
    step = "connect"
    try:
        await smtp.connect()  # TLS from the first byte, or STARTTLS, as the sender does
        steps = ["connect", "EHLO"]
        if smtp.get_transport_info("sslcontext") is not None:
            steps.append("TLS" if settings.smtp_tls == "implicit" else "STARTTLS")
        if settings.smtp_username:
            step = "login"
            await smtp.login(settings.smtp_username, settings.smtp_password)
            steps.append("login")
        await smtp.quit()
        return steps
    except Exception as exc:
        smtp.close()
        raise RuntimeError(f"{step} failed: {type(exc).__name__}: {exc}") from exc


def check_gateway(settings: Settings) -> Line:
    if settings.gateway == "sandbox":
        return (True, "payment gateway: sandbox (TEST MODE, no keys to check)")
    if settings.gateway == "stripe":
        secret = getattr(settings, "stripe_secret_key", "") or os.environ.get(
            "PORTAL_STRIPE_SECRET_KEY", ""
        )
        base = (
            getattr(settings, "stripe_api_base", "")
            or os.environ.get("PORTAL_STRIPE_API_BASE", "")
            or STRIPE_API_BASE
        )
        return check_stripe_key(secret, base)
    return (False, f"payment gateway: {settings.gateway} has no check yet")


def check_stripe_key(secret: str, api_base: str) -> Line:
    """Stripe accepts the secret key if GET /v1/balance answers 200 (reads, charges nothing)."""
    if not secret:
        return (False, "payment gateway: stripe, but PORTAL_STRIPE_SECRET_KEY is not set")
    mode = "live" if secret.startswith(("sk_live_", "rk_live_")) else "test"
    request = urllib.request.Request(
        f"{api_base.rstrip('/')}/v1/balance", headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            ok = response.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return (False, f"payment gateway: Stripe refused the secret key ({exc.code})")
        return (False, f"payment gateway: Stripe answered {exc.code}")
    except OSError as exc:
        return (False, f"payment gateway: Stripe cannot be reached ({exc})")
    return (ok, f"payment gateway: Stripe accepts the {mode} secret key")


def check_base_url(settings: Settings) -> Line:
    if settings.base_url.startswith("https://"):
        return (True, f"base URL: {settings.base_url}")
    if settings.production:
        return (False, f"base URL: {settings.base_url} must start with https:// in production")
    return (True, f"base URL: {settings.base_url} (development; production needs https://)")


def check_proxy(settings: Settings) -> Line:
    """In production TLS ends at a reverse proxy (the portal speaks plain HTTP), so the
    proxy must be named, or every resident shares the proxy's address in the sign-in
    throttle and the audit log."""
    if settings.trusted_proxies:
        return (True, f"trusted proxies: {', '.join(settings.trusted_proxies)}")
    if settings.production:
        return (
            False,
            "trusted proxies: PORTAL_TRUSTED_PROXIES is empty; set it to your proxy's"
            " address (127.0.0.1 for Caddy on this server)",
        )
    return (True, "trusted proxies: none (development, no proxy expected)")
