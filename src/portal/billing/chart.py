"""The monthly usage bar chart, drawn on the server as an inline SVG.

Pure: no HTTP, no database. The page inserts the returned string with `|safe`, so every
text that goes in here is XML-escaped here. The chart is a picture for sighted residents;
the page shows the same numbers in a table beside it for everyone else.

Made for a 320 px wide phone: a small viewBox (so text stays about 11 px there), few
month labels (every 2nd, 3rd, 6th or 12th, always the newest), 3 to 5 gridlines. No
scripts, no external references and no `style` attributes (the Content-Security-Policy
forbids inline styles). This file draws shapes only: colours and fonts are CSS classes
in static/css/site.css ("Usage chart"), which a designer edits without Python. The
SVG is inline in the page, so the page's stylesheet reaches it.

Classes: usage-chart-svg (the picture: font, text colour), unit, grid, y-labels,
bar, bar flagged, stripe and stripe-gap (the flagged bar's pattern), flag-marker,
axis, x-labels, empty.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_compact_decimal, format_decimal, format_scientific
from markupsafe import escape

from portal.i18n import _, format_locale

WIDTH = 320
HEIGHT = 210
# The text size site.css gives the chart, in SVG units. The layout spaces labels for
# it: change both together.
FONT_SIZE = 13
CHAR_WIDTH = 0.58 * FONT_SIZE  # a generous average advance, to keep labels apart

TOP = 34  # room for the unit line and for the marker above a full-height bar
BOTTOM = 24  # room for the month labels
RIGHT = 6
LABEL_GAP = 6  # between the y-axis numbers and the plot

MAX_POINTS = 24
LABEL_STEPS = (1, 2, 3, 6, 12)

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Characters XML 1.0 does not allow at all (escaping cannot save them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def usage_chart_svg(
    points: list[dict],
    unit: str,
    title: str,
    desc: str,
    *,
    id_prefix: str = "usage-chart",
) -> str:
    """A bar chart of monthly consumption, oldest month first, as an inline <svg>.

    points: [{"label": "Jan 2026", "month": "2026-01", "value": 12.0, "flag": False}]
    (at most the last 24 are drawn). `unit` is the localized unit name shown above the
    y-axis; `title` and `desc` become the chart's accessible name and description via
    `aria-labelledby="{id_prefix}-title {id_prefix}-desc"`. Use a different `id_prefix`
    for each chart on one page.
    """
    if not _ID.fullmatch(id_prefix):
        raise ValueError(f"id_prefix must be a plain XML id, not {id_prefix!r}")
    points = list(points)[-MAX_POINTS:]
    title_id, desc_id = f"{id_prefix}-title", f"{id_prefix}-desc"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart-svg" width="100%" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="xMidYMid meet" role="img" '
        f'aria-labelledby="{title_id} {desc_id}">',
        f'<title id="{title_id}">{_text(title)}</title>',
        f'<desc id="{desc_id}">{_text(desc)}</desc>',
    ]
    if not points:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2:g}" y="{HEIGHT / 2:g}" '
            f'text-anchor="middle">{_text(_("No usage data yet"))}</text>'
        )
        parts.append("</svg>")
        return "".join(parts)

    values = [_value(point.get("value")) for point in points]
    step, count = _ticks(max(values))
    top = step * count
    tick_labels = _tick_labels(step, count)
    left = min(WIDTH // 3, max(len(label) for label in tick_labels) * CHAR_WIDTH + LABEL_GAP + 6)
    # Leave room on the right for half of the newest month's label, which sits centred
    # under the last bar, so the labels can keep a regular rhythm.
    half_label = max(len(str(point.get("label", ""))) for point in points) * CHAR_WIDTH / 2
    right = float(RIGHT)
    for _round in range(2):
        slot = (WIDTH - left - right) / len(points)
        right = max(float(RIGHT), min(half_label - slot / 2, WIDTH / 6))
    right_edge = WIDTH - right
    plot_width = right_edge - left
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height

    def y_of(value: float) -> float:
        return baseline - plot_height * (value / float(top))

    # The unit, above the y-axis numbers.
    parts.append(f'<text class="unit" x="0" y="{FONT_SIZE}">{_text(unit)}</text>')

    # Gridlines with their numbers, from 0 up.
    parts.append('<g class="grid">')
    for index in range(1, count + 1):
        y = _n(y_of(float(step * index)))
        parts.append(f'<line x1="{_n(left)}" y1="{y}" x2="{_n(right_edge)}" y2="{y}"/>')
    parts.append("</g>")
    parts.append('<g class="y-labels" text-anchor="end">')
    for index, label in enumerate(tick_labels):
        y = _n(y_of(float(step * index)) + FONT_SIZE * 0.35)
        parts.append(f'<text x="{_n(left - LABEL_GAP)}" y="{y}">{_text(label)}</text>')
    parts.append("</g>")

    # Bars. A flagged bar is striped, outlined and has a "!" above it (its colour, red
    # in site.css, is never the only sign).
    slot = plot_width / len(points)
    bar_width = min(slot * 0.7, 36.0)
    if any(point.get("flag") for point in points):
        parts.append(
            f'<defs><pattern id="{id_prefix}-stripes" width="6" height="6" '
            f'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            f'<rect class="stripe" width="6" height="6"/>'
            f'<rect class="stripe-gap" width="2" height="6"/></pattern></defs>'
        )
    parts.append('<g class="bars">')
    markers = []
    for index, (point, value) in enumerate(zip(points, values, strict=True)):
        x = left + slot * index + (slot - bar_width) / 2
        y = y_of(value)
        height = baseline - y
        if point.get("flag"):
            parts.append(
                f'<rect class="bar flagged" x="{_n(x)}" y="{_n(y)}" width="{_n(bar_width)}" '
                f'height="{_n(height)}" fill="url(#{id_prefix}-stripes)"/>'
            )
            markers.append(
                f'<text class="flag-marker" x="{_n(x + bar_width / 2)}" y="{_n(y - 4)}" '
                f'text-anchor="middle">!</text>'
            )
        else:
            parts.append(
                f'<rect class="bar" x="{_n(x)}" y="{_n(y)}" width="{_n(bar_width)}" '
                f'height="{_n(height)}"/>'
            )
    parts.append("</g>")
    parts.extend(markers)

    # The baseline, then a few month labels, always including the newest month.
    parts.append(
        f'<line class="axis" x1="{_n(left)}" y1="{_n(baseline)}" x2="{_n(right_edge)}" '
        f'y2="{_n(baseline)}"/>'
    )
    labels = [str(point.get("label", "")) for point in points]
    parts.append('<g class="x-labels" text-anchor="middle">')
    for index, x in _month_label_positions(tuple(labels), left, slot):
        parts.append(f'<text x="{_n(x)}" y="{HEIGHT - 6}">{_text(labels[index])}</text>')
    parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


@lru_cache(maxsize=256)  # the same 24 months and axis widths recur from chart to chart
def _month_label_positions(
    labels: tuple[str, ...], left: float, slot: float
) -> list[tuple[int, float]]:
    """Which month labels to show, and where: every 1st, 2nd, 3rd, 6th or 12th month
    counting back from the newest: the smallest step whose labels do not overlap (each
    label is kept inside the picture, which can push the newest towards its neighbour)."""
    half = max(len(label) for label in labels) * CHAR_WIDTH / 2
    gap = 4
    for every in LABEL_STEPS:
        placed = []
        for index in range(len(labels) - 1, -1, -every):
            centre = left + slot * index + slot / 2
            placed.append((index, min(max(centre, half), WIDTH - half)))
        xs = [x for _, x in placed]
        if all(a - b >= 2 * half + gap for a, b in zip(xs, xs[1:], strict=False)):
            return placed
    return placed[:1]


def _text(value: object) -> str:
    return str(escape(_NOT_XML.sub("", str(value))))


def _value(raw: object) -> float:
    """A drawable consumption: missing, negative, or not a finite number counts as 0;
    absurdly large ones are capped so the axis arithmetic stays finite."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return min(value, 1e300) if math.isfinite(value) and value > 0 else 0.0


def _ticks(highest: float) -> tuple[Decimal, int]:
    """A round step (1, 2, 2.5 or 5 times a power of ten) and 2 to 4 steps above 0
    that reach the highest value: 3 to 5 gridlines in all."""
    if highest <= 0:
        return Decimal(1), 4
    raw = Decimal(repr(highest)) / 4
    power = Decimal(10) ** (raw.adjusted())
    for factor in (1, 2, Decimal("2.5"), 5, 10):
        step = power * factor
        if step >= raw:
            break
    count = max(2, math.ceil(Decimal(repr(highest)) / step))
    return step.normalize(), count


def _tick_labels(step: Decimal, count: int) -> tuple[str, ...]:
    """Plain numbers ("12,500"); compact ones ("12.5K") when plain ones get wide;
    scientific ones beyond trillions (no meter reads that much, but never crash)."""
    return _labels_in(step, count, format_locale())


@lru_cache(maxsize=1024)  # few scales recur; Babel parses the locale on every call
def _labels_in(step: Decimal, count: int, locale: str) -> tuple[str, ...]:
    values = [step * index for index in range(count + 1)]
    if values[-1] < 10**15:
        labels = tuple(format_decimal(value, locale=locale) for value in values)
        if max(len(label) for label in labels) <= 7:
            return labels
        labels = tuple(
            format_compact_decimal(value, locale=locale, fraction_digits=1) for value in values
        )
        if max(len(label) for label in labels) <= 7:
            return labels
    return ("0", *(format_scientific(value, "0.#E0", locale=locale) for value in values[1:]))


def _n(value: float) -> str:
    """A coordinate with at most one decimal, so the markup stays short ("12.5", "120";
    the same digits as f"{round(value, 1):g}" for coordinates, in half the time)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text
