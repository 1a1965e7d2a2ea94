"""Spanish: a complete catalog, the language control, emails and formats in the
resident's language."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from babel.messages.pofile import read_po

from portal.i18n import LOCALE_DIR, browser_locale
from portal.settings import PROJECT_ROOT

from resident_steps import outbox, post_form, query, registration
from sample_data import load_billing

PO = LOCALE_DIR / "es" / "LC_MESSAGES" / "messages.po"
POT = LOCALE_DIR.parent / "messages.pot"
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def _text(value) -> str:
    return value if isinstance(value, str) else " ".join(value)


def test_spanish_catalog_is_complete_with_no_fuzzy_entries():
    with PO.open("rb") as stream:
        catalog = read_po(stream)
    with POT.open("rb") as stream:
        template = read_po(stream)
    missing = [
        m.id for m in template if m.id and (m.id not in catalog or not _text(catalog[m.id].string))
    ]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not missing, f"{len(missing)} untranslated, e.g. {missing[:5]}"
    assert not fuzzy, f"fuzzy entries: {fuzzy[:5]}"
    for message in catalog:
        if message.id:
            assert sorted(PLACEHOLDER.findall(_text(message.id))) == sorted(
                PLACEHOLDER.findall(_text(message.string))
            ), message.id


def test_catalog_template_is_current(tmp_path):
    """Every string in the code and templates is in messages.pot (run `make messages`)."""
    fresh = tmp_path / "fresh.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_",
            "--no-location",
            "--sort-output",
            "-o",
            str(fresh),
            ".",
        ],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    with fresh.open("rb") as stream:
        wanted = {m.id for m in read_po(stream) if m.id}
    with POT.open("rb") as stream:
        have = {m.id for m in read_po(stream) if m.id}
    assert wanted - have == set(), (
        f"not in messages.pot (run make messages): {sorted(wanted - have)[:5]}"
    )


async def test_language_control_switches_and_persists(client):
    page = await client.get("/register")
    assert '<html lang="en">' in page.text and 'lang="es"' in page.text and ">Español<" in page.text
    switched = await client.get("/language?lang=es&next=/register", follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"] == "/register"
    assert (
        "portal_lang=es" in switched.headers["set-cookie"]
        and "HttpOnly" in switched.headers["set-cookie"]
    )
    spanish = await client.get("/register")
    assert '<html lang="es">' in spanish.text and ">English<" in spanish.text
    assert "Registro de usuario nuevo" in spanish.text and "Número de cliente" in spanish.text
    other = await client.get("/")
    assert '<html lang="es">' in other.text and "Iniciar sesión en Mi Cuenta" in other.text
    offsite = await client.get("/language?lang=en&next=//evil.example", follow_redirects=False)
    assert offsite.headers["location"] == "/"
    unknown = await client.get("/language?lang=fr&next=/", follow_redirects=False)
    assert "set-cookie" not in unknown.headers or "portal_lang" not in unknown.headers.get(
        "set-cookie", ""
    )


@pytest.mark.parametrize(
    "header, language",
    [
        ("es-MX,es;q=0.9,en-US;q=0.8,en;q=0.7", "es"),
        ("en-US,en;q=0.9,es;q=0.8", "en"),
        ("fr-FR, es;q=0.5", "es"),  # not ours first, then Spanish
        ("es;q=0.1, en", "en"),
        ("en;q=0.5, ES", "es"),
        ("es;q=0, en;q=0.2", "en"),  # q=0: "not this one"
        ("es;q=nan", "en"),
        ("es;q=2", "en"),
        ("*", "en"),
        ("", "en"),
        (";;;,,,q=,=", "en"),
        ("x" * 5000 + ",es", "en"),  # only the first 400 characters are read
    ],
)
def test_a_first_visit_follows_the_browser_language(header, language):
    assert browser_locale(header) == language


async def test_pages_follow_the_browser_until_a_language_is_chosen(settings, client):
    spanish = {"Accept-Language": "es-US,es;q=0.9,en;q=0.8"}
    english = {"Accept-Language": "en-US,en;q=0.9"}
    for _ in range(2):  # the second time from the pages stored for signed-out visitors
        client.cookies.clear()
        page = await client.get("/", headers=spanish)
        assert '<html lang="es">' in page.text and "Iniciar sesión en Mi Cuenta" in page.text
        assert "accept-language" in page.headers["vary"].lower()
        client.cookies.clear()
        page = await client.get("/", headers=english)
        assert '<html lang="en">' in page.text and "Login to My Account" in page.text
    missing = await client.get("/no-such-page", headers=spanish)
    assert missing.status_code == 404 and '<html lang="es">' in missing.text
    # The language link wins over the browser, both ways.
    await client.get("/language?lang=en")
    assert '<html lang="en">' in (await client.get("/pay", headers=spanish)).text
    await client.get("/language?lang=es")
    assert '<html lang="es">' in (await client.get("/pay", headers=english)).text


async def test_registering_from_a_spanish_browser_keeps_spanish_for_email(settings, client):
    load_billing(settings.database)
    client.headers["Accept-Language"] = "es-MX,es;q=0.9"
    good = await post_form(client, "/register", registration())
    assert good.status_code == 200
    [mail] = outbox(settings.database)
    assert 'lang="es"' in mail["body_html"]
    [row] = query(settings.database, "SELECT locale FROM users")
    assert row["locale"] == "es"


async def test_spanish_errors_and_email(settings, client):
    load_billing(settings.database)
    client.cookies["portal_lang"] = "es"
    bad = await post_form(client, "/register", registration(username=""))
    assert bad.status_code == 422
    assert "Hay un problema" in bad.text and "<title>Error:" in bad.text
    good = await post_form(client, "/register", registration())
    assert good.status_code == 200
    [mail] = outbox(settings.database)
    assert mail["subject"] != "" and "Verify your" not in mail["subject"]
    assert "/verify?" in mail["body_text"] and "Hello" not in mail["body_text"]
    assert 'lang="es"' in mail["body_html"]


async def test_money_and_dates_use_us_formats_in_spanish(client):
    from portal.i18n import current_locale
    from portal.templating import long_date, money

    token = current_locale.set("es")
    try:
        assert money(8410) == "$84.10"
        assert long_date("2026-05-01") == "1 de mayo de 2026"
    finally:
        current_locale.reset(token)


async def test_saved_language_follows_the_resident_to_a_new_device(settings, client):
    import sqlite3

    from sample_data import GOOD_PASSWORD

    load_billing(settings.database)
    assert (await post_form(client, "/register", registration())).status_code == 200
    conn = sqlite3.connect(settings.database)
    conn.execute("UPDATE users SET verified_at = '2026-01-01T00:00:00.000000Z', locale = 'es'")
    conn.commit()
    conn.close()
    client.cookies.clear()
    response = await post_form(
        client, "/login", {"username": "maria1", "password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303
    assert "portal_lang=es" in "; ".join(response.headers.get_list("set-cookie"))
    assert '<html lang="es">' in (await client.get("/account")).text
    # an explicit choice on this device wins over the saved one
    client.cookies.clear()
    client.cookies["portal_lang"] = "en"
    again = await post_form(
        client, "/login", {"username": "maria1", "password": GOOD_PASSWORD}, follow_redirects=False
    )
    assert "portal_lang=" not in "; ".join(again.headers.get_list("set-cookie"))


async def test_error_page_keeps_the_signed_in_header(settings, client):
    import sqlite3

    from sample_data import GOOD_PASSWORD

    load_billing(settings.database)
    await post_form(client, "/register", registration())
    conn = sqlite3.connect(settings.database)
    conn.execute("UPDATE users SET verified_at = '2026-01-01T00:00:00.000000Z'")
    conn.commit()
    conn.close()
    await post_form(client, "/login", {"username": "maria1", "password": GOOD_PASSWORD})
    page = await client.get("/accounts/999/bills")
    assert page.status_code == 404 and "Sign out" in page.text


def test_texts_translated_when_a_template_is_compiled_read_as_gettext_says_at_run_time(
    settings,
):
    """Each language's copy of the templates has its fixed texts translated when it is
    compiled (templating.PortalEnvironment). For every text in the catalog, in both
    languages, with and without autoescape and with values that need escaping, that copy
    says exactly what gettext() says at run time."""
    import json

    from portal import i18n
    from portal.templating import make_environment

    env = make_environment(settings)
    with POT.open("rb") as stream:
        texts = [m.id for m in read_po(stream) if m.id and isinstance(m.id, str)]
    assert len(texts) > 300
    tricky = '<b>"Tom" & Jerry</b> 100%'
    checked = 0
    for locale in i18n.LOCALES:
        token = i18n.current_locale.set(locale)
        try:
            compiled = env.for_locale(locale)
            for text in texts:
                names = sorted(set(re.findall(r"%\((\w+)\)(s|\d*d)", text)))
                args = "".join(f", {n}={'v' if kind == 's' else 7}" for n, kind in names)
                call = "{{ _(" + json.dumps(text) + args + ") }}"
                for source in (call, "{% autoescape false %}" + call + "{% endautoescape %}"):
                    expected = env.from_string(source).render(v=tricky)
                    assert compiled.from_string(source).render(v=tricky) == expected, text
                    checked += 1
        finally:
            i18n.current_locale.reset(token)
    assert checked == 4 * len(texts)
    # And the Spanish copy holds the translation itself, not a call to gettext.
    code = env.for_locale("es").compile('{{ _("My Account") }}', raw=True)
    assert "Mi Cuenta" in code and "gettext" not in code
