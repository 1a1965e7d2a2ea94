"""What PORTAL_ENV=production refuses at start-up, beyond a missing secret key.

`refuse_unsafe(settings)` raises SettingsError with one line naming the variable; the
`portal` command prints it and exits 2 before anything opens a port or a database.
"""

from __future__ import annotations

from email.utils import parseaddr

from portal.settings import TEST_GATEWAYS, Settings, SettingsError, looks_weak

# NIST SP 800-63B: at least 8 characters for a password the person chose.
PASSWORD_MIN_LENGTH_FLOOR = 8
# Domains that can never receive a reply: RFC 2606 / RFC 6761 names and the local machine.
PLACEHOLDER_DOMAINS = ("localhost", "localdomain", "example", "test", "invalid", "local")
PLACEHOLDER_EXAMPLES = ("example.com", "example.org", "example.net")
STRIPE_TEST_KEYS = ("sk_test_", "rk_test_")


def placeholder_mail_from(value: str) -> bool:
    """True when PORTAL_MAIL_FROM is not a real address of a real domain."""
    _, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    domain = domain.lower().rstrip(".")
    if not at or not local or "." not in domain:
        return True
    last = domain.rsplit(".", 1)[1]
    return last in PLACEHOLDER_DOMAINS or any(
        domain == name or domain.endswith("." + name) for name in PLACEHOLDER_EXAMPLES
    )


def refuse_unsafe(settings: Settings) -> None:
    if settings.gateway in TEST_GATEWAYS:
        raise SettingsError(
            f"PORTAL_GATEWAY={settings.gateway} is the test gateway (no money moves);"
            " choose a real payment processor in production"
        )
    if settings.gateway_secret and looks_weak(settings.gateway_secret):
        raise SettingsError("PORTAL_GATEWAY_SECRET must be at least 32 random characters")
    if settings.gateway == "stripe":
        if settings.stripe_secret_key.startswith(STRIPE_TEST_KEYS):
            raise SettingsError(
                "PORTAL_STRIPE_SECRET_KEY is a Stripe test-mode key (no money moves);"
                " use the live key in production"
            )
        hook = settings.stripe_webhook_secret.removeprefix("whsec_")
        if looks_weak(hook, min_length=24):
            raise SettingsError(
                "PORTAL_STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret (whsec_…)"
                " from Stripe"
            )
    if settings.password_min_length < PASSWORD_MIN_LENGTH_FLOOR:
        raise SettingsError(
            f"PORTAL_PASSWORD_MIN_LENGTH must be at least {PASSWORD_MIN_LENGTH_FLOOR}"
            f" in production, not {settings.password_min_length}"
        )
    if placeholder_mail_from(settings.mail_from):
        raise SettingsError(
            "PORTAL_MAIL_FROM must be a real address of your utility's domain in production,"
            f" not {settings.mail_from!r}"
        )
    if (settings.smtp_username or settings.smtp_password) and settings.smtp_tls == "off":
        raise SettingsError(
            "PORTAL_SMTP_TLS=off would send the SMTP password in clear; use auto, starttls"
            " or implicit in production"
        )
