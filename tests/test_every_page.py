"""Every page the portal serves, checked for accessibility, so none can be forgotten.

PAGES lists each GET page with how to reach it in a real state (real verification
codes, reset tokens and receipts, made through the portal itself); NOT_PAGES lists the
GET and POST routes that are not pages, with the reason. A fast test without a browser
fails when a route is in neither list, so a page added later cannot skip the checks.

The browser sweep visits every PAGES entry in English and in Spanish, at 320 px and at
desktop width: axe-core (WCAG 2.2 AA), `<html lang>`, and no sideways scrolling.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from portal import db as portal_db
from portal.app import create_app
from portal.settings import Settings

from conftest import LiveServer
from helpers import DESKTOP, PHONE, assert_accessible
from resident_steps import link_in, local, registration
from sample_data import GOOD_PASSWORD, bills_csv, load, usage_csv

# --- the portal's pages -------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page in one state.

    route: the route pattern this visit covers (None for a page with no route, the 404).
    url:   a path, or a function of the World that makes the state and returns the path.
    shows: a CSS selector that proves the state is the one meant (language-neutral).
    lands: the path the browser ends on, when the URL redirects to the page."""

    route: str | None
    state: str
    url: str | Callable[[World], str]
    signed_in: bool = False
    status: int = 200
    shows: str | None = None
    lands: str | None = None


PAGES: list[Page] = [
    # Signed out.
    Page("/", "landing page", "/", shows="#main input[name=username]"),
    Page("/register", "New User Registration", "/register", shows="input[name=confirm_email]"),
    Page("/login", "Login to My Account", "/login", shows="input[name=password]"),
    Page(
        "/login",
        "sent to login from My Account while signed out",
        "/account",
        lands="/login",
        shows=".alert",
    ),
    Page("/forgot-username", "Forgot Username", "/forgot-username", shows="input[name=email]"),
    Page(
        "/forgot-password",
        "Forgot Password",
        "/forgot-password",
        shows="input[name=identifier]",
    ),
    Page("/verify/resend", "send the verification email again", "/verify/resend"),
    Page(
        "/verify",
        "Verification success dialog (a real, unused verification link)",
        lambda w: w.fresh_verification_link(),
        shows="[role=dialog]",
    ),
    Page(
        "/verify",
        "verification link that does not work",
        "/verify?username=nobody&verificationcode=not-a-real-code",
        status=400,
    ),
    Page(
        "/reset-password",
        "choose a new password (a real reset token from the email)",
        lambda w: w.reset_link,
        shows="input[name=confirm_password]",
    ),
    Page(
        "/reset-password",
        "reset link that does not work",
        "/reset-password?token=not-a-real-token",
        status=400,
    ),
    Page(
        "/profile/email/confirm",
        "new email address confirmed (a real, unused link)",
        lambda w: w.fresh_email_change_link(),
    ),
    Page(
        "/profile/email/confirm",
        "email change link that does not work",
        "/profile/email/confirm?token=not-a-real-token",
        status=400,
    ),
    Page(
        "/login/code",
        "the code step of a two-step login, with no login waiting (start again)",
        "/login/code",
        status=422,
        shows="a[href='/login']",
    ),
    Page("/contact", "Contact Us", "/contact", shows="a[href^='tel:']"),
    Page("/accessibility", "accessibility statement", "/accessibility"),
    Page("/privacy", "privacy", "/privacy"),
    Page("/pay", "Pay My Bill, guest", "/pay", shows="input[name=account_number]"),
    Page(
        "/sandbox-gateway/checkout/{ref:str}",
        "the sandbox's hosted card page, open",
        lambda w: f"/sandbox-gateway/checkout/{w.open_ref}",
        shows="input[name=security_code]",
    ),
    Page(
        "/pay/return",
        "back from the gateway before the payment ended (pending)",
        lambda w: f"/pay/return?ref={w.open_ref}",
        shows="a[href*='/sandbox-gateway/checkout/']",
    ),
    Page(
        "/pay/receipt/{token:str}",
        "payment confirmation, seen as a guest",
        lambda w: f"/pay/receipt/{w.paid_token}",
        shows=".alert--success",
    ),
    Page(
        "/pay/receipt/{token:str}",
        "payment declined",
        lambda w: f"/pay/receipt/{w.declined_token}",
        shows="a[href^='/pay/again/']",
    ),
    Page(
        "/pay/again/{token:str}",
        "try again after a decline (a fresh amount form)",
        lambda w: f"/pay/again/{w.declined_token}",
        shows="input[name=amount]",
    ),
    Page(
        "/notices/unsubscribe",
        "stop one kind of email notice (a real signed link, no sign-in)",
        lambda w: w.unsubscribe_link,
        shows="form[method=post] button",
    ),
    Page(
        "/notices/unsubscribe",
        "email notice link that does not work",
        "/notices/unsubscribe?u=1&k=leak&t=0",
        status=400,
    ),
    Page("/dev/styleguide", "style guide", "/dev/styleguide"),
    Page("/dev/mailbox", "development mailbox", "/dev/mailbox", shows="a[href^='/dev/mailbox/']"),
    Page(
        "/dev/mailbox/{message_id:int}",
        "one email in the development mailbox",
        lambda w: f"/dev/mailbox/{w.message_id}",
    ),
    Page(None, "page not found", "/no-such-page", status=404),
    # The staff console's open pages (its signed-in pages: see NOT_PAGES).
    Page("/staff", "staff sign-in", "/staff", shows="input[name=code]"),
    Page(
        "/staff/enrol",
        "staff enrolment link that does not work",
        "/staff/enrol?token=not-a-real-token",
        status=400,
    ),
    # Signed in (the visit signs in once per browser context before these).
    Page("/", "landing page, signed in", "/", signed_in=True),
    Page(
        "/account",
        "My Account with a linked account, bills and a payment",
        "/account",
        signed_in=True,
    ),
    Page("/account/link", "Add another account", "/account/link", signed_in=True),
    Page(
        "/accounts/{account_id:int}/bills",
        "bill history with payments",
        lambda w: f"/accounts/{w.account_id}/bills",
        signed_in=True,
        shows="table",
    ),
    Page(
        "/accounts/{account_id:int}/bills/{bill_id:int}",
        "one bill",
        lambda w: f"/accounts/{w.account_id}/bills/{w.bill_id}",
        signed_in=True,
    ),
    Page(
        "/accounts/{account_id:int}/usage",
        "24 months of usage with a possible leak",
        lambda w: f"/accounts/{w.account_id}/usage",
        signed_in=True,
        shows="svg",
    ),
    Page(
        "/profile",
        "My Profile",
        "/profile",
        signed_in=True,
        shows="input[name=new_email]",
    ),
    Page(
        "/pay",
        "Pay My Bill from My Account (amount form)",
        lambda w: f"/pay?account={w.account_id}",
        signed_in=True,
        shows="input[name=amount]",
    ),
    Page(
        "/profile/activity",
        "Recent activity, with her logins",
        "/profile/activity",
        signed_in=True,
        shows="table",
    ),
    Page(
        "/profile/two-step",
        "Two-step verification, off: the key, its QR code and the form to turn it on",
        "/profile/two-step",
        signed_in=True,
        shows="svg[role=img]",
    ),
    Page(
        "/profile/payment-methods",
        "Payment methods with a saved card (used by AutoPay)",
        "/profile/payment-methods",
        signed_in=True,
        shows=".method-list input[name^=nickname-]",
    ),
    Page(
        "/sandbox-gateway/checkout/{ref:str}",
        "the sandbox's page in save mode (adding a payment method)",
        lambda w: f"/sandbox-gateway/checkout/{w.setup_ref}",
        signed_in=True,
        shows="input[name=security_code]",
    ),
    Page(
        "/accounts/{account_id:int}/autopay",
        "AutoPay on, with its next charge and the skip and turn-off buttons",
        lambda w: f"/accounts/{w.account_id}/autopay",
        signed_in=True,
        shows="form[action$='/autopay/cancel']",
    ),
    Page(
        "/profile/notices",
        "Email notices, two chosen",
        "/profile/notices",
        signed_in=True,
        shows="input[name=leak]",
    ),
    Page(
        "/accounts/{account_id:int}/scheduled",
        "Schedule a payment, with one scheduled (cancel button)",
        lambda w: f"/accounts/{w.account_id}/scheduled",
        signed_in=True,
        shows="form[action$='/cancel']",
    ),
    Page(
        "/accounts/{account_id:int}/pay-saved",
        "Pay with a saved payment method (amount due, the default method chosen)",
        lambda w: f"/accounts/{w.account_id}/pay-saved",
        signed_in=True,
        shows="input[name=method_id][checked]",
    ),
    Page(
        "/pay/receipt/{token:str}",
        "payment confirmation, signed in",
        lambda w: f"/pay/receipt/{w.paid_token}",
        signed_in=True,
        shows=".alert--success",
    ),
]

# Routes that are not pages a resident reads, each with the reason.
NOT_PAGES: dict[str, str] = {
    "/language": "redirects back to the page it came from (the switch itself is tested below)",
    "/accounts/{account_id:int}/bills/{bill_id:int}/pdf": "PDF download (tested for real text elsewhere)",
    "/accounts/{account_id:int}/usage.csv": "CSV download",
    "/dev/mailbox/{message_id:int}/html": "a raw email's HTML part under a sandbox CSP, shown as a mail program would",
    "/healthz": "plain text for monitoring (tests/test_ops_observe.py)",
    "/readyz": "plain text for monitoring (tests/test_ops_observe.py)",
    "/metrics": "Prometheus text for monitoring (tests/test_ops_observe.py)",
    "/session": "JSON for the idle sign-out warning's script; the warning itself: axe in tests/test_session_timeout_browser.py",
    "/staff/session": "JSON for the staff idle sign-out warning (tests/test_staff_http.py)",
    # The staff console's signed-in pages: a staff session (password + TOTP), which this
    # resident sweep does not have. tests/test_staff_browser.py walks each with axe-core,
    # keyboard only, at desktop width and 768 px.
    "/staff/search": "staff only: axe in tests/test_staff_browser.py (empty and with results)",
    "/staff/accounts/{account_id:int}": "staff only: axe in tests/test_staff_browser.py",
    "/staff/accounts/{account_id:int}/pay": "staff only: axe in tests/test_staff_browser.py",
    "/staff/logins/{user_id:int}": "staff only: axe in tests/test_staff_browser.py (a login with no account)",
    "/staff/team": "supervisors only: axe in tests/test_staff_browser.py",
    "/staff/audit": "supervisors only: axe in tests/test_staff_browser.py (with and without an error)",
    "/staff/audit.csv": "CSV download (supervisors)",
    "/staff/notice": "supervisors only: axe in tests/test_site_notice.py (shown, refused)",
    "/staff/notice/clear": "POST only: redirects to /staff/notice, or re-renders it with errors",
    "/staff/sign-out": "POST only: redirects to the staff sign-in",
    "/staff/accounts/{account_id:int}/notes": "POST only: redirects to the account page",
    "/staff/accounts/{account_id:int}/release": "POST only: redirects to the account page",
    "/staff/logins/{user_id:int}/{action:str}": "POST only (resend-verification, unlock, two-step-off, email): redirects to the account page",
    "/staff/accounts/{account_id:int}/autopay/cancel": "POST only: redirects to the account page",
    "/staff/accounts/{account_id:int}/scheduled/{schedule_id:int}/cancel": "POST only: redirects to the account page",
    # POST only: each answers with a redirect, a fragment, JSON, or a page state of a
    # form the browser tests of its feature check.
    "/register/check/{name:str}": "POST only: one field's inline alert (htmx fragment)",
    "/logout": "POST only: redirects to the login page",
    "/profile/delivery": "POST only: redirects to /profile, or re-renders it with errors",
    "/profile/password": "POST only: redirects to /profile, or re-renders it with errors",
    "/profile/email": "POST only: redirects to /profile, or re-renders it with errors",
    "/profile/sign-out-everywhere": "POST only: redirects to the login page",
    "/profile/two-step/off": "POST only: redirects to /profile, or re-renders the two-step page with errors",
    "/profile/two-step/codes": "POST only: the two-step page with the new codes (axe in tests/test_two_step_browser.py)",
    "/accounts/{account_id:int}/unlink": "POST only: redirects to /account",
    "/pay/confirm": "POST only: redirects to the gateway, or re-renders the amount form",
    "/payments/webhook": "POST only: the gateway's signed notification, answers JSON",
    "/profile/payment-methods/return": "back from the gateway's save page: redirects to /profile/payment-methods",
    "/profile/payment-methods/{method_id:int}/rename": "POST only: redirects, or re-renders the list with errors",
    "/profile/payment-methods/{method_id:int}/default": "POST only: redirects to the list",
    "/profile/payment-methods/{method_id:int}/remove": "POST only: redirects, or re-renders the list with the reason",
    "/accounts/{account_id:int}/autopay/cancel": "POST only: redirects to the AutoPay page",
    "/accounts/{account_id:int}/scheduled/{schedule_id:int}/{move:str}": "POST only (cancel, dismiss): redirects to the scheduled payments page or My Account",
    "/accounts/{account_id:int}/autopay/{move:str}/{schedule_id:int}": "POST only (skip): redirects to the AutoPay page",
    "/accounts/{account_id:int}/pay-saved/confirm": "POST only: redirects to the receipt (the browser walk in test_autopay_browser checks its error states)",
}


def _routes(settings: Settings) -> dict[str, set[str]]:
    app = create_app(settings)
    return {route.path: set(route.methods) for route in app.routes}


def test_every_get_route_is_a_checked_page_or_listed_as_not_a_page(tmp_path):
    # Development settings: the style guide and the mailbox exist there, not in production.
    routes = _routes(Settings(database=tmp_path / "portal.sqlite3"))
    covered = {page.route for page in PAGES} | set(NOT_PAGES)
    forgotten = sorted(
        path for path, methods in routes.items() if "GET" in methods and path not in covered
    )
    assert not forgotten, (
        "GET routes with no accessibility check: add each to PAGES in tests/test_every_page.py "
        "(with a real state to visit) or to NOT_PAGES with the reason: " + ", ".join(forgotten)
    )
    # And the lists name only routes that exist, so they cannot drift into fiction.
    stale = sorted(path for path in covered - {None} if path not in routes)
    assert not stale, "PAGES / NOT_PAGES name routes the app does not have: " + ", ".join(stale)
    pages_without_get = sorted(
        {p.route for p in PAGES if p.route} - {p for p, m in routes.items() if "GET" in m}
    )
    assert not pages_without_get, f"PAGES entries that are not GET routes: {pages_without_get}"
    # A production app serves no route the development app lacks.
    production = _routes(
        Settings(
            env="production",
            database=tmp_path / "p.sqlite3",
            secret_key="x" * 40,
            base_url="https://portal.example",
        )
    )
    assert set(production) <= set(routes)


# --- one live server with real data for the whole module ----------------------------

ACCOUNTS_HEADER = "customer_number,account_number,name,service_address,status\n"
MARIA = ("0012345", "0067890")
SPARE_ACCOUNTS = 12  # one per fresh registration (a service account has one login)


SPARE_BILL = "41.20"


def _load(path: Path) -> None:
    portal_db.upgrade(path)
    accounts = [f"{MARIA[0]},{MARIA[1]},Maria Garcia,123 Euclid Ave,active"]
    accounts += [
        f"{9000 + n},{8000 + n},Resident {n},{n} Vineyard Ave,active" for n in range(SPARE_ACCOUNTS)
    ]
    load(path, "accounts", ACCOUNTS_HEADER + "\n".join(accounts) + "\n")
    load(path, "bills", bills_csv(*MARIA))
    for n in range(SPARE_ACCOUNTS):  # one bill each: a spare account registers with its amount
        spare = [(SPARE_BILL, "0.00", "0.00", SPARE_BILL)]
        load(path, "bills", bills_csv(str(9000 + n), str(8000 + n), spare))
    values = [10.0 + (n % 5) for n in range(23)] + [31.0]  # the last month: a possible leak
    load(path, "usage", usage_csv(*MARIA, values))


def _rows(path: Path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = portal_db.connect_sync(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} field"
    return match.group(1)


class Browserless:
    """A resident's plain HTTP client against the live server (CSRF cookie fetched)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=15)
        self.http.get("/")

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post(self, path: str, data: dict) -> httpx.Response:
        return self.http.post(path, data={**data, "_csrf_token": self.http.cookies["portal_csrf"]})

    def close(self) -> None:
        self.http.close()


@dataclass
class World:
    """The live server and the real things made through it for the pages to show."""

    server: LiveServer
    database: Path
    account_id: int = 0
    bill_id: int = 0
    paid_token: str = ""
    declined_token: str = ""
    open_ref: str = ""
    setup_ref: str = ""
    unsubscribe_link: str = ""
    reset_link: str = ""
    message_id: int = 0
    spare: list[int] = field(default_factory=lambda: list(range(SPARE_ACCOUNTS)))
    maria: Browserless | None = None
    email_changes: int = 0

    def latest_mail(self, to: str) -> sqlite3.Row:
        rows = _rows(
            self.database, "SELECT * FROM outbox WHERE to_addr = ? ORDER BY id DESC LIMIT 1", (to,)
        )
        assert rows, f"no email to {to} in the outbox"
        return rows[0]

    def mail_with(self, to: str, path: str, seconds: float = 10) -> str:
        """The link to `path` in the newest email to `to`, once it is written (work asked
        for on a form may be done just after the answer)."""
        deadline = time.monotonic() + seconds
        while True:
            body = self.latest_mail(to)["body_text"]
            if path in body or time.monotonic() > deadline:
                return local(link_in(body, path))
            time.sleep(0.05)

    def register(self, username: str, customer: str, account: str, email: str) -> str:
        """Register over HTTP; return the verification link's local path from the outbox."""
        guest = Browserless(self.server.url)
        try:
            form = registration(
                username=username,
                customer_number=customer,
                account_number=account,
                bill_amount="84.10" if account.lstrip("0") == MARIA[1].lstrip("0") else SPARE_BILL,
                email=email,
                confirm_email=email,
            )
            response = guest.post("/register", form)
            assert response.status_code == 200, response.text
        finally:
            guest.close()
        return local(link_in(self.latest_mail(email)["body_text"], "/verify"))

    def fresh_resident(self, username: str) -> str:
        """A verified resident on a spare account (verified through the real link)."""
        n = self.spare.pop()
        link = self.register(username, f"{9000 + n}", f"{8000 + n}", f"{username}@example.com")
        guest = Browserless(self.server.url)
        assert guest.get(link).status_code == 200
        guest.close()
        return username

    def fresh_verification_link(self) -> str:
        n = self.spare.pop()
        return self.register(f"newres{n}", f"{9000 + n}", f"{8000 + n}", f"newres{n}@example.com")

    def fresh_email_change_link(self) -> str:
        """Maria asks for a new email address; the link in that email, not yet opened."""
        self.email_changes += 1
        address = f"maria.new{self.email_changes}@example.com"
        # Earlier requests made as if days ago: the portal limits how often one resident
        # may ask for a confirmation link.
        conn = portal_db.connect_sync(self.database)
        with conn:
            conn.execute(
                "UPDATE tokens SET created_at = '2000-01-01T00:00:00.000000Z'"
                " WHERE purpose = 'email'"
            )
        conn.close()
        response = self.maria.post(
            "/profile/email",
            {"email_password": GOOD_PASSWORD, "new_email": address, "confirm_new_email": address},
        )
        assert response.status_code == 303, response.text
        return local(link_in(self.latest_mail(address)["body_text"], "/profile/email/confirm"))


def sign_in_http(client: Browserless, username: str) -> None:
    response = client.post("/login", {"username": username, "password": GOOD_PASSWORD})
    assert response.status_code == 303, response.text


def _checkout(client: Browserless, amount_form: httpx.Response) -> str:
    """Start the payment from an amount form; return the sandbox checkout's path."""
    assert amount_form.status_code == 200, amount_form.text
    html = amount_form.text
    start = client.post(
        "/pay/confirm",
        {
            "account_token": _hidden(html, "account_token"),
            "idempotency_key": _hidden(html, "idempotency_key"),
            "amount": "84.10",
            "method": "card",
            "receipt_email": "payer@example.com",
        },
    )
    assert start.status_code == 303, start.text
    checkout = start.headers["location"]
    assert checkout.startswith("/sandbox-gateway/checkout/")
    assert client.get(checkout).status_code == 200
    return checkout


def _pay(client: Browserless, checkout: str, card: str) -> str:
    """Pay on the sandbox page; follow the way back; return the receipt token."""
    done = client.post(
        checkout,
        {
            "card_number": card,
            "expiry": "12/39",
            "security_code": "737",
            "name_on_card": "Maria Garcia",
            "action": "pay",
        },
    )
    assert done.status_code == 303, done.text
    back = client.get(done.headers["location"])
    assert back.status_code == 303, back.text
    receipt = back.headers["location"]
    assert receipt.startswith("/pay/receipt/")
    return receipt.rsplit("/", 1)[1]


def _save_page(client: Browserless) -> str:
    """Start adding a card from My Profile → Payment methods; the sandbox save page's path."""
    key = _hidden(client.get("/profile/payment-methods").text, "idempotency_key")
    start = client.post(
        "/profile/payment-methods",
        {"method": "card", "nickname": "Kitchen card", "idempotency_key": key},
    )
    assert start.status_code == 303, start.text
    return start.headers["location"]


def _guest_amount_form(guest: Browserless) -> httpx.Response:
    return guest.post("/pay", {"customer_number": MARIA[0], "account_number": MARIA[1]})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    path = tmp_path_factory.mktemp("every_page") / "portal.sqlite3"
    _load(path)
    server = LiveServer(Settings(database=path, password_min_length=15)).start()
    world = World(server=server, database=path)
    try:
        # Maria registers, verifies through the emailed link, and signs in.
        verify = world.register("maria1", "12345", "67890", "maria@example.com")
        guest = Browserless(server.url)
        assert guest.get(verify).status_code == 200
        world.message_id = world.latest_mail("maria@example.com")["id"]
        world.maria = Browserless(server.url)
        sign_in_http(world.maria, "maria1")
        [row] = _rows(path, "SELECT id FROM service_accounts WHERE account_number = ?", (MARIA[1],))
        world.account_id = row["id"]
        world.bill_id = _rows(
            path,
            "SELECT id FROM bills WHERE account_id = ? ORDER BY bill_date DESC",
            (world.account_id,),
        )[0]["id"]
        # A payment from My Account, approved; a guest's, declined; a guest's, left open.
        maria = world.maria
        world.paid_token = _pay(
            maria,
            _checkout(maria, maria.get(f"/pay?account={world.account_id}")),
            "4242 4242 4242 4242",
        )
        world.declined_token = _pay(
            guest, _checkout(guest, _guest_amount_form(guest)), "4000 0000 0000 0002"
        )
        world.open_ref = _checkout(guest, _guest_amount_form(guest)).rsplit("/", 1)[1]
        statuses = [r["status"] for r in _rows(path, "SELECT status FROM payments ORDER BY id")]
        assert statuses == ["succeeded", "failed", "pending"], statuses
        # Forgot Password: the reset link from the email in the outbox (GET spends nothing).
        assert guest.post("/forgot-password", {"identifier": "maria1"}).status_code == 200
        world.reset_link = world.mail_with("maria@example.com", "/reset-password")
        # Maria saves a card that expires this month (My Account flags it) through the
        # sandbox's save page and turns AutoPay on with it; a second save page is left open.
        done = maria.post(
            _save_page(maria),
            {
                "card_number": "4242 4242 4242 4242",
                "expiry": date.today().strftime("%m/%y"),
                "security_code": "737",
                "name_on_card": "Maria Garcia",
                "action": "pay",
            },
        )
        assert maria.get(done.headers["location"]).status_code == 303
        [method] = _rows(path, "SELECT id FROM saved_methods")
        enrolled = maria.post(
            f"/accounts/{world.account_id}/autopay",
            {"method_id": str(method["id"]), "terms": "yes"},
        )
        assert enrolled.status_code == 303, enrolled.text
        world.setup_ref = _save_page(maria).rsplit("/", 1)[1]
        form = maria.get(f"/accounts/{world.account_id}/scheduled").text
        scheduled = maria.post(
            f"/accounts/{world.account_id}/scheduled",
            {
                "amount": "20.00",
                "run_on": (date.today() + timedelta(days=3)).isoformat(),
                "method_id": str(method["id"]),
                "late_ok": "yes",
                "idempotency_key": _hidden(form, "idempotency_key"),
            },
        )
        assert scheduled.status_code == 303, scheduled.text
        assert maria.post("/profile/notices", {"due_soon": "yes", "leak": "yes"}).status_code == 303
        # The runner sends the possible-leak notice (her usage has one); its signed link.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env["PORTAL_DATABASE"] = str(path)
        subprocess.run([sys.executable, "-m", "portal.cli", "jobs", "run"], env=env, check=True)
        [notice] = _rows(
            path, "SELECT unsubscribe_url FROM outbox WHERE unsubscribe_url IS NOT NULL"
        )
        world.unsubscribe_link = local(notice["unsubscribe_url"])
        guest.close()
        yield world
    finally:
        if world.maria:
            world.maria.close()
        server.stop()


# --- the sweep ------------------------------------------------------------------------

LANGUAGES = ("en", "es")
VIEWPORTS = {"320px": PHONE, "desktop": DESKTOP}
USERNAME_LABEL = re.compile(r"^\s*(Username|Nombre de usuario)\s*$")
PASSWORD_LABEL = re.compile(r"^\s*(Password|Contraseña)\s*$")


def switch_to_spanish(page) -> None:
    page.get_by_role("link", name="Español").click()
    page.wait_for_function("document.documentElement.lang === 'es'")
    expect(page.get_by_role("link", name="English")).to_have_attribute("lang", "en")


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(base_url + "/login")
    form = page.locator("#login-form")
    form.get_by_label(USERNAME_LABEL).fill(username)
    form.get_by_label(PASSWORD_LABEL).fill(GOOD_PASSWORD)
    form.get_by_label(PASSWORD_LABEL).press("Enter")
    # A full load, or with JavaScript the boosted form's page swapped in at its address.
    page.wait_for_url(lambda url: urlsplit(url).path == "/account")
    page.wait_for_load_state()


def check_page(page, world: World, entry: Page, lang: str, viewport: dict) -> None:
    url = entry.url(world) if callable(entry.url) else entry.url
    where = f"{entry.state} ({url}, {lang}, {viewport['width']}px)"
    response = page.goto(world.server.url + url)
    assert response is not None and response.status == entry.status, (
        f"{where}: status {response.status if response else None}, expected {entry.status}"
    )
    if entry.lands:
        assert urlsplit(page.url).path == entry.lands, f"{where}: landed on {page.url}"
    html_lang = page.evaluate("document.documentElement.lang")
    assert html_lang == lang, f'{where}: <html lang="{html_lang}">'
    if entry.shows:
        assert page.locator(entry.shows).count(), f"{where}: nothing matches {entry.shows!r}"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"] + 1, f"{where}: scrolls sideways ({width}px wide)"
    assert_accessible(page, where)


@pytest.mark.browser
@pytest.mark.parametrize("viewport", VIEWPORTS.values(), ids=VIEWPORTS.keys())
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_page_is_accessible(world, browser, lang, viewport):
    """One browser context per language and width; it signs in once, before the first
    signed-in page. Every visit is checked; the failures are reported together."""
    context = browser.new_context(viewport=viewport, locale="en-US")
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems, visits = [], 0
    try:
        page.goto(world.server.url + "/")
        if lang == "es":
            switch_to_spanish(page)
        signed_in = False
        for entry in sorted(PAGES, key=lambda p: p.signed_in):
            if entry.signed_in and not signed_in:
                sign_in(page, world.server.url, "maria1")
                signed_in = True
            visits += 1
            try:
                check_page(page, world, entry, lang, viewport)
            except (AssertionError, pytest.fail.Exception) as problem:
                problems.append(str(problem))
    finally:
        context.close()
    assert visits == len(PAGES)
    assert not problems, f"{len(problems)} of {visits} pages failed:\n\n" + "\n\n".join(problems)


def test_every_page_answers_head_as_it_answers_get(world):
    """HEAD is answered wherever GET is (src/portal/head_requests.py), in each page's real
    state: the same status and type, and no body. A page whose link works once gets a
    link of its own for each."""
    guest = Browserless(world.server.url)
    try:
        for entry in PAGES:
            client = world.maria.http if entry.signed_in else guest.http
            head_url, get_url = (
                (entry.url(world), entry.url(world)) if callable(entry.url) else (entry.url,) * 2
            )
            head, got = client.head(head_url), client.get(get_url)
            where = f"{entry.state} ({get_url})"
            assert head.status_code == got.status_code, where
            if entry.signed_in:  # still Maria's session, not the way to the login page
                assert urlsplit(got.headers.get("location", "")).path != "/login", where
            assert head.content == b"", where
            assert got.content or got.is_redirect, where
            assert head.headers.get("content-type") == got.headers.get("content-type"), where
    finally:
        guest.close()


# --- the language control ------------------------------------------------------------


@pytest.mark.browser
def test_language_link_works_from_the_keyboard(world, new_page):
    page = new_page(PHONE, js=True)
    page.goto(world.server.url + "/")
    assert page.evaluate("document.documentElement.lang") == "en"
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Español":
            break
    else:
        pytest.fail("Tab never reached the Español link in the header")
    assert page.evaluate("document.activeElement.getAttribute('lang')") == "es"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.evaluate("document.documentElement.lang") == "es"
    assert urlsplit(page.url).path == "/"
    english = page.get_by_role("link", name="English", exact=True)
    expect(english).to_be_visible()
    expect(english).to_have_attribute("lang", "en")
    expect(page.get_by_role("link", name="Español")).to_have_count(0)


@pytest.mark.browser
def test_a_phone_set_to_spanish_gets_spanish_until_english_is_chosen(world, new_page):
    page = new_page(PHONE, js=False, locale="es-MX")
    page.goto(world.server.url + "/")
    html = page.locator("html")
    expect(html).to_have_attribute("lang", "es")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert_accessible(page, "landing page from a Spanish phone")
    page.get_by_role("link", name="English", exact=True).click()
    expect(html).to_have_attribute("lang", "en")
    expect(page.get_by_role("link", name="Español")).to_be_visible()
    page.goto(world.server.url + "/pay")
    expect(html).to_have_attribute("lang", "en")  # the choice stays


@pytest.mark.browser
def test_language_choice_stays_on_other_pages_and_back(world, new_page):
    page = new_page(DESKTOP, js=True)
    page.goto(world.server.url + "/contact")
    switch_to_spanish(page)
    assert urlsplit(page.url).path == "/contact"  # back on the same page
    for path in ("/pay", "/privacy", "/register"):
        page.goto(world.server.url + path)
        assert page.evaluate("document.documentElement.lang") == "es", path
        expect(page.get_by_role("link", name="English", exact=True)).to_have_attribute("lang", "en")
    page.get_by_role("link", name="English", exact=True).click()
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert urlsplit(page.url).path == "/register"
    page.goto(world.server.url + "/contact")
    assert page.evaluate("document.documentElement.lang") == "en"


@pytest.mark.browser
def test_signed_in_residents_choice_is_saved_on_the_account(world, new_page):
    username = world.fresh_resident("luisa7")

    def saved() -> str:
        [row] = _rows(world.database, "SELECT locale FROM users WHERE username = ?", (username,))
        return row["locale"]

    assert saved() == "en"
    page = new_page(PHONE, js=True)
    sign_in(page, world.server.url, username)
    switch_to_spanish(page)
    assert urlsplit(page.url).path == "/account"
    assert saved() == "es"
    page.goto(world.server.url + "/profile")
    assert page.evaluate("document.documentElement.lang") == "es"
    page.get_by_role("link", name="English", exact=True).click()
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert saved() == "en"
