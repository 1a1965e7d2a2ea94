"""Sample data for the development style guide: every partial in each of its states."""

from __future__ import annotations

from portal.i18n import _


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
        "sample_money": 12345,
    }
