"""The console's pages and forms: what each shows, the train form's upload equal to POST
/analyze's, API errors in alerts, escaping, the predictions' CSV, jobs (Flask's test client
against a stand-in trainer, tests/preprocess/console_standin.py)."""

from __future__ import annotations

import io
import os
import re

import pandas as pd
import pyarrow as pa

from preprocess.console import results
from tests.preprocess.console_helpers import (
    PAGES,
    TOKEN,
    TRAIN_CSV,
    Page,
    csrf_of,
    signed_in,
    train,
)
from tests.preprocess.console_standin import HOSTILE, JOB_ID, PROD_JOB_ID, prod_answer


def test_the_home_page_links_to_every_page_and_each_renders(make_client):
    client = make_client()
    home = Page(client.get("/").text)
    for name in ("Models", "Train", "Predict", "Jobs", "Monitoring"):
        answer = client.get(home.links[name])
        assert answer.status_code == 200, name
        assert '<html lang="en">' in answer.text and '<main id="main"' in answer.text
    for url in PAGES:
        assert client.get(url).status_code == 200, url


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
    answer = {"predictions": [], "model": "m"}
    ids = [results.save(str(tmp_path), answer, 20, f"{n:032x}") for n in range(5)]
    assert len(os.listdir(tmp_path)) == 3
    assert results.load(str(tmp_path), ids[0], f"{0:032x}") is None
    assert results.load(str(tmp_path), ids[-1], f"{4:032x}").answer["model"] == "m"
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


def test_an_upload_over_the_limit_shows_the_limit_beside_the_form(make_client, trainer):
    client = make_client(MAX_UPLOAD_MB=0.01)
    answer = train(client, csrf_of(client))
    page = Page(answer.text)
    assert answer.status_code == 413 and "train-form" in page.ids
    assert "larger than the 0.01 MB limit" in page.alerts[0]
    assert trainer.requests == []


def test_a_finished_prod_jobs_predictions_page_and_download_like_a_forms(make_client, trainer):
    client = make_client()
    page = client.get(f"/console/jobs/{PROD_JOB_ID}").text
    assert "job-predictions-form" in Page(page).ids and "hx-trigger" not in page  # finished
    shown = client.post(
        f"/console/jobs/{PROD_JOB_ID}/predictions", data={"csrf_token": Page(page).csrf[0]}
    )
    assert shown.status_code == 303 and "/console/predictions/" in shown.location
    download = client.get(
        Page(client.get(shown.location).text).links["Download all predictions (CSV)"]
    )
    got = pd.read_csv(io.StringIO(download.text), dtype=str, keep_default_na=False)
    assert got["prediction"].tolist() == prod_answer("churn", trainer.prod_rows)["predictions"]
    running = client.post(
        f"/console/jobs/{JOB_ID}/predictions", data={"csrf_token": Page(page).csrf[0]}
    )
    assert running.status_code == 409 and Page(running.text).alerts


def test_results_are_not_kept_in_a_directory_others_can_read(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert results.save(str(shared), {}, 2, "s" * 32) is None and os.listdir(shared) == []
