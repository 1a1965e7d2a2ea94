"""Make the bitmap icons from static/img/favicon.svg, for browsers that cannot use an SVG
icon and ask for /favicon.ico or /apple-touch-icon.png by convention (static_files.py
answers those addresses). Run it after changing favicon.svg, and commit what it writes:

    .venv/bin/python scripts/make_icons.py

Needs Debian's chromium (headless, through Playwright), which draws the SVG exactly as
a browser does. Writes:
  static/img/favicon.ico           32 x 32, transparent (an ICO holding one PNG)
  static/img/apple-touch-icon.png  180 x 180, the drop on the header's blue (iOS shows a
                                   transparent icon on black)
"""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "static" / "img"
BRAND_DARK = "#1a4480"  # --brand-dark in static/css/site.css


def ico(png: bytes, size: int) -> bytes:
    """An ICO file with one PNG image (allowed since Windows Vista; every browser reads it)."""
    header = struct.pack("<HHH", 0, 1, 1)  # reserved, type 1 = icon, one image
    entry = struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


def render(page, svg: str, size: int, background: str, inner: int) -> bytes:
    page.set_viewport_size({"width": size, "height": size})
    page.set_content(
        f'<html><body style="margin:0;background:{background}">'
        f'<div style="width:{size}px;height:{size}px;display:flex;align-items:center;'
        f'justify-content:center">'
        f'<img src="data:image/svg+xml;base64,{svg}" width="{inner}" height="{inner}" alt="">'
        f"</div></body></html>"
    )
    page.wait_for_load_state("load")
    return page.screenshot(omit_background=background == "transparent")


def main() -> None:
    svg = base64.b64encode((IMG / "favicon.svg").read_bytes()).decode()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page(device_scale_factor=1)
        small = render(page, svg, 32, "transparent", 32)
        touch = render(page, svg, 180, BRAND_DARK, 132)
        browser.close()
    (IMG / "favicon.ico").write_bytes(ico(small, 32))
    (IMG / "apple-touch-icon.png").write_bytes(touch)
    print(f"favicon.ico {len(ico(small, 32)):,} bytes, apple-touch-icon.png {len(touch):,} bytes")


if __name__ == "__main__":
    main()
