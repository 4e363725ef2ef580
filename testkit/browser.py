"""A real headless browser for page tests: Debian's chromium driven by selenium, offline.

The tests take the fixture `browser` (tests/conftest.py: one browser per test module) and read
pages with drawn_plots() and friends. chromedriver is a throwaway server of testkit.servers (its
own dir, a free loopback port, its log in every failure); selenium talks to it and neither
starts nor stops it. scripts/ensure_browser.sh installs chromium and chromedriver; without them
the tests that ask for `browser` skip, saying what is missing.

Two checks of a page as the browser saw it: axe_violations() runs axe-core (pinned and locked
in testkit/axe/, installed into .tools/axe/ by scripts/ensure_axe.sh) for WCAG 2 A/AA, and
offsite_requests() names every request that went anywhere but 127.0.0.1, read from Chrome's
performance log (the DevTools Network events), so a request that failed counts too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests

from testkit.servers import HOST, Throwaway, free_port, read_tail

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AXE_DIR = os.environ.get("SLUICE_AXE_DIR", os.path.join(ROOT, ".tools", "axe"))
AXE_SCRIPT = os.path.join(AXE_DIR, "node_modules", "axe-core", "axe.min.js")
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")

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


class BrowserError(RuntimeError):
    """chromedriver did not start or answer; carries the end of its log."""


class ChromeDriver(Throwaway):
    """chromedriver on 127.0.0.1 at a free port, its log in a temp dir."""

    error = BrowserError
    prefix = "sluice-chromedriver-"
    # Its pid comes on stdin; at EOF it is killed if it is still our chromedriver.
    watchdog_script = (
        "pid=; while read -r next; do pid=$next; done; "
        '[ -n "$pid" ] && grep -qF -- "$1" "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid"'
    )

    def __init__(self, base_dir: str | None = None):
        super().__init__(base_dir)
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def logs(self, tail: int = 4000) -> str:
        if not self.directory:
            return "(no log)"
        return "chromedriver log:\n" + read_tail(os.path.join(self.directory, "driver.log"), tail)

    def start(self, timeout: float = 30) -> ChromeDriver:
        self.open_directory()
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                CHROMEDRIVER,
                f"--port={self.port}",
                f"--log-path={os.path.join(self.directory, 'driver.log')}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the test run goes to close(), not straight here
        )
        self.tell_watchdog(str(self.process.pid))
        self.wait_ready(self._why_not, timeout, self._gone)
        return self

    def halt(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _why_not(self) -> str | None:
        try:
            answer = requests.get(f"{self.url}/status", timeout=2)
        except requests.RequestException as error:
            return str(error)
        return None if answer.ok and answer.json()["value"]["ready"] else answer.text[:200]

    def _gone(self) -> str | None:
        if self.process.poll() is None:
            return None
        return f"chromedriver exited with status {self.process.returncode}"


@contextlib.contextmanager
def chrome(width: int = 1200, height: int = 900) -> Iterator:
    """A headless Debian chromium under selenium, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    class Running(Service):
        """The harness's chromedriver: selenium connects to it, never starts or stops it."""

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

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
        # No name but the loopback's resolves: a page that reaches out fails at once, without
        # a DNS query leaving the machine (offsite_requests still sees the attempt).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ):
        options.add_argument(argument)
    # The performance log carries the DevTools Network events offsite_requests() reads; the
    # page's timeline events would only fill it.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    logged = {"enableNetwork": True, "enablePage": False}
    options.add_experimental_option("perfLoggingPrefs", logged)
    with ChromeDriver() as server:
        driver = webdriver.Chrome(options=options, service=Running(CHROMEDRIVER, port=server.port))
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            driver.quit()


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


def requests_sent(driver) -> list[str]:
    """The URL of every request the browser sent since the last call (it drains the log): pages,
    redirects, assets, fetches, whether or not they were answered."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def offsite_requests(driver) -> list[str]:
    """The requests since the last call that left 127.0.0.1 (data: and blob: URLs stay in the
    page). Empty on an offline page."""
    return [url for url in requests_sent(driver) if not _on_loopback(url)]


def _on_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob") or (
        parts.scheme in ("http", "https", "ws", "wss") and parts.hostname == HOST
    )


def axe_missing() -> str | None:
    """Why axe-core cannot run here, or None once it is installed. Installs it (the locked
    version, scripts/ensure_axe.sh) when npm is there and it is not."""
    if os.path.isfile(AXE_SCRIPT):
        return None
    if shutil.which("npm") is None:
        return f"no npm here to install axe-core into {AXE_DIR} (scripts/ensure_axe.sh)"
    done = subprocess.run(
        [os.path.join(ROOT, "scripts", "ensure_axe.sh")], capture_output=True, text=True
    )
    if os.path.isfile(AXE_SCRIPT):
        return None
    raise RuntimeError(f"npm is here but axe-core did not install:\n{done.stderr[-2000:]}")


def axe_violations(driver, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's WCAG 2 A/AA violations of the page now shown, those of the given impacts, each
    with its rule, impact, help and nodes (target, html, what to fix); readable with
    describe_violations()."""
    reason = axe_missing()
    if reason:
        raise RuntimeError(reason)
    with open(AXE_SCRIPT, encoding="utf-8") as handle:
        source = handle.read()
    # Injected through DevTools, which the page's Content-Security-Policy does not govern.
    driver.execute_script(source)
    driver.set_script_timeout(60)
    answer = driver.execute_async_script(
        """
        const [tags, done] = arguments;
        axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})
          .then((result) => done(result.violations.map((rule) => ({
            id: rule.id, impact: rule.impact, help: rule.help, helpUrl: rule.helpUrl,
            nodes: rule.nodes.map((node) => ({
              target: node.target, html: node.html, summary: node.failureSummary,
            })),
          }))), (error) => done({error: String(error)}));
        """,
        list(WCAG_TAGS),
    )
    if isinstance(answer, dict):
        raise RuntimeError(f"axe-core failed on {driver.current_url}: {answer['error']}")
    return [rule for rule in answer if rule["impact"] in impacts]


def describe_violations(violations: list[dict]) -> str:
    """axe's violations as lines a failing test can show: rule, impact, help, each node."""
    lines = []
    for rule in violations:
        lines.append(f"{rule['id']} ({rule['impact']}): {rule['help']} [{rule['helpUrl']}]")
        for node in rule["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"  at {node['target']}: {node['html'][:200]}\n    {summary}")
    return "\n".join(lines) or "(none)"
