"""A real headless browser for page tests: Debian's chromium driven by selenium, offline.

Use it as `from testkit.browser import browser, drawn_plots` (the fixture is module-scoped, one
browser per test module). scripts/ensure_browser.sh installs chromium and chromedriver; without
them the tests that ask for `browser` skip, saying what is missing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Every drawn mark, measured by the browser: a bar counts when its rendered area is non-zero, a
# line when its box has a length (a flat line is 0 high) and overlaps its plot.
_MEASURE = """
const box = (el) => el.getBoundingClientRect();
const overlaps = (a, b) => a.right >= b.left && a.left <= b.right
  && a.bottom >= b.top && a.top <= b.bottom;
return Array.from(document.querySelectorAll("svg.plot")).map((svg) => {
  const frame = box(svg);
  const bars = Array.from(svg.querySelectorAll("rect.bar"));
  const lines = Array.from(svg.querySelectorAll("path.line, polyline.line"));
  const drawnBars = bars.filter((el) => {
    const b = box(el); return b.width * b.height > 0 && overlaps(b, frame);
  });
  const drawnLines = lines.filter((el) => {
    const b = box(el); return (b.width > 0 || b.height > 0) && overlaps(b, frame);
  });
  return {
    kind: svg.dataset.plot, feature: svg.dataset.feature ?? null,
    width: frame.width, height: frame.height,
    bar_elements: bars.length, line_elements: lines.length,
    bars: drawnBars.length, lines: drawnLines.length,
    marks: drawnBars.length + drawnLines.length,
  };
});
"""


def missing() -> str | None:
    """Why the browser cannot start here, or None when chromium and chromedriver are installed."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not absent:
        return None
    return f"{' and '.join(absent)} not installed (scripts/ensure_browser.sh installs them)"


@contextlib.contextmanager
def chrome(width: int = 1200, height: int = 900) -> Iterator:
    """A headless Debian chromium under selenium, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Both paths are given, so selenium never runs selenium-manager; these make sure it could not
    # reach the network even if it did (offline mode, no usage statistics).
    os.environ.update(SE_AVOID_STATS="true", SE_OFFLINE="true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        f"--window-size={width},{height}",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser():
    """A headless chromium for this test module; skips, saying why, when it is not installed."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    with chrome() as driver:
        yield driver


def console_errors(driver) -> list[str]:
    """Errors the page logged to the console since the last call (empty where unsupported)."""
    try:
        entries = driver.get_log("browser")
    except Exception:  # not every driver keeps a browser log
        return []
    return [entry.get("message", "") for entry in entries if entry.get("level") == "SEVERE"]


def network_requests(driver) -> list[str]:
    """The URLs of every resource the page loaded (images, scripts, styles, fonts, fetches)."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name);"
    )


def drawn_plots(driver, check_console: bool = True) -> list[dict]:
    """Each `svg.plot` as the browser drew it: kind, feature, rendered width and height, and its
    drawn marks (bars, lines, marks = both; *_elements count the elements, drawn or not).
    Fails when the page logged console errors (check_console=False to look at them yourself)."""
    if check_console:
        errors = console_errors(driver)
        assert not errors, f"the page logged errors: {errors}"
    return driver.execute_script(_MEASURE)


def save_full_page(driver, path: str, width: int = 1200) -> str:
    """A PNG of the whole page at `width` CSS pixels (the window grows to the page's height)."""
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, min(int(height) + 120, 16000))
    driver.save_screenshot(path)
    return path
