"""Configuration: PORTAL_* environment variables, read once into a frozen object.

Every setting is listed in the README's table. Defaults suit a laptop; production
refuses unsafe ones at start-up with a one-line reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_SECRET_KEY = "development-only-secret-key-do-not-use-in-production"


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message is one line for the operator."""


def looks_weak(secret: str, min_length: int = 32) -> bool:
    """True for a secret too short or too regular to be random: fewer than `min_length`
    characters, fewer than 10 different ones, under ~128 bits by a character-variety
    estimate, or mostly runs and steps ("aaaa…", "abcd…", "1234…")."""
    import math

    if len(secret) < min_length:
        return True
    variety = len(set(secret))
    if variety < 10 or len(secret) * math.log2(variety) < 128:
        return True
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in zip(secret, secret[1:], strict=False))
    return steps * 2 >= len(secret)


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def _int(value: str, name: str, low: int = 1, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from None
    if number < low or (high is not None and number > high):
        upper = f" to {high}" if high is not None else " or more"
        raise SettingsError(f"{name} must be {low}{upper}, not {value!r}")
    return number


AUDIT_KEEP_DAYS_MIN = 730  # California Government Code 34090: city records, 2 years at least


def _audit_keep_days(value: str) -> int:
    """0 keeps the audit log for ever (the default); otherwise at least two years."""
    name = "PORTAL_AUDIT_KEEP_DAYS"
    days = _int(value, name, 0, 36500)
    if 0 < days < AUDIT_KEEP_DAYS_MIN:
        raise SettingsError(
            f"{name} must be 0 (keep the audit log) or {AUDIT_KEEP_DAYS_MIN} days or more"
            f" (city records are kept two years at least), not {value!r}"
        )
    return days


def _timezone(value: str, name: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SettingsError(
            f"{name} must be a time zone name like America/Los_Angeles, not {value!r}"
        ) from None
    return value


# What registration and "Add another account" ask besides the two numbers: the amount
# of one of the account's two latest bills, or nothing (the guide's two numbers alone,
# for a utility that accepts that anyone holding a bill can claim its account).
ACCOUNT_PROOFS = ("bill_amount", "none")


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    value = value.strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _mail_address(value: str, name: str) -> str:
    """A bare address like help@city.example (empty stays empty)."""
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if value and (
        not at
        or not local
        or "." not in domain
        or any(char.isspace() or char in '<>,;"' or ord(char) < 32 for char in value)
    ):
        raise SettingsError(
            f"{name} must be one email address like help@city.example, not {value!r}"
        )
    return value


GATEWAYS = ("sandbox", "stripe")
# Gateways that only pretend to take money: refused when PORTAL_ENV=production, and their
# payments are marked TEST in every export (see portal.payments.export).
TEST_GATEWAYS = frozenset({"sandbox"})
STRIPE_API_BASE = "https://api.stripe.com"
SMTP_TLS_MODES = ("auto", "starttls", "implicit", "off")


def _gateway(value: str) -> str:
    value = value.strip().lower()
    if value not in GATEWAYS:
        raise SettingsError(f"PORTAL_GATEWAY must be one of {', '.join(GATEWAYS)}, not {value!r}")
    return value


def _smtp_tls(value: str, legacy_starttls: str, port: int) -> str:
    """PORTAL_SMTP_TLS; PORTAL_SMTP_STARTTLS=true (earlier versions) still means starttls.
    Unset on port 465 means implicit TLS, the only thing that port speaks."""
    value = value.strip().lower()
    if not value:
        if legacy_starttls and _bool(legacy_starttls, "PORTAL_SMTP_STARTTLS"):
            return "starttls"
        return "implicit" if port == 465 else "auto"
    if value not in SMTP_TLS_MODES:
        raise SettingsError(
            f"PORTAL_SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}, not {value!r}"
        )
    return value


def _addresses(value: str, name: str) -> tuple[str, ...]:
    import ipaddress

    found = []
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise SettingsError(
                f"{name} must list IP addresses separated by commas, not {part!r}"
            ) from None
    return tuple(found)


def _operations(get) -> dict:
    """PORTAL_TEMPLATES_DIR, PORTAL_TEMPLATES_RELOAD, PORTAL_LOG_FORMAT, PORTAL_METRICS_TOKEN."""
    templates = get("PORTAL_TEMPLATES_DIR").strip()
    if templates and not Path(templates).is_dir():
        raise SettingsError(f"PORTAL_TEMPLATES_DIR must be a folder, not {templates!r}")
    log_format = get("PORTAL_LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in {"text", "json"}:
        raise SettingsError(f"PORTAL_LOG_FORMAT must be text or json, not {log_format!r}")
    token = get("PORTAL_METRICS_TOKEN").strip()
    if token and len(token) < 16:
        raise SettingsError("PORTAL_METRICS_TOKEN must be at least 16 random characters")
    reload = get("PORTAL_TEMPLATES_RELOAD").strip()
    return {
        "templates_reload": _bool(reload, "PORTAL_TEMPLATES_RELOAD") if reload else None,
        "templates_dir": templates,
        "log_format": log_format,
        "metrics_token": token,
    }


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database: Path = field(default_factory=lambda: Path("var/portal.sqlite3"))
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False)
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_tls: str = "auto"
    mail_from: str = "no-reply@localhost"
    mail_reply_to: str = ""
    utility_name: str = "Ontario Municipal Utilities Company"
    support_phone: str = "(909) 395-2050"
    timezone: str = "America/Los_Angeles"
    password_min_length: int = 15
    max_body_bytes: int = 1_000_000
    gateway: str = "sandbox"
    gateway_secret: str = field(default="", repr=False)
    payment_max_dollars: int = 10_000
    trusted_proxies: tuple[str, ...] = ()
    account_proof: str = "bill_amount"
    lookups_per_address: int = 20  # look-ups of bill numbers per network per 10 minutes
    lookups_overall: int = 600  # and for everyone together
    checks_per_address: int = 120  # per-field checks while typing, per network per minute
    checks_overall: int = 3000  # and for everyone together
    stripe_secret_key: str = field(default="", repr=False)
    stripe_webhook_secret: str = field(default="", repr=False)
    stripe_api_base: str = STRIPE_API_BASE
    stripe_timeout: int = 20
    # Operations (docs/deploy.md)
    templates_dir: str = ""
    templates_reload: bool | None = None  # None: on in development, off in production
    log_format: str = "text"
    metrics_token: str = field(default="", repr=False)

    @property
    def reload_templates(self) -> bool:
        """Designers' edits to templates and static files show without a restart; in
        production files are read and hashed once (PORTAL_TEMPLATES_RELOAD overrides)."""
        if self.templates_reload is None:
            return not self.production
        return self.templates_reload

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        """Folders searched before the shipped templates (PORTAL_TEMPLATES_DIR)."""
        return (Path(self.templates_dir),) if self.templates_dir else ()

    autopay_days_before: int = 0  # charge AutoPay this many days before the due date
    autopay_reminder_days: int = 3  # remind the resident this many days before a charge
    due_notice_days: int = 5  # "payment due" notice this many days before the due date
    jobs_every_seconds: int = 300  # `portal serve` runs the jobs this often
    notice_refresh_seconds: int = 30  # how soon a `portal notice set` shows (pages/notice.py)
    sandbox_charge_delay: int = 0  # seconds the sandbox holds a saved-method charge (tests)
    audit_keep_days: int = 0  # 0: the audit log is kept; else rows older than this go

    @property
    def payment_max_cents(self) -> int:
        return self.payment_max_dollars * 100

    @property
    def gateway_signing_secret(self) -> str:
        """HMAC secret shared with the payment gateway; derived from the secret key if unset."""
        return self.gateway_secret or f"gateway:{self.secret_key}"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def dev_mailbox(self) -> bool:
        """Without an SMTP host, development mode shows the outbox at /dev/mailbox."""
        return not self.production and not self.smtp_host

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        e = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return e.get(name, default)

        env = get("PORTAL_ENV", "development").strip().lower() or "development"
        if env not in {"development", "production"}:
            raise SettingsError(f"PORTAL_ENV must be development or production, not {env!r}")
        secret = get("PORTAL_SECRET_KEY")
        if env == "production":
            if not secret:
                raise SettingsError("PORTAL_SECRET_KEY must be set when PORTAL_ENV=production")
            if secret == DEV_SECRET_KEY or looks_weak(secret):
                raise SettingsError("PORTAL_SECRET_KEY must be at least 32 random characters")
        base_url = get("PORTAL_BASE_URL", cls.base_url).rstrip("/")
        if env == "production" and not base_url.startswith("https://"):
            raise SettingsError("PORTAL_BASE_URL must start with https:// in production")
        gateway = _gateway(get("PORTAL_GATEWAY", "sandbox"))
        stripe_key, stripe_hook = (
            get("PORTAL_STRIPE_SECRET_KEY"),
            get("PORTAL_STRIPE_WEBHOOK_SECRET"),
        )
        if gateway == "stripe" and not (stripe_key and stripe_hook):
            raise SettingsError(
                "PORTAL_GATEWAY=stripe needs PORTAL_STRIPE_SECRET_KEY and PORTAL_STRIPE_WEBHOOK_SECRET"
            )
        stripe_base = get("PORTAL_STRIPE_API_BASE", STRIPE_API_BASE).rstrip("/")
        if not stripe_base.startswith(("https://", "http://")):
            raise SettingsError(f"PORTAL_STRIPE_API_BASE must be a URL, not {stripe_base!r}")
        smtp_port = _int(get("PORTAL_SMTP_PORT", "25"), "PORTAL_SMTP_PORT", 1, 65535)
        settings = cls(
            env=env,
            database=Path(get("PORTAL_DATABASE", "var/portal.sqlite3")),
            base_url=base_url,
            secret_key=secret or DEV_SECRET_KEY,
            smtp_host=get("PORTAL_SMTP_HOST"),
            smtp_port=smtp_port,
            smtp_username=get("PORTAL_SMTP_USERNAME"),
            smtp_password=get("PORTAL_SMTP_PASSWORD"),
            smtp_tls=_smtp_tls(get("PORTAL_SMTP_TLS"), get("PORTAL_SMTP_STARTTLS"), smtp_port),
            mail_from=get("PORTAL_MAIL_FROM", cls.mail_from),
            mail_reply_to=_mail_address(get("PORTAL_MAIL_REPLY_TO"), "PORTAL_MAIL_REPLY_TO"),
            utility_name=get("PORTAL_UTILITY_NAME", cls.utility_name),
            support_phone=get("PORTAL_SUPPORT_PHONE", cls.support_phone),
            timezone=_timezone(get("PORTAL_TIMEZONE", cls.timezone), "PORTAL_TIMEZONE"),
            password_min_length=_int(
                get("PORTAL_PASSWORD_MIN_LENGTH", "15"), "PORTAL_PASSWORD_MIN_LENGTH"
            ),
            max_body_bytes=_int(get("PORTAL_MAX_BODY_BYTES", "1000000"), "PORTAL_MAX_BODY_BYTES"),
            gateway=gateway,
            stripe_secret_key=stripe_key,
            stripe_webhook_secret=stripe_hook,
            stripe_api_base=stripe_base,
            stripe_timeout=_int(
                get("PORTAL_STRIPE_TIMEOUT", "20"), "PORTAL_STRIPE_TIMEOUT", 1, 120
            ),
            gateway_secret=get("PORTAL_GATEWAY_SECRET"),
            trusted_proxies=_addresses(get("PORTAL_TRUSTED_PROXIES"), "PORTAL_TRUSTED_PROXIES"),
            payment_max_dollars=_int(
                get("PORTAL_PAYMENT_MAX_DOLLARS", "10000"), "PORTAL_PAYMENT_MAX_DOLLARS"
            ),
            account_proof=_choice(
                get("PORTAL_ACCOUNT_PROOF", "bill_amount"), "PORTAL_ACCOUNT_PROOF", ACCOUNT_PROOFS
            ),
            lookups_per_address=_int(
                get("PORTAL_LOOKUPS_PER_ADDRESS", "20"), "PORTAL_LOOKUPS_PER_ADDRESS"
            ),
            lookups_overall=_int(get("PORTAL_LOOKUPS_OVERALL", "600"), "PORTAL_LOOKUPS_OVERALL"),
            checks_per_address=_int(
                get("PORTAL_CHECKS_PER_ADDRESS", "120"), "PORTAL_CHECKS_PER_ADDRESS", 1
            ),
            checks_overall=_int(get("PORTAL_CHECKS_OVERALL", "3000"), "PORTAL_CHECKS_OVERALL", 1),
            **_operations(get),
            autopay_days_before=_int(
                get("PORTAL_AUTOPAY_DAYS_BEFORE", "0"), "PORTAL_AUTOPAY_DAYS_BEFORE", 0, 20
            ),
            autopay_reminder_days=_int(
                get("PORTAL_AUTOPAY_REMINDER_DAYS", "3"), "PORTAL_AUTOPAY_REMINDER_DAYS", 1, 14
            ),
            due_notice_days=_int(
                get("PORTAL_DUE_NOTICE_DAYS", "5"), "PORTAL_DUE_NOTICE_DAYS", 1, 20
            ),
            jobs_every_seconds=_int(
                get("PORTAL_JOBS_EVERY_SECONDS", "300"), "PORTAL_JOBS_EVERY_SECONDS", 10, 3600
            ),
            notice_refresh_seconds=_int(
                get("PORTAL_NOTICE_REFRESH_SECONDS", "30"), "PORTAL_NOTICE_REFRESH_SECONDS", 1, 600
            ),
            sandbox_charge_delay=_int(
                get("PORTAL_SANDBOX_CHARGE_DELAY", "0"), "PORTAL_SANDBOX_CHARGE_DELAY", 0, 600
            ),
            audit_keep_days=_audit_keep_days(get("PORTAL_AUDIT_KEEP_DAYS", "0")),
        )
        if settings.production:
            from portal.security.production import refuse_unsafe

            refuse_unsafe(settings)  # raises SettingsError naming the variable
        return settings
