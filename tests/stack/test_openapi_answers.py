"""The stack's real answers against the OpenAPI document (preprocess/openapi): every
documented operation is called once through preprocess, the way the client calls it
(multipart data_file, no model named where the client names none), and each answer's status,
media type and body must be what the document says for that path and method."""

from __future__ import annotations

import os

import requests

from preprocess.openapi import document
from testkit.openapi import answer_errors
from testkit.stack import wait_job

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 120


def _example(name: str) -> bytes:
    with open(os.path.join(ROOT, "examples", name), "rb") as handle:
        return handle.read()


class Caller:
    """Calls the public entry and checks each answer against the document."""

    def __init__(self, base: str):
        self.base = base
        self.doc = document()
        self.called: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def __call__(self, method: str, path: str, expect: int, real_path=None, **kwargs):
        """`path` as the document names it; `real_path` with its parameters filled in."""
        answer = requests.request(
            method, self.base + (real_path or path), timeout=TIMEOUT, **kwargs
        )
        assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        self.called.add((path, method))
        media = answer.headers.get("Content-Type", "")
        for problem in answer_errors(
            self.doc, path, method, expect, media, answer.content, answer.headers
        ):
            self.problems.append(f"{method} {path} {expect}: {problem}")
        return answer

    def upload(self, path: str, expect: int, data: bytes, **params):
        """POST `data` as the multipart field data_file, as client/request.py does."""
        files = {"data_file": ("data.csv", data, "text/csv")}
        return self("POST", path, expect, params=params, files=files)


def _documented(doc: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete"}
    }


def test_every_answer_matches_the_document(stack):
    call = Caller(stack.url("preprocess"))
    for path in ("/health", "/livez", "/metrics", "/metrics/trainer", "/openapi.json"):
        call("GET", path, 200)

    train = _example("churn_train.csv")
    dev = call.upload("/analyze", 200, train, phase="dev").json()
    second = call.upload("/analyze", 200, train, phase="dev", promote="never").json()
    prod = call.upload("/analyze", 200, _example("churn_query.csv"), phase="prod", proba="true")
    batch = prod.json()["batch_id"]
    async_prod = {"phase": "prod", "async": "true"}
    accepted = call.upload("/analyze", 202, _example("churn_query.csv"), **async_prod)
    _job_answers(call, accepted)
    call.upload("/analyze", 400, b"", phase="nope")

    target = train.split(b"\n", 1)[0].decode().strip().split(",")[-1]
    labels = f"batch_id,row,{target}\n{batch},0,no\n{batch},1,yes\n".encode()
    call.upload("/feedback", 200, labels)
    call("GET", "/monitoring", 200)
    call("GET", "/monitoring/report", 200)

    name, model = "default", "/models/{name}"
    call("GET", "/models", 200)
    call("GET", model, 200, f"/models/{name}")
    call("GET", model, 404, "/models/no-such-model-here")
    challenger = {"version": second["version"], "mode": "shadow"}
    call("PUT", f"{model}/challenger", 201, f"/models/{name}/challenger", json=challenger)
    call("GET", f"{model}/challenger", 200, f"/models/{name}/challenger")
    call("DELETE", f"{model}/challenger", 200, f"/models/{name}/challenger")
    back = {"version": dev["version"], "reason": "the OpenAPI test: the first version"}
    call("POST", f"{model}/champion", 200, f"/models/{name}/champion", json=back)
    retrain = call("POST", f"{model}/retrain", 202, f"/models/{name}/retrain")
    assert wait_job(call.base, retrain)["state"] == "succeeded"

    assert call.problems == []
    assert call.called == _documented(call.doc)


def _job_answers(call: Caller, accepted: requests.Response) -> None:
    """GET /jobs, GET /jobs/{job_id} once finished, DELETE of the finished job (409)."""
    job_id = accepted.json()["job_id"]
    job = wait_job(call.base, accepted)
    assert job["state"] == "succeeded", job
    call("GET", "/jobs", 200)
    call("GET", "/jobs/{job_id}", 200, f"/jobs/{job_id}")
    call("DELETE", "/jobs/{job_id}", 409, f"/jobs/{job_id}")
