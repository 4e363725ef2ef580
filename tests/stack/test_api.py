"""The HTTP contract, end to end through the real services (gunicorn + mlflow server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from testkit.servers import free_port
from testkit.stack import ROOT, post_csv
from tests.datasets import churn, diabetes, iris, to_csv


def train(stack, name, frame, url=None, **params):
    """A dev run through preprocess; asserts success and returns the answer."""
    response = post_csv(url or stack.analyze_url, to_csv(frame), phase="dev", model=name, **params)
    assert response.status_code == 200, response.text
    return response.json()


def predict(stack, name, frame, url=None, **params):
    response = post_csv(url or stack.analyze_url, to_csv(frame), phase="prod", model=name, **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_health_endpoints_report_dependencies(stack):
    pre = requests.get(f"{stack.url('preprocess')}/health", timeout=5).json()
    tr = requests.get(f"{stack.url('trainer')}/health", timeout=5).json()
    assert pre["status"] == "ok" and pre["trainer"]["reachable"] is True
    assert tr["status"] == "ok" and tr["mlflow"]["reachable"] is True


def test_dev_then_prod_classification(stack, model_name):
    frame = churn(1500)  # churn's signal shows beyond the noise from ~1,200 rows
    dev = train(stack, model_name, frame)
    assert dev["version"] == "1" and dev["promoted"] is True and dev["champion_version"] == "1"
    assert dev["target"] == "churned" and dev["task"]["type"] == "classification"
    assert dev["task"]["reason"]
    assert {"accuracy", "f1_macro", "roc_auc", "log_loss"} <= set(dev["metrics"])
    assert {"name": "customer_id", "reason": dev["features"]["dropped"][0]["reason"]} in dev[
        "features"
    ]["dropped"]
    assert dev["cleaning"]["rows_in"] == 1500
    query = churn(40, seed=99).drop(columns="churned")
    prod = predict(stack, model_name, query, proba="true")
    assert prod["version"] == "1" and prod["n_rows"] == 40
    assert len(prod["predictions"]) == 40 and set(prod["predictions"]) <= {"yes", "no"}
    assert prod["classes"] == ["no", "yes"]
    assert np.allclose(np.sum(prod["probabilities"], axis=1), 1.0, atol=1e-5)
    # One prediction per row, in input order: scoring rows one by one gives the same labels.
    single = [predict(stack, model_name, query.iloc[[i]])["predictions"][0] for i in (0, 17, 39)]
    assert single == [prod["predictions"][i] for i in (0, 17, 39)]


def test_dev_run_is_logged_to_mlflow(stack, model_name):
    dev = train(stack, model_name, iris())
    client = MlflowClient(stack.tracking_uri)
    run = client.get_run(dev["run_id"])
    assert run.data.params["task"] == "classification"
    assert run.data.metrics["valid_accuracy"] == pytest.approx(dev["metrics"]["accuracy"])
    assert run.data.tags["sluice.model"] == model_name
    assert run.inputs.dataset_inputs, "the training dataset is logged"
    artifacts = {a.path for a in client.list_artifacts(dev["run_id"], "reports")}
    assert {"reports/cleaning.json", "reports/feature_spec.json"} <= artifacts
    version = client.get_model_version(model_name, dev["version"])
    assert version.run_id == dev["run_id"]
    assert client.get_model_version_by_alias(model_name, "champion").version == dev["version"]


def test_regression_returns_numbers(stack, model_name):
    frame = diabetes()
    dev = train(stack, model_name, frame)
    assert dev["task"]["type"] == "regression" and {"rmse", "mae", "r2"} <= set(dev["metrics"])
    prod = predict(stack, model_name, frame.drop(columns="target").head(25))
    assert all(isinstance(v, float) for v in prod["predictions"]) and prod["n_rows"] == 25


def test_target_and_task_overrides(stack, model_name):
    frame = churn(300)
    dev = train(stack, model_name, frame, target="support_tickets", task="regression")
    assert dev["target"] == "support_tickets" and dev["task"]["type"] == "regression"
    assert "requested" in dev["task"]["reason"]


def _waves(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(rows, 2))
    y = np.sin(x[:, 0]) * 10 + x[:, 1] ** 2
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "target": y})


def test_same_data_again_is_promoted_as_not_worse(stack, model_name):
    frame = _waves(1000, 3)  # ~200 validation rows: enough for the gate
    train(stack, model_name, frame)
    second = train(stack, model_name, frame)
    assert second["version"] == "2" and second["promoted"] is True
    promotion = second["promotion"]
    assert promotion["rule"] == "not_worse" and promotion["champion_version"] == "1"
    assert promotion["challenger_score"] == pytest.approx(promotion["champion_score"])
    assert promotion["comparison"]["rows"] == second["training"]["rows_validation"] >= 100
    assert promotion["comparison"]["difference"] == pytest.approx(0.0, abs=1e-9)
    assert "not worse" in second["reason"]


def test_worse_model_is_not_promoted(stack, model_name):
    train(stack, model_name, _waves(4000, 0))
    weak = train(stack, model_name, _waves(600, 1))  # a fifth of the rows: a worse fit
    promotion = weak["promotion"]
    assert weak["promoted"] is False and weak["champion_version"] == "1", weak["reason"]
    assert promotion["rule"] == "worse" and "worse" in weak["reason"]
    assert promotion["challenger_score"] > promotion["champion_score"]
    assert promotion["comparison"]["interval"][0] > 0  # worse beyond the noise
    assert predict(stack, model_name, _waves(5, 2).drop(columns="target"))["version"] == "1"


def test_schema_change_is_not_promoted_and_promote_overrides(stack, model_name):
    frame = churn(1500)
    train(stack, model_name, frame)
    narrower = train(stack, model_name, frame.drop(columns=["region"]))
    assert narrower["promoted"] is False and narrower["promotion"]["rule"] == "schema"
    assert "schema differs" in narrower["reason"] and "region" in narrower["reason"]
    assert "promote=always" in narrower["reason"]
    never = train(stack, model_name, frame, promote="never")
    assert never["promoted"] is False and never["champion_version"] == "1"
    always = train(stack, model_name, frame.drop(columns=["region"]), promote="always")
    assert always["promoted"] is True and always["champion_version"] == always["version"] == "4"
    query = frame.drop(columns=["churned", "region"]).head(5)
    assert predict(stack, model_name, query)["version"] == "4"


def test_new_champion_is_served_without_restart(stack, model_name):
    frame = iris()
    train(stack, model_name, frame)
    query = frame.drop(columns="target").head(10)
    assert predict(stack, model_name, query)["version"] == "1"
    train(stack, model_name, frame, promote="always")
    # Every worker sees the new champion at once (a dev run went through this trainer).
    versions = {predict(stack, model_name, query)["version"] for _ in range(6)}
    assert versions == {"2"}
    # Moved by hand, as in the MLflow UI: noticed by the poller within seconds.
    MlflowClient(stack.tracking_uri).set_registered_model_alias(model_name, "champion", "1")
    deadline = time.monotonic() + 20
    seen = set()
    while time.monotonic() < deadline:
        seen = {predict(stack, model_name, query)["version"] for _ in range(4)}
        if seen == {"1"}:
            break
        time.sleep(0.5)
    assert seen == {"1"}


def test_concurrent_prod_requests_on_two_models_do_not_mix(stack, model_name):
    names = {"churn": f"{model_name}-a", "iris": f"{model_name}-b"}
    frames = {"churn": churn(1500), "iris": iris()}
    queries = {
        "churn": frames["churn"].drop(columns="churned").head(30),
        "iris": frames["iris"].drop(columns="target").sample(30, random_state=1),
    }
    for key in names:
        train(stack, names[key], frames[key])
    expected = {key: predict(stack, names[key], queries[key])["predictions"] for key in names}
    jobs = [key for key in names for _ in range(12)]

    def call(key):
        return key, predict(stack, names[key], queries[key])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, jobs))
    for key, answer in results:
        assert answer["model"] == names[key]
        assert answer["predictions"] == expected[key]


def test_trainer_accepts_csv_directly(stack, model_name):
    dev = train(stack, model_name, iris(), url=stack.ml_url)
    assert dev["cleaning"]["encoding"] == "utf-8"
    prod = predict(stack, model_name, iris().drop(columns="target").head(3), url=stack.ml_url)
    assert prod["n_rows"] == 3


def test_prod_matches_columns_by_name(stack, model_name):
    frame = churn(1500)
    train(stack, model_name, frame)
    query = frame.drop(columns="churned").head(20)
    base = predict(stack, model_name, query)
    shuffled = query[list(reversed(query.columns))].assign(extra_column=1)
    answer = predict(stack, model_name, shuffled)
    assert answer["predictions"] == base["predictions"]
    assert "extra_column" in answer["ignored_columns"]
    missing = post_csv(
        stack.analyze_url,
        to_csv(query.drop(columns=["plan", "tenure_months"])),
        phase="prod",
        model=model_name,
    )
    assert missing.status_code == 422
    error = missing.json()["error"]
    assert error["code"] == "missing_columns"
    assert "plan" in error["message"] and "tenure_months" in error["message"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "missing_phase"),
        ({"phase": "train"}, 400, "invalid_phase"),
        ({"phase": "dev", "task": "clustering"}, 400, "invalid_task"),
        ({"phase": "dev", "target": "nope"}, 422, "unknown_target"),
        ({"phase": "dev", "model": "../etc/passwd"}, 400, "invalid_model_name"),
        ({"phase": "prod", "model": "never-trained"}, 404, "model_not_found"),
    ],
)
@pytest.mark.parametrize("service", ["preprocess", "trainer"])
def test_bad_requests_get_clear_json_errors(stack, service, params, status, code):
    url = stack.analyze_url if service == "preprocess" else stack.ml_url
    response = post_csv(url, to_csv(iris()), **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and len(error["message"]) > 20


@pytest.mark.parametrize("service", ["preprocess", "trainer"])
def test_protocol_errors_are_json(stack, service):
    url = stack.analyze_url if service == "preprocess" else stack.ml_url
    no_file = requests.post(url, params={"phase": "dev"}, data={"x": "1"}, timeout=10)
    assert no_file.status_code == 400 and no_file.json()["error"]["code"] == "missing_file"
    wrong_method = requests.get(url, params={"phase": "dev"}, timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"]
    unknown = requests.get(f"{stack.url(service)}/nope", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    empty = post_csv(url, b"", phase="dev")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_file"


def test_mlflow_models_serve_gives_the_same_predictions(stack, model_name, tmp_path):
    frame = churn(1500)
    train(stack, model_name, frame)
    query = frame.drop(columns="churned").head(30)
    ours = predict(stack, model_name, query)["predictions"]
    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=stack.tracking_uri)
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{model_name}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=open(tmp_path / "serve.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail(
                "mlflow models serve did not start:\n" + (tmp_path / "serve.log").read_text()
            )
        for body, content_type in (
            (to_csv(query), "text/csv"),
            (
                query.to_json(orient="split", index=False).join(['{"dataframe_split": ', "}"]),
                "application/json",
            ),
        ):
            served = requests.post(
                f"http://127.0.0.1:{port}/invocations",
                data=body,
                headers={"Content-Type": content_type},
                timeout=30,
            )
            assert served.status_code == 200, served.text
            assert served.json()["predictions"] == ours
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_client_prints_answers_and_exit_codes(stack, model_name, tmp_path):
    train_file = tmp_path / "train.csv"
    train_file.write_bytes(to_csv(iris()))
    client = [sys.executable, os.path.join(ROOT, "client", "request.py")]
    url = ["--url", stack.analyze_url, "--model", model_name]
    dev = subprocess.run(
        [*client, str(train_file), "dev", *url], capture_output=True, text=True, timeout=300
    )
    assert dev.returncode == 0, dev.stderr
    assert '"promoted": true' in dev.stdout
    bad = subprocess.run(
        [*client, str(train_file), "dev", *url, "--target", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "unknown_target" in bad.stdout
    down = subprocess.run(
        [*client, str(train_file), "prod", "--url", f"http://127.0.0.1:{free_port()}/analyze"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 2 and "cannot reach Sluice" in down.stderr
