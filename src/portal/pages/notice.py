"""The service notice: one short text, in English and in Spanish, at the top of every
page while it is set (a boil-water notice, a main break, an office closure).

The operator sets it with `portal notice set --en … --es …` and removes it with `portal
notice clear` (cli.py); a Customer Services supervisor does the same on /staff/notice
(staff/console.py, with a reason, as a staff action). Both write the site_notice table
and an audit row. The running
portal reads that row every PORTAL_NOTICE_REFRESH_SECONDS in the background
(`SiteNotice`, a Periodic round), so no request waits for it; pages show `text()` in
their language (base.html, partials/site_notice.html), and the signed-out pages kept by
shared_pages.py are made again when `version` changes.

The text is plain: autoescaped, one paragraph, no links (a notice that said "call this
number" in a stolen operator's words would be phishing on the city's own site; plain
text limits what it can carry), at most MAX_LENGTH characters in each language.
"""

from __future__ import annotations

import logging
import sqlite3

from portal import i18n
from portal.accounts import audit
from portal.db import Database, utcnow
from portal.i18n import _
from portal.periodic import Periodic

MAX_LENGTH = 300


def _fault(text: str) -> str | None:
    """What keeps a notice text from being shown: "empty", "long", "broken" or None."""
    if not text.strip():
        return "empty"
    if len(text) > MAX_LENGTH:
        return "long"
    if any(not ch.isprintable() for ch in text):
        return "broken"
    return None


def text_problem(text: str, language: str) -> str | None:
    """Why this notice text cannot be shown, in the operator's words (the CLI), or None."""
    fault = _fault(text)
    if fault == "empty":
        return f"the {language} text is empty"
    if fault == "long":
        return f"the {language} text has {len(text)} characters; at most {MAX_LENGTH}"
    if fault == "broken":
        return f"the {language} text has a line break or another control character"
    return None


# Show this notice (english, spanish, set_at): row 1, replacing any there was.
UPSERT = (
    "INSERT INTO site_notice (id, text_en, text_es, set_at) VALUES (1, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET text_en = excluded.text_en,"
    " text_es = excluded.text_es, set_at = excluded.set_at"
)
CURRENT = "SELECT text_en, text_es, set_at FROM site_notice WHERE id = 1"


def notice_problem(text: str, spanish: bool) -> str | None:
    """The same rules in the console's words (gettext), for the form's alerts."""
    fault = _fault(text)
    if fault == "empty":
        return _("Enter the notice in Spanish") if spanish else _("Enter the notice in English")
    if fault == "long":
        return _("Keep the notice to %(max)s characters or fewer", max=MAX_LENGTH)
    if fault == "broken":
        return _("Write the notice as one paragraph, without line breaks")
    return None


def set_notice(conn: sqlite3.Connection, english: str, spanish: str) -> None:
    """Show this notice from the next refresh on (the CLI; texts already checked). The
    notice and its audit row in one transaction (the CLI's connection autocommits)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(UPSERT, (english, spanish, utcnow()))
        detail = f"en={english} | es={spanish}"
        audit.record_sync(conn, "site_notice_set", detail=detail, detail_limit=700)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def clear_notice(conn: sqlite3.Connection) -> bool:
    """Remove the notice, with its audit row; False if there was none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        gone = conn.execute("DELETE FROM site_notice WHERE id = 1").rowcount
        if gone:
            audit.record_sync(conn, "site_notice_cleared")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return bool(gone)


class SiteNotice(Periodic):
    """The notice as the running portal knows it: read at start-up and then every
    `interval` seconds. `version` is the row's set_at ("" when there is none)."""

    task_name = "site-notice"
    what = "site notice refresh"
    log = logging.getLogger("portal.notice")

    def __init__(self, db: Database, interval: float) -> None:
        super().__init__(interval)
        self.db = db
        self.texts: dict[str, str] = {}
        self.version = ""

    async def round(self) -> None:
        row = await self.db.fetchone(
            "SELECT text_en, text_es, set_at FROM site_notice WHERE id = 1"
        )
        if row is None:
            self.texts, self.version = {}, ""
        elif row["set_at"] != self.version:
            self.texts = {"en": row["text_en"], "es": row["text_es"]}
            self.version = row["set_at"]

    async def start(self) -> None:
        await self.round()  # pages show it from the first request
        await super().start()

    def text(self) -> str | None:
        """The notice in the page's language, or None (a template global)."""
        return self.texts.get(i18n.current_locale.get()) if self.texts else None
