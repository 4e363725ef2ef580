"""Another site's page cannot change the stack through its visitor's browser (real chromium,
real stack, no API token): a hostile page on another loopback port sends a no-cors fetch that
would train and promote a version, a no-cors fetch to the trainer's /champion and an
auto-submitted text/plain form to preprocess's /champion. The champion stays and no version is
trained (read with requests, outside the browser); the stack's own console, in the same
browser, still moves the champion."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from testkit.servers import HOST, free_port

ROWS = "x,y\n" + "".join(f"{i % 9},{'yes' if i % 7 < 3 else 'no'}\n" for i in range(60))

# Fetches first, then the form (it navigates the page away): once the page shows the form's
# answer, all three requests were answered.
HOSTILE = """<!doctype html><title>hostile</title>
<form id="f" method="post" enctype="text/plain" action="{preprocess}/models/{name}/champion">
<input name='{{"version":"{version}","reason":"changed by a cross-site form","x":"' value='"}}'>
</form>
<script>
const body = new FormData();
body.append("data_file", new Blob([{rows}], {{type: "text/csv"}}), "d.csv");
const train = "{preprocess}/analyze?phase=dev&model={name}&target=y&promote=always";
const champion = JSON.stringify({{version: "{version}", reason: "changed by a no-cors fetch"}});
fetch(train, {{method: "POST", mode: "no-cors", body}})
  .catch(() => null)
  .then(() => fetch("{trainer}/models/{name}/champion",
    {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: champion}}))
  .catch(() => null)
  .then(() => document.getElementById("f").submit());
</script>"""


class HostilePages(ThreadingHTTPServer):
    """Serves `page` at / on a free loopback port: another origin than the stack's."""

    daemon_threads = True

    def __init__(self):
        self.page = b""

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(self.server.page)))
                self.end_headers()
                self.wfile.write(self.server.page)

            def log_message(self, *args):
                pass

        super().__init__((HOST, free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hostile():
    server = HostilePages()
    yield server
    server.shutdown()
    server.server_close()


def _train(stack, name: str, promote: str) -> None:
    answer = requests.post(
        stack.analyze_url,
        params={"phase": "dev", "model": name, "target": "y", "promote": promote},
        files={"data_file": ("d.csv", ROWS.encode(), "text/csv")},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def two_versions(stack):
    """A model of two versions, version 1 the champion."""
    name = "cross-site-target"
    _train(stack, name, "always")
    _train(stack, name, "never")
    return name


def _model(stack, name: str) -> dict:
    answer = requests.get(f"{stack.url('preprocess')}/models/{name}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _other_version(model: dict) -> str:
    return next(v["version"] for v in model["versions"] if v["version"] != model["champion"])


@pytest.mark.parametrize("page_host", ["localhost", HOST])  # cross-site, then same-site
def test_a_hostile_page_changes_nothing(stack, browser, hostile, two_versions, page_host):
    before = _model(stack, two_versions)
    target = f"{stack.url('preprocess')}/models/{two_versions}/champion"
    hostile.page = HOSTILE.format(
        preprocess=stack.url("preprocess"),
        trainer=stack.url("trainer"),
        name=two_versions,
        version=_other_version(before),
        rows=json.dumps(ROWS),
    ).encode()
    browser.get(f"http://{page_host}:{hostile.server_address[1]}/")
    deadline = time.monotonic() + 60
    while browser.current_url != target and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser.current_url == target, "the hostile page did not send its form"
    after = _model(stack, two_versions)
    assert after["champion"] == before["champion"]
    assert [v["version"] for v in after["versions"]] == [v["version"] for v in before["versions"]]
    assert "cross_site_request" in browser.page_source  # the form's answer, shown as text


def test_the_console_in_the_same_browser_still_moves_the_champion(stack, browser, two_versions):
    before = _model(stack, two_versions)
    chosen = _other_version(before)
    browser.get(f"{stack.url('preprocess')}/console/models/{two_versions}")
    Select(browser.find_element(By.ID, "champion-version")).select_by_value(chosen)
    browser.find_element(By.ID, "champion-reason").send_keys("chosen in the console")
    browser.find_element(By.CSS_SELECTOR, "#champion-form button[type=submit]").click()
    deadline = time.monotonic() + 30
    while not browser.find_elements(By.ID, "changed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"Version {chosen} is now the champion" in browser.find_element(By.ID, "changed").text
    assert _model(stack, two_versions)["champion"] == chosen
