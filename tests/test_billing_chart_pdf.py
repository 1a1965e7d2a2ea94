"""The usage chart (inline SVG) and the bill PDF: pure functions, checked on their output."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

from portal.billing.chart import _n, usage_chart_svg
from portal.billing.pdf import _unicode_font, bill_pdf
from portal.i18n import current_locale
from portal.templating import STATIC_DIR

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script> & \"quotes\" 'apos'"


@pytest.fixture
def spanish() -> Iterator[None]:
    token = current_locale.set("es")
    yield
    current_locale.reset(token)


def months(count: int, value=lambda i: 10 + i % 4, flag_last: bool = False) -> list[dict]:
    names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    points = [
        {
            "label": f"{names[i % 12]} {2024 + i // 12}",
            "month": f"{2024 + i // 12}-{i % 12 + 1:02d}",
            "value": value(i),
        }
        for i in range(count)
    ]
    if flag_last and points:
        points[-1]["flag"] = True
    return points


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def bars(root: ET.Element) -> list[ET.Element]:
    return [el for el in root.iter(f"{SVG}rect") if "bar" in el.get("class", "").split()]


def texts(root: ET.Element, css_class: str | None = None) -> list[ET.Element]:
    found = []
    for el in root.iter(f"{SVG}text"):
        own = el.get("class", "").split()
        parent_classes = [
            g.get("class", "") for g in root.iter(f"{SVG}g") if any(c is el for c in g)
        ]
        if css_class is None or css_class in own or css_class in parent_classes:
            found.append(el)
    return found


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_with_white(hex_colour: str) -> float:
    return 1.05 / (luminance(hex_colour) + 0.05)


# --- the chart ----------------------------------------------------------------------


def test_chart_is_an_accessible_image_named_by_its_title_and_desc() -> None:
    svg = usage_chart_svg(months(12), "HCF", "Water use, last 12 months", "Highest in May.")
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    ids = root.get("aria-labelledby").split()
    assert ids == ["usage-chart-title", "usage-chart-desc"]
    by_id = {el.get("id"): el for el in root.iter() if el.get("id")}
    assert by_id[ids[0]].tag == f"{SVG}title"
    assert by_id[ids[0]].text == "Water use, last 12 months"
    assert by_id[ids[1]].tag == f"{SVG}desc"
    assert by_id[ids[1]].text == "Highest in May."
    # title and desc are direct children, so browsers use them
    assert root[0].tag == f"{SVG}title" and root[1].tag == f"{SVG}desc"


def test_chart_scales_to_its_container() -> None:
    root = parse(usage_chart_svg(months(24), "HCF", "t", "d"))
    assert root.get("width") == "100%"
    assert root.get("height") is None
    x, y, width, height = (float(n) for n in root.get("viewBox").split())
    assert (x, y) == (0, 0)
    assert 280 <= width <= 400, "a small viewBox keeps text readable on a 320 px phone"
    assert 0 < height < width


@pytest.mark.parametrize("count", [1, 2, 7, 12, 24])
def test_chart_draws_one_bar_per_month(count: int) -> None:
    root = parse(usage_chart_svg(months(count), "HCF", "t", "d"))
    assert len(bars(root)) == count


def test_chart_draws_at_most_the_newest_24_months() -> None:
    points = months(30)
    root = parse(usage_chart_svg(points, "HCF", "t", "d"))
    assert len(bars(root)) == 24
    shown = [el.text for el in texts(root, "x-labels")]
    assert points[-1]["label"] in shown
    assert points[0]["label"] not in shown


def test_bar_heights_follow_the_values_and_stay_inside_the_picture() -> None:
    values = [3, 9, 0, 12, 6]
    root = parse(usage_chart_svg(months(5, value=lambda i: values[i]), "HCF", "t", "d"))
    heights = [float(el.get("height")) for el in bars(root)]
    assert heights[2] == 0
    assert sorted(range(5), key=lambda i: heights[i]) == sorted(range(5), key=lambda i: values[i])
    assert heights[3] / heights[0] == pytest.approx(4, rel=0.05)
    xs = [float(el.get("x")) for el in bars(root)]
    assert xs == sorted(xs), "oldest month on the left"
    view_height = float(root.get("viewBox").split()[3])
    for el in bars(root):
        assert (
            0 <= float(el.get("y")) <= float(el.get("y")) + float(el.get("height")) <= view_height
        )


def test_y_axis_has_three_to_five_numbered_gridlines_and_the_unit() -> None:
    root = parse(usage_chart_svg(months(12, value=lambda i: 7.5 * i), "gallons", "t", "d"))
    numbers = [el.text for el in texts(root, "y-labels")]
    assert 3 <= len(numbers) <= 5
    assert numbers[0] == "0"
    assert float(numbers[-1].replace(",", "")) >= 7.5 * 11, "the top gridline covers the data"
    gridlines = list(next(g for g in root.iter(f"{SVG}g") if g.get("class") == "grid"))
    assert len(gridlines) == len(numbers) - 1  # the baseline is the axis line itself
    assert [el.text for el in texts(root, "unit")] == ["gallons"]


def test_y_axis_numbers_follow_the_locale(spanish: None) -> None:
    root = parse(usage_chart_svg(months(6, value=lambda i: 1500.0 * i), "galones", "t", "d"))
    numbers = [el.text for el in texts(root, "y-labels")]
    # Spanish for Southern California uses US number formats (es_US), like the bills
    assert numbers == ["0", "2,000", "4,000", "6,000", "8,000"]
    current_locale.set("en")
    root = parse(usage_chart_svg(months(6, value=lambda i: 1500.0 * i), "gallons", "t", "d"))
    assert [el.text for el in texts(root, "y-labels")][-1] == "8,000"


def test_month_labels_are_few_and_include_the_newest() -> None:
    points = months(24)
    root = parse(usage_chart_svg(points, "HCF", "t", "d"))
    shown = [el.text for el in texts(root, "x-labels")]
    assert 2 <= len(shown) <= 6, shown
    assert points[-1]["label"] in shown
    for el in texts(root, "x-labels"):
        assert el.get("transform") is None, "rotated labels are hard to read"
    # every label sits inside the picture (estimated at 0.6 em per character)
    width = float(root.get("viewBox").split()[2])
    for el in texts(root, "x-labels"):
        half = len(el.text) * 0.6 * 13 / 2
        assert half - 1 <= float(el.get("x")) <= width - half + 1


def test_flagged_month_differs_in_more_than_colour() -> None:
    root = parse(usage_chart_svg(months(12, flag_last=True), "HCF", "t", "d"))
    drawn = bars(root)
    flagged = [el for el in drawn if "flagged" in el.get("class").split()]
    assert flagged == [drawn[-1]]
    normal_fill = drawn[0].get("fill")
    assert flagged[0].get("fill") != normal_fill
    # a pattern (stripes) defined inside this SVG
    pattern_id = re.fullmatch(r"url\(#([\w-]+)\)", flagged[0].get("fill")).group(1)
    assert any(p.get("id") == pattern_id for p in root.iter(f"{SVG}pattern"))
    # and a visible marker right above the bar
    markers = texts(root, "flag-marker")
    assert len(markers) == 1 and markers[0].text.strip() == "!"
    bar = flagged[0]
    centre = float(bar.get("x")) + float(bar.get("width")) / 2
    assert float(markers[0].get("x")) == pytest.approx(centre, abs=0.2)
    assert float(markers[0].get("y")) < float(bar.get("y"))


def test_no_marker_without_a_flag() -> None:
    root = parse(usage_chart_svg(months(12), "HCF", "t", "d"))
    assert texts(root, "flag-marker") == []
    assert all("flagged" not in el.get("class") for el in bars(root))


def test_chart_look_is_css_classes_whose_colours_contrast_with_white() -> None:
    svg = usage_chart_svg(months(3, flag_last=True), "HCF", "t", "d")
    for attribute in ("font-family", "font-size", "font-weight", "stroke", "#"):
        assert attribute not in svg.replace("url(#", "url("), attribute
    root = parse(svg)
    assert [el.get("class") for el in bars(root)] == ["bar", "bar", "bar flagged"]
    assert texts(root, "flag-marker") and texts(root, "unit")
    css = (STATIC_DIR / "css" / "site.css").read_text()

    def colour(name: str) -> str:
        return re.search(re.escape(name) + r":\s*(#[0-9a-fA-F]{6})", css).group(1)

    assert contrast_with_white(colour("--chart-bar")) >= 3
    assert contrast_with_white(colour("--chart-flag")) >= 4.5  # the "!" marker is text
    for rule in (
        ".bar:not(.flagged) { fill: var(--chart-bar)",
        ".flag-marker { fill: var(--chart-flag)",
    ):
        assert ".usage-chart-svg " + rule in css


def test_hostile_texts_are_escaped() -> None:
    points = months(3)
    points[-1]["label"] = HOSTILE
    svg = usage_chart_svg(points, HOSTILE, HOSTILE, HOSTILE + "\x00\x1b")
    assert "<script" not in svg.lower()
    root = parse(svg)
    assert root.find(f"{SVG}title").text == HOSTILE
    assert root.find(f"{SVG}desc").text == HOSTILE
    assert [el.text for el in texts(root, "unit")] == [HOSTILE]
    assert HOSTILE in [el.text for el in texts(root, "x-labels")]
    assert root.find(f".//{SVG}script") is None


def test_no_inline_styles_scripts_or_external_references() -> None:
    svg = usage_chart_svg(months(24, flag_last=True), "HCF", "t", "d")
    assert "style=" not in svg
    root = parse(svg)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    for el in root.iter():
        assert el.tag not in (f"{SVG}style", f"{SVG}script", f"{SVG}image", f"{SVG}foreignObject")
        for name, value in el.attrib.items():
            assert name != "style" and not name.startswith("on"), name
            assert "href" not in name, name
            for ref in re.findall(r"url\(([^)]*)\)", value):
                assert ref.startswith("#") and ref[1:] in ids, ref


def test_empty_history_says_so() -> None:
    root = parse(usage_chart_svg([], "HCF", "Water use", "No reads yet."))
    assert bars(root) == []
    assert [el.text for el in root.iter(f"{SVG}text")] == ["No usage data yet"]
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Water use"


def test_all_zero_months_still_draw_an_axis() -> None:
    root = parse(usage_chart_svg(months(6, value=lambda i: 0), "HCF", "t", "d"))
    assert [float(el.get("height")) for el in bars(root)] == [0] * 6
    assert 3 <= len(texts(root, "y-labels")) <= 5


@pytest.mark.parametrize(
    "values",
    [
        [1e12, 2e12, 3.5e12],
        [1e300, 1e308, 5],
        [float("inf"), float("nan"), -4, None, "abc", 12],
        [0.001, 0.002],
    ],
)
def test_extreme_values_never_break_the_chart(values: list) -> None:
    root = parse(usage_chart_svg(months(len(values), value=lambda i: values[i]), "HCF", "t", "d"))
    assert len(bars(root)) == len(values)
    view_height = float(root.get("viewBox").split()[3])
    for el in bars(root):
        y, height = float(el.get("y")), float(el.get("height"))
        assert y >= 0 and height >= 0 and y + height <= view_height + 0.1
    labels = [el.text for el in texts(root, "y-labels")]
    assert 3 <= len(labels) <= 5
    assert max(len(label) for label in labels) <= 8, labels


def test_two_charts_on_one_page_have_distinct_ids() -> None:
    first = parse(usage_chart_svg(months(3, flag_last=True), "HCF", "t", "d", id_prefix="a"))
    second = parse(usage_chart_svg(months(3, flag_last=True), "HCF", "t", "d", id_prefix="b"))
    first_ids = {el.get("id") for el in first.iter() if el.get("id")}
    second_ids = {el.get("id") for el in second.iter() if el.get("id")}
    assert first_ids and not first_ids & second_ids
    assert second.get("aria-labelledby") == "b-title b-desc"
    with pytest.raises(ValueError):
        usage_chart_svg([], "HCF", "t", "d", id_prefix='x" onload="alert(1)')


# --- the bill PDF -------------------------------------------------------------------

BILL = {
    "bill_number": "2026-000123",
    "bill_date": "2026-02-03",
    "due_date": "2026-02-24",
    "amount_due_cents": 12345,
    "period_start": "2025-12-31",
    "period_end": "2026-01-30",
    "previous_balance_cents": 9800,
    "payments_cents": 9800,
    "current_charges_cents": 12345,
    "consumption": 14.0,
}
ACCOUNT = {
    "customer_number": "0012345",
    "account_number": "678901",
    "name": "José Muñoz",
    "service_address": "303 East B Street\nOntario, CA 91764",
}
UTILITY = "Ontario Municipal Utilities Company"
PHONE = "(909) 395-2050"


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_bill_pdf_has_the_bill_as_real_text() -> None:
    data = bill_pdf(BILL, ACCOUNT, UTILITY, PHONE, {"consumption_unit": "HCF"})
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    for expected in (
        UTILITY,
        "Bill",
        "Amount due",
        "$123.45",
        "Due date",
        "February 24, 2026",
        "Customer Number",
        "0012345",
        "Account Number",
        "678901",
        "2026-000123",
        "José Muñoz",
        "303 East B Street",
        "Ontario, CA 91764",
        "February 3, 2026",
        "December 31, 2025",
        "January 30, 2026",
        "Previous balance",
        "$98.00",
        "Current charges",
        "14 HCF",
        PHONE,
    ):
        assert expected in text, expected
    assert len(PdfReader(io.BytesIO(data)).pages) == 1


def test_bill_pdf_metadata_names_the_bill_and_its_language() -> None:
    reader = PdfReader(io.BytesIO(bill_pdf(BILL, ACCOUNT, UTILITY, PHONE)))
    assert "2026-000123" in reader.metadata.title
    assert UTILITY in reader.metadata.title
    assert reader.trailer["/Root"]["/Lang"] == "en"


def test_bill_pdf_follows_the_locale(spanish: None) -> None:
    data = bill_pdf(BILL, ACCOUNT, UTILITY, PHONE)
    text = pdf_text(data)
    assert "$123.45" in text  # es_US: the dollar format residents see on their bills
    assert "24 de febrero de 2026" in text
    assert PdfReader(io.BytesIO(data)).trailer["/Root"]["/Lang"] == "es"


def test_bill_pdf_leaves_out_what_the_bill_does_not_have() -> None:
    bill = {
        **BILL,
        "period_start": None,
        "period_end": None,
        "previous_balance_cents": None,
        "payments_cents": None,
        "current_charges_cents": None,
        "consumption": None,
    }
    text = pdf_text(bill_pdf(bill, ACCOUNT, UTILITY, PHONE))
    assert "None" not in text
    assert "Previous balance" not in text and "Billing period" not in text
    assert "$123.45" in text and "February 24, 2026" in text


def test_zero_payments_and_credits_are_shown() -> None:
    bill = {**BILL, "payments_cents": 0, "amount_due_cents": -500}
    text = pdf_text(bill_pdf(bill, ACCOUNT, UTILITY, PHONE))
    assert "$0.00" in text
    assert "-$5.00" in text


@pytest.mark.parametrize("unicode_font", [True, False])
def test_names_outside_latin1_never_break_the_pdf(unicode_font: bool) -> None:
    account = {
        **ACCOUNT,
        "name": "Nguyễn Thị O’Brien 王小明 Łukasz",
        "service_address": "12 Rue de l’Église\u202fApt 3\x07",
    }
    data = bill_pdf(BILL, account, "Ciudad de Ontario – Agua", PHONE, unicode_font=unicode_font)
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    assert "O’Brien" in text  # Windows-1252 has the curly apostrophe
    assert "Ciudad de Ontario – Agua" in text
    assert "$123.45" in text and "678901" in text
    if unicode_font and _unicode_font() is not None:
        assert "Nguyễn Thị" in text and "Łukasz" in text
    else:
        assert "Nguyên Thi" in text and "Lukasz" in text
    assert "Église" in text


def test_same_bill_same_bytes() -> None:
    assert bill_pdf(BILL, ACCOUNT, UTILITY, PHONE) == bill_pdf(BILL, ACCOUNT, UTILITY, PHONE)


def test_labels_can_be_replaced_but_not_misspelt() -> None:
    text = pdf_text(bill_pdf(BILL, ACCOUNT, UTILITY, PHONE, {"consumption": "Water (HCF)"}))
    assert "Water (HCF)" in text
    with pytest.raises(ValueError):
        bill_pdf(BILL, ACCOUNT, UTILITY, PHONE, {"amount_dew": "x"})


def test_odd_dates_are_shown_as_given() -> None:
    text = pdf_text(bill_pdf({**BILL, "due_date": "upon receipt"}, ACCOUNT, UTILITY, PHONE))
    assert "upon receipt" in text


def test_a_machine_without_unicode_fonts_still_builds_the_bill(monkeypatch) -> None:
    monkeypatch.setattr("portal.billing.pdf.UNICODE_FONTS", ())
    account = {**ACCOUNT, "name": "Nguyễn 王"}
    text = pdf_text(bill_pdf(BILL, account, UTILITY, PHONE))
    assert "Nguyên ?" in text


@given(st.floats(min_value=-1e5, max_value=1e5, allow_nan=False))
def test_chart_coordinates_keep_one_decimal_at_most(value):
    """The chart writes each coordinate as round(value, 1) in its shortest form ("12.5",
    "120"); _n makes the same text without round()."""
    assert _n(value) == f"{round(value, 1):g}"
