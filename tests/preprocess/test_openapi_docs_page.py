"""GET /docs in headless Chromium: Swagger UI renders Sluice's document offline, under the
page's strict Content-Security-Policy (no violation logged), every request to this origin,
and /analyze offers a file picker for data_file."""

from __future__ import annotations

import os

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from preprocess import create_app
from testkit.browser import console_errors, network_requests
from testkit.servers import serve_wsgi
from testkit.stand_in_trainer import running_stand_in

WAIT_SECONDS = 20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE_CSV = os.path.join(ROOT, "examples", "churn_query.csv")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    with running_stand_in() as trainer_url:
        app = create_app(
            {
                "TESTING": True,
                "TRAINER_URL": trainer_url,
                "ADMISSION_DIR": str(tmp_path_factory.mktemp("admission")),
            }
        )
        with serve_wsgi(app) as url:
            yield url


def test_docs_renders_the_document_offline_under_its_policy(browser, base):
    console_errors(browser)  # forget what an earlier page logged
    browser.get(f"{base}/docs")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    title = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".info .title")))
    assert "Sluice" in title.text
    analyze = wait.until(
        ready.element_to_be_clickable((By.CSS_SELECTOR, "#operations-data-post_analyze button"))
    )
    analyze.click()
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, ".try-out__btn"))).click()
    picker = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    assert picker.is_displayed()
    # Execute it: the phase's first example (dev) and a CSV from examples/ go to the trainer.
    picker.send_keys(EXAMPLE_CSV)
    browser.find_element(By.CSS_SELECTOR, "#operations-data-post_analyze .execute").click()
    answered = (
        "#operations-data-post_analyze .live-responses-table tr.response .response-col_status"
    )
    status = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, answered)))
    assert status.text.strip() == "200", status.text
    # A CSP violation (an inline script or style) is logged as an error; so is a failed load.
    assert console_errors(browser) == []
    requested = network_requests(browser)
    assert f"{base}/openapi.json" in requested
    assert all(url.startswith(base + "/") for url in requested), requested
