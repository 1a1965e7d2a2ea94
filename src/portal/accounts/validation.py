"""One validator per field, shared by the full form post and the per-field check.

Each returns a message in the resident's words, or None. Rules that need the database
(username taken, account numbers) live in service.py and call these first.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from portal.billing.numbers import number_key
from portal.i18n import _

USERNAME = re.compile(r"[A-Za-z0-9]+")
MAX_EMAIL = 254


def username_problem(username: str) -> str | None:
    if not username:
        return _("Enter a username")
    if not USERNAME.fullmatch(username):
        return _("Your username can include only letters and numbers, with no spaces or symbols")
    if not 3 <= len(username) <= 32:
        return _("Your username must be 3 to 32 letters or numbers long")
    return None


def confirm_password_problem(password: str, confirm: str) -> str | None:
    if not confirm:
        return _("Enter your password again to confirm it")
    if password != confirm:
        return _("The passwords do not match. Enter the same password in both boxes")
    return None


def customer_number_problem(value: str) -> str | None:
    if not value.strip():
        return _("Enter your customer number. It is on your utility bill")
    if number_key(value) is None or len(value) > 30:
        return _("Enter your customer number using only the numbers printed on your bill")
    return None


def account_number_problem(value: str) -> str | None:
    if not value.strip():
        return _(
            "Enter your account number as it appears on your bill, right after your customer number"
        )
    if number_key(value) is None or len(value) > 30:
        return _("Enter your account number using only the numbers printed on your bill")
    return None


def number_pair_problems(customer_number: str, account_number: str) -> dict[str, str]:
    """The format messages of the two numbers from the bill, by field name."""
    problems = {
        "customer_number": customer_number_problem(customer_number),
        "account_number": account_number_problem(account_number),
    }
    return {name: problem for name, problem in problems.items() if problem}


def account_not_found() -> str:
    return _(
        "We could not find an account with this customer number and account number. "
        "Check both numbers on your bill"
    )


def delivery_problem(paperless: bool, printed: bool) -> str | None:
    if not (paperless or printed):
        return _("Choose Receive Paperless Bills, Receive Printed Bills, or both")
    return None


def normalize_email(value: str) -> str | None:
    """The address as we store it, or None if it is not a valid address (no DNS look-up)."""
    if "\r" in value or "\n" in value or len(value) > MAX_EMAIL:
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def email_problem(value: str) -> str | None:
    if not value.strip():
        return _("Enter your email address")
    if normalize_email(value) is None:
        return _("Enter an email address in the correct format, like name@example.com")
    return None


def confirm_email_problem(email: str, confirm: str) -> str | None:
    if not confirm.strip():
        return _("Enter your email address again to confirm it")
    if email.strip().casefold() != confirm.strip().casefold():
        return _("The email addresses do not match. Enter the same address in both boxes")
    return None
