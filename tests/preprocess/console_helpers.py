"""What the console's tests share: the pages they visit, a reader of a page's links, alerts and
CSRF tokens, and the form posts they make."""

from __future__ import annotations

import os
from html.parser import HTMLParser

from tests.preprocess.console_standin import JOB_ID

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
