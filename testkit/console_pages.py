"""The console driven in a real browser, every page it shows checked as it is shown: no
axe-core violation of impact serious or critical (WCAG 2 A/AA), no request beyond 127.0.0.1 and
no error in the browser's console (a script or style the CSP refused logs one). With
`screenshots` (a directory) each checked page is also saved as <page>.png, 1280 wide, for the
docs (scripts/console_screenshots.sh).
"""

from __future__ import annotations

import os
import secrets

import requests
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from testkit.browser import axe_violations, console_errors, describe_violations, offsite_requests
from testkit.screenshots import save_page_png

# Chrome asks every site for /favicon.ico, which the console does not serve.
FAVICON = "/favicon.ico - Failed to load resource"


class ConsolePages:
    """A browser on the console at `base`; `checked` maps each page checked to its URL."""

    def __init__(self, driver, base: str, screenshots: str | None = None):
        self.driver = driver
        self.base = base
        self.screenshots = screenshots
        self.checked: dict[str, str] = {}
        offsite_requests(driver)  # drained: what earlier pages sent is theirs
        console_errors(driver)

    def open(self, path: str, page: str, refused: bool = False):
        self.driver.get(self.base + path)
        return self.check(page, refused)

    def check(self, page: str, refused: bool = False):
        """The page now shown: accessible, offline, quiet; saved for the docs when asked.
        `refused`: it came with a 4xx status (an error shown), which Chrome logs as an error."""
        driver = self.driver
        ignored = [FAVICON]
        if refused:
            ignored.append(f"{driver.current_url} - Failed to load resource: the server responded")
        errors = [e for e in console_errors(driver) if not any(i in e for i in ignored)]
        assert not errors, f"{page} ({driver.current_url}) logged errors: {errors}"
        violations = axe_violations(driver)
        assert not violations, f"{page} ({driver.current_url}):\n" + describe_violations(violations)
        away = offsite_requests(driver)
        assert not away, f"{page} ({driver.current_url}) sent requests beyond 127.0.0.1: {away}"
        self.checked[page] = driver.current_url
        if self.screenshots:
            size = save_page_png(driver, os.path.join(self.screenshots, f"{page}.png"))
            assert size < 200_000, f"{page}.png is {size} bytes"
        return driver

    def wait(self, condition, timeout: float = 120):
        """`condition(driver)` once true. Asked again after an error: between two pages, or
        while htmx replaces an element, the driver cannot answer (not found, stale, no node)."""
        waiting = WebDriverWait(self.driver, timeout, 0.1, ignored_exceptions=(WebDriverException,))
        return waiting.until(condition)

    def text(self, selector: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def submit(self, form: str, fields: dict[str, str], files: dict[str, str] | None = None):
        """Fill a form's inputs (file inputs with a path), send it by its button, and wait for
        the next page."""
        found = self.driver.find_element(By.ID, form)
        for name, path in (files or {}).items():
            found.find_element(By.NAME, name).send_keys(path)
        for name, value in fields.items():
            field = found.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        self.follow(found.find_element(By.CSS_SELECTOR, "button[type=submit]"))

    def follow(self, element) -> None:
        """Click a link or button and wait until the page it leads to is loaded."""
        # A mark on this page's window: the next page's window has none.
        mark = secrets.token_hex(8)
        self.driver.execute_script("window.sluicePage = arguments[0];", mark)
        element.click()
        self.wait(lambda driver: _next_page(driver, mark))

    def session(self) -> requests.Session:
        """A requests session holding the browser's cookies (its console session)."""
        session = requests.Session()
        for cookie in self.driver.get_cookies():
            session.cookies.set(cookie["name"], cookie["value"])
        return session


def _next_page(driver, mark: str) -> bool:
    """Whether a page other than the one marked `mark` is shown and loaded."""
    try:
        return driver.execute_script(
            "return window.sluicePage !== arguments[0] && document.readyState === 'complete';",
            mark,
        )
    except WebDriverException:  # between two pages: no document to ask yet
        return False
