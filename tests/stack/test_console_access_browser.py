"""The console behind SLUICE_API_TOKEN in a real browser: the login form, its cookie, a form
whose CSRF token was tampered with, a long upload followed as a job, a link from another site
that keeps the session, signing out.

No second stack: a preprocess app with a token, served in this process on loopback (werkzeug),
in front of the session stack's trainer; everything else is the same code gunicorn serves.
Every page is checked as the other console pages are (testkit.console_pages); their names
differ from the other module's, so the screenshots of both keep apart.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import secrets
from urllib.parse import urlsplit

import pandas as pd
import pytest
import requests
from selenium.webdriver.common.by import By

from preprocess import create_app
from preprocess.console.access import cookie_name
from testkit.browser import axe_missing, requests_sent
from testkit.console_pages import ConsolePages
from testkit.servers import HOST, free_port, in_thread, serve_wsgi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "examples", "churn_train.csv")
MODEL = "console-access-churn"  # this module's own model
TOKEN = secrets.token_urlsafe(24)
SHOTS = os.environ.get("SLUICE_SCREENSHOTS")


@pytest.fixture(scope="module")
def guarded(stack, tmp_path_factory):
    """The console with a token at its URL, in front of the session stack's trainer. Uploads
    above 50 KB run as jobs, so churn_train.csv (~100 KB) becomes one."""
    work = tmp_path_factory.mktemp("console-access")
    app = create_app(
        {
            "SLUICE_API_TOKEN": TOKEN,
            "TRAINER_URL": stack.url("trainer"),
            "SLUICE_INTERNAL_TOKEN_FILE": os.path.join(stack.home, "internal.token"),
            "JOBS_UPLOAD_MB": 0.05,
            "ADMISSION_DIR": str(work / "admission"),
            "CONSOLE_RESULTS_DIR": str(work / "results"),
        }
    )
    with serve_wsgi(app) as url:
        yield url


@pytest.fixture(scope="module")
def console(guarded, browser):
    reason = axe_missing()
    if reason:
        pytest.skip(reason)
    return ConsolePages(browser, guarded, SHOTS)


def _cookie(base_url: str) -> str:
    """The console's cookie name for this entry (named per port)."""
    return cookie_name(urlsplit(base_url).netloc, secure=False)


def test_the_console_asks_for_the_token_once(guarded, console):
    assert requests.get(f"{guarded}/models", timeout=30).status_code == 401  # the API too
    page = console.open("/console/models", "login")
    assert "/console/login?next=" in page.current_url
    console.submit("login-form", {"token": "not-" + TOKEN})
    console.check("login-refused", refused=True)
    assert console.text("#login-form [role=alert]") == "That is not this stack's API token."
    console.submit("login-form", {"token": TOKEN})
    assert console.driver.current_url == f"{guarded}/console/models"
    console.check("signed-in")
    cookie = page.get_cookie(_cookie(guarded))
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    assert TOKEN not in cookie["value"]
    assert page.execute_script("return document.cookie;") == ""  # HttpOnly: out of scripts
    # Signed in: the other pages open without asking again.
    console.open("/console/jobs", "guarded-jobs")
    assert console.text("h1") == "Jobs"


def test_a_long_upload_is_followed_as_a_job(guarded, console):
    frame = pd.read_csv(TRAIN, dtype=str)
    assert os.path.getsize(TRAIN) > 0.05 * 2**20, "the example must be above JOBS_UPLOAD_MB"
    console.open("/console/train", "guarded-train")
    console.submit("train-form", {"model": MODEL, "target": "churned"}, {"data_file": TRAIN})
    assert "/console/jobs/" in console.driver.current_url, console.text("main")
    job_id = console.driver.current_url.rsplit("/", 1)[1]
    # htmx polls the job's part of the page until it ends; no reload.
    console.wait(lambda driver: console.text("#job-status") in ("succeeded", "failed"))
    console.check("job")
    assert console.text("#job-status") == "succeeded"
    assert console.text("#version-heading") == f"{MODEL}: version 1"
    api = requests.get(
        f"{guarded}/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ).json()  # the oracle: the job as the API tells it
    assert api["state"] == "succeeded" and api["answer"]["version"] == "1"
    assert api["answer"]["data"]["rows"] == len(frame)
    console.open("/console/jobs", "jobs-done")
    row = console.driver.find_element(By.ID, f"job-{job_id}")
    assert "succeeded" in row.find_element(By.CLASS_NAME, "state").text and MODEL in row.text


def test_a_form_with_a_tampered_csrf_token_changes_nothing(guarded, console):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = requests.get(f"{guarded}/models/{MODEL}", headers=headers, timeout=30).json()
    page = console.open(f"/console/models/{MODEL}", "guarded-model")
    page.execute_script(
        "document.querySelector('#champion-form [name=csrf_token]').value = arguments[0];",
        "0" * 64,
    )
    console.submit("champion-form", {"reason": "a forged post"})
    console.check("csrf-refused", refused=True)
    assert "security token is missing or out of date" in console.text("[role=alert]")
    after = requests.get(f"{guarded}/models/{MODEL}", headers=headers, timeout=30).json()
    assert after["history"] == before["history"]


def test_a_link_from_another_site_keeps_the_session(guarded, console):
    # localhost is another site than 127.0.0.1: SameSite=Strict keeps the cookie off the
    # request the link makes, and the console answers it with a page that reloads itself.
    link = f'<a id="away" href="{guarded}/console/models">the console</a>'
    page = f'<!doctype html><link rel="icon" href="data:,">{link}'.encode()  # no favicon fetch
    with serving(page) as port:
        signed = console.driver.get_cookie(_cookie(guarded))["value"]
        console.driver.get(f"http://localhost:{port}/")
        requests_sent(console.driver)  # that page is not the console's
        console.driver.find_element(By.ID, "away").click()
        console.wait(lambda driver: console.text("h1") == "Models")
    console.check("signed-in")
    assert console.driver.current_url == f"{guarded}/console/models"
    assert console.driver.get_cookie(_cookie(guarded))["value"] == signed


@contextlib.contextmanager
def serving(body: bytes):
    """A one-page HTTP server on loopback; its port."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with in_thread(http.server.ThreadingHTTPServer((HOST, free_port()), Page)) as url:
        yield urlsplit(url).port


def test_signing_out_asks_for_the_token_again(guarded, console):
    console.open("/console/models", "signed-in")
    console.follow(console.driver.find_element(By.ID, "logout"))
    assert "/console/login" in console.driver.current_url
    console.open("/console/models", "login")
    assert "/console/login?next=" in console.driver.current_url


def test_every_page_of_this_module_was_checked(console):
    pages = ["login", "login-refused", "signed-in", "guarded-jobs", "guarded-train", "job"]
    pages += ["jobs-done", "guarded-model", "csrf-refused"]
    assert set(console.checked) >= set(pages), sorted(set(pages) - set(console.checked))
