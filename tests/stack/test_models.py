"""The model catalogue through preprocess (the public port): GET /models, GET /models/<name>,
POST /models/<name>/champion (promotion and rollback, with the hot swap on both trainer
workers), lineage in prod answers, and every bad input as a 4xx that changes nothing."""

from __future__ import annotations

import base64
import json
import os
import re
import time

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from testkit.stack import post_csv
from tests.datasets import iris, to_csv

SWAP_SECONDS = 2.0  # "every worker serves it within a couple of seconds"


def base(stack) -> str:
    return stack.url("preprocess")


def train(stack, name, frame, **params) -> dict:
    response = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=name, **params)
    assert response.status_code == 200, response.text
    return response.json()


def predict(stack, name, frame) -> dict:
    response = post_csv(stack.analyze_url, to_csv(frame), phase="prod", model=name)
    assert response.status_code == 200, response.text
    return response.json()


def detail(stack, name, **params) -> dict:
    response = requests.get(f"{base(stack)}/models/{name}", params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def champion(stack, name, body, expect=200) -> dict:
    response = requests.post(f"{base(stack)}/models/{name}/champion", json=body, timeout=60)
    assert response.status_code == expect, response.text
    return response.json()


def served_everywhere(stack, name, query, version) -> float:
    """Seconds until 8 prod answers in a row (both workers) name `version`."""
    started = time.monotonic()
    while True:
        answers = [predict(stack, name, query)["version"] for _ in range(8)]
        if set(answers) == {version}:
            return time.monotonic() - started
        assert time.monotonic() - started < 20, answers
        time.sleep(0.1)


@pytest.fixture(scope="module")
def two_versions(stack):
    """iris v1 (the gate's champion) and v2 of the same data, registered without promotion."""
    name = "models-two-versions"
    first = train(stack, name, iris())
    assert first["promoted"] is True, first["reason"]
    second = train(stack, name, iris(), promote="never")
    return name, first, second


def test_promote_and_rollback_are_served_by_every_worker_and_kept_in_history(stack, two_versions):
    name, first, second = two_versions
    query = iris().drop(columns="target").head(5)
    assert predict(stack, name, query)["version"] == "1"

    promoted = champion(stack, name, {"version": "2", "reason": "v2 for the spring catalogue"})
    assert promoted["champion"] == "2" and promoted["previous"] == "1"
    assert promoted["changed"] is True and promoted["columns_changed"] is False
    assert promoted["history"]["by"] == "api" and promoted["history"]["from"] == "1"
    assert served_everywhere(stack, name, query, "2") < SWAP_SECONDS

    rolled = champion(stack, name, {"version": 1, "reason": "rollback: v2 mislabels returns"})
    assert rolled["champion"] == "1" and rolled["previous"] == "2"
    assert served_everywhere(stack, name, query, "1") < SWAP_SECONDS

    # The same champion again: nothing to change, nothing recorded.
    again = champion(stack, name, {"version": "1", "reason": "again"})
    assert again["changed"] is False and again["history"] is None

    seen = detail(stack, name)
    assert seen["champion"] == "1"
    history = seen["history"]
    assert [(h["from"], h["to"], h["by"]) for h in history] == [
        (None, "1", "gate"),
        ("1", "2", "api"),
        ("2", "1", "api"),
    ]
    assert history[0]["reason"] == first["reason"]
    assert history[2]["reason"] == "rollback: v2 mislabels returns"
    assert history == sorted(history, key=lambda h: h["at"]) and seen["history_total"] == 3
    # MLflow tells the same story: the alias, the history tags and the version's reason.
    client = MlflowClient(stack.tracking_uri)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    tags = client.get_registered_model(name).tags
    assert len([k for k in tags if k.startswith("sluice.history.")]) == 3
    assert (
        "rollback: v2 mislabels returns"
        in client.get_model_version(name, "1").tags["sluice.champion"]
    )


def test_a_model_shows_each_version_with_its_evidence(stack, two_versions):
    name, first, second = two_versions
    seen = detail(stack, name)
    assert seen["name"] == name and seen["challenger"] is None
    assert [v["version"] for v in seen["versions"]] == ["2", "1"]  # newest first
    by_version = {v["version"]: v for v in seen["versions"]}
    for answer in (first, second):
        entry = by_version[answer["version"]]
        assert entry["run_id"] == answer["run_id"]
        assert entry["trusted"] is True
        assert entry["metrics"]["valid_accuracy"] == pytest.approx(answer["metrics"]["accuracy"])
        assert entry["promotion"]["promoted"] is answer["promoted"]
        assert entry["promotion"]["reason"] == answer["reason"]
        assert entry["data"]["rows"] == 150  # every row of the upload (train + validation)
        assert re.fullmatch(r"[0-9a-f]{16}", entry["data"]["digest"])
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["created"])
    # Same rows, same digest; the digest is the one logged with the run's dataset.
    assert by_version["1"]["data"]["digest"] == by_version["2"]["data"]["digest"]
    run = MlflowClient(stack.tracking_uri).get_run(first["run_id"])
    assert run.inputs.dataset_inputs[0].dataset.digest == by_version["1"]["data"]["digest"]

    # Paged: one version a page, following next_page.
    page = detail(stack, name, limit=1)
    assert [v["version"] for v in page["versions"]] == ["2"] and page["versions_total"] == 2
    rest = detail(stack, name, limit=1, page=page["next_page"])
    assert [v["version"] for v in rest["versions"]] == ["1"]


def test_prod_answers_name_version_run_and_training_data(stack, two_versions):
    name, first, second = two_versions
    versions = {v["version"]: v for v in detail(stack, name)["versions"]}
    query = iris().drop(columns="target").head(3)
    answer = predict(stack, name, query)
    served = versions[answer["version"]]
    assert answer["run_id"] == served["run_id"]
    assert answer["digest"] == served["data"]["digest"]


def test_the_list_names_sluice_models_only(stack, two_versions):
    name, _, _ = two_versions
    client = MlflowClient(stack.tracking_uri)
    foreign = f"{name}-foreign"
    client.create_registered_model(foreign)  # registered by someone else, not Sluice
    found, page = {}, None
    for _ in range(100):
        params = {"limit": 2, **({"page": page} if page else {})}
        response = requests.get(f"{base(stack)}/models", params=params, timeout=60)
        assert response.status_code == 200, response.text
        listing = response.json()
        assert len(listing["models"]) <= 2
        found.update({model["name"]: model for model in listing["models"]})
        page = listing["next_page"]
        if page is None:
            break
    assert foreign not in found
    assert found[name]["versions"] == 2 and found[name]["challenger"] is None
    assert found[name]["champion"] == detail(stack, name)["champion"]


def test_a_schema_change_is_allowed_and_said(stack, model_name):
    frame = iris()
    first = train(stack, model_name, frame)
    # The very first prod answers (each worker loads the champion now) name its lineage.
    for _ in range(4):
        answer = predict(stack, model_name, frame.drop(columns="target").head(2))
        assert (answer["version"], answer["run_id"]) == ("1", first["run_id"])
        assert re.fullmatch(r"[0-9a-f]{16}", answer["digest"])
    narrower = frame.drop(columns=["petal width (cm)"])
    second = train(stack, model_name, narrower, promote="never")
    answer = champion(stack, model_name, {"version": "2", "reason": "drop the broken sensor"})
    assert answer["columns_changed"] is True
    assert "petal width (cm)" in answer["schema_change"]
    query = narrower.drop(columns="target").head(4)
    assert served_everywhere(stack, model_name, query, "2") < SWAP_SECONDS
    assert predict(stack, model_name, query)["run_id"] == second["run_id"]


def test_a_version_failing_its_signature_is_refused_with_409(stack, model_name):
    train(stack, model_name, iris())
    client = MlflowClient(stack.tracking_uri)
    real = client.get_model_version(model_name, "1")
    # Registered from the same files but without Sluice's signature (as anyone with MLflow
    # access can do).
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(stack.tracking_uri)
    try:
        forged = mlflow.register_model(real.source, model_name)  # no signature tag
    finally:
        mlflow.set_tracking_uri(previous)
    error = champion(stack, model_name, {"version": forged.version, "reason": "x"}, 409)
    assert error["error"]["code"] == "untrusted_version"
    assert "signature" in error["error"]["message"]
    seen = detail(stack, model_name)
    assert seen["champion"] == "1" and len(seen["history"]) == 1  # nothing changed
    trust = {v["version"]: v["trusted"] for v in seen["versions"]}
    assert trust == {"1": True, forged.version: False}


BAD_BODIES = [
    ("text", b"version=2", 400, "not_a_json_object"),
    ("list", b'["2", "why"]', 400, "not_a_json_object"),
    ("no reason", b'{"version": "1"}', 400, "invalid_reason"),
    ("reason not text", b'{"version": "1", "reason": 5}', 400, "invalid_reason"),
    ("empty reason", b'{"version": "1", "reason": "  "}', 400, "invalid_reason"),
    ("no version", b'{"reason": "why"}', 400, "invalid_version"),
    ("bad version", b'{"version": "v2x", "reason": "why"}', 400, "invalid_version"),
    ("unknown version", b'{"version": "99", "reason": "why"}', 404, "unknown_version"),
    ("deeply nested", b"[" * 30_000 + b"]" * 30_000, 400, "not_a_json_object"),
    (
        "over 64 KiB",
        b'{"version": "1", "reason": "' + b"x" * 70_000 + b'"}',
        413,
        "json_body_too_large",
    ),
    ("reason with a newline", b'{"version": "1", "reason": "a\\nb"}', 400, "invalid_reason"),
    (
        "reason with a bidi override",
        b'{"version": "1", "reason": "\\u202eok"}',
        400,
        "invalid_reason",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "code"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
def test_bad_champion_requests_change_nothing(stack, two_versions, case, body, status, code):
    name, _, _ = two_versions
    before = detail(stack, name)
    response = requests.post(
        f"{base(stack)}/models/{name}/champion",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    after = detail(stack, name)
    assert (after["champion"], after["history"]) == (before["champion"], before["history"])


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/models/never-registered", 404, "unknown_model"),
        ("POST", "/models/never-registered/champion", 404, "unknown_model"),
        ("GET", "/models/bad name!", 400, "invalid_model_name"),
        ("GET", "/models?limit=0", 400, "invalid_limit"),
        ("GET", "/models?limt=5", 400, "unknown_parameter"),
        ("GET", "/models?page=nonsense", 400, "invalid_page"),
        ("POST", "/models/never-registered/champion?force=1", 400, "unknown_parameter"),
        ("DELETE", "/models", 405, "method_not_allowed"),  # relayed: every method reaches it
        ("PUT", "/models/x/nowhere", 404, "not_found"),
    ],
)
def test_bad_model_requests_are_clear_4xx(stack, method, path, status, code):
    body = {"version": "1", "reason": "why"} if method == "POST" else None
    response = requests.request(method, f"{base(stack)}{path}", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def listed(stack, name) -> dict:
    """The model's entry in GET /models, following the pages."""
    page = None
    for _ in range(50):
        params = {"limit": 500, **({"page": page} if page else {})}
        listing = requests.get(f"{base(stack)}/models", params=params, timeout=60).json()
        for model in listing["models"]:
            if model["name"] == name:
                return model
        page = listing["next_page"]
        if page is None:
            break
    raise AssertionError(f"{name} is not listed")


def test_a_running_challenger_is_listed_with_its_mode(stack, model_name):
    train(stack, model_name, iris())
    train(stack, model_name, iris(), promote="never")
    url = f"{base(stack)}/models/{model_name}/challenger"
    started = requests.put(url, json={"version": "2", "mode": "shadow"}, timeout=60)
    assert started.status_code in (200, 201), started.text
    try:
        expected = {"version": "2", "mode": "shadow"}
        assert detail(stack, model_name)["challenger"] == expected
        assert listed(stack, model_name)["challenger"] == expected
    finally:
        assert requests.delete(url, timeout=60).status_code == 200
    assert detail(stack, model_name)["challenger"] is None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Tokens no answer gave: MLflow used to decode them (a 503 for the first two, a quiet answer
# for the rest).
FORGED_PAGES = {
    "empty_list": "W10=",
    "huge_offset": _b64('{"offset": 1e308}'),
    "negative_offset": _b64('{"offset": -1}'),
    "true": _b64('{"offset": true}'),
    "fraction": _b64('{"offset": 1.5}'),
    "mlflow_style": _b64('{"offset": 1}'),
}


@pytest.mark.parametrize("listing", ["/models", "/models/models-two-versions"])
@pytest.mark.parametrize("token", FORGED_PAGES.values(), ids=FORGED_PAGES.keys())
def test_a_forged_page_token_is_a_400_invalid_page(stack, two_versions, listing, token):
    response = requests.get(f"{base(stack)}{listing}", params={"page": token}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_page" and "next_page" in error["message"]


def test_a_page_token_pages_only_the_listing_that_gave_it(stack, two_versions):
    name, _, _ = two_versions
    token = detail(stack, name, limit=1)["next_page"]
    assert token is not None
    assert detail(stack, name, limit=1, page=token)["versions"][0]["version"] == "1"
    response = requests.get(f"{base(stack)}/models", params={"page": token}, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_page"


def test_requests_for_unknown_models_leave_no_lock_file(stack):
    locks = os.path.join(stack.home, "trainer", "locks")
    before = set(os.listdir(locks)) if os.path.isdir(locks) else set()
    for n in range(20):
        url = f"{base(stack)}/models/ghost{n}-{time.time_ns()}"
        answers = [
            requests.post(f"{url}/champion", json={"version": "1", "reason": "x"}, timeout=60),
            requests.put(f"{url}/challenger", json={"version": "1", "mode": "shadow"}, timeout=60),
        ]
        assert [a.status_code for a in answers] == [404, 404], [a.text for a in answers]
    after = set(os.listdir(locks)) if os.path.isdir(locks) else set()
    assert after - before == set()


def test_a_refused_reason_is_quoted_whole(stack, two_versions):
    name, _, _ = two_versions
    error = champion(stack, name, {"version": "1", "reason": "y" * 1001}, 400)["error"]
    assert error["code"] == "invalid_reason"
    assert error["message"].endswith(f"got {json.dumps('y' * 40)}….")
    error = champion(stack, name, {"version": "x" * 60, "reason": "why"}, 400)["error"]
    assert error["code"] == "invalid_version"
    assert error["message"].endswith(f"got {json.dumps('x' * 40)}….")


@pytest.mark.parametrize("path", ["/models", "/models/never-registered"])
def test_an_unknown_parameter_is_named_cut_short(stack, path):
    response = requests.get(f"{base(stack)}{path}", params={"z" * 5000: "1"}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_parameter" and repr("z" * 40) in error["message"]
    assert "z" * 41 not in error["message"]
