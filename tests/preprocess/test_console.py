"""The console's pages, access control and forms, through Flask's test client against a
stand-in trainer on a loopback port (tests/preprocess/console_standin.py)."""

from __future__ import annotations

import io
import os
import re
from html.parser import HTMLParser

import pandas as pd
import pyarrow as pa
import pytest

from preprocess import create_app
from preprocess.console import CSP, results
from tests.preprocess.console_standin import HOSTILE, JOB_ID, StandInTrainer, prod_answer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_CSV = os.path.join(ROOT, "examples", "churn_train.csv")
TOKEN = "console-test-token"
PAGES = (
    "/",
    "/console/models",
    "/console/models/churn",
    "/console/train",
    "/console/predict",
    "/console/jobs",
    f"/console/jobs/{JOB_ID}",
    "/console/monitoring",
    "/console/monitoring/churn",
)


class Page(HTMLParser):
    """The parts of a page the tests read: links, alerts, hidden CSRF tokens, element ids."""

    def __init__(self, html: str):
        super().__init__()
        self.links: dict[str, str] = {}
        self.alerts: list[str] = []
        self.ids: set[str] = set()
        self.csrf: list[str] = []
        self._href = None
        self._alert_depth = 0
        self._text = ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a":
            self._href, self._text = attrs.get("href"), ""
        if attrs.get("role") == "alert":
            self._alert_depth, self._text = 1, ""
        if tag == "input" and attrs.get("name") == "csrf_token":
            self.csrf.append(attrs["value"])

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.setdefault(self._text.strip(), self._href)
            self._href = None
        if self._alert_depth and tag in ("p", "div", "section"):
            self.alerts.append(self._text.strip())
            self._alert_depth = 0

    def handle_data(self, data):
        self._text += data


@pytest.fixture(scope="module")
def trainer():
    stand_in = StandInTrainer()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def make_client(trainer, tmp_path):
    """A console client of a preprocess app with `config` (the stand-in as its trainer)."""
    trainer.requests.clear()

    def make(**config):
        app = create_app(
            {
                "TRAINER_URL": trainer.url,
                "SLUICE_INTERNAL_TOKEN": "internal",
                "ADMISSION_DIR": str(tmp_path / "slots"),
                "CONSOLE_RESULTS_DIR": str(tmp_path / "results"),
                **config,
            }
        )
        return app.test_client()

    return make


def csrf_of(client, url: str = "/console/train") -> str:
    return Page(client.get(url).text).csrf[0]


def signed_in(client) -> None:
    token = csrf_of(client, "/console/login")
    answer = client.post("/console/login", data={"token": TOKEN, "csrf_token": token})
    assert answer.status_code == 303


def train(client, csrf: str, model: str = "churn", path: str = TRAIN_CSV):
    with open(path, "rb") as handle:
        data = {"data_file": (handle, "churn_train.csv"), "model": model, "csrf_token": csrf}
        return client.post("/console/train", data=data, content_type="multipart/form-data")


def test_the_home_page_links_to_every_page_and_each_renders(make_client):
    client = make_client()
    home = Page(client.get("/").text)
    for name in ("Models", "Train", "Predict", "Jobs", "Monitoring"):
        answer = client.get(home.links[name])
        assert answer.status_code == 200, name
        assert '<html lang="en">' in answer.text and "<main>" in answer.text
    for url in PAGES:
        assert client.get(url).status_code == 200, url


def test_every_console_answer_sends_the_strict_headers(make_client):
    client = make_client()
    urls = (*PAGES, "/console/static/console.css", "/console/predictions/" + "0" * 32)
    for url in urls:
        headers = client.get(url).headers
        assert headers["Content-Security-Policy"] == CSP, url
        assert "script-src 'self'" in CSP and "unsafe" not in CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in client.get("/").text  # no inline script: only src= files


def test_login_sets_a_signed_httponly_strict_cookie_that_is_not_the_token(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    refused = client.get("/console/models")
    assert refused.status_code == 303 and refused.location.startswith("/console/login")
    csrf = csrf_of(client, "/console/login")
    wrong = client.post("/console/login", data={"token": "nope", "csrf_token": csrf})
    assert wrong.status_code == 401 and Page(wrong.text).alerts
    answer = client.post(
        "/console/login", data={"token": TOKEN, "csrf_token": csrf, "next": "/console/jobs"}
    )
    assert answer.status_code == 303 and answer.location == "/console/jobs"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    value = cookie.split(";")[0].split("=", 1)[1]
    assert TOKEN not in value and len(value.split(".")) == 3
    assert client.get("/console/models").status_code == 200


def test_over_https_the_cookie_is_secure(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    page = client.get("/console/login", base_url="https://localhost")
    csrf = Page(page.text).csrf[0]
    answer = client.post(
        "/console/login",
        data={"token": TOKEN, "csrf_token": csrf},
        base_url="https://localhost",
    )
    assert "Secure" in answer.headers["Set-Cookie"]


def test_pages_without_a_signed_cookie_redirect_to_the_login(make_client, trainer):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    for url in PAGES:
        answer = client.get(url)
        assert answer.status_code == 303 and "/console/login" in answer.location, url
    client.set_cookie("sluice_console", "0" * 32 + ".9999999999." + "f" * 64)  # forged MAC
    assert client.get("/console/models").status_code == 303
    assert trainer.requests == []


def test_a_next_page_off_the_console_is_ignored(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    for target in ("https://evil.example/", "//evil.example/", "/models"):
        csrf = csrf_of(client, "/console/login")  # each sign-in starts a new session
        answer = client.post(
            "/console/login", data={"token": TOKEN, "csrf_token": csrf, "next": target}
        )
        assert answer.location == "/", target


def test_signing_out_ends_the_session(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    signed_in(client)
    csrf = csrf_of(client, "/console/jobs")
    assert client.post("/console/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/console/jobs").status_code == 303


@pytest.mark.parametrize("token", [None, TOKEN])
def test_posts_without_or_with_a_wrong_csrf_token_are_refused_and_reach_nothing(
    make_client, trainer, token
):
    client = make_client(SLUICE_API_TOKEN=token)
    if token:
        signed_in(client)
    other = make_client(SLUICE_API_TOKEN=token)
    if token:
        signed_in(other)
    foreign = csrf_of(other)  # a valid token, of another session
    trainer.requests.clear()
    for csrf in (None, "0" * 64, foreign):
        answer = train(client, csrf) if csrf else client.post("/console/train", data={})
        assert answer.status_code == 403 and Page(answer.text).alerts
        for url in (
            "/console/models/churn/champion",
            "/console/models/churn/retrain",
            f"/console/jobs/{JOB_ID}/cancel",
        ):
            data = {"csrf_token": csrf} if csrf else {}
            refused = client.post(url, data={**data, "version": "1", "reason": "x"})
            assert refused.status_code == 403, url
    assert trainer.requests == []


def test_the_api_keeps_its_bearer_check(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    signed_in(client)  # the console's cookie opens the console only
    assert client.get("/models").status_code == 401
    with open(TRAIN_CSV, "rb") as handle:
        posted = client.post("/analyze?phase=dev", data={"data_file": handle})
    assert posted.status_code == 401 and posted.json["error"]["code"] == "unauthorized"
    assert client.get("/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # The API's description holds no data: open (the route itself comes with /openapi.json).
    assert client.get("/openapi.json").status_code != 401


def test_the_train_form_sends_what_post_analyze_sends(make_client, trainer):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    signed_in(client)
    answer = train(client, csrf_of(client))
    assert answer.status_code == 200
    assert "churn: version 1" in answer.text and "now the champion" in answer.text
    console_call = trainer.requests[-1]
    with open(TRAIN_CSV, "rb") as handle:
        api = client.post(
            "/analyze?phase=dev&model=churn",
            data={"data_file": handle},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert api.status_code == 200
    api_call = trainer.requests[-1]
    assert console_call["path"] == api_call["path"] == "/ml"
    assert console_call["args"] == api_call["args"]
    assert console_call["args"]["phase"] == "dev" and console_call["args"]["target"] == "churned"
    assert console_call["body"] == api_call["body"]  # the same Arrow table, byte for byte
    assert console_call["authorization"] == f"Bearer {TOKEN}"
    table = pa.ipc.open_stream(io.BytesIO(console_call["body"])).read_all()
    expected = pd.read_csv(TRAIN_CSV, dtype=str)
    assert table.column_names == list(expected.columns) and table.num_rows == len(expected)


def test_an_api_error_shows_its_message_in_an_alert_with_its_status(make_client):
    client = make_client()
    csrf = csrf_of(client)
    failed = train(client, csrf, model="broken")
    page = Page(failed.text)
    assert failed.status_code == 422
    assert page.alerts == [f"No target column {HOSTILE} in the file."]
    assert "train-form" in page.ids  # the form, again, beside its alert
    bad_name = train(client, csrf, model="no spaces allowed")
    assert bad_name.status_code == 400 and "model must be" in Page(bad_name.text).alerts[0]
    no_reason = client.post(
        "/console/models/churn/champion", data={"csrf_token": csrf, "version": "1", "reason": ""}
    )
    assert no_reason.status_code == 400 and "champion-error" in Page(no_reason.text).ids
    retrain = client.post("/console/models/churn/retrain", data={"csrf_token": csrf})
    assert retrain.status_code == 409 and "retrain-error" in Page(retrain.text).ids
    assert Page(retrain.text).alerts == ["No prod row of 'churn' has a label."]
    empty = client.post("/console/predict", data={"csrf_token": csrf})
    assert empty.status_code == 400 and "data_file" in Page(empty.text).alerts[0]


def test_hostile_names_come_out_escaped(make_client):
    client = make_client()
    csrf = csrf_of(client)
    with open(TRAIN_CSV, "rb") as handle:
        predicted = client.post(
            "/console/predict",
            data={"data_file": (handle, f"{HOSTILE}.csv"), "csrf_token": csrf},
            follow_redirects=True,
        )
    pages = [
        client.get("/console/models").text,
        client.get("/console/models/churn").text,
        client.get("/console/monitoring").text,
        client.get("/console/monitoring/churn").text,
        train(client, csrf).text,
        predicted.text,
    ]
    for html in pages:
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_csv_download_equals_the_predictions(make_client, trainer):
    client = make_client()
    csrf = csrf_of(client, "/console/predict")
    with open(TRAIN_CSV, "rb") as handle:
        posted = client.post(
            "/console/predict",
            data={"data_file": (handle, "q.csv"), "csrf_token": csrf, "proba": "true"},
        )
    assert posted.status_code == 303
    assert trainer.requests[-1]["args"]["phase"] == "prod"
    assert trainer.requests[-1]["args"]["proba"] == "true"
    first = client.get(posted.location)
    page = Page(first.text)
    assert {"predictions", "download-csv", "pager"} <= page.ids
    assert first.text.count('<tr class="flagged">') == 2  # rows 1 and 7 of page 1
    last = client.get(posted.location + "?page=3").text
    assert last.count("<tr") == 1 + 20  # the header row and rows 100-119
    download = client.get(page.links["Download all predictions (CSV)"])
    assert download.mimetype == "text/csv"
    got = pd.read_csv(io.StringIO(download.text), dtype=str, keep_default_na=False)
    expected = prod_answer("default", trainer.prod_rows)
    assert got["prediction"].tolist() == expected["predictions"]
    assert got["row"].astype(int).tolist() == list(range(trainer.prod_rows))
    assert got[f"probability_{HOSTILE}"].astype(float).tolist() == [
        p[1] for p in expected["probabilities"]
    ]
    assert got.index[got["flags"] != ""].tolist() == [1, 7]
    # Another browser cannot open it, even with the link.
    other = make_client()
    assert other.get(posted.location).status_code == 404


def test_kept_results_are_bounded_in_count(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "MAX_RESULTS", 3)
    ids = [results.save(str(tmp_path), b'{"predictions": []}', "s" * 32) for _ in range(5)]
    assert len(os.listdir(tmp_path)) == 3
    assert results.load(str(tmp_path), ids[0], "s" * 32) is None
    assert results.load(str(tmp_path), ids[-1], "s" * 32) == {"predictions": []}
    assert results.load(str(tmp_path), ids[-1], "t" * 32) is None  # another session's


def test_a_large_upload_becomes_a_job_whose_page_follows_it(make_client, trainer):
    client = make_client(JOBS_UPLOAD_MB=0.001)
    answer = train(client, csrf_of(client))
    assert trainer.requests[-1]["args"]["async"] == "true"  # the API's rule, unchanged
    assert answer.status_code == 303 and answer.location == f"/console/jobs/{JOB_ID}"
    page = client.get(answer.location).text
    assert '<meta http-equiv="refresh"' in page and 'hx-trigger="every 2s"' in page
    fragment = client.get(answer.location, headers={"HX-Request": "true"}).text
    assert fragment.startswith('<section id="job-state" aria-live="polite"')
    cancel = client.post(f"/console/jobs/{JOB_ID}/cancel", data={"csrf_token": csrf_of(client)})
    assert cancel.status_code == 303
    assert trainer.requests[-1]["method"] == "DELETE"


def test_the_model_page_marks_the_champion_and_draws_the_metric(make_client):
    client = make_client(MLFLOW_UI_URL="http://127.0.0.1:5000/")
    html = client.get("/console/models/churn").text
    assert re.search(r'<tr id="version-2" class="is-champion">', html)
    assert '<span class="champion">champion</span>' in html
    svg = re.search(r'<svg [^>]*role="img"[^>]*><title>([^<]*)</title>', html)
    assert svg and "log_loss" in svg.group(1)
    assert 'href="http://127.0.0.1:5000/#/runs/' + "2" * 32 + '"' in html
    changed = client.post(
        "/console/models/churn/champion",
        data={"csrf_token": csrf_of(client), "version": "1", "reason": "rollback"},
    )
    assert changed.status_code == 303 and changed.location.endswith("changed=1")


def test_the_monitoring_page_says_drift_in_words_with_thresholds(make_client):
    html = make_client().get("/console/monitoring/churn").text
    row = re.search(r'<tr class="drift-alert" data-feature="plan">(.*?)</tr>', html, re.S)
    assert row and "drifted" in row.group(1) and "0.250" in row.group(1)
    assert "coverage 10.0%" in html
    assert re.search(r'<svg [^>]*data-plot="quality"[^>]*role="img"', html)


def test_a_link_from_another_site_reloads_instead_of_replacing_the_session(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    arrived = client.get("/console/models", headers={"Sec-Fetch-Site": "cross-site"})
    assert arrived.status_code == 200 and '<meta http-equiv="refresh" content="0">' in arrived.text
    assert "Set-Cookie" not in arrived.headers  # the browser's own cookie stays as it is
    assert arrived.headers["Content-Security-Policy"] == CSP
    reloaded = client.get("/console/models", headers={"Sec-Fetch-Site": "same-origin"})
    assert reloaded.status_code == 303 and "Set-Cookie" in reloaded.headers
    assert client.get("/console").location == "/"


def test_an_upload_over_the_limit_shows_the_limit_beside_the_form(make_client, trainer):
    client = make_client(MAX_UPLOAD_MB=0.01)
    answer = train(client, csrf_of(client))
    page = Page(answer.text)
    assert answer.status_code == 413 and "train-form" in page.ids
    assert "larger than the 0.01 MB limit" in page.alerts[0]
    assert trainer.requests == []
