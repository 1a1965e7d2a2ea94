"""What residents see of an email: who it is from (the utility's name, also non-ASCII),
where answers go, which account it is about (its service address, never the account
number), why it was sent, the Customer Services phone at the end, and an HTML part that
is one table-free column, readable in dark mode, at 320 px and without images, saying
what the text part says.

Real parts: the registration runs through the app on a real SQLite file; the background
sender delivers to a real SMTP server on loopback (aiosmtpd); the HTML is opened in
headless Chromium and checked by axe-core.
"""

from __future__ import annotations

import re
from dataclasses import replace
from email import message_from_bytes, policy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from portal.db import Database
from portal.mail import Mailer, OutboxSender
from portal.settings import Settings, SettingsError
from portal.templating import TEMPLATES_DIR, make_environment

from helpers import PHONE, assert_accessible
from resident_steps import post_form, registration
from sample_data import load_billing

UTILITY = "Compañía de Agua de Ontário"
PHONE_NUMBER = "(909) 395-2050"
ADDRESS = "123 Euclid Ave"
ACCOUNT_NUMBER = "0067890"  # Maria's, as printed on her bill (resident_steps)

TEMPLATES = sorted(
    path.name.removesuffix(".subject.txt")
    for path in (Path(TEMPLATES_DIR) / "emails").glob("*.subject.txt")
)
SAMPLE = {
    "username": "maria1",
    "name": "Ana",
    "link": "http://portal.test/verify?username=maria1&verificationcode=" + "x" * 60,
    "service_addresses": [f"{ADDRESS}, Ontario, CA 91762"],
    "service_address": f"{ADDRESS}, Ontario, CA 91762",
    "amount_cents": 12345,
    "due_date": "2026-02-21",
    "new_email": "maria.new@example.com",
    "usernames": ["maria1", "maria2"],
    "payment": {
        "confirmation_number": "P-20261120-0001",
        "amount_cents": 8410,
        "settled_at": "2026-11-20T18:00:00.000000Z",
    },
    "account_ending": ACCOUNT_NUMBER[-4:],
    # AutoPay, scheduled payments and notices
    "method": {"brand": "Visa", "last4": "4242"},
    "max_cents": 10000,
    "changed": False,
    "retry_on": "2026-02-22",
    "kind": "autopay",
    "schedule": {"run_on": "2026-02-21", "kind": "autopay"},
    "leak": {"times": 2.5},
    "unsubscribe": "http://portal.test/notices/unsubscribe?token=" + "u" * 40,
    # A saved card that expires soon (card_expiring)
    "expiry": "12/2026",
    "expired": False,
    "autopay": [f"{ADDRESS}, Ontario, CA 91762"],
    "scheduled": [{"run_on": "2026-12-10", "amount_cents": 4000}],
}
REASON = {"en": "You get this email because", "es": "Recibe este correo"}
ABOUT = {"en": "About your water service at", "es": "Sobre su servicio de agua en"}


def parts(message) -> dict[str, str]:
    return {
        part.get_content_subtype(): part.get_content()
        for part in message.walk()
        if part.get_content_maintype() == "text"
    }


# --- From and Reply-To, read back from the SMTP server ----------------------------------


async def test_registration_email_read_back_from_smtp(settings, client, smtp_server):
    """The verification email of a real registration, as the SMTP server received it."""
    load_billing(settings.database)
    response = await post_form(client, "/register", registration())
    assert response.status_code in (200, 303), response.text

    mail_settings = replace(
        settings,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        utility_name=UTILITY,
        mail_from="no-reply@agua.example",
        mail_reply_to="ayuda@agua.example",
    )
    database = Database(settings.database)
    await database.open()
    try:
        assert await OutboxSender(mail_settings, database).send_due() == 1
    finally:
        await database.close()
    smtp_server.wait_for(1)
    raw = smtp_server.envelopes[0].content
    message = message_from_bytes(raw, policy=policy.default)

    # The utility's non-ASCII name is an RFC 2047 encoded word on the wire ...
    from_line = re.search(rb"^From:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", raw, re.M).group(1)
    assert from_line.isascii() and b"=?utf-8?" in from_line
    # ... which reads back as the name and the bare address.
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (UTILITY, "no-reply@agua.example")
    [reply_to] = message["Reply-To"].addresses
    assert (reply_to.display_name, reply_to.addr_spec) == (UTILITY, "ayuda@agua.example")
    assert smtp_server.envelopes[0].mail_from == "no-reply@agua.example"
    assert smtp_server.envelopes[0].rcpt_tos == ["maria@example.com"]

    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    assert set(body) == {"plain", "html"}
    for text in body.values():
        assert f"About your water service at {ADDRESS}" in text
        assert ACCOUNT_NUMBER not in text and "67890" not in text
        assert "You get this email because someone registered" in text
        assert "/verify?" in text
    assert body["plain"].rstrip().splitlines()[-1].endswith(f"at {PHONE_NUMBER}.")
    assert "<table" not in body["html"] and "<img" not in body["html"]
    last_paragraph = re.findall(r"<p>(.*?)</p>", body["html"], re.S)[-1]
    assert PHONE_NUMBER in last_paragraph


async def test_without_reply_to_there_is_no_reply_to_header(settings, smtp_server):
    mail_settings = replace(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    database = Database(settings.database)
    await database.open()
    try:
        async with database.write() as conn:
            await Mailer(mail_settings, make_environment(mail_settings)).enqueue(
                conn, to="ana@example.com", template="test_message", context=SAMPLE
            )
        assert await OutboxSender(mail_settings, database).send_due() == 1
    finally:
        await database.close()
    [message] = smtp_server.wait_for(1)
    assert message["From"] == "Ontario Municipal Utilities Company <no-reply@localhost>"
    assert message["Reply-To"] is None


def test_reply_to_setting_takes_one_address():
    assert Settings.from_env({"PORTAL_MAIL_REPLY_TO": " help@city.example "}).mail_reply_to == (
        "help@city.example"
    )
    assert Settings.from_env({}).mail_reply_to == ""
    for bad in ("help", "a@b.c, d@e.f", "Help <help@city.example>", "help@city\r\nBcc: x@y.z"):
        with pytest.raises(SettingsError, match="PORTAL_MAIL_REPLY_TO"):
            Settings.from_env({"PORTAL_MAIL_REPLY_TO": bad})


# --- every template: account, reason, phone, same words in both parts --------------------


class _Blocks(HTMLParser):
    """Text of each paragraph or list item of the body (a paragraph that is only a link
    is left out: the text part gives the link's address instead), and every link target."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[str] = []
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self._text: list[str] | None = None
        self._outside_links: list[str] = []
        self._in_link = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag in ("p", "li"):
            self._text, self._outside_links = [], []
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])
            self._in_link = True
        if tag == "br" and self._text is not None:
            self._text.append(" ")

    def handle_endtag(self, tag):
        if tag == "a":
            self._in_link = False
        if tag in ("p", "li") and self._text is not None:
            if "".join(self._outside_links).strip():
                self.blocks.append(" ".join("".join(self._text).split()))
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)
            if not self._in_link:
                self._outside_links.append(data)


def render(template: str, locale: str) -> tuple[str, str, str]:
    settings = Settings()
    return Mailer(settings, make_environment(settings)).render(template, SAMPLE, locale)


@pytest.mark.parametrize("locale", ["en", "es"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_email_names_the_address_says_why_and_ends_with_the_phone(template, locale):
    subject, text, html = render(template, locale)
    assert subject
    for part in (text, html):
        assert f"{ABOUT[locale]} {ADDRESS}" in part
        assert REASON[locale] in part
        assert ACCOUNT_NUMBER not in part
    assert text.rstrip().splitlines()[-1].endswith(f"{PHONE_NUMBER}.")
    parsed = _Blocks()
    parsed.feed(html)
    assert PHONE_NUMBER in parsed.blocks[-1]
    assert not parsed.tags & {"table", "img", "script", "style", "link"}


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_text_part_says_what_the_html_part_says(template):
    _, text, html = render(template, "en")
    parsed = _Blocks()
    parsed.feed(html)
    flat = " ".join(text.split())
    for href in parsed.hrefs:
        assert href in text
    copy_hint = "If the button does not work, copy this address into your browser:"
    for block in parsed.blocks:
        block = block.removeprefix(copy_hint).strip()
        assert block in flat, f"{template}: the text part does not say {block!r}"


# --- the HTML part in a real browser: 320 px, dark mode, images off ------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_html_emails_fit_320px_and_read_in_dark_mode(new_page, scheme):
    page = new_page(viewport=PHONE)
    page.emulate_media(color_scheme=scheme)
    page.route("**/*", lambda route: route.abort())  # images and anything remote: off
    for template in TEMPLATES:
        _, _, html = render(template, "en")
        page.set_content(html)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{template} is {width}px wide at 320px"
        text_color = page.evaluate("getComputedStyle(document.querySelector('p')).color")
        red, green, blue = (int(n) for n in re.findall(r"\d+", text_color)[:3])
        light_text = red + green + blue > 3 * 128
        assert light_text == (scheme == "dark"), f"{template}: {text_color} in {scheme} mode"
        assert_accessible(page, f"{template} email, {scheme}, 320px")
