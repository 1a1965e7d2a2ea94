"""Sample data for the development style guide: every partial in each of its states."""

from __future__ import annotations

from portal.accounts.sessions import RESIDENT_TIMEOUT
from portal.billing.chart import usage_chart_svg
from portal.billing.service import AccountSummary, UsageMonth
from portal.i18n import _
from portal.security import totp

SAMPLE_KEY = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def styleguide_context() -> dict:
    return {
        "sample_errors": {
            "sg-username": _("Enter a username of 3 to 32 letters or numbers"),
            "sg-email": _("Enter an email address like name@example.com"),
        },
        "alerts": [
            {"kind": "success", "title": _("Saved"), "body": _("Your changes were saved.")},
            {"kind": "info", "title": _("Good to know"), "body": _("Bills are ready on the 1st.")},
            {"kind": "warning", "title": _("Past due"), "body": _("Your bill was due on May 1.")},
        ],
        "sample_dialog": {
            "title": _("Verification success"),
            "body": _("Your account has been successfully verified."),
            "close_url": "/dev/styleguide",
        },
        # session_timeout.html shown open (the page hides it until the time comes).
        "sample_timeout": RESIDENT_TIMEOUT,
        "sample_money": 12345,
        # authenticator_key.html: a fixed sample key (it protects nothing).
        "sample_key": SAMPLE_KEY,
        "sample_key_uri": totp.uri(SAMPLE_KEY, "maria1", "Sample Utility"),
        "sample_qr": totp.qr_svg(
            totp.uri(SAMPLE_KEY, "maria1", "Sample Utility"),
            _("QR code for your authenticator app"),
        ),
        "sample_methods": [
            {"value": "card", "label": _("Credit or debit card")},
            {"value": "bank", "label": _("Bank account (checking or savings)")},
        ],
        "sample_methods_hints": [
            {
                "value": "card",
                "label": _("Credit or debit card"),
                "hint": _("Visa, Mastercard, Discover or American Express."),
            },
            {
                "value": "bank",
                "label": _("Bank account (checking or savings)"),
                "hint": _("You need the routing number and the account number."),
            },
        ],
        **_billing_samples(),
        "staff": _staff_samples(),
    }


def _billing_samples() -> dict:
    """Dashboard, bill, payment and usage partials with made-up data."""

    account = {
        "id": 1,
        "customer_number": "0100000",
        "account_number": "0200000",
        "name": "Maria Garcia",
        "service_address": "123 Euclid Ave, Ontario, CA 91762",
    }
    other = {
        **account,
        "id": 2,
        "account_number": "0200013",
        "service_address": "45 Holt Blvd, Ontario, CA 91761",
    }
    bill = {
        "id": 7,
        "bill_number": "B1",
        "bill_date": "2026-10-01",
        "due_date": "2026-10-21",
        "amount_due_cents": 8410,
        "period_start": "2026-09-01",
        "period_end": "2026-10-01",
    }
    summaries = [
        AccountSummary(
            account,
            bill,
            8410,
            "2026-10-02T08:00:00.000000Z",
            True,
            {"amount_cents": 2000, "at": "2026-09-15T17:00:00.000000Z", "in_portal": True},
        ),
        AccountSummary(other, None, None, None, False, None),
    ]
    months = [
        UsageMonth(
            f"2026-{m:02d}-01",
            f"2026-{m:02d}",
            10.0 + m,
            "HCF",
            9.0 + m,
            round((10 + m) * 748 / 30) if m > 1 else None,
        )
        for m in range(1, 11)
    ]
    points = [
        {"label": m.month, "month": m.month, "value": m.value, "flag": i == 9}
        for i, m in enumerate(months)
    ]
    payments = [
        {
            "created_at": "2026-09-15T17:00:00.000000Z",
            "settled_at": "2026-09-15T17:00:05.000000Z",
            "amount_cents": 2000,
            "status": "succeeded",
            "confirmation_number": "PAY-7K3Q-9X2P",
            "brand": "Visa",
            "last4": "4242",
        },
        {
            "created_at": "2026-09-14T17:00:00.000000Z",
            "settled_at": "2026-09-14T17:00:05.000000Z",
            "amount_cents": 2000,
            "status": "failed",
            "confirmation_number": None,
            "brand": "Visa",
            "last4": "0002",
        },
    ]
    return {
        "sample_account": account,
        "sample_summaries": summaries,
        "sample_profile": {"paperless": True, "printed": False},
        "sample_bills": [
            bill,
            {**bill, "id": 6, "bill_date": "2026-09-01", "amount_due_cents": 7000},
        ],
        "sample_payments": payments,
        "sample_months": months,
        "sample_labels": {m.read_date: m.month for m in months},
        "sample_chart": usage_chart_svg(
            points,
            unit="HCF",
            title=_("Water use by month, in %(unit)s", unit="HCF"),
            desc=_(
                "Bar chart of the last %(count)s months. The same numbers are in the table below.",
                count=10,
            ),
            id_prefix="sg-chart",
        ),
        "sample_number_errors": {
            "customer_number": _("Enter your customer number. It is on your utility bill"),
            "account_number": _(
                "Enter your account number as it appears on your bill, right after your customer number"
            ),
        },
    }


def _staff_samples() -> dict:
    """The Customer Services console's partials with made-up data."""
    at = "2026-10-02T08:00:00.000000Z"
    card = {"id": 3, "method": "card", "brand": "Visa", "last4": "4242", "exp_month": 4}
    return {
        "accounts": [
            {
                "id": 1,
                "customer_number": "0100000",
                "account_number": "0200000",
                "name": "Maria Garcia",
                "service_address": "123 Euclid Ave",
                "status": "active",
                "username": "maria1",
                "email": "maria@example.com",
            },
            {
                "id": 2,
                "customer_number": "0100001",
                "account_number": "0200013",
                "name": "Maria Garcia",
                "service_address": "45 Holt Blvd",
                "status": "closed",
                "username": None,
                "email": None,
            },
        ],
        "logins": [{"id": 9, "username": "mgarcia", "email": "mgarcia@example.com"}],
        "login_view": {
            "login": {
                "id": 1,
                "username": "maria1",
                "email": "maria@example.com",
                "created_at": at,
                "verified_at": None,
                "failed_logins": 100,
                "paperless": True,
                "printed": False,
            },
            "accounts": [
                {
                    "id": 1,
                    "customer_number": "0100000",
                    "account_number": "0200000",
                    "service_address": "123 Euclid Ave",
                    "status": "active",
                }
            ],
            "sign_ins": [{"at": at, "event": "sign_in_failed", "client": "203.0.113.9"}],
            "trail": [{"at": at, "event": "register", "client": "203.0.113.9", "detail": None}],
        },
        "methods": [
            {**card, "exp_year": 2030, "nickname": "Kitchen card", "is_default": 1},
            {
                **card,
                "id": 4,
                "method": "bank",
                "brand": "Bank",
                "last4": "6789",
                "exp_month": None,
                "exp_year": None,
                "nickname": "",
                "is_default": 0,
            },
        ],
        "autopay": {
            "enrolment": {"max_cents": 15000, "enrolled_at": at},
            "method": {"nickname": "Kitchen card", "brand": "Visa", "last4": "4242"},
            "next": {
                "status": "scheduled",
                "kind": "autopay",
                "run_on": "2026-10-21",
                "attempt": 1,
            },
        },
        "scheduled": [
            {
                "id": 5,
                "amount_cents": 4000,
                "run_on": "2026-10-15",
                "status": "scheduled",
                "nickname": "",
                "brand": "Visa",
                "last4": "4242",
            },
            {
                "id": 6,
                "amount_cents": 2500,
                "run_on": "2026-09-15",
                "status": "canceled",
                "nickname": "Kitchen card",
                "brand": "Visa",
                "last4": "4242",
            },
        ],
        "reason_error": {
            "autopay_reason": _(
                "Enter the reason for this action, as you would explain it to a supervisor"
            )
        },
    }
