"""The console on the real stack, as a browser without JavaScript uses it (requests, plain form
posts): train examples/churn_train.csv through the form, see "version 1" and "champion", then
predict examples/churn_query.csv and download the predictions."""

from __future__ import annotations

import csv
import io
import os
import re

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


def test_train_then_predict_and_download_through_the_console(stack, model_name):
    base = stack.url("preprocess")
    browser = requests.Session()
    form = browser.get(f"{base}/console/train", timeout=30)
    assert form.status_code == 200 and form.headers["Content-Security-Policy"]
    with open(os.path.join(EXAMPLES, "churn_train.csv"), "rb") as handle:
        trained = browser.post(
            f"{base}/console/train",
            data={"csrf_token": _csrf(form.text), "model": model_name, "target": "churned"},
            files={"data_file": ("churn_train.csv", handle, "text/csv")},
            timeout=300,
        )
    assert trained.status_code == 200, trained.text[-2000:]
    assert f"{model_name}: version 1" in trained.text
    assert "now the champion" in trained.text and "customer_id" in trained.text  # dropped

    listing = browser.get(f"{base}/console/models", timeout=30).text
    row = re.search(rf">{re.escape(model_name)}</a></th>\s*<td>(.*?)</td>", listing, re.S)
    assert row and "champion" in row.group(1) and "version 1" in row.group(1)

    with open(os.path.join(EXAMPLES, "churn_query.csv"), "rb") as handle:
        scored = browser.post(
            f"{base}/console/predict",
            data={"csrf_token": _csrf(form.text), "model": model_name},
            files={"data_file": ("churn_query.csv", handle, "text/csv")},
            timeout=120,
        )
    assert scored.status_code == 200 and "/console/predictions/" in scored.url
    assert f"Predictions of {model_name} version 1" in scored.text
    link = re.search(r'id="download-csv" href="([^"]+)"', scored.text).group(1)
    download = browser.get(f"{base}{link}", timeout=30)
    rows = list(csv.DictReader(io.StringIO(download.text)))
    with open(os.path.join(EXAMPLES, "churn_query.csv"), "rb") as handle:
        api = requests.post(
            stack.analyze_url,
            params={"phase": "prod", "model": model_name},
            files={"data_file": handle},
            timeout=120,
        ).json()
    assert [row["prediction"] for row in rows] == api["predictions"]  # the API's, row by row
