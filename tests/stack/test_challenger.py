"""Shadow challengers with the real services: PUT/GET/DELETE /models/<name>/challenger through
the public port, the champion answering every request while the challenger scores the same
rows off the request path, labels pairing both, and the decision."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from testkit.stack import LocalStack, post_csv
from tests.datasets import shop, to_csv


def base(stack) -> str:
    return stack.url("preprocess")


def dev(stack, model: str, frame: pd.DataFrame, promote: str) -> dict:
    answer = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model, promote=promote)
    assert answer.status_code == 200, answer.text
    return answer.json()


def prod(stack, model: str, frame: pd.DataFrame) -> dict:
    answer = post_csv(
        stack.analyze_url, to_csv(frame.drop(columns="bought")), phase="prod", model=model
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def challenger(stack, model: str, method: str = "GET", **kwargs) -> requests.Response:
    return requests.request(
        method, f"{base(stack)}/models/{model}/challenger", timeout=120, **kwargs
    )


def _shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    frame = frame.copy()
    frame["bought"] = np.random.default_rng(seed).permutation(frame["bought"].to_numpy())
    return frame


@pytest.fixture(scope="module")
def contest(stack):
    """v1, trained on shuffled labels, is the champion; v2, trained on the real ones, is not."""
    model = "shadowed-shop"
    v1 = dev(stack, model, _shuffled(shop(600, 11), 12), promote="always")
    v2 = dev(stack, model, shop(1500, 13), promote="never")
    assert v1["version"] == "1" and v2["version"] == "2"
    return model


def _settled(stack, model: str, batches: int) -> dict:
    """GET once the challenger's side of `batches` batches is stored (each worker's thread
    writes it a moment after the answer)."""
    deadline = time.monotonic() + 20
    while True:
        answer = challenger(stack, model)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        done = body["batches"]["shadowed"] + body["batches"]["skipped"]
        if done >= batches or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_a_clearly_better_shadow_challenger_is_decided_promote(stack, contest):
    model = contest
    started = challenger(stack, model, "PUT", json={"version": "2", "mode": "shadow"})
    assert started.status_code == 201, started.text
    assert started.json()["version"] == "2" and started.json()["champion"] == "1"
    assert (
        MlflowClient(stack.tracking_uri).get_model_version_by_alias(model, "challenger").version
        == "2"
    )
    again = challenger(stack, model, "PUT", json={"version": 2})
    assert again.status_code == 200 and again.json()["started"] == started.json()["started"]

    early = challenger(stack, model).json()
    assert early["decision"] == "continue" and early["labelled_rows"] == 0

    frames, answers = [], []
    for seed in range(20, 32):  # 12 batches of 50 rows
        frame = shop(50, seed)
        answer = prod(stack, model, frame)
        assert answer["version"] == "1"  # the champion answers every request
        frames.append(frame)
        answers.append(answer)
    labels = pd.concat(
        [
            pd.DataFrame({"batch_id": a["batch_id"], "row": range(len(f)), "bought": f["bought"]})
            for a, f in zip(answers, frames, strict=True)
        ]
    )
    body = _settled(stack, model, len(answers))
    assert body["batches"]["shadowed"] == 12 and body["batches"]["skipped"] == 0, body
    # The first 90 labels: however clear the gap, nothing is decided before 100.
    posted = post_csv(f"{base(stack)}/feedback", to_csv(labels.iloc[:90]), model=model)
    assert posted.status_code == 200, posted.text
    early = challenger(stack, model).json()
    assert early["labelled_rows"] == 90 and early["decision"] == "continue"
    assert "no decision before 100" in early["reason"]
    assert early["coverage"] == pytest.approx(90 / 600)
    posted = post_csv(f"{base(stack)}/feedback", to_csv(labels.iloc[90:]), model=model)
    assert posted.status_code == 200, posted.text

    body = challenger(stack, model).json()
    assert body["labelled_rows"] == 600 and body["coverage"] == 1.0
    assert body["metric"] == "accuracy"
    # The oracle for the champion's side: its own answers against the labels.
    predicted = np.concatenate([a["predictions"] for a in answers])
    truth = np.concatenate([f["bought"].to_numpy() for f in frames])
    assert body["champion_score"] == pytest.approx(np.mean(predicted == truth))
    assert body["challenger_score"] > body["champion_score"] + 0.15
    assert body["decision"] == "promote", body["reason"]
    low, high = body["interval"]
    assert 0 < low < body["difference"] < high
    assert body["mcnemar"]["p_value"] < 0.001
    assert "600 labelled rows" in body["reason"]
    assert body["latency_ms"]["champion"]["batches"] == 12
    assert body["latency_ms"]["challenger"]["p50"] > 0
    assert body["errors"] == {"champion": 0, "challenger": 0, "last_challenger_error": None}

    log_loss = challenger(stack, model, params={"metric": "log_loss"}).json()
    assert log_loss["metric"] == "log_loss" and log_loss["difference"] < 0

    # Promotion stays a call to /champion (CHALLENGER_AUTO_PROMOTE is off).
    assert prod(stack, model, shop(5, 40))["version"] == "1"
    moved = requests.post(
        f"{base(stack)}/models/{model}/champion",
        json={"version": "2", "reason": f"shadow challenger: {body['reason'][:200]}"},
        timeout=120,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["history"]["challenge_ended"]  # the champion challenges no more
    gone = challenger(stack, model)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "no_challenger"
    assert prod(stack, model, shop(5, 41))["version"] == "2"


def _error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    return response.json()["error"]["message"]


def test_bad_challenger_requests_are_clear_4xx_and_change_nothing(stack, model_name):
    dev(stack, model_name, shop(600, 51), promote="always")
    dev(stack, model_name, shop(600, 52), promote="never")
    dev(stack, model_name, shop(600, 53), promote="never")
    put = "PUT"
    _error(challenger(stack, "no-such-model", put, json={"version": "1"}), 404, "unknown_model")
    _error(challenger(stack, model_name, put, json={"version": "9"}), 404, "unknown_version")
    message = _error(
        challenger(stack, model_name, put, json={"version": "1"}), 409, "challenger_is_champion"
    )
    assert "champion" in message
    _error(challenger(stack, model_name, put, data="[1]"), 400, "not_a_json_object")
    _error(challenger(stack, model_name, put, data="{"), 400, "not_a_json_object")
    deep = "[" * 30_000 + "]" * 30_000  # past the JSON parser's recursion limit
    _error(challenger(stack, model_name, put, data=deep), 400, "not_a_json_object")
    _error(challenger(stack, model_name, put, json={"version": True}), 400, "invalid_version")
    message = _error(
        challenger(stack, model_name, put, json={"version": "2", "mode": "canary" * 10}),
        400,
        "invalid_mode",
    )
    assert message.endswith('got "' + ("canary" * 10)[:40] + '"….')  # cut, then quoted
    _error(challenger(stack, model_name), 404, "no_challenger")
    _error(challenger(stack, model_name, "DELETE"), 404, "no_challenger")

    assert challenger(stack, model_name, put, json={"version": "2"}).status_code == 201
    message = _error(
        challenger(stack, model_name, put, json={"version": "3"}), 409, "challenger_running"
    )
    assert "DELETE" in message
    assert challenger(stack, model_name).json()["version"] == "2"  # not replaced
    _error(challenger(stack, model_name, params={"metric": "rmse"}), 400, "invalid_metric")

    # A version registered outside Sluice (no signature) cannot be run.
    client = MlflowClient(stack.tracking_uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(stack.tracking_uri)
    try:  # v3's files registered again by hand: no signature tag
        forged = mlflow.register_model(client.get_model_version(model_name, "3").source, model_name)
    finally:
        mlflow.set_tracking_uri(previous)
    assert challenger(stack, model_name, "DELETE").status_code == 200
    _error(
        challenger(stack, model_name, put, json={"version": forged.version}),
        409,
        "untrusted_version",
    )
    _error(challenger(stack, model_name), 404, "no_challenger")
    assert "challenger" not in (client.get_registered_model(model_name).aliases or {})


def test_auto_promote_makes_a_decided_challenger_the_champion(tmp_path):
    # The one setting that must differ: a stack of its own (one worker).
    local = LocalStack(home=str(tmp_path / "home"), extra_env={"CHALLENGER_AUTO_PROMOTE": "1"})
    local.start()
    try:
        model = "auto-shop"
        dev(local, model, _shuffled(shop(600, 61), 62), promote="always")
        dev(local, model, shop(1500, 63), promote="never")
        assert challenger(local, model, "PUT", json={"version": "2"}).status_code == 201
        frames = [shop(60, seed) for seed in range(64, 67)]
        answers = [prod(local, model, frame) for frame in frames]
        assert {a["version"] for a in answers} == {"1"}
        _settled(local, model, len(answers))
        labels = pd.concat(
            [
                pd.DataFrame({"batch_id": a["batch_id"], "row": range(60), "bought": f["bought"]})
                for a, f in zip(answers, frames, strict=True)
            ]
        )
        posted = post_csv(f"{base(local)}/feedback", to_csv(labels), model=model)
        assert posted.status_code == 200, posted.text
        promoted = posted.json()["challenger_promoted"]
        assert promoted["champion"] == "2" and promoted["previous"] == "1"
        assert promoted["history"]["by"] == "challenger"
        assert "better beyond the noise" in promoted["history"]["reason"]
        assert prod(local, model, shop(5, 70))["version"] == "2"  # hot-swapped
        gone = challenger(local, model)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "no_challenger"
        client = MlflowClient(local.tracking_uri)
        assert "challenger" not in (client.get_registered_model(model).aliases or {})
    finally:
        local.stop()


def test_concurrent_deletes_end_the_challenge_once(stack, model_name):
    dev(stack, model_name, shop(400, 81), promote="always")
    dev(stack, model_name, shop(400, 82), promote="never")
    assert challenger(stack, model_name, "PUT", json={"version": "2"}).status_code == 201
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: challenger(stack, model_name, "DELETE"), range(3)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 404, 404], [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 404:
            assert answer.json()["error"]["code"] == "no_challenger"

    # Query parameters: only metric, once (as /models refuses what it does not take).
    assert challenger(stack, model_name, "PUT", json={"version": "2"}).status_code == 201
    both = {"metric": ["log_loss", "accuracy"]}
    assert "metric" in _error(challenger(stack, model_name, params=both), 400, "repeated_parameter")
    message = _error(challenger(stack, model_name, params={"metrc": "x"}), 400, "unknown_parameter")
    assert "'metrc'" in message and "metric" in message
    _error(challenger(stack, model_name, "DELETE", params={"force": "1"}), 400, "unknown_parameter")
    assert challenger(stack, model_name).json()["version"] == "2"  # nothing ended


def _champion(stack, model: str, version: str) -> dict:
    moved = requests.post(
        f"{base(stack)}/models/{model}/champion",
        json={"version": version, "reason": "test"},
        timeout=120,
    )
    assert moved.status_code == 200, moved.text
    return moved.json()


def test_a_champion_change_ends_or_flags_the_challenge(stack, model_name):
    dev(stack, model_name, shop(400, 91), promote="always")
    dev(stack, model_name, shop(400, 92), promote="never")
    other = post_csv(
        stack.analyze_url, to_csv(shop(400, 93)), phase="dev", model=model_name,
        target="color", promote="never",
    )  # fmt: skip
    assert other.status_code == 200 and other.json()["version"] == "3", other.text
    assert challenger(stack, model_name, "PUT", json={"version": "2"}).status_code == 201

    # The champion now predicts another target: labels cannot compare the two.
    _champion(stack, model_name, "3")
    body = challenger(stack, model_name).json()
    assert body["decision"] == "incomparable", body
    assert "target 'bought', the champion 'color'" in body["reason"]

    # The challenger made the champion: the challenge ends, and the history says so.
    moved = _champion(stack, model_name, "2")
    assert "challenge ended" in moved["history"]["challenge_ended"]
    gone = challenger(stack, model_name)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "no_challenger"
    seen = requests.get(f"{base(stack)}/models/{model_name}", timeout=60).json()
    assert seen["champion"] == "2" and seen["challenger"] is None
    assert "challenge_ended" in seen["history"][-1]
    aliases = MlflowClient(stack.tracking_uri).get_registered_model(model_name).aliases or {}
    assert aliases == {"champion": "2"}
