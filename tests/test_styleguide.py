"""The style guide is where a designer sees every piece: it names every partial and
calls every macro the partials define."""

from __future__ import annotations

import re

from portal.templating import TEMPLATES_DIR

STYLEGUIDE = (TEMPLATES_DIR / "pages" / "styleguide.html").read_text()
PARTIALS = sorted((TEMPLATES_DIR / "partials").rglob("*.html"))  # staff/ too


def test_every_partial_is_in_the_style_guide():
    names = [p.relative_to(TEMPLATES_DIR / "partials").as_posix() for p in PARTIALS]
    assert "staff/money_panel.html" in names
    missing = [name for name in names if name not in STYLEGUIDE]
    assert missing == []


def test_every_macro_is_called_in_the_style_guide():
    macros = [
        name
        for partial in PARTIALS
        for name in re.findall(r"{%-?\s*macro\s+(\w+)\(", partial.read_text())
    ]
    assert {"field", "checkbox", "checkboxes", "radios", "alert_box", "call_us"} <= set(macros)
    missing = [name for name in macros if not re.search(rf"\b{name}\(", STYLEGUIDE)]
    assert missing == []


async def test_the_style_guide_renders_each_new_piece(client):
    page = (await client.get("/dev/styleguide")).text
    assert (
        'type="radio" id="sg-method-kept-bank" name="sg-method-kept" value="bank" checked' in page
    )
    assert '<a href="tel:9093952050" class="tel">(909) 395-2050</a>' in page
    assert "This account is locked" in page and 'class="error-summary__text"' in page
    assert (
        '<abbr title="hundred cubic feet: 1 HCF = 100 cubic feet = 748 gallons">HCF</abbr>' in page
    )
    # The console's pieces: a login's panel, an account's methods, AutoPay and payments.
    assert "Locked until a password reset" in page and "Kitchen card (Visa ending 4242)" in page
    assert 'action="/staff/accounts/1/scheduled/5/cancel"' in page
