"""Screenshots of pages for the docs: the whole page at a set width, as a small PNG.

A page's screenshot is its full height at `width` CSS pixels, cut at `max_height`, then reduced
to a palette of at most 256 colours (the pages are flat colours and text, so it reads the same)
and saved optimised: a console page is ~50-150 KB instead of ~400 KB.
"""

from __future__ import annotations

import io
import os

from PIL import Image


def save_page_png(driver, path: str, width: int = 1280, max_height: int = 2400) -> int:
    """Save the page now shown to `path` as a compressed PNG; returns its size in bytes. The
    window is put back to its size afterwards, so the pages that follow are seen as before."""
    before = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    try:
        driver.set_window_size(width, min(int(height) + 120, max_height))
        png = driver.get_screenshot_as_png()
    finally:
        driver.set_window_size(before["width"], before["height"])
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width != width:  # a device scale factor other than 1
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image = image.crop((0, 0, width, min(image.height, max_height)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return os.path.getsize(path)
