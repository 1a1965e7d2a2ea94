"""A bill as a PDF with real text (fpdf2), for residents who want to print or keep it.

Pure: no HTTP, no database. Labels go through gettext and money and dates through the
locale-aware formatters, so the PDF speaks the resident's language like the page does.

Fonts, and names like "Nguyễn" or "O’Brien": PDF's built-in Helvetica draws only the
Windows-1252 characters (Latin-1 plus ’ “ ” – — € …). When every text fits, the bill uses
Helvetica (small, fast, nothing embedded). Otherwise it embeds a Unicode TrueType font
if the server has one (DejaVu Sans or Liberation Sans), and any character that font
lacks, or every character outside Windows-1252 when there is no such font, is replaced
by its closest plain form ("ễ" -> "ê", "ł" -> "l") or "?". Building a bill never fails
because of a character.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

from portal.i18n import _, current_locale
from portal.templating import long_date, money, number

# (regular, bold) pairs, first found wins.
UNICODE_FONTS = (
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (Path("/usr/share/fonts/TTF/DejaVuSans.ttf"), Path("/usr/share/fonts/TTF/DejaVuSans-Bold.ttf")),
    (
        Path("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf"),
        Path("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf"),
    ),
    (
        Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
        Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
    ),
)

CORE_ENCODING = "cp1252"  # what PDF viewers draw Helvetica with (WinAnsiEncoding)
MARGIN = 20.0  # mm
LABEL_WIDTH = 58.0  # mm, the label column of the details and the summary
LINE = 6.5  # mm
FILL = (240, 240, 240)  # the amount-due box; black text on it is 18:1

# Characters that do not decompose to anything Windows-1252 can show.
_SUBSTITUTES = {
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2212": "-",
    "\u2044": "/",
    "\u2215": "/",
    "\u2032": "'",
    "\u2033": '"',
    "\u02bb": "'",
    "\u02bc": "'",
    "\u0131": "i",
    "\u0141": "L",
    "\u0142": "l",
    "\u0110": "D",
    "\u0111": "d",
    "\u0126": "H",
    "\u0127": "h",
    "\u0166": "T",
    "\u0167": "t",
}

LABEL_KEYS = (
    "bill",
    "amount_due",
    "due_date",
    "customer_number",
    "account_number",
    "bill_number",
    "name",
    "service_address",
    "bill_date",
    "billing_period",
    "summary",
    "previous_balance",
    "payments",
    "current_charges",
    "consumption",
    "consumption_unit",
)


def default_labels() -> dict[str, str]:
    """The label texts, in the current locale. `consumption_unit` (e.g. "HCF") is empty
    by default: the bills table does not say which unit its consumption is in."""
    return {
        "bill": _("Bill"),
        "amount_due": _("Amount due"),
        "due_date": _("Due date"),
        "customer_number": _("Customer Number"),
        "account_number": _("Account Number"),
        "bill_number": _("Bill number"),
        "name": _("Name"),
        "service_address": _("Service address"),
        "bill_date": _("Bill date"),
        "billing_period": _("Billing period"),
        "summary": _("Bill summary"),
        "previous_balance": _("Previous balance"),
        "payments": _("Payments"),
        "current_charges": _("Current charges"),
        "consumption": _("Water used"),
        "consumption_unit": "",
    }


def bill_pdf(
    bill: dict,
    account: dict,
    utility_name: str,
    support_phone: str,
    labels: dict | None = None,
    *,
    unicode_font: bool = True,
) -> bytes:
    """The bill as PDF bytes (starting with b"%PDF").

    bill: bill_number, bill_date, due_date, amount_due_cents, and optionally (None or
    missing means "not on this bill", and the row is left out) period_start, period_end,
    previous_balance_cents, payments_cents, current_charges_cents, consumption.
    account: customer_number, account_number, name, service_address.
    labels: replaces any of the texts of `default_labels()` (keys in LABEL_KEYS).
    unicode_font=False never embeds a font (names are then simplified to Windows-1252).
    """
    texts = default_labels()
    if labels:
        unknown = set(labels) - set(LABEL_KEYS)
        if unknown:
            raise ValueError(f"unknown bill PDF labels: {sorted(unknown)}")
        texts.update({key: str(value) for key, value in labels.items()})

    amount_due = money(bill.get("amount_due_cents")) or money(0)
    due_date = _date(bill.get("due_date"))
    details = [
        (texts["customer_number"], _plain(account.get("customer_number"))),
        (texts["account_number"], _plain(account.get("account_number"))),
        (texts["bill_number"], _plain(bill.get("bill_number"))),
        (texts["name"], _plain(account.get("name"))),
        (texts["service_address"], _plain(account.get("service_address"))),
        (texts["bill_date"], _date(bill.get("bill_date"))),
    ]
    if bill.get("period_start") and bill.get("period_end"):
        period = _(
            "%(start)s to %(end)s",
            start=_date(bill["period_start"]),
            end=_date(bill["period_end"]),
        )
        details.append((texts["billing_period"], period))
    summary = [
        (texts[key], money(bill[f"{key}_cents"]))
        for key in ("previous_balance", "payments", "current_charges")
        if bill.get(f"{key}_cents") is not None
    ]
    if bill.get("consumption") is not None:
        used = number(bill["consumption"])
        if texts["consumption_unit"]:
            used = f"{used} {texts['consumption_unit']}"
        summary.append((texts["consumption"], used))
    document_title = f"{utility_name}: {texts['bill']} {_plain(bill.get('bill_number'))}"
    contact = _("Questions about your bill? Call %(phone)s.", phone=support_phone)

    page = _Page.start(
        [utility_name, document_title, contact, amount_due, due_date]
        + [text for row in details + summary for text in row]
        + list(texts.values()),
        unicode_font=unicode_font,
    )
    pdf = page.pdf
    pdf.set_title(page.fit(document_title))
    pdf.set_lang(current_locale.get())
    pdf.set_creator(page.fit(utility_name))
    issued = _iso_date(bill.get("bill_date"))
    if issued is not None:  # the same bill gives the same bytes
        pdf.set_creation_date(datetime(issued.year, issued.month, issued.day, tzinfo=UTC))

    page.heading(utility_name, 18)
    page.heading(texts["bill"], 14)
    pdf.ln(3)

    # What most residents open a bill for: how much, and by when.
    pdf.set_fill_color(*FILL)
    width = pdf.epw - LABEL_WIDTH
    page.font(bold=True, size=15)
    pdf.cell(LABEL_WIDTH, 11, page.fit(texts["amount_due"]), fill=True)
    pdf.cell(width, 11, page.fit(amount_due), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    page.font(bold=True, size=12)
    pdf.cell(LABEL_WIDTH, 9, page.fit(texts["due_date"]), fill=True)
    pdf.cell(width, 9, page.fit(due_date), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(5)

    for label, value in details:
        page.row(label, value)
    pdf.ln(5)

    if summary:
        page.heading(texts["summary"], 12)
        for label, value in summary:
            page.row(label, value, right=True, rule=True)
        page.row(texts["amount_due"], amount_due, right=True, bold=True)
        pdf.ln(6)

    page.font(size=11)
    pdf.multi_cell(0, LINE, page.fit(contact), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


@dataclass
class _Page:
    pdf: FPDF
    family: str
    supported: Callable[[str], bool]
    cache: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, texts: Iterable[str], *, unicode_font: bool) -> _Page:
        pdf = FPDF(orientation="P", unit="mm", format="Letter")
        pdf.core_fonts_encoding = CORE_ENCODING
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(True, margin=MARGIN)
        pdf.add_page()
        page = cls(pdf, "helvetica", _in_core_font)
        fonts = _unicode_font() if unicode_font else None
        if fonts and not all(_in_core_font(char) for text in texts for char in text):
            regular, bold = fonts
            pdf.add_font("portal-sans", "", str(regular))
            pdf.add_font("portal-sans", "B", str(bold))
            cmaps = [pdf.fonts["portal-sans"].cmap, pdf.fonts["portal-sansB"].cmap]
            page = cls(pdf, "portal-sans", lambda char: all(ord(char) in c for c in cmaps))
        page.font()
        return page

    def font(self, *, bold: bool = False, size: float = 11) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)

    def fit(self, text: object) -> str:
        """The text with every character this font cannot draw replaced."""
        text = "" if text is None else str(text)
        if text not in self.cache:
            self.cache[text] = "".join(
                char if char == "\n" or self.supported(char) else _closest(char, self.supported)
                for char in text
            )
        return self.cache[text]

    def heading(self, text: str, size: float) -> None:
        self.font(bold=True, size=size)
        self.pdf.multi_cell(
            0, size * 0.5, self.fit(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.pdf.ln(1.5)

    def row(
        self, label: str, value: str, *, right: bool = False, bold: bool = False, rule: bool = False
    ) -> None:
        pdf = self.pdf
        self.font(bold=True, size=11)
        top = pdf.get_y()
        label_height = pdf.multi_cell(
            LABEL_WIDTH,
            LINE,
            self.fit(label),
            align="L",
            new_x=XPos.RIGHT,
            new_y=YPos.TOP,
            output=MethodReturnValue.HEIGHT,
        )
        self.font(bold=bold, size=11)
        width = 50.0 if right else pdf.epw - LABEL_WIDTH
        pdf.set_xy(pdf.l_margin + LABEL_WIDTH, top)
        pdf.multi_cell(
            width,
            LINE,
            self.fit(value),
            align="R" if right else "L",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        bottom = max(pdf.get_y(), top + label_height, top + LINE)
        if rule:
            pdf.set_draw_color(190, 190, 190)
            pdf.line(pdf.l_margin, bottom, pdf.l_margin + LABEL_WIDTH + width, bottom)
        pdf.set_xy(pdf.l_margin, bottom + 0.8)


def _unicode_font() -> tuple[Path, Path] | None:
    for regular, bold in UNICODE_FONTS:
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def _in_core_font(char: str) -> bool:
    try:
        char.encode(CORE_ENCODING)
    except UnicodeEncodeError:
        return False
    return char >= " " or char == "\n"


def _closest(char: str, supported: Callable[[str], bool]) -> str:
    """A close form of a character the font lacks: "ễ" -> "ê" (or "e"), "ﬁ" -> "fi",
    a narrow no-break space -> a space, "中" -> "?", a control character -> nothing."""
    if char in _SUBSTITUTES:
        return _SUBSTITUTES[char]
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return " " if char in "\t\r\v\f\x85\u2028\u2029" else ""
    decomposed = unicodedata.normalize("NFKD", char)
    while decomposed:
        candidate = unicodedata.normalize("NFC", decomposed)
        if all(supported(c) for c in candidate):
            return candidate
        if not unicodedata.combining(decomposed[-1]):
            break
        decomposed = decomposed[:-1]  # drop the outermost accent and try again
    return "?"


def _plain(value: object) -> str:
    return "" if value is None else str(value).strip()


def _iso_date(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _date(value: object) -> str:
    """A long date in the current locale; anything that is not an ISO date as given."""
    return long_date(str(value)) if _iso_date(value) else _plain(value)
