"""testkit.browser's page checks against tiny pages served from loopback: axe-core finds a
deliberate WCAG violation, and the offline check counts a request to another host even though
it fails; on a clean page under a strict Content-Security-Policy both find nothing."""

from __future__ import annotations

import http.server
import json
import os
import re

import pytest
from PIL import Image

from testkit.browser import (
    AXE_DIR,
    ROOT,
    axe_missing,
    axe_violations,
    describe_violations,
    offsite_requests,
    requests_sent,
)
from testkit.console_pages import ConsolePages
from testkit.screenshots import save_page_png
from testkit.servers import HOST, free_port, in_thread

# An input without a label (critical), grey on white text (serious), an image from elsewhere.
FLAWED = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flawed</title></head>
<body><main>
<h1>Flawed</h1>
<form><input type="text" name="model"></form>
<p style="color:#c8c8c8;background:#ffffff">Barely readable text.</p>
<img src="http://example.invalid/x.png" alt="an image from elsewhere">
</main></body></html>
"""
# The same content done right, its style from its own origin and a data: image.
CLEAN = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clean</title>
<link rel="stylesheet" href="/style.css"></head>
<body><main>
<h1>Clean</h1>
<form><label for="model">Model</label> <input id="model" type="text" name="model"></form>
<p class="text">Readable text.</p>
<img alt="a dot" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
</main></body></html>
"""
# Readable only by a few: too little contrast and nothing else wrong.
FAINT = CLEAN.replace(b'<p class="text">', b'<p style="color:#c8c8c8;background:#fff">')
FILES = {
    "/faint.html": (FAINT, "text/html"),
    "/flawed.html": (FLAWED, "text/html"),
    "/clean.html": (CLEAN, "text/html"),
    "/flawed-strict.html": (FLAWED, "text/html"),
    "/style.css": (b".text { color: #222; background: #fff; }", "text/css"),
}
STRICT = "default-src 'none'; style-src 'self'; img-src 'self' data:"


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body, kind = FILES.get(self.path, (b"not here", "text/plain"))
        self.send_response(200 if self.path in FILES else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if self.path not in ("/flawed.html", "/faint.html"):  # their inline styles apply
            self.send_header("Content-Security-Policy", STRICT)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    with in_thread(http.server.ThreadingHTTPServer((HOST, free_port()), Pages)) as url:
        yield url


@pytest.fixture(scope="module")
def axe():
    reason = axe_missing()
    if reason:
        pytest.skip(reason)


def shown(browser, url: str):
    requests_sent(browser)  # what earlier pages sent is theirs
    browser.get(url)
    return browser


def test_axe_names_the_unlabelled_input_and_the_faint_text(site, browser, axe):
    violations = axe_violations(shown(browser, f"{site}/flawed.html"))
    rules = {rule["id"]: rule for rule in violations}
    assert {"label", "color-contrast"} <= set(rules), describe_violations(violations)
    assert rules["label"]["impact"] == "critical"
    assert rules["label"]["nodes"][0]["target"] == ["input"]
    text = describe_violations(violations)
    assert "label (critical)" in text and 'name="model"' in text and "color-contrast" in text
    # Only what was asked for: the minor issues are left out unless asked.
    everything = axe_violations(browser, impacts=("minor", "moderate", "serious", "critical"))
    assert {rule["id"] for rule in everything} >= set(rules)
    assert axe_violations(browser, impacts=("minor",)) == [
        rule for rule in everything if rule["impact"] == "minor"
    ]


def test_axe_runs_under_the_pages_strict_policy(site, browser, axe):
    # The policy refuses every script of the page's own; axe comes through DevTools.
    violations = axe_violations(shown(browser, f"{site}/flawed-strict.html"))
    assert "label" in {rule["id"] for rule in violations}, describe_violations(violations)


def test_the_offline_check_counts_a_request_that_failed(site, browser):
    page = shown(browser, f"{site}/flawed.html")
    assert offsite_requests(page) == ["http://example.invalid/x.png"]
    assert offsite_requests(page) == []  # each read drains the log
    page.refresh()
    sent = requests_sent(page)
    assert f"{site}/flawed.html" in sent and "http://example.invalid/x.png" in sent


def test_a_clean_page_under_a_strict_policy_passes_both(site, browser, axe):
    page = shown(browser, f"{site}/clean.html")
    assert page.find_element("css selector", "h1").text == "Clean"
    violations = axe_violations(page, impacts=("minor", "moderate", "serious", "critical"))
    assert violations == [], describe_violations(violations)
    sent = requests_sent(page)
    assert set(sent) == {f"{site}/clean.html", f"{site}/style.css"} | {
        url for url in sent if url.startswith("data:")
    }
    page.refresh()
    assert offsite_requests(page) == []


def test_a_screenshot_is_the_page_at_its_width_and_small(site, browser, tmp_path):
    page = shown(browser, f"{site}/clean.html")
    before = page.get_window_size()
    path = tmp_path / "clean.png"
    size = save_page_png(page, str(path), width=1280)
    assert size == path.stat().st_size and 0 < size < 150_000
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "P" and image.width == 1280
        # The page is white with dark text: both are in the picture.
        colours = {colour for _, colour in image.convert("L").getcolors(256)}
        assert min(colours) < 80 and max(colours) > 240
    assert page.get_window_size() == before


def test_the_console_page_check_fails_on_each_flaw(site, browser, axe, tmp_path):
    pages = ConsolePages(browser, site, screenshots=str(tmp_path))
    pages.open("/clean.html", "clean")
    assert pages.checked == {"clean": f"{site}/clean.html"}
    assert (tmp_path / "clean.png").stat().st_size > 0
    with pytest.raises(AssertionError, match="color-contrast"):
        pages.open("/faint.html", "faint")
    with pytest.raises(AssertionError, match="example.invalid"):  # logged, and sent away
        pages.open("/flawed.html", "flawed")
    assert set(pages.checked) == {"clean"}


def test_axe_core_is_pinned_and_locked_and_installed_as_locked(axe):
    folder = os.path.join(ROOT, "testkit", "axe")
    with open(os.path.join(folder, "package.json")) as handle:
        pinned = json.load(handle)["dependencies"]
    with open(os.path.join(folder, "package-lock.json")) as handle:
        locked = json.load(handle)["packages"]
    assert list(pinned) == ["axe-core"] and re.fullmatch(r"4\.\d+\.\d+", pinned["axe-core"])
    entry = locked["node_modules/axe-core"]
    assert entry["version"] == pinned["axe-core"] and entry["integrity"].startswith("sha512-")
    assert set(locked) == {"", "node_modules/axe-core"}  # nothing else comes with it
    with open(os.path.join(AXE_DIR, "node_modules", "axe-core", "package.json")) as handle:
        assert json.load(handle)["version"] == pinned["axe-core"]
