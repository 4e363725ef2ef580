"""Screenshots of pages for the docs: the whole page at a set width, as a small PNG.

A page's screenshot is its full height at `width` CSS pixels, cut at `max_height`, reduced
to a palette of at most 256 colours (the pages are flat colours and text, so it reads the same)
and saved optimised: a console page is ~50-150 KB instead of ~400 KB.
"""

from __future__ import annotations

import base64
import io
import os

from PIL import Image


def save_page_png(driver, path: str, width: int = 1280, max_height: int = 3600) -> int:
    """Save the page now shown to `path` as a compressed PNG; returns its size in bytes. The
    page is laid out at `width` (DevTools' device metrics: no window scrollbars in the picture)
    and the window's own size is left as it was, so the pages that follow are seen as before."""
    metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        metrics["height"] = int(height)  # all of it: no scrollbar; cut below
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    image = image.crop((0, 0, image.width, min(image.height, max_height)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return os.path.getsize(path)
