"""The console in a real browser (headless Chromium) on the session's stack: train through the
form, make another version the champion, predict and download, a bad file's message, the
drifted column on the monitoring page. Every page the tests see is checked as it is shown
(testkit.console_pages): no axe-core violation of impact serious or critical (WCAG 2 A/AA), no
request beyond 127.0.0.1, no error in the browser's console.

SLUICE_SCREENSHOTS=<dir> also saves each page as <dir>/<page>.png (1280 wide) for the docs
(scripts/console_screenshots.sh).
"""

from __future__ import annotations

import csv
import io
import os
import time

import pandas as pd
import pytest
import requests
from selenium.webdriver.common.by import By

from testkit.browser import axe_missing, console_errors, offsite_requests
from testkit.console_pages import ConsolePages
from testkit.stack import post_csv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "examples", "churn_train.csv")
QUERY = os.path.join(ROOT, "examples", "churn_query.csv")
TARGET = "churned"  # the example's target (README, docs/getting-started.md)
MODEL = "console-browser-churn"  # this module's own model
SHOTS = os.environ.get("SLUICE_SCREENSHOTS")
# Every console page; the last test checks each was seen (and checked) by a test above it.
PAGES = {
    "home",
    "models",
    "model",
    "model-refused",
    "train",
    "trained",
    "train-refused",
    "predict",
    "predict-refused",
    "predictions",
    "predictions-page-2",
    "jobs",
    "monitoring",
    "monitoring-model",
    "error",
}


@pytest.fixture(scope="module")
def console(stack, browser):
    reason = axe_missing()
    if reason:
        pytest.skip(reason)
    return ConsolePages(browser, stack.url("preprocess"), SHOTS)


@pytest.fixture(scope="module")
def trained(console):
    """MODEL trained once through the Train form: the page with its answer."""
    console.open("/console/train", "train")
    console.submit("train-form", {"model": MODEL, "target": TARGET}, {"data_file": TRAIN})
    assert console.driver.find_elements(By.ID, "train-result"), console.text("main")
    return console.check("trained")


def api_model(stack) -> dict:
    answer = requests.get(f"{stack.url('preprocess')}/models/{MODEL}", timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_home_page_links_each_page_by_its_name(console):
    console.open("/", "home")
    for name in ("Models", "Train", "Predict", "Jobs", "Monitoring"):
        console.driver.get(console.base + "/")
        console.follow(console.driver.find_element(By.ID, "pages").find_element(By.LINK_TEXT, name))
        assert console.text("h1") == name  # the page the link names
    # The pages themselves are checked by the tests below.
    offsite_requests(console.driver)
    console_errors(console.driver)


def test_training_through_the_form_shows_version_1_and_its_decision(stack, console, trained):
    assert console.text("#version-heading") == f"{MODEL}: version 1"
    version = api_model(stack)["versions"][0]  # the oracle: the catalogue's record
    assert version["version"] == "1" and version["promotion"]["promoted"] is True
    decision = console.text("#decision")
    assert "Promoted: version 1 is now the champion." in decision
    assert version["promotion"]["reason"] in decision
    shown = {
        row.find_element(By.TAG_NAME, "th").text: float(row.find_element(By.TAG_NAME, "td").text)
        for row in trained.find_elements(By.CSS_SELECTOR, "#metrics tbody tr")
    }
    metrics = {name.removeprefix("valid_"): value for name, value in version["metrics"].items()}
    assert shown.keys() == metrics.keys()
    for name, value in metrics.items():
        assert shown[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    used = [cell.text for cell in trained.find_elements(By.CSS_SELECTOR, "#features-used th")]
    assert {"plan", "region", "tenure_months", "monthly_charges"} <= set(used)
    assert TARGET not in used
    dropped = console.text("#features-dropped")
    assert "customer_id" in dropped


def test_another_version_made_champion_through_the_form(stack, console, trained):
    console.open("/console/train", "train")
    console.submit("train-form", {"model": MODEL, "target": TARGET}, {"data_file": TRAIN})
    assert console.text("#version-heading") == f"{MODEL}: version 2"
    before = api_model(stack)["champion"]  # the gate's choice; the form moves it to the other
    other = "1" if before == "2" else "2"

    page = console.open(f"/console/models/{MODEL}", "model")
    assert "champion" in console.text(f"#version-{before} th")
    assert "champion" not in console.text(f"#version-{other} th")
    reason = f"the browser test prefers version {other}"
    page.find_element(By.CSS_SELECTOR, f"#champion-version option[value='{other}']").click()
    console.submit("champion-form", {"reason": reason})
    console.check("model")
    assert console.text("#changed") == f"Version {other} is now the champion."
    size = console.driver.get_window_size()
    console.driver.set_window_size(1280, 900)
    overflow = console.driver.execute_script(
        "const t = document.getElementById('versions');"
        "return t.scrollWidth - t.parentElement.clientWidth;"
    )
    console.driver.set_window_size(size["width"], size["height"])
    assert overflow <= 0, f"the versions table is {overflow}px wider than the page at 1280px"
    assert "champion" in console.text(f"#version-{other} th")
    assert "champion" not in console.text(f"#version-{before} th")
    assert console.text("#champion-line").startswith(f"champion: version {other}")
    catalogue = api_model(stack)
    assert catalogue["champion"] == other
    latest = catalogue["history"][-1]  # oldest first
    assert latest["reason"] == reason and latest["to"] == other and latest["from"] == before
    assert reason in console.text("#history tbody tr:last-child")

    console.open("/console/models", "models")
    row = console.driver.find_element(By.XPATH, f"//table[@id='models']//tr[th/a='{MODEL}']")
    assert f"champion: version {other}" in row.text


def test_predict_through_the_form_and_download_the_csv(stack, console, trained):
    console.open("/console/predict", "predict")
    console.submit("predict-form", {"model": MODEL}, {"data_file": QUERY})
    assert "/console/predictions/" in console.driver.current_url, console.text("main")
    page = console.check("predictions")
    with open(QUERY, "rb") as handle:
        api = post_csv(stack.analyze_url, handle.read(), phase="prod", model=MODEL)
    assert api.status_code == 200, api.text
    api = api.json()  # the oracle: the API's answer to the same file
    assert console.text("h1") == f"Predictions of {MODEL} version {api['version']}"
    shown = [
        (row.find_element(By.TAG_NAME, "th").text, row.find_elements(By.TAG_NAME, "td")[0].text)
        for row in page.find_elements(By.CSS_SELECTOR, "#predictions tbody tr")
    ]
    assert shown == [(str(index), value) for index, value in enumerate(api["predictions"])]

    link = page.find_element(By.ID, "download-csv").get_attribute("href")
    download = console.session().get(link, timeout=30)
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [row["prediction"] for row in rows] == api["predictions"]
    assert [row["row"] for row in rows] == [str(index) for index in range(api["n_rows"])]
    # Another browser (no cookie of this session) is not given these predictions.
    assert requests.get(link, timeout=30).status_code == 404


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.mark.parametrize(
    "phase, name, content",
    [("dev", "empty.csv", b""), ("dev", "picture.png", PNG), ("prod", "picture.png", PNG)],
)
def test_a_bad_file_shows_the_apis_message_by_its_form(
    stack, console, tmp_path, phase, name, content
):
    path = tmp_path / name
    path.write_bytes(content)
    fields = {"model": MODEL, "target": TARGET} if phase == "dev" else {"model": MODEL}
    api = post_csv(stack.analyze_url, content, phase=phase, **fields)
    assert 400 <= api.status_code < 500, api.text
    message = api.json()["error"]["message"]  # the oracle: the API's own words
    form = "train" if phase == "dev" else "predict"
    console.open(f"/console/{form}", form)
    console.submit(f"{form}-form", fields, {"data_file": str(path)})
    page = console.check(f"{form}-refused", refused=True)
    alert = page.find_element(By.CSS_SELECTOR, f"#{form}-form [role=alert]")
    assert alert.text == message
    assert page.find_element(By.ID, "model").get_attribute("value") == MODEL  # kept
    assert console.driver.title.startswith("Error: ")
    file_input = page.find_element(By.ID, "data_file")
    assert file_input.get_attribute("aria-invalid") == "true"
    assert file_input.get_attribute("aria-describedby") == alert.get_attribute("id")


def test_a_refused_retrain_shows_the_apis_message_by_its_button(stack, console, trained):
    api = requests.post(f"{stack.url('preprocess')}/models/{MODEL}/retrain", timeout=60)
    assert 400 <= api.status_code < 500, api.text  # no labels yet: refused before any job
    page = console.open(f"/console/models/{MODEL}", "model")
    console.submit("retrain-form", {})
    console.check("model-refused", refused=True)
    assert (
        page.find_element(By.CSS_SELECTOR, "#retrain-form [role=alert]").text
        == (api.json()["error"]["message"])
    )


def test_a_job_that_is_not_there_shows_the_apis_message(stack, console):
    missing = "0" * 32
    api = requests.get(f"{stack.url('preprocess')}/jobs/{missing}", timeout=30)
    assert api.status_code == 404, api.text
    page = console.open(f"/console/jobs/{missing}", "error", refused=True)
    assert page.find_element(By.CSS_SELECTOR, "[role=alert]").text == api.json()["error"]["message"]


def test_the_monitoring_page_names_the_drifted_column(stack, console, trained, tmp_path):
    frame = pd.read_csv(TRAIN, dtype=str).drop(columns=[TARGET]).head(300)
    # monthly_charges fifty times what the model was trained on; the other columns as trained.
    frame["monthly_charges"] = (frame["monthly_charges"].astype(float) * 50).round(2).astype(str)
    frame.loc[3, "tenure_months"] = "about a year"  # a flagged row for the table
    path = str(tmp_path / "drifted.csv")
    frame.to_csv(path, index=False)
    console.open("/console/predict", "predict")
    console.submit("predict-form", {"model": MODEL}, {"data_file": path})
    assert "/console/predictions/" in console.driver.current_url, console.text("main")
    page = console.check("predictions")
    flagged = page.find_elements(By.CSS_SELECTOR, "#predictions tr.flagged")
    assert [row.find_element(By.TAG_NAME, "th").text for row in flagged] == ["3"]
    assert "tenure_months" in flagged[0].text
    assert console.text("#predictions caption") == "Page 1 of 6"
    console.follow(page.find_element(By.CSS_SELECTOR, "#pager a[rel=next]"))
    assert console.text("#predictions caption") == "Page 2 of 6"
    console.check("predictions-page-2")
    assert page.find_element(By.CSS_SELECTOR, "#predictions tbody th").text == "50"

    summary = wait_for_drift(stack)  # the oracle: GET /monitoring's verdicts
    drifted = {name for name, column in summary["drift"]["features"].items() if column["drifted"]}
    assert drifted == {"monthly_charges"}, summary["drift"]["features"]
    console.open("/console/monitoring", "monitoring")
    console.follow(console.driver.find_element(By.LINK_TEXT, MODEL))
    page = console.check("monitoring-model")
    rows = {
        row.get_attribute("data-feature"): row.find_element(By.CLASS_NAME, "verdict").text
        for row in page.find_elements(By.CSS_SELECTOR, "#drift tbody tr")
    }
    assert rows["monthly_charges"].startswith("drifted")
    for name, column in summary["drift"]["features"].items():  # every column as the API says
        assert rows[name].startswith("drifted") == column["drifted"], (name, rows[name])
    row = page.find_element(By.CSS_SELECTOR, "#drift tr[data-feature='monthly_charges']")
    method, score, warning, alert = (cell.text for cell in row.find_elements(By.TAG_NAME, "td")[:4])
    column = summary["drift"]["features"]["monthly_charges"]
    thresholds = summary["drift"]["settings"]["thresholds"]
    assert method == column["method"] == "psi"
    assert float(score) == pytest.approx(column["score"], rel=1e-2)
    assert float(warning) == pytest.approx(thresholds["warning"]["psi"])
    assert float(alert) == pytest.approx(thresholds["alert"]["psi"])


def wait_for_drift(stack, timeout: float = 30) -> dict:
    """GET /monitoring once the batch is written (a background thread writes every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(
            f"{stack.url('preprocess')}/monitoring", params={"model": MODEL}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        summary = answer.json()
        features = summary.get("drift", {}).get("features", {})
        if features.get("monthly_charges", {}).get("drifted") or time.monotonic() > deadline:
            return summary
        time.sleep(0.3)


def test_the_jobs_page(console):
    console.open("/console/jobs", "jobs")
    assert console.text("h1") == "Jobs"


def test_every_console_page_was_checked(console):
    assert set(console.checked) >= PAGES, sorted(PAGES - set(console.checked))
    assert offsite_requests(console.driver) == []
